"""Operations: one row per operation, read and written only through these functions.

The tenant scope is inside the readers (`tenant_id`, `project_id`; a project_id of None means
every project of the tenant, as a tenant-wide token sees). Writers take an operation id that a
scoped read (or the flow run that owns it) already established.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, update
from sqlalchemy.engine import Connection

from pmops.store.scoping import Scoped, in_scope, read_scoped
from pmops.store.tables import operation_counts, operations, throughput

# what a status answer shows: not the request nor the (large) results document
STATUS_COLUMNS = tuple(
    c for c in operations.c if c.name not in ("request", "results", "cancel_request")
)
# what a list item shows
LIST_COLUMNS = (
    operations.c.operation_id,
    operations.c.operation_type,
    operations.c.operation_name,
    operations.c.status,
    operations.c.percentage,
    operations.c.priority,
    operations.c.created_at,
    operations.c.started_at,
    operations.c.ended_at,
    operations.c.estimated_seconds,
    operations.c.current_phase,
    operations.c.processed_records,
    operations.c.progress["resourceUsage"].label("resource_usage"),
)

# what the outbox routes an operation's events by
ROUTING_COLUMNS = (
    operations.c.operation_id,
    operations.c.operation_type,
    operations.c.priority,
    operations.c.request,
    operations.c.cancel_request,
)

SLACK_COLUMNS = (operations.c.operation_id, operations.c.request)


# -- write ---------------------------------------------------------------------------------------
def insert_operation(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(operations.insert().values(**row))


def update_operation(
    conn: Connection,
    operation_id: str,
    values: dict[str, Any],
    expect: Iterable[str] | None = None,
) -> bool:
    """Write `values` to the operation (only while its status is one of `expect`, if given);
    whether a row changed."""
    query = update(operations).where(operations.c.operation_id == operation_id)
    if expect is not None:
        query = query.where(operations.c.status.in_(list(expect)))
    return bool(conn.execute(query.values(**values)).rowcount)


def set_operation_status(
    conn: Connection,
    operation_id: str,
    to: str,
    expect: Iterable[str] | None = None,
    **values: Any,
) -> bool:
    """Move the operation to status `to` (with more `values`), only from one of the `expect`
    statuses if given; whether it moved."""
    return update_operation(conn, operation_id, {"status": to, **values}, expect)


# the statuses a cancel can still act on (a batch member waits as Pending)
ACTIVE_STATUSES = ("Initiated", "Pending", "Running")


def cancel_active_operation(conn: Connection, operation_id: str, values: dict[str, Any]) -> bool:
    """The cancel's decision, atomic: `UPDATE ... WHERE status IN (active states)`. Whether it
    took (False: the operation reached a terminal status first, e.g. its run completed)."""
    return update_operation(conn, operation_id, values, ACTIVE_STATUSES)


# -- read ----------------------------------------------------------------------------------------
def read_operation(
    conn: Connection,
    tenant_id: str,
    project_id: str | None,
    operation_id: str,
    *,
    status_only: bool = False,
    for_update: bool = False,
) -> dict[str, Any] | None:
    """The scope's operation, or None. `status_only`: without the request and results documents;
    `for_update`: locked until the transaction ends (PostgreSQL)."""
    return read_scoped(
        conn,
        operations,
        "operation_id",
        operation_id,
        Scoped(tenant_id, project_id),
        columns=STATUS_COLUMNS if status_only else None,
        for_update=for_update,
    )


def read_operation_by_id(conn: Connection, operation_id: str) -> dict[str, Any] | None:
    """An operation whatever its scope: for the processes that own it (flow runs, the outbox)."""
    row = conn.execute(select(operations).where(operations.c.operation_id == operation_id))
    found = row.mappings().first()
    return None if found is None else dict(found)


def read_operations(
    conn: Connection, operation_ids: Iterable[str], columns: Iterable[Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Operations by id (any scope), with only `columns` if given."""
    query = select(*(columns or (operations,))).where(
        operations.c.operation_id.in_(list(operation_ids))
    )
    return {r["operation_id"]: dict(r) for r in conn.execute(query).mappings()}


def queued_seconds_ahead(conn: Connection, min_rank: int) -> float:
    """Estimated seconds of the operations waiting for a worker at priority rank >= min_rank."""
    ahead = conn.execute(
        select(func.coalesce(func.sum(operations.c.estimated_seconds), 0.0)).where(
            operations.c.status == "Initiated",
            operations.c.flow_run_id.is_(None),
            operations.c.priority_rank >= min_rank,
        )
    ).scalar_one()
    return float(ahead or 0.0)


def queued_per_project(conn: Connection) -> dict[tuple[str, str], tuple[int, float]]:
    """(tenant, project) -> (operations, estimated seconds) waiting for a worker, per project."""
    c = operations.c
    rows = conn.execute(
        select(
            c.tenant_id,
            c.project_id,
            func.count(),
            func.coalesce(func.sum(c.estimated_seconds), 0.0),
        )
        .where(c.status == "Initiated", c.flow_run_id.is_(None))
        .group_by(c.tenant_id, c.project_id)
    )
    return {(t, p): (int(n), float(s or 0.0)) for t, p, n, s in rows}


def queued_in_project_ahead(
    conn: Connection, tenant_id: str, project_id: str, min_rank: int
) -> tuple[int, float]:
    """(operations, estimated seconds) of the project's queue at priority rank >= min_rank."""
    c = operations.c
    n, s = conn.execute(
        select(func.count(), func.coalesce(func.sum(c.estimated_seconds), 0.0)).where(
            c.tenant_id == tenant_id,
            c.project_id == project_id,
            c.status == "Initiated",
            c.priority_rank >= min_rank,
            c.flow_run_id.is_(None),
        )
    ).one()
    return int(n), float(s or 0.0)


def list_busy_operations(conn: Connection) -> list[tuple[float | None, datetime | None]]:
    """(estimated_seconds, started_at) of what holds the worker slots now."""
    rows = conn.execute(
        select(operations.c.estimated_seconds, operations.c.started_at).where(
            operations.c.status.in_(("Initiated", "Running")),
            operations.c.flow_run_id.is_not(None),
        )
    ).all()
    return [(est, started) for est, started in rows]


@dataclass(frozen=True)
class OperationFilter:
    """The list's filters; None: not filtered on."""

    status: str | None = None
    operation_type: str | None = None
    priority: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    @property
    def dated(self) -> bool:
        return self.date_from is not None or self.date_to is not None


def _filtered(scoped: Scoped, f: OperationFilter) -> ColumnElement[bool]:
    c = operations.c
    conds = [in_scope(operations, scoped)]
    for column, value in ((c.status, f.status), (c.operation_type, f.operation_type)):
        if value:
            conds.append(column == value)
    if f.priority:
        conds.append(c.priority == f.priority)
    if f.date_from:
        conds.append(c.created_at >= f.date_from)
    if f.date_to:
        conds.append(c.created_at <= f.date_to)
    return and_(*conds)


def count_operations(
    conn: Connection, tenant_id: str, project_id: str, f: OperationFilter, statuses: Iterable[str]
) -> dict[str, int]:
    """Operations per status of the filtered set: from the trigger-kept counters, or with a date
    filter by one pass over the scope's index (no GROUP BY: SQLite would pick the index that
    orders by status over the one that matches the filters, and read every row)."""
    if not f.dated:
        c = operation_counts.c
        conds = [c.tenant_id == tenant_id, c.project_id == project_id]
        pairs = (
            (c.status, f.status),
            (c.operation_type, f.operation_type),
            (c.priority, f.priority),
        )
        conds += [column == value for column, value in pairs if value]
        rows = conn.execute(select(c.status, func.sum(c.n)).where(*conds).group_by(c.status))
        return {s: int(n or 0) for s, n in rows}
    statuses = tuple(statuses)
    where = _filtered(Scoped(tenant_id, project_id), f)
    sums = conn.execute(
        select(*(func.sum(case((operations.c.status == s, 1), else_=0)) for s in statuses)).where(
            where
        )
    ).one()
    return {s: int(n or 0) for s, n in zip(statuses, sums, strict=True)}


def list_operations(
    conn: Connection,
    tenant_id: str,
    project_id: str,
    f: OperationFilter,
    offset: int,
    limit: int,
    *,
    details: bool = False,
) -> list[dict[str, Any]]:
    """A page of the filtered operations, newest first: every column if `details`, else the
    list item's (LIST_COLUMNS). The page's ids come from an index alone (OFFSET walks index
    entries, not rows), then only those rows are read."""
    ids = (
        conn.execute(
            select(operations.c.operation_id)
            .where(_filtered(Scoped(tenant_id, project_id), f))
            .order_by(operations.c.created_at.desc(), operations.c.operation_id.desc())
            .offset(offset)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    found = read_operations(conn, ids, None if details else LIST_COLUMNS)
    return [found[i] for i in ids if i in found]


def list_recent_operations(
    conn: Connection, tenant_id: str, project_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The scope's newest operations: id, name, type, status, percentage, created_at."""
    c = operations.c
    rows = conn.execute(
        select(c.operation_id, c.operation_name, c.operation_type, c.status, c.percentage)
        .add_columns(c.created_at)
        .where(in_scope(operations, Scoped(tenant_id, project_id)))
        .order_by(c.created_at.desc(), c.operation_id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


# -- run statistics ------------------------------------------------------------------------------
def list_throughput(
    conn: Connection, operation_type: str, limit: int = 200
) -> list[tuple[int, float, float]]:
    """(events, phase_seconds, startup_seconds) of the type's last completed runs, newest first."""
    t = throughput.c
    rows = conn.execute(
        select(t.events, t.phase_seconds, t.startup_seconds)
        .where(t.operation_type == operation_type)
        .order_by(t.ended_at.desc())
        .limit(limit)
    ).all()
    return [(n, phases, startup) for n, phases, startup in rows]


# -- the queue limit per project -----------------------------------------------------------------
QUEUED = ("Initiated", "Pending")


def count_queued_operations(conn: Connection, tenant_id: str, project_id: str) -> int:
    """The project's operations waiting to run (Initiated, or Pending in a batch), from the
    trigger-kept counters. Called in the transaction that inserts more, it holds the project's
    queue until commit: SQLite's write lock holds every writer already, PostgreSQL takes an
    advisory lock per project here, so two starts cannot both pass the limit."""
    if conn.dialect.name == "postgresql":
        key = func.hashtext(f"pmops-queue:{tenant_id}:{project_id}")
        conn.execute(select(func.pg_advisory_xact_lock(key)))
    c = operation_counts.c
    total = conn.execute(
        select(func.coalesce(func.sum(c.n), 0)).where(
            c.tenant_id == tenant_id, c.project_id == project_id, c.status.in_(QUEUED)
        )
    ).scalar_one()
    return int(total)
