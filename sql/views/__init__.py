"""Views created on every connection, shipped as trailsight.sql.views."""
