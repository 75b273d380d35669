"""Store unit tests run on SQLite and PostgreSQL: `engine` is parametrized over both.

PostgreSQL (127.0.0.1:5432, trust auth as postgres) gets one fresh, uniquely named database for
the session, dropped after; each test starts from empty tables. SQLite gets a new file per test.
Both schemas are made as the app makes them (make_engine runs the Alembic revisions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pmops.store.engine import make_engine, transaction
from pmops.store.tables import metadata
from tests.conftest import fresh_database


@pytest.fixture(scope="session")
def store_pg_engine() -> Iterator[Engine]:
    with fresh_database("pmops_store") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("store_pg_engine")
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with transaction(engine) as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
    yield engine
