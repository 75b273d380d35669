"""Datasets: registered event-log files of a tenant's project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from pmops.store.operations import ACTIVE_STATUSES
from pmops.store.scoping import Scoped, in_scope, read_scoped
from pmops.store.tables import datasets, operations


def insert_dataset(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(datasets.insert().values(**row))


def read_dataset(
    conn: Connection, tenant_id: str, project_id: str, dataset_id: str
) -> dict[str, Any] | None:
    return read_scoped(conn, datasets, "dataset_id", dataset_id, Scoped(tenant_id, project_id))


def delete_dataset(conn: Connection, tenant_id: str, dataset_id: str) -> bool:
    """Delete the tenant's dataset row; whether there was one."""
    done = conn.execute(
        delete(datasets).where(
            datasets.c.dataset_id == dataset_id, datasets.c.tenant_id == tenant_id
        )
    )
    return bool(done.rowcount)


def _users(tenant_id: str, project_id: str, dataset_id: str) -> Any:
    """The project's active operations reading the dataset (through its status index)."""
    o = operations.c
    return select(o.operation_id).where(
        o.tenant_id == tenant_id,
        o.project_id == project_id,
        o.status.in_(ACTIVE_STATUSES),
        o.dataset_id == dataset_id,
    )


def read_dataset_user(
    conn: Connection, tenant_id: str, project_id: str, dataset_id: str
) -> str | None:
    """An operation (queued or running) of the project that reads the dataset, or None."""
    found = conn.execute(_users(tenant_id, project_id, dataset_id).limit(1)).scalar()
    return None if found is None else str(found)


def delete_unused_dataset(
    conn: Connection, tenant_id: str, project_id: str, dataset_id: str
) -> bool:
    """Delete the project's dataset unless an active operation reads it, in one statement
    (`DELETE ... WHERE NOT EXISTS (active users)`); whether it went."""
    done = conn.execute(
        delete(datasets).where(
            datasets.c.dataset_id == dataset_id,
            datasets.c.tenant_id == tenant_id,
            datasets.c.project_id == project_id,
            ~_users(tenant_id, project_id, dataset_id).exists(),
        )
    )
    return bool(done.rowcount)


def count_datasets(conn: Connection, tenant_id: str, project_id: str) -> int:
    where = in_scope(datasets, Scoped(tenant_id, project_id))
    return int(conn.execute(select(func.count()).select_from(datasets).where(where)).scalar_one())


def list_datasets(
    conn: Connection, tenant_id: str, project_id: str, offset: int, limit: int
) -> list[dict[str, Any]]:
    """The project's datasets, newest first."""
    rows = conn.execute(
        select(datasets)
        .where(in_scope(datasets, Scoped(tenant_id, project_id)))
        .order_by(datasets.c.created_at.desc())
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]
