"""Revision 0002: absolute paths the store kept become storage keys (pmops.service.storage), on
SQLite and PostgreSQL; paths of another shape are kept (still read from the local disk)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Engine

from pmops.store.engine import connect_engine, make_engine, transaction
from pmops.store.schema import HEAD, alembic_config, drift, revision
from pmops.store.tables import datasets, operations
from tests.conftest import fresh_database

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DATA = "/srv/old machine/.pmops"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with fresh_database("pmops_keys") as pg:
        yield pg


def _at_baseline(url: str) -> Engine:
    engine = connect_engine(url)
    with transaction(engine) as conn:
        command.upgrade(alembic_config(conn), "0001")
    return engine


def _dataset(dataset_id: str, path: str, source: str | None = None) -> dict[str, object]:
    return {
        "dataset_id": dataset_id,
        "tenant_id": "t1",
        "project_id": "p1",
        "file_name": "log.csv",
        "path": path,
        "size_bytes": 10,
        "format": "csv",
        "summary": {},
        "source_operation_id": source,
        "created_at": NOW,
    }


def _operation(operation_id: str, result_dir: str | None) -> dict[str, object]:
    return {
        "operation_id": operation_id,
        "tenant_id": "t1",
        "project_id": "p1",
        "operation_type": "ProcessMiningAnalysis",
        "operation_name": operation_id,
        "priority": "Normal",
        "priority_rank": 2,
        "status": "Completed",
        "request": {},
        "result_dir": result_dir,
        "created_at": NOW,
        "timeout_at": NOW + timedelta(hours=1),
    }


def test_absolute_paths_become_keys(url: str) -> None:
    engine = _at_baseline(url)
    with transaction(engine) as conn:
        conn.execute(
            datasets.insert(),
            [
                _dataset("d1", f"{DATA}/datasets/t1/d1/log.csv"),
                _dataset("d2", f"{DATA}/operations/op-1/enriched.csv", source="op-1"),
                _dataset("d3", "/mnt/elsewhere/log.csv"),  # not ours: kept, read from disk
                _dataset("d4", "datasets/t1/d4/log.csv"),  # a key already
            ],
        )
        conn.execute(
            operations.insert(),
            [
                _operation("op-1", f"{DATA}/operations/op-1"),
                _operation("op-2", "/mnt/results/run-2"),
                _operation("op-3", None),
            ],
        )
    engine.dispose()

    upgraded = make_engine(url, upgrade=True)
    try:
        with upgraded.connect() as conn:
            assert revision(conn) == HEAD
            paths = dict(conn.execute(select(datasets.c.dataset_id, datasets.c.path)).all())
            dirs = dict(
                conn.execute(select(operations.c.operation_id, operations.c.result_dir)).all()
            )
        assert paths == {
            "d1": "datasets/t1/d1/log.csv",
            "d2": "operations/op-1/enriched.csv",
            "d3": "/mnt/elsewhere/log.csv",
            "d4": "datasets/t1/d4/log.csv",
        }
        assert dirs == {"op-1": "operations/op-1", "op-2": "/mnt/results/run-2", "op-3": None}
        assert drift(upgraded) == []  # what `pmops db check` says
    finally:
        upgraded.dispose()
