"""Standby runs (PMOPS_STANDBY_RUNS, pmops/store/standby.py) on SQLite and PostgreSQL, through the
Dispatcher with a fake orchestrator: a standby run is created ahead of a free worker slot, its
process waits (pmops.service.lifecycle.wait_for_slot) until the dispatcher grants it the next
slot, the worker slots granted never exceed the worker limit, priority still decides who gets a
slot, and a standby process that beats is not taken for a lost run."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from pmops.service.dispatcher import Dispatcher
from pmops.service.lifecycle import claim, wait_for_slot
from pmops.service.orchestrator import (
    Orchestrator,
    OrchestratorUnavailable,
    Run,
    RunState,
    RunStateType,
)
from pmops.settings import Settings
from pmops.store import queue, standby
from pmops.store.engine import transaction, utc_now
from pmops.store.operations import update_operation
from pmops.store.tables import operations, standby_runs
from tests.api.conftest import FakeOrchestrator
from tests.store.helpers import scope, slots_held
from tests.store.test_fair_dispatch import finish, queue_many


def dispatcher(engine: Engine, worker_limit: int, standby_runs: int = 1) -> Dispatcher:
    settings = Settings(worker_limit=worker_limit, standby_runs=standby_runs)
    return Dispatcher(engine, settings, cast(Orchestrator, FakeOrchestrator()))


def dispatch(d: Dispatcher) -> int:
    """One dispatch round (it creates the standby runs too)."""
    return d.dispatch_once()


def fake(d: Dispatcher) -> FakeOrchestrator:
    return cast(FakeOrchestrator, d.orchestrator)


def standing(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row["operation_id"] for row in standby.list_standby_operations(conn)]


def claim_now(engine: Engine, operation_id: str) -> None:
    """What the operation's run does once it may: claim (Initiated -> Running)."""
    assert claim(engine, operation_id, None, "test") is not None


def test_a_standby_run_is_created_ahead_and_waits_for_its_slot(engine: Engine) -> None:
    d = dispatcher(engine, worker_limit=2, standby_runs=1)
    ops = queue_many(engine, scope(), 5)
    assert dispatch(d) == 2
    assert fake(d).created() == ops[:3]  # two for the slots, the third ahead
    assert standing(engine) == [ops[2]] and slots_held(engine) == 2
    for op in ops[:2]:
        claim_now(engine, op)
    dispatch(d)  # every slot held: nothing granted, nothing more created
    assert fake(d).created() == ops[:3] and standing(engine) == [ops[2]]

    waited: list[float] = []
    waiter = threading.Thread(
        target=lambda: waited.append(
            wait_for_slot(engine, ops[2], beat_seconds=0.2, poll_seconds=0.01)
        )
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # still standing by: no slot is free
    finish(engine, ops[0])
    dispatch(d)  # the slot goes to the standby run; the next one stands by
    waiter.join(30)
    assert not waiter.is_alive() and waited[0] > 0
    assert fake(d).created() == ops[:4] and standing(engine) == [ops[3]]
    claim_now(engine, ops[2])
    assert slots_held(engine) == 2


def test_a_run_that_is_not_standing_by_does_not_wait(engine: Engine) -> None:
    d = dispatcher(engine, worker_limit=1, standby_runs=0)
    [op] = queue_many(engine, scope(), 1)
    dispatch(d)
    assert wait_for_slot(engine, op, beat_seconds=1.0) == 0.0
    assert standing(engine) == []


def test_the_worker_limit_holds_while_standby_runs_come_and_go(engine: Engine) -> None:
    """Runs end one by one; each round the dispatcher grants, creates and stands runs by; the
    operations claimed (Running) never exceed the limit."""
    limit = 3
    d = dispatcher(engine, worker_limit=limit, standby_runs=2)
    ops = queue_many(engine, scope(), 30)
    running: list[str] = []
    most = 0
    for _ in range(60):
        dispatch(d)
        assert slots_held(engine) <= limit
        assert len(standing(engine)) <= 2
        with engine.connect() as conn:
            rows = conn.execute(
                select(operations.c.operation_id)
                .where(operations.c.status == "Initiated", operations.c.flow_run_id.is_not(None))
                .where(~operations.c.operation_id.in_(select(standby_runs.c.operation_id)))
            ).all()
        for (op,) in rows:  # granted (or dispatched into a free slot): claims
            claim_now(engine, op)
            running.append(op)
        most = max(most, len(running))
        assert len(running) <= limit
        if running:
            finish(engine, running.pop(0))
    assert most == limit
    with engine.connect() as conn:
        done = conn.execute(
            select(func.count()).where(
                operations.c.operation_id.in_(ops), operations.c.status == "Completed"
            )
        ).scalar_one()
    assert done == 30


def test_a_higher_priority_queued_later_takes_the_slot_before_a_standby_run(
    engine: Engine,
) -> None:
    a = scope()
    d = dispatcher(engine, worker_limit=1, standby_runs=1)
    [first] = queue_many(engine, a, 1, "Normal")
    [low] = queue_many(engine, a, 1, "Low")
    dispatch(d)
    assert fake(d).created() == [first, low] and standing(engine) == [low]
    claim_now(engine, first)
    [critical] = queue_many(engine, a, 1, "Critical")
    finish(engine, first)
    dispatch(d)  # the free slot: Critical gets a run of its own; Low keeps standing by
    assert fake(d).created() == [first, low, critical]
    assert standing(engine) == [low]
    claim_now(engine, critical)
    finish(engine, critical)
    dispatch(d)  # now Low's run is granted: no second run for it
    assert fake(d).created() == [first, low, critical] and standing(engine) == []


def test_a_cancelled_standby_operation_stops_waiting_and_its_row_goes(engine: Engine) -> None:
    d = dispatcher(engine, worker_limit=1, standby_runs=1)
    first, second = queue_many(engine, scope(), 2)
    dispatch(d)
    claim_now(engine, first)
    assert standing(engine) == [second]
    with transaction(engine) as conn:
        update_operation(conn, second, {"status": "Cancelled", "ended_at": utc_now()})
    assert wait_for_slot(engine, second, beat_seconds=1.0) == 0.0
    assert claim(engine, second, None, "test") is None  # the run then ends without claiming
    d.sweep_once()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(standby_runs)).scalar_one() == 0


def test_a_beating_standby_run_is_not_taken_for_lost_but_a_silent_one_is(engine: Engine) -> None:
    """The sweep dispatches again a run Running this long without claiming (its runner died):
    not a standby run whose process beats (it waits for a slot), but once it falls silent."""
    d = dispatcher(engine, worker_limit=1, standby_runs=1)
    d.unclaimed_run_seconds = 5.0
    first, second = queue_many(engine, scope(), 2)
    dispatch(d)
    claim_now(engine, first)
    orchestrator = fake(d)
    run = orchestrator.by_key[second]
    long_ago = utc_now() - timedelta(seconds=60)
    orchestrator.runs[run] = Run(run, RunState(RunStateType.RUNNING, long_ago, "Running"))
    with transaction(engine) as conn:
        assert standby.beat_standby(conn, second, utc_now())
    d.sweep_once()
    assert orchestrator.called("abandon_run") == [] and standing(engine) == [second]
    stale = utc_now() - timedelta(seconds=d.settings.heartbeat_stale_seconds + 5)
    with transaction(engine) as conn:
        assert standby.beat_standby(conn, second, stale)
    d.sweep_once()
    assert [args[0] for args in orchestrator.called("abandon_run")] == [run]
    assert len(orchestrator.by_operation[second]) == 2  # dispatched again, still standing by
    assert standing(engine) == [second]


def test_a_standby_run_that_cannot_be_created_leaves_its_operation_queued(engine: Engine) -> None:
    """When Prefect refuses the standby run's creation, the row goes and the operation waits in
    the queue as before (its slot turn is not lost)."""
    d = dispatcher(engine, worker_limit=1, standby_runs=1)
    first, second = queue_many(engine, scope(), 2)
    orchestrator = fake(d)
    create = orchestrator.create_run

    def refuse_the_second(
        operation: Any, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        if operation.operation_id == second:
            raise OrchestratorUnavailable("Prefect is restarting")
        return create(operation, attempt, parent_run_id)

    orchestrator.create_run = refuse_the_second  # type: ignore[method-assign]
    dispatch(d)
    assert standing(engine) == []
    with engine.connect() as conn:
        assert standby.count_standby(conn) == 0
        assert queue.read_operation_run(conn, second) == ("Initiated", None)
    orchestrator.create_run = create  # type: ignore[method-assign]
    d._standby_failed = -1e9  # the retry pause (1 s) is over
    claim_now(engine, first)
    finish(engine, first)
    dispatch(d)  # the slot: a run of its own, at once
    assert fake(d).created()[-1] == second and standing(engine) == []
