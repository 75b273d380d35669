"""The queue limit's count (count_queued_operations) on SQLite and PostgreSQL: a project's
Initiated and Pending operations only, and taken in the insert's transaction it holds the
project's queue, so 20 concurrent starts against a limit of 5 insert exactly 5."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from pmops.store.engine import transaction
from pmops.store.operations import count_queued_operations, insert_operation
from tests.store.helpers import add_operation, operation_row, scope


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
