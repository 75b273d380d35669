"""The list summary's counters (pmops/store.py: triggers on `operations`) always equal a count of
the operations themselves, on SQLite and PostgreSQL, including for a store that held
operations before the counters existed."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update

from api.deps import Principal, Scope
from pmops.service.operations import list_operations
from pmops.settings import Settings
from pmops.store.schema import StoreNotCurrent
from pmops.store.tables import make_engine, metadata, operation_counts, operations, transaction

TYPES = ("ProcessMiningAnalysis", "DataEnrichment")
PRIORITIES = ("Low", "Normal", "Critical")
T1, T2, PROJECT = (str(uuid.uuid4()) for _ in range(3))


def rows(n: int, tenant: str, start: int = 0) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "operation_id": f"op-{tenant[:8]}-{i}",
            "tenant_id": tenant,
            "project_id": PROJECT,
            "operation_type": TYPES[i % 2],
            "operation_name": f"op {i}",
            "priority": PRIORITIES[i % 3],
            "priority_rank": i % 3,
            "status": "Initiated",
            "request": {},
            "created_at": now - timedelta(minutes=i),
            "timeout_at": now + timedelta(hours=1),
        }
        for i in range(start, start + n)
    ]


def truth(engine) -> tuple[Counter, Counter]:
    """(operations counted now, what the counters say)."""
    key = ("tenant_id", "project_id", "operation_type", "priority", "status")
    with engine.connect() as conn:
        real = Counter(
            tuple(r) for r in conn.execute(select(*(operations.c[k] for k in key))).all()
        )
        kept = Counter(
            {
                tuple(r[:5]): r[5]
                for r in conn.execute(select(operation_counts)).all()
                if r.n  # a key whose operations all moved on keeps a zero row
            }
        )
    return real, kept


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


def test_counters_follow_every_insert_transition_and_delete(store_url: str) -> None:
    # a store made before the counters: tables only, operations already in it
    bare = create_engine(store_url)
    metadata.create_all(bare)
    with bare.begin() as conn:
        conn.execute(operations.insert(), rows(30, T1))
    bare.dispose()

    # made before migrations: refused, then upgraded (the baseline installs and counts)
    with pytest.raises(StoreNotCurrent, match="pmops db upgrade"):
        make_engine(store_url)
    engine = make_engine(store_url, upgrade=True)
    make_engine(store_url).dispose()  # a second process starting: at head, counts nothing
    real, kept = truth(engine)
    assert kept == real and sum(real.values()) == 30

    with transaction(engine) as conn:
        conn.execute(operations.insert(), rows(12, T2) + rows(5, T1, start=30))
        conn.execute(
            update(operations)
            .where(operations.c.operation_id.like("%-1_"))
            .values(status="Running")
        )
    with transaction(engine) as conn:
        conn.execute(
            update(operations)
            .where(operations.c.status == "Running", operations.c.priority == "Low")
            .values(status="Completed")
        )
        conn.execute(
            update(operations)
            .where(operations.c.operation_id.like("%-2_"))
            .values(status="Cancelled")
        )
        # not a status change: the counters do not move
        conn.execute(update(operations).values(operation_name="renamed"))
        conn.execute(delete(operations).where(operations.c.operation_id.like("%-3_")))
    real, kept = truth(engine)
    assert kept == real
    assert {"Initiated", "Running", "Completed", "Cancelled"} <= {k[4] for k in real}

    # the list's summary: counters without a date filter, a scan with one; the same figures
    settings = Settings(data_dir=Path("/nonexistent"))
    scope = Scope(T1, PROJECT, Principal(T1, PROJECT, "test"))
    far = datetime.now(UTC) - timedelta(days=1)
    for filters in (
        {},
        {"status": "Running"},
        {"operation_type": "DataEnrichment", "priority": "Low"},
        {"status": "Cancelled", "priority": "Critical"},
    ):
        args = {"status": None, "operation_type": None, "priority": None} | filters
        common = dict(include_details=False, page=1, page_size=5, date_to=None)
        fast = list_operations(engine, settings, scope, **args, date_from=None, **common)
        scan = list_operations(engine, settings, scope, **args, date_from=far, **common)
        assert fast["summary"] == scan["summary"], filters
        expected = sum(
            n
            for (tenant, _, op_type, prio, status), n in real.items()
            if tenant == T1
            and args["status"] in (None, status)
            and args["operation_type"] in (None, op_type)
            and args["priority"] in (None, prio)
        )
        assert fast["summary"]["totalOperations"] == expected, filters
    engine.dispose()
