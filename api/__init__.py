"""FastAPI facade: maps the REST contract to flow runs and the app store."""
