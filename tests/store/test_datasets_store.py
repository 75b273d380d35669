"""Deleting a dataset is one conditional statement: not while an active operation of its
project reads it (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine

from pmops.store.datasets import (
    delete_unused_dataset,
    insert_dataset,
    read_dataset,
    read_dataset_user,
)
from pmops.store.engine import transaction, utc_now
from pmops.store.operations import set_operation_status
from tests.store.helpers import add_operation, scope


def add_dataset(engine: Engine, tenant: str, project: str) -> str:
    dataset_id = str(uuid.uuid4())
    row = {
        "dataset_id": dataset_id,
        "tenant_id": tenant,
        "project_id": project,
        "file_name": "log.csv",
        "path": "/nowhere/log.csv",
        "size_bytes": 1,
        "format": "csv",
        "summary": {},
        "created_at": utc_now(),
    }
    with transaction(engine) as conn:
        insert_dataset(conn, row)
    return dataset_id


def test_an_active_reader_keeps_the_dataset(engine: Engine) -> None:
    tenant, project = scope()
    dataset_id = add_dataset(engine, tenant, project)
    op_id = add_operation(engine, tenant, project, dataset_id=dataset_id, status="Running")
    other_tenant, other_project = scope()
    with transaction(engine) as conn:
        assert read_dataset_user(conn, tenant, project, dataset_id) == op_id
        assert not delete_unused_dataset(conn, tenant, project, dataset_id)
        assert not delete_unused_dataset(conn, other_tenant, other_project, dataset_id)
        set_operation_status(conn, op_id, "Completed")
    with transaction(engine) as conn:
        assert read_dataset_user(conn, tenant, project, dataset_id) is None
        assert delete_unused_dataset(conn, tenant, project, dataset_id)
        assert read_dataset(conn, tenant, project, dataset_id) is None
        assert not delete_unused_dataset(conn, tenant, project, dataset_id)
