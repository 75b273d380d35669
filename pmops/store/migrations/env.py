"""Alembic's environment for the store.

pmops.store.schema hands in an open connection, inside its transaction and lock
(config.attributes["connection"]); the migrations run in it. The `alembic` command of developers
(alembic -c pmops/store/migrations/alembic.ini ...) connects to PMOPS_DATABASE_URL instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from pmops.store.tables import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,  # what `alembic revision --autogenerate` compares with
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("pmops migrations run online only (the baseline inspects the store)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = os.environ.get("PMOPS_DATABASE_URL")
    if not url:
        raise SystemExit("set PMOPS_DATABASE_URL to the store the alembic command works on")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            run(conn)
    finally:
        engine.dispose()


main()
