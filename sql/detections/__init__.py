"""Derived-table definitions kept beside each data file, shipped as trailsight.sql.derived."""
