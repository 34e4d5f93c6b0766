"""The report and view SQL, shipped inside trailsight as trailsight.sql (read through trailsight.resources)."""
