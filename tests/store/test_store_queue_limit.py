"""The counts behind the limits per project on SQLite and PostgreSQL: queued operations
(count_queued_operations: a project's Initiated and Pending ones) and webhooks (count_webhooks).
Taken in the insert's transaction each holds the project until commit, so 20 concurrent inserts
against a limit of 5 stop at 5."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy.engine import Engine

from pmops.store.engine import transaction, utc_now
from pmops.store.operations import count_queued_operations, insert_operation
from pmops.store.tables import webhooks
from pmops.store.webhooks import count_webhooks
from tests.store.helpers import add_operation, add_webhook, operation_row, scope


def queued(engine: Engine, tenant: str, project: str) -> int:
    with engine.connect() as conn:
        return count_queued_operations(conn, tenant, project)


def test_counts_waiting_operations_of_the_project(engine: Engine) -> None:
    tenant, project = scope()
    for status in ("Initiated", "Initiated", "Pending", "Running", "Completed", "Cancelled"):
        add_operation(engine, tenant, project, status=status)
    add_operation(engine, tenant, "00000000-0000-4000-8000-000000000000")  # another project
    add_operation(engine, "00000000-0000-4000-8000-000000000001", project)  # another tenant
    assert queued(engine, tenant, project) == 3
    assert queued(engine, *scope()) == 0


def test_concurrent_starts_do_not_pass_the_limit(engine: Engine) -> None:
    tenant, project = scope()
    limit, made, errors = 5, [], []
    start = threading.Barrier(20)

    def one() -> None:
        try:
            start.wait()
            with transaction(engine) as conn:
                if count_queued_operations(conn, tenant, project) >= limit:
                    return
                row = operation_row(tenant, project)
                insert_operation(conn, row)
            made.append(row["operation_id"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == limit
    assert queued(engine, tenant, project) == limit


def test_count_webhooks_holds_the_project(engine: Engine) -> None:
    """Webhooks per project: Active and Disabled count, per project; 20 concurrent
    registrations against a limit of 5 insert 5."""
    tenant, project = scope()
    add_webhook(engine, tenant, project)
    add_webhook(engine, tenant, project, status="Disabled")
    add_webhook(engine, tenant, "00000000-0000-4000-8000-000000000000")
    with engine.connect() as conn:
        assert count_webhooks(conn, tenant, project) == 2
    limit, made, errors = 5, [], []
    start = threading.Barrier(20)

    def one() -> None:
        try:
            start.wait()
            with transaction(engine) as conn:
                if count_webhooks(conn, tenant, project) >= limit:
                    return
                conn.execute(webhooks.insert().values(**webhook_row(tenant, project)))
            made.append(1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == limit - 2
    with engine.connect() as conn:
        assert count_webhooks(conn, tenant, project) == limit


def webhook_row(tenant: str, project: str) -> dict[str, object]:
    return {
        "webhook_id": f"wh-{uuid.uuid4()}",
        "tenant_id": tenant,
        "project_id": project,
        "url": "https://receiver.example/hook",
        "name": "t",
        "events": ["operation.completed"],
        "filters": {},
        "retry_policy": {},
        "headers": {},
        "status": "Active",
        "created_at": utc_now(),
    }
