"""Batches, their members and the batches flows ask for: the SQL of pmops.service.batches and
pmops.service.batch_progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from pmops.store.tables import (
    batch_members,
    batch_submissions,
    batches,
    datasets,
    operations,
    retries,
    retry_schedule,
    utc_now,
)


# -- batches ---------------------------------------------------------------------------------
def insert_batch(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(batches.insert().values(**values))


def insert_batch_member(
    conn: Connection,
    operation_id: str,
    batch_id: str,
    operation_key: str,
    position: int,
    dependencies: list[str],
) -> None:
    conn.execute(
        batch_members.insert().values(
            operation_id=operation_id,
            batch_id=batch_id,
            operation_key=operation_key,
            position=position,
            dependencies=dependencies,
            announced=False,
        )
    )


def read_batch(
    conn: Connection, tenant_id: str, project_id: str, batch_id: str
) -> dict[str, Any] | None:
    """The batch if it is the tenant's and project's, else None."""
    row = (
        conn.execute(
            select(batches).where(
                batches.c.batch_id == batch_id,
                batches.c.tenant_id == tenant_id,
                batches.c.project_id == project_id,
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def lock_batch(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    """The batch, locked for this transaction (FOR UPDATE where the database has it)."""
    row = (
        conn.execute(select(batches).where(batches.c.batch_id == batch_id).with_for_update())
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def set_batch_status(conn: Connection, batch_id: str, **values: Any) -> None:
    conn.execute(update(batches).where(batches.c.batch_id == batch_id).values(**values))


def set_batch_cancel_requested(conn: Connection, batch_id: str) -> None:
    set_batch_status(conn, batch_id, cancel_requested=True)


def list_batches(
    conn: Connection, tenant_id: str, project_id: str, offset: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(batches)
        .where(batches.c.tenant_id == tenant_id, batches.c.project_id == project_id)
        .order_by(batches.c.created_at.desc(), batches.c.batch_id)
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def insert_member_operation(conn: Connection, row: dict[str, Any]) -> None:
    """A member's operation row (Pending), recorded with its batch."""
    conn.execute(operations.insert().values(**row))


# -- members -----------------------------------------------------------------------------------
def list_batch_members(conn: Connection, batch_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(batch_members)
        .where(batch_members.c.batch_id == batch_id)
        .order_by(batch_members.c.position)
    ).mappings()
    return [dict(m) for m in rows]


def set_member_announced(conn: Connection, operation_id: str) -> None:
    conn.execute(
        update(batch_members)
        .where(batch_members.c.operation_id == operation_id)
        .values(announced=True)
    )


def read_latest_retry(conn: Connection, operation_id: str) -> str | None:
    """The newest retry of `operation_id` (one step down its chain), or None."""
    found = conn.execute(
        select(retries.c.operation_id)
        .where(retries.c.original_id == operation_id)
        .order_by(retries.c.created_at.desc())
        .limit(1)
    ).scalar()
    return None if found is None else str(found)


def read_operations_by_id(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(operations).where(operations.c.operation_id.in_(ids))).mappings()
    return {r["operation_id"]: dict(r) for r in rows}


def list_scheduled_retries(conn: Connection, ids: list[str]) -> set[str]:
    """Which of `ids` have an automatic retry still to come."""
    return {
        str(op)
        for op in conn.execute(
            select(retry_schedule.c.operation_id).where(retry_schedule.c.operation_id.in_(ids))
        ).scalars()
    }


# -- member operations ---------------------------------------------------------------------------
def cancel_waiting_operation(conn: Connection, operation_id: str, request: dict[str, Any]) -> bool:
    """Pending/Initiated -> Cancelled; False when it had moved on meanwhile."""
    done = conn.execute(
        update(operations)
        .where(
            operations.c.operation_id == operation_id,
            operations.c.status.in_(("Pending", "Initiated")),
        )
        .values(
            status="Cancelled",
            ended_at=utc_now(),
            cancel_requested=True,
            cancel_request=request,
        )
    )
    return bool(done.rowcount)


def request_operation_stop(conn: Connection, operation_id: str, request: dict[str, Any]) -> None:
    conn.execute(
        update(operations)
        .where(operations.c.operation_id == operation_id)
        .values(cancel_requested=True, cancel_request=request)
    )


def promote_operation(
    conn: Connection,
    operation_id: str,
    request: dict[str, Any],
    dataset_id: str | None,
    timeout_at: datetime,
) -> None:
    """Pending -> Initiated with its (now known) input."""
    conn.execute(
        update(operations)
        .where(operations.c.operation_id == operation_id, operations.c.status == "Pending")
        .values(status="Initiated", request=request, dataset_id=dataset_id, timeout_at=timeout_at)
    )


def read_made_dataset(conn: Connection, source_operation_id: str) -> str | None:
    """The newest dataset an operation (a DataEnrichment) made."""
    found = conn.execute(
        select(datasets.c.dataset_id)
        .where(datasets.c.source_operation_id == source_operation_id)
        .order_by(datasets.c.created_at.desc())
        .limit(1)
    ).scalar()
    return None if found is None else str(found)


def read_dataset_events(conn: Connection, tenant_id: str, dataset_id: str) -> int:
    summary = conn.execute(
        select(datasets.c.summary).where(
            datasets.c.dataset_id == dataset_id, datasets.c.tenant_id == tenant_id
        )
    ).scalar()
    return int((summary or {}).get("events") or 0)


# -- batches flows ask for -----------------------------------------------------------------------
def _open_submissions() -> Any:
    s = batch_submissions.c
    return select(batch_submissions).where(s.batch_id.is_(None), s.error.is_(None))


def list_open_submissions(conn: Connection) -> list[Any]:
    return list(conn.execute(_open_submissions()).all())


@contextmanager
def claim_open_submissions(engine: Engine) -> Iterator[tuple[list[Any], Connection | None]]:
    """The open submissions, each claimed by this caller until the block ends.

    PostgreSQL: the rows are locked (FOR UPDATE SKIP LOCKED) in a transaction of the yielded
    connection, so a concurrent caller skips them, and one that comes after the block sees the
    outcomes written on that connection (set_submission_outcome), which commit as it ends.
    SQLite: the open rows as read, and None (one process takes submissions: the dispatcher's,
    and the outcomes are written in transactions of their own)."""
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            rows = list_open_submissions(conn)
        yield rows, None
        return
    with engine.connect() as conn, conn.begin():
        query = _open_submissions().with_for_update(skip_locked=True)
        yield list(conn.execute(query).all()), conn


def set_submission_outcome(conn: Connection, submission_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(batch_submissions)
        .where(batch_submissions.c.submission_id == submission_id)
        .values(**values)
    )
