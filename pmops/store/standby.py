"""Standby runs: flow runs the dispatcher started before a worker slot was free.

A quick operation spends about as long getting a running process (its flow run created in
Prefect, taken by a runner, forked, reported Pending and Running) as executing. With
PMOPS_STANDBY_RUNS the dispatcher creates that many runs ahead; each one's process starts and
waits here, its row present, until the dispatcher grants it a worker slot by deleting the row
(pmops.service.dispatcher), then claims its operation. A standby operation is Initiated with a
run, so it counts among the runs held (queue.count_active_runs_by_project), but not among the
worker slots: those are the runs held minus the standby ones.

The dispatcher writes a row before it creates the run, so a run never finds its operation
without one and claims early; a row whose operation has no run yet (the create failed) is not
standing by (`list_standby_operations` reads only operations with a run), and a normal dispatch
deletes any such row with the run it records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection

from pmops.store.tables import operations, standby_runs


def add_standby(
    conn: Connection, operation_id: str, tenant_id: str, project_id: str, now: datetime
) -> None:
    """The operation's run (about to be created) waits for a slot before it claims."""
    conn.execute(delete(standby_runs).where(standby_runs.c.operation_id == operation_id))
    conn.execute(
        insert(standby_runs).values(
            operation_id=operation_id, tenant_id=tenant_id, project_id=project_id, since=now
        )
    )


def delete_standby(conn: Connection, operation_id: str) -> bool:
    """The grant of a worker slot (or a normal dispatch): the run may claim now. True when the
    operation was standing by."""
    gone = conn.execute(delete(standby_runs).where(standby_runs.c.operation_id == operation_id))
    return bool(gone.rowcount)


def count_slots_by_project(conn: Connection) -> dict[tuple[str, str], int]:
    """Worker slots held per project: Initiated or Running operations with a run that is not
    standing by. One statement, so a standby run recorded meanwhile is counted consistently
    (two reads, runs held less runs standing by, could see it in one and not the other)."""
    c = operations.c
    standing = select(standby_runs.c.operation_id).where(
        standby_runs.c.operation_id == c.operation_id
    )
    rows = conn.execute(
        select(c.tenant_id, c.project_id, func.count())
        .where(c.status.in_(("Initiated", "Running")), c.flow_run_id.is_not(None))
        .where(~exists(standing))
        .group_by(c.tenant_id, c.project_id)
    )
    return {(t, p): int(n) for t, p, n in rows}


def list_standby_operations(conn: Connection) -> list[dict[str, Any]]:
    """The standby operations still waiting for a slot (Initiated, with a run): their rows in
    the operations table, the standby row's `since` as `standby_since`."""
    rows = conn.execute(
        select(operations, standby_runs.c.since.label("standby_since"))
        .join(standby_runs, standby_runs.c.operation_id == operations.c.operation_id)
        .where(operations.c.status == "Initiated", operations.c.flow_run_id.is_not(None))
    ).mappings()
    return [dict(row) for row in rows]


def count_standby(conn: Connection) -> int:
    """Standby rows of operations still waiting, with their run or with it being created."""
    waiting = select(operations.c.operation_id).where(
        operations.c.operation_id == standby_runs.c.operation_id,
        operations.c.status == "Initiated",
    )
    return int(
        conn.execute(
            select(func.count()).select_from(standby_runs).where(exists(waiting))
        ).scalar_one()
    )


def delete_unstarted_standby(conn: Connection, operation_id: str) -> bool:
    """Drop the row of an operation whose standby run could not be created (it has no run)."""
    no_run = select(operations.c.operation_id).where(
        operations.c.operation_id == operation_id, operations.c.flow_run_id.is_not(None)
    )
    gone = conn.execute(
        delete(standby_runs).where(standby_runs.c.operation_id == operation_id, ~exists(no_run))
    )
    return bool(gone.rowcount)


def read_standby(conn: Connection, operation_id: str) -> tuple[str | None, bool]:
    """(the operation's status, None if there is no such operation; whether it stands by)."""
    standing = exists().where(standby_runs.c.operation_id == operations.c.operation_id)
    row = conn.execute(
        select(operations.c.status, standing.label("standing")).where(
            operations.c.operation_id == operation_id
        )
    ).first()
    if row is None:
        return None, False
    return str(row[0]), bool(row[1])


def beat_standby(conn: Connection, operation_id: str, now: datetime) -> bool:
    """The waiting run's process is alive; False when the row is gone (granted meanwhile)."""
    done = conn.execute(
        update(standby_runs)
        .where(standby_runs.c.operation_id == operation_id)
        .values(heartbeat_at=now)
    )
    return bool(done.rowcount)


def list_standby_alive(conn: Connection, since: datetime) -> set[str]:
    """Standby operations whose waiting process beat at `since` or later."""
    rows = conn.execute(
        select(standby_runs.c.operation_id).where(standby_runs.c.heartbeat_at >= since)
    )
    return {str(r[0]) for r in rows}


def any_standby(conn: Connection) -> bool:
    """Whether the table has a row (the sweep's cheap look before it writes)."""
    return conn.execute(select(standby_runs.c.operation_id).limit(1)).first() is not None


def delete_ended_standby(conn: Connection, unstarted_before: datetime) -> int:
    """Drop the rows of operations that are no longer waiting (claimed, cancelled, failed, timed
    out, deleted): nothing reads them, and a later dispatch must not find one. Also a row
    written before `unstarted_before` whose operation never got its run (the process creating
    it stopped): it would count as standing by for good."""
    waiting = select(operations.c.operation_id).where(
        operations.c.operation_id == standby_runs.c.operation_id,
        operations.c.status == "Initiated",
    )
    run_made = select(operations.c.operation_id).where(
        operations.c.operation_id == standby_runs.c.operation_id,
        operations.c.flow_run_id.is_not(None),
    )
    stuck = (standby_runs.c.since < unstarted_before) & ~exists(run_made)
    return int(conn.execute(delete(standby_runs).where(~exists(waiting) | stuck)).rowcount or 0)
