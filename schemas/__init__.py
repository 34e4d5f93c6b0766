"""The lake schema, shipped inside trailsight as trailsight.schemas."""
