"""The store's Alembic migrations: env.py, versions/ (one revision a file), alembic.ini for the
`alembic` command of developers. The app runs them through pmops.store.schema (no ini file)."""
