"""One Alembic revision a file, NNNN_slug.py; docs/migrations.md says how to add one."""
