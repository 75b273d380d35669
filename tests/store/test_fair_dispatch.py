"""Fair dispatch on SQLite and PostgreSQL (pmops/service/fair.py through the Dispatcher, with a
fake orchestrator that only records the runs it is asked for): across projects the worker slots
go round robin, within a project by priority then age. A flood in project A (2,000 queued, even
Critical) delays project B's operation by at most one slot turn."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import insert, inspect
from sqlalchemy.engine import Engine

from pmops.contract.requests import PRIORITY_RANK
from pmops.service.dispatcher import Dispatcher
from pmops.service.fair import seconds_ahead
from pmops.service.orchestrator import OperationRunSpec, Orchestrator
from pmops.settings import Settings
from pmops.store.engine import make_engine, transaction, utc_now
from pmops.store.operations import update_operation
from pmops.store.tables import operations
from tests.store.helpers import operation_row, scope


class RecordingOrchestrator:
    """Creates a run id per operation and remembers the order (no runner ever takes them)."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        self.created.append(operation.operation_id)
        return str(uuid.uuid4())


def dispatcher(
    engine: Engine, worker_limit: int, standby_runs: int = 0
) -> tuple[Dispatcher, RecordingOrchestrator]:
    """A dispatcher over a recording orchestrator; no standby runs unless asked (these tests
    are about who gets the worker slots: tests/store/test_standby.py has the standby runs)."""
    fake = RecordingOrchestrator()
    settings = Settings(worker_limit=worker_limit, standby_runs=standby_runs)
    return Dispatcher(engine, settings, cast(Orchestrator, fake)), fake


def queue_many(
    engine: Engine, project: tuple[str, str], n: int, priority: str = "Normal", **values: Any
) -> list[str]:
    """n operations of one project, in one insert, each a millisecond younger than the last."""
    now = utc_now()
    rows = [
        operation_row(
            *project,
            priority=priority,
            priority_rank=PRIORITY_RANK[priority],
            created_at=now + timedelta(milliseconds=i),
            **values,
        )
        for i in range(n)
    ]
    with transaction(engine) as conn:
        conn.execute(insert(operations), rows)
    return [r["operation_id"] for r in rows]


def finish(engine: Engine, operation_id: str) -> None:
    """The run of this operation ends: its worker slot frees."""
    with transaction(engine) as conn:
        assert update_operation(conn, operation_id, {"status": "Completed", "ended_at": utc_now()})


def run_until(
    engine: Engine, d: Dispatcher, fake: RecordingOrchestrator, wanted: str, limit: int = 50
) -> list[str]:
    """Free the oldest slot and dispatch, until `wanted` got a run; the dispatch order."""
    d.dispatch_once()
    running = list(fake.created)
    while wanted not in fake.created:
        assert len(fake.created) < limit, "the operation never got a run"
        finish(engine, running.pop(0))
        before = len(fake.created)
        d.dispatch_once()
        running += fake.created[before:]
    return fake.created


def test_a_flood_of_critical_delays_another_project_by_one_slot_turn(engine: Engine) -> None:
    a, b = scope(), scope()
    d, fake = dispatcher(engine, worker_limit=2)
    flood = set(queue_many(engine, a, 2000, "Critical"))
    assert d.dispatch_once() == 2  # A takes both slots
    [b_op] = queue_many(engine, b, 1, "High")
    assert d.dispatch_once() == 0  # no slot free: B waits, no run created
    order = run_until(engine, d, fake, b_op)
    before_b = order[: order.index(b_op)]
    assert set(before_b) <= flood
    assert len(before_b) <= 2  # the two that held the slots when B queued
    assert order[-1] == b_op and len(order) == 3  # the first slot that freed went to B


def test_queued_together_both_projects_start_in_the_first_round(engine: Engine) -> None:
    a, b = scope(), scope()
    d, fake = dispatcher(engine, worker_limit=2)
    queue_many(engine, a, 2000, "Critical")
    [b_op] = queue_many(engine, b, 1, "Low")
    assert d.dispatch_once() == 2
    assert b_op in fake.created


def test_slots_go_round_robin_over_projects(engine: Engine) -> None:
    projects = [scope() for _ in range(3)]
    owner = {}
    for p in projects:
        for op in queue_many(engine, p, 5):
            owner[op] = p
    d, fake = dispatcher(engine, worker_limit=1)
    d.dispatch_once()
    for _ in range(8):
        finish(engine, fake.created[-1])
        d.dispatch_once()
    turns = [owner[op] for op in fake.created]
    assert len(turns) == 9
    for i in range(0, 9, 3):  # each round of three gives each project one slot
        assert set(turns[i : i + 3]) == set(projects)
    assert turns[:3] == turns[3:6] == turns[6:9]


def test_within_a_project_priority_then_age(engine: Engine) -> None:
    a = scope()
    d, fake = dispatcher(engine, worker_limit=1)
    low = queue_many(engine, a, 2, "Low")
    normal = queue_many(engine, a, 1, "Normal")
    critical = queue_many(engine, a, 1, "Critical")
    high = queue_many(engine, a, 2, "High")
    wanted = critical + high + normal + low
    run_until(engine, d, fake, low[-1])
    assert fake.created == wanted


def test_a_project_alone_fills_every_free_slot(engine: Engine) -> None:
    a = scope()
    d, fake = dispatcher(engine, worker_limit=3)
    ops = queue_many(engine, a, 10, "Normal")
    assert d.dispatch_once() == 3
    assert fake.created == ops[:3]
    assert d.dispatch_once() == 0
    finish(engine, ops[0])
    finish(engine, ops[2])
    assert d.dispatch_once() == 2
    assert fake.created == ops[:5]


def test_b_alone_never_waits_for_a_backlog(engine: Engine) -> None:
    """Each of B's operations takes the next slot that frees while A holds more slots."""
    a, b = scope(), scope()
    d, fake = dispatcher(engine, worker_limit=2)
    queue_many(engine, a, 500, "Critical")
    d.dispatch_once()
    a_running = list(fake.created)
    b_ops = queue_many(engine, b, 3, "Low")
    finish(engine, a_running[0])
    d.dispatch_once()
    assert fake.created[-1] == b_ops[0]  # A 1 slot, B 1: the next free one alternates
    finish(engine, b_ops[0])
    d.dispatch_once()
    assert fake.created[-1] == b_ops[1]  # B holds fewer (0 against 1)


def test_the_wait_estimate_counts_one_turn_per_other_project(engine: Engine) -> None:
    """A new High operation of B waits for B's own work of equal or higher priority and, from
    A's flood, for one operation per turn it waits (not for all 2,000 Critical ones)."""
    a, b = scope(), scope()
    queue_many(engine, a, 2000, "Critical", estimated_seconds=10.0)
    queue_many(engine, b, 2, "High", estimated_seconds=5.0)
    queue_many(engine, b, 1, "Low", estimated_seconds=7.0)
    with engine.connect() as conn:
        # B: two High ahead (10 s), so three turns: three of A's (30 s)
        assert seconds_ahead(conn, *b, PRIORITY_RANK["High"]) == 40.0
        # A: its own 2,000 Critical; B's three queued (17 s) all go in that many turns
        assert seconds_ahead(conn, *a, PRIORITY_RANK["Critical"]) == 20_000.0 + 17.0
        # a third project: one turn of each
        assert seconds_ahead(conn, *scope(), PRIORITY_RANK["Low"]) == 10.0 + 17.0 / 3


def test_a_store_made_before_gets_the_indexes(engine: Engine) -> None:
    """Upgrading a store made before migrations creates the fair dispatch's indexes it lacks."""
    names = ("ix_ops_project_queue", "ix_ops_active_runs", "ix_op_counts_status")
    with transaction(engine) as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql("DROP TABLE alembic_version")
    again = make_engine(engine.url.render_as_string(hide_password=False), upgrade=True)
    try:
        present = {
            ix["name"]
            for t in ("operations", "operation_counts")
            for ix in inspect(again).get_indexes(t)
        }
        assert set(names) <= present
    finally:
        again.dispose()
