"""The event outbox: one row per status change, written in the transaction that made it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from pmops.store.engine import one_of
from pmops.store.tables import batches, events


def insert_event(
    conn: Connection,
    *,
    message_id: str,
    tenant_id: str,
    project_id: str,
    event_type: str,
    body: str,
    created_at: datetime,
    operation_id: str | None = None,
    seq: int | None = None,
    percentage: float | None = None,
) -> None:
    conn.execute(
        events.insert().values(
            message_id=message_id,
            tenant_id=tenant_id,
            project_id=project_id,
            operation_id=operation_id,
            seq=seq,
            event_type=event_type,
            percentage=percentage,
            body=body,
            created_at=created_at,
            fanned_out=False,
        )
    )


def last_event_seq(conn: Connection, operation_id: str) -> int:
    """The sequence number of the operation's last event (0: none yet)."""
    seq = conn.execute(
        select(func.coalesce(func.max(events.c.seq), 0)).where(
            events.c.operation_id == operation_id
        )
    ).scalar_one()
    return int(seq)


def newest_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.event_id), 0))).scalar_one())


STREAM_COLUMNS = (
    events.c.event_id,
    events.c.operation_id,
    events.c.seq,
    events.c.event_type,
    events.c.body,
)


def list_events_after(conn: Connection, after: int, limit: int) -> list[Any]:
    """Operations' events with an event_id above `after`, oldest first:
    (event_id, operation_id, seq, event_type, body)."""
    e = events.c
    query = (
        select(*STREAM_COLUMNS)
        .where(e.event_id > after, e.operation_id.is_not(None))
        .order_by(e.event_id)
        .limit(limit)
    )
    return list(conn.execute(query).all())


def list_operation_events(conn: Connection, operation_id: str, after_seq: int) -> list[Any]:
    """The operation's events after sequence number `after_seq`, in order (as list_events_after)."""
    e = events.c
    query = (
        select(*STREAM_COLUMNS)
        .where(e.operation_id == operation_id, e.seq > after_seq)
        .order_by(e.seq)
    )
    return list(conn.execute(query).all())


def take_unfanned_events(conn: Connection, limit: int) -> list[Any]:
    """Up to `limit` events not yet fanned out, oldest first: (event_id, tenant_id, project_id,
    operation_id, event_type, percentage). On PostgreSQL they are locked, and rows another
    transaction is fanning out are skipped (FOR UPDATE SKIP LOCKED)."""
    query = (
        select(
            events.c.event_id,
            events.c.tenant_id,
            events.c.project_id,
            events.c.operation_id,
            events.c.event_type,
            events.c.percentage,
        )
        .where(events.c.fanned_out == False)  # noqa: E712 (matches the partial index)
        .order_by(events.c.event_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).all())


def mark_events_fanned_out(conn: Connection, event_ids: Iterable[int]) -> None:
    ids = list(event_ids)
    if ids:
        conn.execute(update(events).where(events.c.event_id.in_(ids)).values(fanned_out=True))


def read_event_body(conn: Connection, event_id: int) -> str | None:
    return conn.execute(select(events.c.body).where(events.c.event_id == event_id)).scalar()


def read_batch_request_of(conn: Connection, event_id: int) -> dict[str, Any] | None:
    """The start request of the batch a batch event (its body's batchId) is about, or None."""
    body = read_event_body(conn, event_id)
    batch_id = json.loads(body or "{}").get("batchId")
    if not batch_id:
        return None
    request = conn.execute(select(batches.c.request).where(batches.c.batch_id == batch_id))
    found: dict[str, Any] | None = request.scalar()
    return found


def read_event_messages(conn: Connection, event_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """(message_id, body) of each event."""
    rows = conn.execute(
        select(events.c.event_id, events.c.message_id, events.c.body).where(
            one_of(conn, events.c.event_id, set(event_ids))
        )
    )
    return {r.event_id: (r.message_id, r.body) for r in rows}


def delete_events_before(conn: Connection, cutoff: datetime, keep: Any) -> int:
    """Delete the events created before `cutoff`, but those whose id is in the `keep` subquery;
    how many."""
    old = select(events.c.event_id).where(events.c.created_at < cutoff)
    gone = conn.execute(
        delete(events).where(events.c.event_id.in_(old), events.c.event_id.not_in(keep))
    ).rowcount
    return int(gone or 0)


def unfanned_operation_ids() -> Any:
    """A subquery: the operations with events not yet fanned out."""
    return select(func.distinct(events.c.operation_id)).where(
        events.c.fanned_out == False,  # noqa: E712
        events.c.operation_id.is_not(None),  # NOT IN a set with NULL: nothing
    )
