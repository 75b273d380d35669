"""Retries and automatic-retry schedules: the SQL of pmops.service.retries and
pmops.service.lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from pmops.store.operations import ACTIVE_STATUSES
from pmops.store.tables import operations, retries, retry_schedule


def read_retry_number(conn: Connection, operation_id: str) -> int:
    """The operation's number in its lineage (0: not a retry)."""
    number = conn.execute(
        select(retries.c.retry_number).where(retries.c.operation_id == operation_id)
    ).scalar()
    return int(number or 0)


def read_lineage(conn: Connection, operation_id: str) -> str:
    """The first operation of the chain `operation_id` belongs to (itself if it is no retry)."""
    found = conn.execute(
        select(retries.c.lineage).where(retries.c.operation_id == operation_id)
    ).scalar()
    return str(found or operation_id)


def next_retry_number(conn: Connection, lineage: str) -> int:
    """The number the next retry of this lineage gets: 1, 2, ... over all its retries, whatever
    they retry. Call it in the transaction that inserts the retry: the lineage's first
    operation is locked (FOR UPDATE; SQLite's write transaction is exclusive already), so
    concurrent retries of one lineage get different numbers."""
    conn.execute(
        select(operations.c.operation_id)
        .where(operations.c.operation_id == lineage)
        .with_for_update()
    ).first()
    last = conn.execute(
        select(func.max(retries.c.retry_number)).where(retries.c.lineage == lineage)
    ).scalar()
    return int(last or 0) + 1


def read_active_retry(conn: Connection, original_id: str) -> tuple[str, str] | None:
    """(id, status) of a retry of `original_id` that is still active (Initiated, Pending,
    Running), or None. Atomic with the insert when called after `next_retry_number` in the
    same transaction: the lineage's lock (PostgreSQL; SQLite's write transaction is exclusive)
    makes concurrent retries of one original check and insert one after another, and each
    statement under READ COMMITTED sees the retries committed before it."""
    found = conn.execute(
        select(retries.c.operation_id, operations.c.status)
        .join(operations, operations.c.operation_id == retries.c.operation_id)
        .where(retries.c.original_id == original_id)
        .where(operations.c.status.in_(ACTIVE_STATUSES))
        .order_by(retries.c.created_at)
        .limit(1)
    ).first()
    return None if found is None else (str(found[0]), str(found[1]))


def insert_retry(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(retries.insert().values(**values))


def list_retry_pairs(conn: Connection, original_ids: list[str]) -> list[tuple[str, str]]:
    """(original, retry) for the retries of these operations, oldest first."""
    rows = conn.execute(
        select(retries.c.original_id, retries.c.operation_id)
        .where(retries.c.original_id.in_(original_ids))
        .order_by(retries.c.created_at)
    )
    return [(str(original), str(retry)) for original, retry in rows]


def list_retry_rows(conn: Connection, operation_ids: list[str]) -> list[Any]:
    """The retries rows of these operations (those that are retries)."""
    return list(conn.execute(select(retries).where(retries.c.operation_id.in_(operation_ids))))


def list_resource_allocations(
    conn: Connection, operation_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The resourceAllocation each of these operations (retries) was given, where it was."""
    rows = conn.execute(
        select(operations.c.operation_id, operations.c.request).where(
            operations.c.operation_id.in_(operation_ids)
        )
    )
    found: dict[str, dict[str, Any]] = {}
    for operation_id, request in rows:
        allocation = (request or {}).get("resourceAllocation")
        if allocation:
            found[str(operation_id)] = dict(allocation)
    return found


# -- automatic retries -----------------------------------------------------------------------
def has_retry_schedule(conn: Connection, operation_id: str) -> bool:
    return (
        conn.execute(
            select(retry_schedule.c.operation_id).where(
                retry_schedule.c.operation_id == operation_id
            )
        ).first()
        is not None
    )


def insert_retry_schedule(conn: Connection, operation_id: str, due_at: datetime) -> None:
    conn.execute(retry_schedule.insert().values(operation_id=operation_id, due_at=due_at))


def delete_retry_schedule(conn: Connection, operation_id: str) -> int:
    """Forget the operation's automatic retry; how many rows went (0 or 1)."""
    return int(
        conn.execute(
            delete(retry_schedule).where(retry_schedule.c.operation_id == operation_id)
        ).rowcount
    )


def postpone_retry_schedule(conn: Connection, operation_id: str, due_at: datetime) -> None:
    """The automatic retry waits until `due_at` (its project's queue is full)."""
    conn.execute(
        update(retry_schedule)
        .where(retry_schedule.c.operation_id == operation_id)
        .values(due_at=due_at)
    )


def list_due_retries(
    conn: Connection, now: datetime, limit: int
) -> list[tuple[str, str, str, str]]:
    """(operation, tenant, project, status) of the automatic retries due by `now`."""
    rows = conn.execute(
        select(
            retry_schedule.c.operation_id,
            operations.c.tenant_id,
            operations.c.project_id,
            operations.c.status,
        )
        .join(operations, operations.c.operation_id == retry_schedule.c.operation_id)
        .where(retry_schedule.c.due_at <= now)
        .limit(limit)
    ).all()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]
