"""Deliveries: one row per (event, receiver), leased by a deliverer and settled after each try;
the deliverers alive; per receiver and operation the last progress percentage sent."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from pmops.store.engine import json_rows, one_of, shared_json, utc_now
from pmops.store.events import delete_events_before, unfanned_operation_ids
from pmops.store.tables import deliverers, deliveries, events, operations, progress_marks

# not finished: Pending (not tried yet) or Retrying
OPEN = ("Pending", "Retrying")
NO_SLACK = (
    "no Slack incoming webhook is configured for this project "
    "(PUT /api/{tenantId}/{projectId}/async/notification-settings)"
)
NO_SMTP = "email is not configured on this server: set PMOPS_SMTP_HOST"
# a delivery as the logs show it: its row and its event's message id
DELIVERY_COLUMNS = (*deliveries.c, events.c.message_id)


@cache
def _insert_pg(pg: Dialect) -> TextClause:
    """INSERT of rows given as one JSON parameter (json_to_recordset), every column of
    deliveries in the table's own types (as `pg` names them)."""
    names = ", ".join(c.name for c in deliveries.c)
    types = ", ".join(f"{c.name} {c.type.compile(dialect=pg)}" for c in deliveries.c)
    return text(
        f"INSERT INTO deliveries ({names}) SELECT {names} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS v({types})"
    )


# what a row without the column gets (Column(default=...)), as an INSERT of it would
_DEFAULTS = {
    c.name: c.default.arg if isinstance(c.default, ScalarElementColumnDefault) else None
    for c in deliveries.c
}


def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert these deliveries (rows of deliveries' columns; datetimes aware): one statement,
    on PostgreSQL with the rows as one JSON parameter."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(deliveries), rows)
        return
    width = len(_DEFAULTS)
    full = [row if len(row) == width else {**_DEFAULTS, **row} for row in rows]
    conn.execute(_insert_pg(conn.dialect), {"rows": json_rows(full)})


def close_open_deliveries(
    conn: Connection,
    status: str,
    reason: str,
    *,
    webhook_id: str | None = None,
    operation_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    release_lease: bool = False,
    now: datetime | None = None,
) -> int:
    """End the open deliveries of a webhook (or of an operation's receiver: operation_id, kind,
    target) with `status` (Failed, Cancelled) and `reason`; how many."""
    d = deliveries.c
    conds: list[ColumnElement[bool]] = [d.status.in_(OPEN)]
    for column, value in (
        (d.webhook_id, webhook_id),
        (d.operation_id, operation_id),
        (d.kind, kind),
        (d.target, target),
    ):
        if value is not None:
            conds.append(column == value)
    if len(conds) == 1:
        raise ValueError("close_open_deliveries needs a webhook or a receiver")
    values: dict[str, Any] = {
        "status": status,
        "last_error": reason,
        "next_attempt_at": None,
        "finished_at": now or utc_now(),
    }
    if release_lease:
        values["lease_owner"] = None
    return int(conn.execute(update(deliveries).where(*conds).values(**values)).rowcount or 0)


def read_delivery(
    conn: Connection,
    tenant_id: str,
    project_id: str,
    delivery_id: str,
    *,
    webhook_id: str | None = None,
    operation_id: str | None = None,
) -> dict[str, Any] | None:
    """The scope's delivery (of this webhook or operation, if given) with its message_id."""
    d = deliveries.c
    where = [d.delivery_id == delivery_id, d.tenant_id == tenant_id, d.project_id == project_id]
    if webhook_id:
        where.append(d.webhook_id == webhook_id)
    if operation_id:
        where.append(d.operation_id == operation_id)
    found = (
        conn.execute(
            select(*DELIVERY_COLUMNS)
            .join(events, events.c.event_id == deliveries.c.event_id)
            .where(*where)
        )
        .mappings()
        .first()
    )
    return None if found is None else dict(found)


def list_deliveries(
    conn: Connection,
    tenant_id: str,
    project_id: str,
    *,
    webhook_id: str | None = None,
    operation_id: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """A page of the scope's deliveries of a webhook or an operation, newest first."""
    d = deliveries.c
    where = [d.tenant_id == tenant_id, d.project_id == project_id]
    if webhook_id is not None:
        where.append(d.webhook_id == webhook_id)
    if operation_id is not None:
        where.append(d.operation_id == operation_id)
    if status:
        where.append(d.status == status)
    query = (
        select(*DELIVERY_COLUMNS)
        .join(events, events.c.event_id == deliveries.c.event_id)
        .where(*where)
        .order_by(d.created_at.desc(), d.delivery_id)
        .offset(offset)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def redeliver_delivery(conn: Connection, delivery_id: str, now: datetime) -> bool:
    """Make it due again with a fresh round of retries (its attempts so far are kept)."""
    done = conn.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery_id)
        .values(
            status="Pending",
            retry_base=deliveries.c.attempt_count,
            next_attempt_at=now,
            finished_at=None,
            lease_owner=None,
        )
    )
    return bool(done.rowcount)


def count_callback_deliveries(conn: Connection, operation_ids: list[str]) -> list[Any]:
    """(operation_id, callback, status, count, last attempt) of the operations' callbacks."""
    d = deliveries.c
    return list(
        conn.execute(
            select(d.operation_id, d.callback, d.status, func.count(), func.max(d.last_attempt_at))
            .where(d.operation_id.in_(operation_ids), d.kind == "callback")
            .group_by(d.operation_id, d.callback, d.status)
        ).all()
    )


# -- deliverers and leases ---------------------------------------------------------------------
def beat_deliverer(conn: Connection, owner: str, now: datetime, stale: datetime) -> set[str]:
    """Record `owner` as alive at `now`, forget those not heard of since `stale`; the owners
    alive (this one included)."""
    done = conn.execute(
        update(deliverers).where(deliverers.c.owner == owner).values(heartbeat_at=now)
    )
    if not done.rowcount:
        conn.execute(insert(deliverers).values(owner=owner, heartbeat_at=now))
    conn.execute(delete(deliverers).where(deliverers.c.heartbeat_at < stale))
    return {r.owner for r in conn.execute(select(deliverers.c.owner))}


# what choosing among the due deliveries needs (store.list_due_deliveries): the order, the
# project and the endpoint; the rest of a leased row is read by lease_deliveries.
# next_attempt_at only orders the candidates among themselves: read as the driver gives it
# (aware on PostgreSQL, naive UTC on SQLite), without UtcDateTime's conversion of each row
CANDIDATE_COLUMNS = (
    deliveries.c.delivery_id,
    deliveries.c.tenant_id,
    deliveries.c.project_id,
    deliveries.c.endpoint_key,
    type_coerce(deliveries.c.next_attempt_at, DateTime(timezone=True)).label("next_attempt_at"),
    deliveries.c.event_id,
)
# what sending a leased delivery needs (lease_deliveries); the JSON columns as their text, parsed
# there (a policy once for all the deliveries that have it)
LEASE_COLUMNS = (
    deliveries.c.delivery_id,
    deliveries.c.kind,
    deliveries.c.target,
    deliveries.c.endpoint_key,
    cast(deliveries.c.policy, Text).label("policy"),
    deliveries.c.attempt_count,
    deliveries.c.retry_base,
    cast(deliveries.c.attempts, Text).label("attempts"),
    deliveries.c.webhook_id,
    deliveries.c.tenant_id,
    deliveries.c.project_id,
    deliveries.c.operation_id,
    deliveries.c.event_type,
    deliveries.c.event_id,
)
LEASE_KEYS = tuple(c.name for c in LEASE_COLUMNS)


def _due(
    now: datetime, live: set[str], full: list[str], alive_since: datetime | None
) -> list[ColumnElement[bool]]:
    d = deliveries.c
    dead: ColumnElement[bool] = d.lease_owner.not_in(list(live))
    if alive_since is not None:
        # and not alive by the table either: `live` was read at this deliverer's last heartbeat,
        # so a deliverer that started since is missing from it (its leases would be taken)
        fresh = select(deliverers.c.owner).where(deliverers.c.heartbeat_at >= alive_since)
        dead = and_(dead, d.lease_owner.not_in(fresh))
    where: list[ColumnElement[bool]] = [
        d.next_attempt_at <= now,
        d.status.in_(OPEN),
        or_(d.lease_owner.is_(None), dead),
    ]
    if full:
        where.append(d.endpoint_key.not_in(full))
    return where


def list_due_deliveries(
    conn: Connection,
    now: datetime,
    live: set[str],
    full: list[str],
    limit: int,
    scope: tuple[str, str] | None = None,
    alive_since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` open deliveries due by `now` (CANDIDATE_COLUMNS of each: what choosing
    among them needs), in the order they are due (ties in event
    order: the order of ix_deliveries_due and ix_deliveries_project_due), not leased by a live
    deliverer (one in `live`, or, given `alive_since`, one whose heartbeat in `deliverers` is
    that recent), not to the `full` endpoints; only the project `scope` (tenant_id, project_id)
    if given. On PostgreSQL the rows are locked and rows another deliverer is leasing are
    skipped (FOR UPDATE SKIP LOCKED), so two deliverers leasing at once never take the same
    delivery; SQLite runs one write transaction at a time."""
    d = deliveries.c
    where = _due(now, live, full, alive_since)
    if scope is not None:
        where += [d.tenant_id == scope[0], d.project_id == scope[1]]
    query = (
        select(*CANDIDATE_COLUMNS)
        .where(*where)
        .order_by(d.next_attempt_at, d.event_id, d.delivery_id)
        .limit(limit)
    )
    if conn.dialect.name != "postgresql":
        return _candidates(conn.execute(query).all())
    # Read in order from ix_deliveries_due / ix_deliveries_project_due, never sort: statistics
    # taken while nearly every delivery was finished make the planner expect one due row, and it
    # then sorts the whole backlog (fully: under FOR UPDATE the sort cannot stop at the LIMIT),
    # O(backlog) per lease. With sorting off for this one statement only the in-order read is left.
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    try:
        found = conn.execute(query.with_for_update(skip_locked=True)).all()
    finally:
        conn.exec_driver_sql("SET LOCAL enable_sort = on")
    return _candidates(found)


def _candidates(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """CANDIDATE_COLUMNS' rows as dicts (a dict display: the cheapest way to make them)."""
    return [
        {
            "delivery_id": delivery_id,
            "tenant_id": tenant_id,
            "project_id": project_id,
            "endpoint_key": endpoint_key,
            "next_attempt_at": next_attempt_at,
            "event_id": event_id,
        }
        for delivery_id, tenant_id, project_id, endpoint_key, next_attempt_at, event_id in rows
    ]


def list_due_projects(conn: Connection, now: datetime, most: int = 1000) -> list[tuple[str, str]]:
    """The projects (tenant_id, project_id) with open deliveries due by `now` (leased ones
    too), the one whose oldest is due first first; at most `most` projects with open
    deliveries are looked at. A skip scan of ix_deliveries_project_due (only open deliveries
    have a next attempt): a few index seeks per project with open deliveries, however many
    deliveries each has."""
    found: list[tuple[datetime, str, str]] = []
    scope = _next_open_project(conn, None)
    while scope is not None and most > 0:
        most -= 1
        d = deliveries.c
        oldest = conn.execute(
            select(d.next_attempt_at)
            .where(
                d.next_attempt_at.is_not(None), d.tenant_id == scope[0], d.project_id == scope[1]
            )
            .order_by(d.next_attempt_at)
            .limit(1)
        ).scalar()
        if oldest is not None and oldest <= now:
            found.append((oldest, *scope))
        scope = _next_open_project(conn, scope)
    return [(tenant, project) for _, tenant, project in sorted(found)]


def _next_open_project(conn: Connection, after: tuple[str, str] | None) -> tuple[str, str] | None:
    """The first project with open deliveries after `after` in (tenant_id, project_id) order.
    Two plain range seeks rather than a row-value comparison, which SQLite answers by stepping
    over every entry of `after`."""
    d = deliveries.c
    base = select(d.tenant_id, d.project_id).where(d.next_attempt_at.is_not(None)).limit(1)
    tries = [base.order_by(d.tenant_id, d.project_id)]
    if after is not None:
        tries = [
            base.where(d.tenant_id == after[0], d.project_id > after[1]).order_by(d.project_id),
            base.where(d.tenant_id > after[0]).order_by(d.tenant_id, d.project_id),
        ]
    for query in tries:
        row = conn.execute(query).first()
        if row is not None:
            return (row.tenant_id, row.project_id)
    return None


def lease_deliveries(
    conn: Connection, delivery_ids: list[str], owner: str
) -> dict[str, dict[str, Any]]:
    """Lease the deliveries to `owner`; their LEASE_KEYS by delivery_id, read in the same
    statement (UPDATE ... RETURNING); equal policies are one shared value
    (store.engine.shared_json). The ids are one JSON parameter on PostgreSQL
    (store.engine.one_of), so the statement is the same whatever their number."""
    if not delivery_ids:
        return {}
    where = one_of(conn, deliveries.c.delivery_id, delivery_ids)
    query = update(deliveries).where(where).values(lease_owner=owner).returning(*LEASE_COLUMNS)
    leased = {}
    for r in conn.execute(query):
        row = dict(zip(LEASE_KEYS, r, strict=True))
        row["policy"] = shared_json(row["policy"])  # read only (outbox.backoff_seconds)
        row["attempts"] = json.loads(row["attempts"])
        leased[r[0]] = row
    return leased


def release_leases(conn: Connection, owner: str) -> None:
    """Hand back the owner's unfinished leases and forget the owner."""
    conn.execute(
        update(deliveries).where(deliveries.c.lease_owner == owner).values(lease_owner=None)
    )
    conn.execute(delete(deliverers).where(deliverers.c.owner == owner))


# PostgreSQL: every settled row in one statement, the rows one JSON parameter (json_to_recordset:
# the statement is prepared once however many rows a batch has, and the rows are one C-encoded
# string rather than an array parameter per column)
_SETTLE_PG = text(
    """UPDATE deliveries AS d SET status = v.status, attempt_count = v.attempt_count,
    attempts = v.attempts, next_attempt_at = v.next_attempt_at,
    last_attempt_at = v.last_attempt_at, last_error = v.last_error, finished_at = v.finished_at,
    lease_owner = NULL
    FROM json_to_recordset(CAST(:rows AS json)) AS v(b_id text, status text,
        attempt_count integer, attempts json, next_attempt_at timestamptz,
        last_attempt_at timestamptz, last_error text, finished_at timestamptz)
    WHERE d.delivery_id = v.b_id"""
)


def settle_deliveries(conn: Connection, updates: list[dict[str, Any]]) -> None:
    """Record attempts, one statement for all: rows of b_id, status, attempt_count, attempts,
    next_attempt_at, last_attempt_at, last_error, finished_at (datetimes aware). The leases
    end."""
    if not updates:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_SETTLE_PG, {"rows": json_rows(updates)})
        return
    d = deliveries.c
    conn.execute(
        update(deliveries)
        .where(d.delivery_id == bindparam("b_id"))
        .values(
            status=bindparam("status"),
            attempt_count=bindparam("attempt_count"),
            attempts=bindparam("attempts"),
            next_attempt_at=bindparam("next_attempt_at"),
            last_attempt_at=bindparam("last_attempt_at"),
            last_error=bindparam("last_error"),
            finished_at=bindparam("finished_at"),
            lease_owner=None,
        ),
        updates,
    )


# -- progress marks ------------------------------------------------------------------------------
def read_progress_marks(
    conn: Connection, operation_ids: Iterable[str]
) -> dict[tuple[str, str], float]:
    """(endpoint_key, operation_id) -> the percentage of the last progress event sent."""
    rows = conn.execute(
        select(progress_marks).where(progress_marks.c.operation_id.in_(list(operation_ids)))
    )
    return {(r.endpoint_key, r.operation_id): r.percentage for r in rows}


def set_progress_marks(conn: Connection, marks: dict[tuple[str, str], float]) -> None:
    """Upsert each (endpoint_key, operation_id)'s percentage (ON CONFLICT DO UPDATE), in key
    order: two deliverers fanning out at once then lock the rows they share in the same order
    (in event order, they deadlocked on PostgreSQL and the loser's process died). One statement
    per 500 marks."""
    ordered = sorted(marks.items())
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for start in range(0, len(ordered), 500):
        stmt = make(progress_marks).values(
            [
                {"endpoint_key": endpoint, "operation_id": op_id, "percentage": pct}
                for (endpoint, op_id), pct in ordered[start : start + 500]
            ]
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[progress_marks.c.endpoint_key, progress_marks.c.operation_id],
                set_={"percentage": stmt.excluded.percentage},
            )
        )


# -- retention -----------------------------------------------------------------------------------
def purge_outbox(conn: Connection, cutoff: datetime, terminal: Iterable[str]) -> int:
    """Delete the finished deliveries and the events created before `cutoff` (an event with an
    open delivery is kept), and the progress marks of operations in a `terminal` status with no
    event left to fan out; how many events went."""
    conn.execute(
        delete(deliveries).where(deliveries.c.created_at < cutoff, deliveries.c.status.not_in(OPEN))
    )
    still_open = select(deliveries.c.event_id).where(deliveries.c.status.in_(OPEN))
    gone = delete_events_before(conn, cutoff, still_open)
    ended = select(operations.c.operation_id).where(operations.c.status.in_(list(terminal)))
    conn.execute(
        delete(progress_marks).where(
            and_(
                progress_marks.c.operation_id.in_(ended),
                progress_marks.c.operation_id.not_in(unfanned_operation_ids()),
            )
        )
    )
    return gone
