"""Prefect flows: one per operation type, one task per phase."""
