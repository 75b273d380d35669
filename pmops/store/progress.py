"""What an operation's flow run reads and writes: its claim, live progress, outcome and inputs.

The flow run is one writer of the `operations` row among others (the API's cancel, the
dispatcher's sweep): every write here after the claim is guarded by `status = 'Running'`, so a
terminal status set meanwhile by someone else is never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from pmops.store.tables import batch_submissions, datasets, operations, retries, throughput


class RetryLink(NamedTuple):
    lineage: str
    original_id: str
    retry_mode: str
    preserved_phases: list[str]
    source_dir: str | None


class CancelRequest(NamedTuple):
    requested: bool
    request: dict[str, Any] | None


def lock_operation(conn: Connection, operation_id: str) -> dict[str, Any] | None:
    """The operation's row, locked until the transaction ends (PostgreSQL: FOR UPDATE)."""
    row = (
        conn.execute(
            select(operations).where(operations.c.operation_id == operation_id).with_for_update()
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def update_running_operation(
    conn: Connection, operation_id: str, values: Mapping[str, Any]
) -> bool:
    """Write `values` while the operation is still Running; False when it no longer is."""
    result = conn.execute(
        update(operations)
        .where(operations.c.operation_id == operation_id)
        .where(operations.c.status == "Running")
        .values(**values)
    )
    return bool(result.rowcount)


def read_operation_start(conn: Connection, operation_id: str) -> tuple[str, datetime | None] | None:
    """(operation type, started_at) of the operation, or None."""
    row = conn.execute(
        select(operations.c.operation_type, operations.c.started_at).where(
            operations.c.operation_id == operation_id
        )
    ).first()
    return (row.operation_type, row.started_at) if row is not None else None


def insert_throughput(
    conn: Connection,
    operation_id: str,
    operation_type: str,
    events: int,
    phase_seconds: float,
    startup_seconds: float,
    ended_at: datetime,
) -> None:
    conn.execute(
        throughput.insert().values(
            operation_id=operation_id,
            operation_type=operation_type,
            events=events,
            phase_seconds=phase_seconds,
            startup_seconds=startup_seconds,
            ended_at=ended_at,
        )
    )


def read_cancel_request(conn: Connection, operation_id: str) -> CancelRequest | None:
    row = conn.execute(
        select(operations.c.cancel_requested, operations.c.cancel_request).where(
            operations.c.operation_id == operation_id
        )
    ).first()
    if row is None:
        return None
    return CancelRequest(bool(row.cancel_requested), row.cancel_request)


def read_result_dir(conn: Connection, operation_id: str) -> str | None:
    value = conn.execute(
        select(operations.c.result_dir).where(operations.c.operation_id == operation_id)
    ).scalar()
    return str(value) if value else None


def read_retry_link(conn: Connection, operation_id: str) -> RetryLink | None:
    """What the operation retries (None for a first run), with the original's result dir."""
    link = conn.execute(select(retries).where(retries.c.operation_id == operation_id)).first()
    if link is None:
        return None
    return RetryLink(
        link.lineage,
        link.original_id,
        link.retry_mode,
        list(link.preserved_phases or []),
        read_result_dir(conn, link.original_id),
    )


def read_dataset_file(conn: Connection, dataset_id: str) -> tuple[str, dict[str, Any]] | None:
    """(path, summary) of a dataset, whatever its tenant: the operation was checked at start."""
    row = conn.execute(
        select(datasets.c.path, datasets.c.summary).where(datasets.c.dataset_id == dataset_id)
    ).first()
    return (str(row.path), dict(row.summary or {})) if row is not None else None


def list_project_uploads(conn: Connection, tenant_id: str, project_id: str) -> list[str]:
    """The project's uploaded datasets (not the outputs of cleanings), oldest first."""
    found = conn.execute(
        select(datasets.c.dataset_id)
        .where(
            datasets.c.tenant_id == tenant_id,
            datasets.c.project_id == project_id,
            datasets.c.source_operation_id.is_(None),
        )
        .order_by(datasets.c.created_at)
    ).scalars()
    return [str(d) for d in found]


def insert_batch_submission(
    conn: Connection,
    submission_id: str,
    tenant_id: str,
    project_id: str,
    body: dict[str, Any],
    parent_flow_run_id: str | None,
    created_at: datetime,
) -> None:
    conn.execute(
        batch_submissions.insert().values(
            submission_id=submission_id,
            tenant_id=tenant_id,
            project_id=project_id,
            body=body,
            parent_flow_run_id=parent_flow_run_id,
            created_at=created_at,
        )
    )


def read_batch_submission(conn: Connection, submission_id: str) -> tuple[str | None, Any] | None:
    """(batch id, error) of a submission; both None while the dispatcher has not taken it."""
    row = conn.execute(
        select(batch_submissions.c.batch_id, batch_submissions.c.error).where(
            batch_submissions.c.submission_id == submission_id
        )
    ).first()
    return (row.batch_id, row.error) if row is not None else None
