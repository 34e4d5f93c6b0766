"""The Prefect flows, shipped inside trailsight as trailsight.flows (deployable from the installed package)."""
