"""deployments/gate.py: the runner asks Prefect for scheduled runs only when the store shows a run
it has not seen, or every `full_every` seconds; a store it cannot read means asking. The run ids
come from a real store (SQLite and PostgreSQL): unfinished operations' and batches' runs."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine

from deployments.gate import RunGate
from pmops.service.lifecycle import runs_to_start
from pmops.store.batches import insert_batch
from pmops.store.engine import transaction, utc_now
from tests.store.conftest import engine, store_pg_engine  # noqa: F401 (fixtures)
from tests.store.helpers import add_operation, scope


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_id() -> str:
    return str(uuid.uuid4())


def test_the_store_lists_the_runs_that_may_wait_for_a_runner(engine: Engine) -> None:  # noqa: F811
    tenant, project = scope()
    waiting, running, done = run_id(), run_id(), run_id()
    add_operation(engine, tenant, project, status="Initiated", flow_run_id=waiting)
    add_operation(engine, tenant, project, status="Running", flow_run_id=running)
    add_operation(engine, tenant, project, status="Completed", flow_run_id=done)
    add_operation(engine, tenant, project, status="Initiated")  # queued: no run yet
    parent = run_id()
    with transaction(engine) as conn:
        row = {"tenant_id": tenant, "project_id": project, "batch_name": "b", "request": {}}
        insert_batch(
            conn,
            {
                **row,
                "batch_id": "batch-1",
                "status": "Running",
                "flow_run_id": parent,
                "created_at": utc_now(),
            },
        )
        insert_batch(
            conn,
            {
                **row,
                "batch_id": "batch-2",
                "status": "Completed",
                "flow_run_id": run_id(),
                "created_at": utc_now(),
            },
        )
    assert runs_to_start(engine) == {waiting, running, parent}


def test_asks_prefect_for_a_new_run_and_otherwise_every_full_interval() -> None:
    clock, store = Clock(), {"a"}
    gate = RunGate(lambda: set(store), full_every=2.0, clock=clock)
    assert gate.should_ask()  # the first look
    clock.now += 0.2
    assert not gate.should_ask()  # nothing new
    store.add("b")
    clock.now += 0.2
    assert gate.should_ask()  # a run it has not seen
    clock.now += 0.2
    assert not gate.should_ask()
    store.discard("a")  # a run ended: nothing to start
    clock.now += 0.2
    assert not gate.should_ask()
    clock.now += 2.0
    assert gate.should_ask()  # runs pmops did not make (a schedule, the UI) still start
    assert (gate.asked, gate.skipped) == (3, 3)


def test_a_store_it_cannot_read_means_asking() -> None:
    def broken() -> set[str]:
        raise OSError("store away")

    clock = Clock()
    gate = RunGate(broken, clock=clock)
    assert gate.should_ask() and gate.should_ask()
