"""pmops.store.operations, scoping, datasets, idempotency and tokens on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pmops.store import datasets as ds
from pmops.store import operations as ops
from pmops.store.engine import make_engine, transaction, utc_now
from pmops.store.idempotency import insert_idempotency, read_idempotency
from pmops.store.scoping import Scoped, read_scoped
from pmops.store.tables import datasets, operations, throughput
from pmops.store.tokens import create_token, hash_token, read_token
from tests.store.helpers import add_operation, scope

STATUSES = ("Initiated", "Running", "Completed", "Failed", "Cancelled", "Timeout")


def test_read_operation_only_in_its_scope(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with engine.connect() as conn:
        mine = ops.read_operation(conn, tenant, project, op_id)
        assert mine is not None and mine["operation_id"] == op_id
        assert ops.read_operation(conn, tenant, None, op_id) is not None  # tenant-wide
        assert ops.read_operation(conn, tenant, str(uuid.uuid4()), op_id) is None
        assert ops.read_operation(conn, str(uuid.uuid4()), project, op_id) is None
        assert ops.read_operation(conn, str(uuid.uuid4()), None, op_id) is None
        assert ops.read_operation(conn, tenant, project, "op-missing") is None
        assert ops.read_operation_by_id(conn, op_id) is not None


def test_status_only_leaves_the_documents_out(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with engine.connect() as conn:
        row = ops.read_operation(conn, tenant, project, op_id, status_only=True)
        whole = ops.read_operation(conn, tenant, project, op_id)
    assert row is not None and whole is not None
    assert "request" not in row and "results" not in row and "status" in row
    assert whole["request"] == {"parameters": {"datasetId": "x"}}


def test_read_for_update_in_a_transaction(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with transaction(engine) as conn:
        row = ops.read_operation(conn, tenant, project, op_id, for_update=True)
        assert row is not None and row["status"] == "Initiated"


def test_set_operation_status_only_from_what_is_expected(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with transaction(engine) as conn:
        assert not ops.set_operation_status(conn, op_id, "Completed", expect=("Running",))
        assert ops.set_operation_status(conn, op_id, "Running", expect=("Initiated",))
        assert ops.set_operation_status(
            conn, op_id, "Cancelled", ("Initiated", "Running"), ended_at=utc_now()
        )
        assert not ops.set_operation_status(conn, "op-missing", "Running")
        assert ops.update_operation(conn, op_id, {"percentage": 50.0})
    with engine.connect() as conn:
        row = ops.read_operation_by_id(conn, op_id)
    assert row is not None
    assert row["status"] == "Cancelled" and row["ended_at"] is not None
    assert row["percentage"] == 50.0


def test_list_and_count_operations(engine: Engine) -> None:
    tenant, project = scope()
    other = add_operation(engine, tenant, str(uuid.uuid4()))
    now = utc_now()
    made = [
        add_operation(
            engine,
            tenant,
            project,
            status=("Initiated", "Completed")[i % 2],
            priority=("Low", "High")[i % 2],
            created_at=now - timedelta(minutes=i),
        )
        for i in range(5)
    ]
    with engine.connect() as conn:
        page = ops.list_operations(conn, tenant, project, ops.OperationFilter(), 0, 3)
        rest = ops.list_operations(conn, tenant, project, ops.OperationFilter(), 3, 3)
        done = ops.OperationFilter(status="Completed")
        completed = ops.list_operations(conn, tenant, project, done, 0, 10, details=True)
        counts = ops.count_operations(conn, tenant, project, ops.OperationFilter(), STATUSES)
        recent = ops.OperationFilter(date_from=now - timedelta(minutes=1, seconds=30))
        dated = ops.count_operations(conn, tenant, project, recent, STATUSES)
        high = ops.count_operations(
            conn, tenant, project, ops.OperationFilter(priority="High"), STATUSES
        )
    assert [r["operation_id"] for r in page + rest] == made  # newest first
    assert other not in [r["operation_id"] for r in page + rest]
    assert "request" not in page[0] and "resource_usage" in page[0]
    assert [r["operation_id"] for r in completed] == made[1::2]
    assert "request" in completed[0]
    assert counts == {"Initiated": 3, "Completed": 2}
    assert dated["Initiated"] == 1 and dated["Completed"] == 1 and dated["Failed"] == 0
    assert high == {"Completed": 2}


def test_queue_and_busy_operations(engine: Engine) -> None:
    tenant, project = scope()
    add_operation(engine, tenant, project, estimated_seconds=10.0, priority_rank=2)
    add_operation(engine, tenant, project, estimated_seconds=5.0, priority_rank=0)
    started = utc_now()
    add_operation(
        engine,
        tenant,
        project,
        status="Running",
        flow_run_id=str(uuid.uuid4()),
        estimated_seconds=7.0,
        started_at=started,
    )
    with engine.connect() as conn:
        assert ops.queued_seconds_ahead(conn, 1) == 10.0
        assert ops.queued_seconds_ahead(conn, 0) == 15.0
        assert ops.list_busy_operations(conn) == [(7.0, started)]


def test_recent_operations_and_throughput(engine: Engine) -> None:
    tenant, project = scope()
    first = add_operation(engine, tenant, project, created_at=utc_now() - timedelta(hours=1))
    second = add_operation(engine, tenant, project)
    with transaction(engine) as conn:
        for i, n in enumerate((100, 200)):
            conn.execute(
                throughput.insert().values(
                    operation_id=f"op-{i}-{uuid.uuid4()}",
                    operation_type="DataEnrichment",
                    events=n,
                    phase_seconds=1.0,
                    startup_seconds=0.5,
                    ended_at=utc_now() + timedelta(seconds=i),
                )
            )
    with engine.connect() as conn:
        recent = ops.list_recent_operations(conn, tenant, None, 10)
        runs = ops.list_throughput(conn, "DataEnrichment")
    assert [r["operation_id"] for r in recent] == [second, first]
    assert runs == [(200, 1.0, 0.5), (100, 1.0, 0.5)]


def test_read_scoped_any_table(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with engine.connect() as conn:
        mine = read_scoped(conn, operations, "operation_id", op_id, Scoped(tenant, project))
        theirs = read_scoped(conn, operations, "operation_id", op_id, Scoped("x", project))
    assert mine is not None and theirs is None


def test_datasets(engine: Engine) -> None:
    tenant, project = scope()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with transaction(engine) as conn:
        for i, dataset_id in enumerate(ids):
            ds.insert_dataset(
                conn,
                {
                    "dataset_id": dataset_id,
                    "tenant_id": tenant,
                    "project_id": project,
                    "file_name": f"f{i}.csv",
                    "path": "/tmp/x",
                    "size_bytes": 1,
                    "format": "csv",
                    "summary": {"events": i},
                    "created_at": utc_now() + timedelta(seconds=i),
                },
            )
    with engine.connect() as conn:
        assert ds.count_datasets(conn, tenant, project) == 3
        assert [r["dataset_id"] for r in ds.list_datasets(conn, tenant, project, 0, 2)] == [
            ids[2],
            ids[1],
        ]
        first = ds.read_dataset(conn, tenant, project, ids[0])
        assert first is not None and first["summary"] == {"events": 0}
        assert ds.read_dataset(conn, tenant, str(uuid.uuid4()), ids[0]) is None
    with transaction(engine) as conn:
        assert not ds.delete_dataset(conn, str(uuid.uuid4()), ids[0])  # another tenant's
        assert ds.delete_dataset(conn, tenant, ids[0])
    with engine.connect() as conn:
        assert ds.count_datasets(conn, tenant, project) == 2
        assert conn.execute(datasets.select()).first() is not None


def test_idempotency_records_once(engine: Engine) -> None:
    tenant, _ = scope()
    with transaction(engine) as conn:
        insert_idempotency(conn, tenant, "POST /x", "k1", "h", 202, {"a": 1}, {"Location": "/l"})
    with engine.connect() as conn:
        found = read_idempotency(conn, tenant, "POST /x", "k1")
        assert read_idempotency(conn, str(uuid.uuid4()), "POST /x", "k1") is None
        assert read_idempotency(conn, tenant, "POST /y", "k1") is None
    assert found is not None
    assert (found.request_hash, found.status_code, found.response, found.headers) == (
        "h",
        202,
        {"a": 1},
        {"Location": "/l"},
    )
    with pytest.raises(IntegrityError), transaction(engine) as conn:
        insert_idempotency(conn, tenant, "POST /x", "k1", "h2", 202, {}, {})


def test_tokens(engine: Engine) -> None:
    tenant, project = scope()
    token = create_token(engine, tenant, project, "alice", expires_at=None)
    with engine.connect() as conn:
        row = read_token(conn, hash_token(token))
        assert read_token(conn, hash_token(token + "x")) is None
    assert row is not None
    assert (row["tenant_id"], row["project_id"], row["principal"]) == (tenant, project, "alice")
    assert row["expires_at"] is None
    assert row["max_priority"] == "High"  # unless the operator grants more
    critical = create_token(engine, tenant, project, "bob", max_priority="Critical")
    with engine.connect() as conn:
        granted = read_token(conn, hash_token(critical))
    assert granted is not None and granted["max_priority"] == "Critical"
    with pytest.raises(ValueError):
        create_token(engine, tenant, project, "eve", max_priority="Urgent")


def test_a_store_made_before_max_priority_gains_the_column(tmp_path: Path) -> None:
    """Upgrading an old store adds tokens.max_priority; its tokens read None (High)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE tokens (token_hash VARCHAR(64) PRIMARY KEY, tenant_id VARCHAR(36) "
            "NOT NULL, project_id VARCHAR(36), principal VARCHAR(200) NOT NULL, "
            "created_at DATETIME NOT NULL, expires_at DATETIME)"
        )
        conn.exec_driver_sql(
            "INSERT INTO tokens VALUES ('h', 't', 'p', 'old', '2026-01-01 00:00:00', NULL)"
        )
    old.dispose()
    engine = make_engine(url, upgrade=True)
    try:
        with engine.connect() as conn:
            row = read_token(conn, "h")
        assert row is not None and row["max_priority"] is None
    finally:
        engine.dispose()
