"""The service's side of a flow run (pmops/service/lifecycle.py) on a real SQLite store: claim
once, report while Running, finish only a Running operation, events with each change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from analysis.phases import PHASES
from pmops.service.lifecycle import Announcer, cancel_reason, claim, finish, report
from pmops.store.tables import events, make_engine, operations, transaction

NAMES = PHASES["ProcessMiningAnalysis"]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        conn.execute(
            operations.insert().values(
                operation_id="op-1",
                tenant_id="t",
                project_id="p",
                operation_type="ProcessMiningAnalysis",
                operation_name="journey",
                priority="Normal",
                priority_rank=1,
                status="Initiated",
                request={},
                created_at=now,
                timeout_at=now + timedelta(hours=1),
            )
        )
    return engine


def progress(*statuses: str, percentage: float, processed: int) -> dict[str, Any]:
    phases = [{"phaseName": n, "status": s} for n, s in zip(NAMES, statuses, strict=True)]
    running = [p["phaseName"] for p in phases if p["status"] == "Running"]
    return {
        "phases": phases,
        "percentage": percentage,
        "currentPhase": running[0] if running else None,
        "processedRecords": processed,
        "totalRecords": 100,
    }


def row(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.execute(select(operations)).mappings().one()
    return dict(found)


def event_types(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(events.c.event_type).order_by(events.c.seq)).scalars())


def test_claim_report_finish(engine: Engine) -> None:
    claimed = claim(engine, "op-1", "run-1", "host:1")
    assert claimed is not None and claimed["status"] == "Running" and claimed["started_at"]
    assert claim(engine, "op-1", "run-2", "host:2") is None  # claimed once
    announcer = Announcer("op-1")
    snap = progress("Completed", "Running", "Pending", "Pending", percentage=30.0, processed=30)
    assert report(engine, "op-1", snap, announcer)
    r = row(engine)
    assert (r["current_phase"], r["processed_records"], r["percentage"]) == (NAMES[1], 30, 30.0)
    assert r["execution_id"] == "exec-run-1" and r["worker_node"] == "host:1"
    done = progress(*["Completed"] * 4, percentage=100.0, processed=100)
    assert finish(engine, "op-1", "Completed", {"summary": {}}, progress=done, announcer=announcer)
    assert row(engine)["status"] == "Completed" and row(engine)["processed_records"] == 100
    # a finished operation takes no more reports nor a second outcome
    assert not report(engine, "op-1", snap, announcer)
    assert not finish(engine, "op-1", "Failed", None)
    types = event_types(engine)
    assert types[0] == "operation.started" and types[-1] == "operation.completed"
    assert types.count("operation.phase.completed") == 4


def test_cancel_reason(engine: Engine) -> None:
    assert cancel_reason(engine, "op-1") is None
    with transaction(engine) as conn:
        conn.execute(
            operations.update().values(cancel_requested=True, cancel_request={"reason": "moved"})
        )
    assert cancel_reason(engine, "op-1") == "moved"
