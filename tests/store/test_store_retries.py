"""Retry numbers count a lineage's retries (1, 2, ... whatever each retries), and concurrent
retries of one lineage never share a number: on SQLite and PostgreSQL, with threads racing
through the same transaction the service uses (number, then insert)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pmops.store.retries import (
    insert_retry,
    next_retry_number,
    read_active_retry,
    read_lineage,
)
from pmops.store.tables import make_engine, operations, transaction

TENANT, PROJECT = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    made = make_engine(url)
    yield made
    made.dispose()


def add_operation(engine: Engine, operation_id: str, status: str = "Failed") -> None:
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        conn.execute(
            operations.insert().values(
                operation_id=operation_id,
                tenant_id=TENANT,
                project_id=PROJECT,
                operation_type="ProcessMiningAnalysis",
                operation_name=operation_id,
                priority="Normal",
                priority_rank=1,
                status=status,
                request={},
                created_at=now,
                timeout_at=now + timedelta(hours=1),
            )
        )


def retry_of(engine: Engine, original: str) -> int:
    """What the service's retry transaction does: number in the lineage, then record."""
    new = f"op-{uuid.uuid4()}"
    add_operation(engine, new)
    with transaction(engine) as conn:
        lineage = read_lineage(conn, original)
        number = next_retry_number(conn, lineage)
        insert_retry(conn, retry_row(new, original, lineage, number))
    return number


def retry_row(new: str, original: str, lineage: str, number: int) -> dict[str, object]:
    return {
        "operation_id": new,
        "original_id": original,
        "lineage": lineage,
        "retry_number": number,
        "retry_mode": "restart",
        "preserved_phases": [],
        "automatic": False,
        "created_at": datetime.now(UTC),
    }


def test_numbers_count_the_lineage_not_the_depth(engine: Engine) -> None:
    add_operation(engine, "op-first")
    assert retry_of(engine, "op-first") == 1
    assert retry_of(engine, "op-first") == 2  # a second retry of the same original
    with engine.connect() as conn:
        assert read_lineage(conn, "op-first") == "op-first"


def test_concurrent_retries_get_different_numbers(engine: Engine) -> None:
    add_operation(engine, "op-root")
    numbers: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def one() -> None:
        try:
            start.wait()
            numbers.append(retry_of(engine, "op-root"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


def test_one_active_retry_per_original(engine: Engine) -> None:
    """20 threads retry one original at once through the service's transaction (lock the
    lineage, look for an active retry, insert): exactly one inserts."""
    add_operation(engine, "op-orig")
    made: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def one() -> None:
        new = f"op-{uuid.uuid4()}"
        try:
            add_operation(engine, new, status="Initiated")
            start.wait()
            with transaction(engine) as conn:
                lineage = read_lineage(conn, "op-orig")
                number = next_retry_number(conn, lineage)
                active = read_active_retry(conn, "op-orig")
                if active is not None:
                    refused.append(active[0])
                    return
                insert_retry(conn, retry_row(new, "op-orig", lineage, number))
            made.append(new)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == 1 and refused == made * 19
