"""The API's own run queue: the operations and batches the dispatcher starts, watches and sweeps.

An operation waits here (Initiated, no flow run) until a worker slot is free; "active" is an
Initiated or Running operation that has a run. Each write names the state it expects, so a
sweep that lost a race to a claim or a cancel changes nothing (the functions say whether they
changed the row).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from pmops.store.tables import batches, operation_counts, operations

UNFINISHED = ("Initiated", "Running")


# -- dispatch ---------------------------------------------------------------------------------
def count_active_runs(conn: Connection) -> int:
    """Operations holding a worker slot: Initiated or Running with a run."""
    return int(
        conn.execute(
            select(func.count()).where(
                operations.c.status.in_(UNFINISHED), operations.c.flow_run_id.is_not(None)
            )
        ).scalar_one()
    )


def list_queued_operations(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The next `limit` operations waiting for a run: highest priority first, then oldest."""
    rows = conn.execute(
        select(operations)
        .where(operations.c.status == "Initiated", operations.c.flow_run_id.is_(None))
        .order_by(operations.c.priority_rank.desc(), operations.c.created_at.asc())
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


Project = tuple[str, str]  # (tenant_id, project_id): the unit of fair dispatch


def count_active_runs_by_project(conn: Connection) -> dict[Project, int]:
    """Worker slots held per project (as count_active_runs); projects holding none are absent.
    Read from ix_ops_active_runs alone."""
    c = operations.c
    rows = conn.execute(
        select(c.tenant_id, c.project_id, func.count())
        .where(c.status.in_(UNFINISHED), c.flow_run_id.is_not(None))
        .group_by(c.tenant_id, c.project_id)
    )
    return {(t, p): int(n) for t, p, n in rows}


def list_projects_with_initiated(conn: Connection) -> list[Project]:
    """Projects that may have queued work: an Initiated operation (with or without a run), read
    from the status counters (a few rows per project), not from the operations."""
    c = operation_counts.c
    rows = conn.execute(
        select(c.tenant_id, c.project_id)
        .where(c.status == "Initiated", c.n > 0)
        .group_by(c.tenant_id, c.project_id)
        .order_by(c.tenant_id, c.project_id)
    )
    return [(t, p) for t, p in rows]


def list_project_queue(
    conn: Connection, tenant_id: str, project_id: str, limit: int
) -> list[dict[str, Any]]:
    """A project's next `limit` operations waiting for a run: highest priority first, then
    oldest (ix_ops_project_queue, read in order and stopped at `limit`)."""
    c = operations.c
    rows = conn.execute(
        select(operations)
        .where(c.tenant_id == tenant_id, c.project_id == project_id)
        .where(c.status == "Initiated", c.flow_run_id.is_(None))
        .order_by(c.priority_rank.desc(), c.created_at.asc())
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def set_operation_run(conn: Connection, operation_id: str, run_id: str) -> bool:
    """Record the run created for a queued operation (only if it has none yet)."""
    return bool(
        conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .where(operations.c.flow_run_id.is_(None))
            .values(flow_run_id=run_id)
        ).rowcount
    )


def read_batch_runs(conn: Connection, batch_ids: Iterable[str]) -> dict[str, str]:
    """batch id -> its parent run's id, for the batches of these ids that have one."""
    ids = set(batch_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(batches.c.batch_id, batches.c.flow_run_id).where(
            batches.c.batch_id.in_(ids), batches.c.flow_run_id.is_not(None)
        )
    ).all()
    return {str(batch_id): str(run_id) for batch_id, run_id in rows}


def list_unfinished_run_ids(conn: Connection) -> set[str]:
    """The Prefect runs of unfinished operations (from ix_ops_active_runs alone) and of
    unfinished batches' parent runs: every run a runner may still have to start."""
    ops = select(operations.c.flow_run_id).where(
        operations.c.status.in_(UNFINISHED), operations.c.flow_run_id.is_not(None)
    )
    parents = select(batches.c.flow_run_id).where(
        batches.c.status.in_(UNFINISHED), batches.c.flow_run_id.is_not(None)
    )
    return {str(run_id) for run_id in conn.execute(ops.union_all(parents)).scalars()}


def list_unfinished_batch_ids(conn: Connection) -> list[str]:
    return [
        str(batch_id)
        for batch_id in conn.execute(
            select(batches.c.batch_id).where(batches.c.status.in_(UNFINISHED))
        ).scalars()
    ]


def list_batches_without_run(conn: Connection) -> list[dict[str, Any]]:
    """Unfinished batches that have no parent run yet."""
    rows = conn.execute(
        select(batches).where(batches.c.status.in_(UNFINISHED), batches.c.flow_run_id.is_(None))
    ).mappings()
    return [dict(row) for row in rows]


def set_batch_run(conn: Connection, batch_id: str, run_id: str) -> None:
    conn.execute(update(batches).where(batches.c.batch_id == batch_id).values(flow_run_id=run_id))


# -- sweep --------------------------------------------------------------------------------------
def list_silent_operations(
    conn: Connection, heartbeat_before: datetime
) -> list[tuple[str, str | None, datetime]]:
    """Running operations whose last heartbeat is older than `heartbeat_before`:
    (operation id, run id, last heartbeat)."""
    rows = conn.execute(
        select(
            operations.c.operation_id, operations.c.flow_run_id, operations.c.heartbeat_at
        ).where(operations.c.status == "Running", operations.c.heartbeat_at < heartbeat_before)
    ).all()
    return [(str(op_id), run_id, beat) for op_id, run_id, beat in rows]


def list_expired_operations(conn: Connection, now: datetime) -> list[tuple[str, str | None]]:
    """Initiated operations past their timeoutAt: (operation id, run id)."""
    rows = conn.execute(
        select(operations.c.operation_id, operations.c.flow_run_id).where(
            operations.c.status == "Initiated", operations.c.timeout_at < now
        )
    ).all()
    return [(str(op_id), run_id) for op_id, run_id in rows]


def fail_operation(
    conn: Connection,
    operation_id: str,
    error: dict[str, Any],
    ended_at: datetime,
    expect_status: str,
    expect_run: str | None = None,
) -> bool:
    """Mark the operation Failed with `error`, if it is still `expect_status` (and on run
    `expect_run` when given)."""
    where = [operations.c.operation_id == operation_id, operations.c.status == expect_status]
    if expect_run is not None:
        where.append(operations.c.flow_run_id == expect_run)
    return bool(
        conn.execute(
            update(operations).where(*where).values(status="Failed", ended_at=ended_at, error=error)
        ).rowcount
    )


def time_out_operation(conn: Connection, operation_id: str, ended_at: datetime) -> bool:
    """Mark an Initiated operation Timeout (False if it is no longer Initiated)."""
    return bool(
        conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id, operations.c.status == "Initiated")
            .values(status="Timeout", ended_at=ended_at)
        ).rowcount
    )


def list_unclaimed_operations(conn: Connection) -> list[dict[str, Any]]:
    """Initiated operations that have a run which has not claimed them (yet)."""
    rows = conn.execute(
        select(operations).where(
            operations.c.status == "Initiated", operations.c.flow_run_id.is_not(None)
        )
    ).mappings()
    return [dict(row) for row in rows]


def read_operation_run(conn: Connection, operation_id: str) -> tuple[str, str | None] | None:
    """(status, run id) of the operation; None if there is no such operation."""
    row = conn.execute(
        select(operations.c.status, operations.c.flow_run_id).where(
            operations.c.operation_id == operation_id
        )
    ).first()
    return None if row is None else (str(row[0]), row[1])


def move_operation_run(conn: Connection, operation_id: str, old_run: str, new_run: str) -> bool:
    """Point a still-unclaimed operation from run `old_run` to `new_run`."""
    return bool(
        conn.execute(
            update(operations)
            .where(
                operations.c.operation_id == operation_id,
                operations.c.status == "Initiated",
                operations.c.flow_run_id == old_run,
            )
            .values(flow_run_id=new_run)
        ).rowcount
    )


def list_operations_with_runs(conn: Connection) -> list[dict[str, Any]]:
    """Initiated or Running operations that have a run: their ids, scope, status and whether a
    cancel was asked for (read from ix_ops_active_runs; at most the worker slots held)."""
    c = operations.c
    rows = conn.execute(
        select(
            c.operation_id,
            c.tenant_id,
            c.project_id,
            c.status,
            c.flow_run_id,
            c.cancel_requested,
        ).where(c.status.in_(UNFINISHED), c.flow_run_id.is_not(None))
    ).mappings()
    return [dict(row) for row in rows]
