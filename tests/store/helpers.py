"""Rows for the store tests, written through the store's own functions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from pmops.store.deliveries import insert_deliveries
from pmops.store.engine import transaction, utc_now
from pmops.store.events import insert_event
from pmops.store.operations import insert_operation
from pmops.store.tables import operations, standby_runs
from pmops.store.webhooks import insert_webhook


def scope() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def operation_row(tenant: str, project: str, **values: Any) -> dict[str, Any]:
    now = utc_now()
    row: dict[str, Any] = {
        "operation_id": f"op-{uuid.uuid4()}",
        "tenant_id": tenant,
        "project_id": project,
        "operation_type": "ProcessMiningAnalysis",
        "operation_name": "store test",
        "priority": "Normal",
        "priority_rank": 1,
        "status": "Initiated",
        "request": {"parameters": {"datasetId": "x"}},
        "created_at": now,
        "timeout_at": now + timedelta(hours=1),
        "percentage": 0.0,
        "processed_records": 0,
        "cancel_requested": False,
        "results": {"summary": {"recordsAnalyzed": 10}},
    }
    row.update(values)
    return row


def add_operation(engine: Engine, tenant: str, project: str, **values: Any) -> str:
    row = operation_row(tenant, project, **values)
    with transaction(engine) as conn:
        insert_operation(conn, row)
    return str(row["operation_id"])


def add_webhook(engine: Engine, tenant: str, project: str, **values: Any) -> str:
    row: dict[str, Any] = {
        "webhook_id": f"wh-{uuid.uuid4()}",
        "tenant_id": tenant,
        "project_id": project,
        "url": "https://receiver.example/hook",
        "name": "t",
        "events": ["operation.started", "operation.completed"],
        "filters": {},
        "secret": None,
        "retry_policy": {},
        "headers": {},
        "status": "Active",
        "created_at": utc_now(),
    }
    row.update(values)
    with transaction(engine) as conn:
        insert_webhook(conn, row)
    return str(row["webhook_id"])


def add_event(
    engine: Engine,
    tenant: str,
    project: str,
    operation_id: str | None,
    seq: int | None,
    event_type: str = "operation.started",
    body: str = "{}",
    created_at: datetime | None = None,
) -> str:
    message_id = f"msg_{uuid.uuid4().hex}"
    with transaction(engine) as conn:
        insert_event(
            conn,
            message_id=message_id,
            tenant_id=tenant,
            project_id=project,
            event_type=event_type,
            body=body,
            created_at=created_at or utc_now(),
            operation_id=operation_id,
            seq=seq,
            percentage=0.0,
        )
    return message_id


def delivery_row(event_id: int, tenant: str, project: str, **values: Any) -> dict[str, Any]:
    now = utc_now()
    row: dict[str, Any] = {
        "delivery_id": f"dlv-{uuid.uuid4()}",
        "event_id": event_id,
        "tenant_id": tenant,
        "project_id": project,
        "operation_id": None,
        "event_type": "operation.started",
        "kind": "webhook",
        "webhook_id": None,
        "callback": None,
        "target": "https://receiver.example/hook",
        "endpoint_key": "e1",
        "policy": {},
        "status": "Pending",
        "attempt_count": 0,
        "attempts": [],
        "retry_base": 0,
        "next_attempt_at": now - timedelta(seconds=1),
        "last_attempt_at": None,
        "lease_owner": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }
    row.update(values)
    return row


def add_deliveries(engine: Engine, rows: list[dict[str, Any]]) -> list[str]:
    with transaction(engine) as conn:
        insert_deliveries(conn, rows)
    return [str(r["delivery_id"]) for r in rows]


def slots_held(engine: Engine) -> int:
    """Operations holding a worker slot, counted here rather than by the store's own function:
    Initiated or Running with a run, not a standby run's (tests/store/test_standby.py,
    tests/cluster/test_dispatch.py)."""
    c = operations.c
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .where(c.status.in_(("Initiated", "Running")), c.flow_run_id.is_not(None))
                .where(~c.operation_id.in_(select(standby_runs.c.operation_id)))
            ).scalar_one()
        )
