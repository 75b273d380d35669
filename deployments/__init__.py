"""Prefect deployments of the operation flows, and the runner that serves them."""
