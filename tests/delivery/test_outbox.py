"""The outbox in the store, on SQLite and PostgreSQL: events, fan-out, leases, retries, disabling.

These drive pmops.delivery.outbox directly on a real store (no HTTP): what the deliverer does
between its
attempts. The service tests (test_service_webhooks.py) cover the same paths end to end.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from pmops.delivery import outbox
from pmops.service.events import emit
from pmops.settings import Settings
from pmops.store.tables import (
    deliverers,
    deliveries,
    events,
    make_engine,
    operations,
    transaction,
    utc_now,
    webhooks,
)

POLICY = {"maxRetries": 2, "retryDelay": 1.0, "backoffMultiplier": 2.0, "maxDelay": 3.0}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Engine:
    if request.param == "sqlite":
        return make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    engine = make_engine(request.getfixturevalue("pg_url"))
    with transaction(engine) as conn:  # the database lives for the module: start empty
        conn.exec_driver_sql("TRUNCATE deliveries, events, webhooks, deliverers, progress_marks")
    return engine


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        webhook_disable_after_failures=3,
        webhook_disable_after_seconds=0,
        smtp_host=None,
    )


def scope() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def add_operation(engine: Engine, tenant: str, project: str, **request: Any) -> str:
    op_id = f"op-{uuid.uuid4()}"
    now = utc_now()
    with transaction(engine) as conn:
        conn.execute(
            operations.insert().values(
                operation_id=op_id,
                tenant_id=tenant,
                project_id=project,
                operation_type="ProcessMiningAnalysis",
                operation_name="outbox test",
                priority="Normal",
                priority_rank=1,
                status="Initiated",
                request=request,
                created_at=now,
                timeout_at=now + timedelta(hours=1),
                percentage=0.0,
                processed_records=0,
                cancel_requested=False,
            )
        )
    return op_id


def add_webhook(engine: Engine, tenant: str, project: str, **values: Any) -> str:
    hook_id = f"wh-{uuid.uuid4()}"
    row = {
        "webhook_id": hook_id,
        "tenant_id": tenant,
        "project_id": project,
        "url": "https://receiver.example/hook",
        "name": "t",
        "events": ["operation.started", "operation.progress", "operation.completed"],
        "filters": {},
        "secret": None,
        "retry_policy": POLICY,
        "headers": {},
        "status": "Active",
        "created_at": utc_now(),
    }
    row.update(values)
    with transaction(engine) as conn:
        conn.execute(webhooks.insert().values(**row))
    return hook_id


def move(engine: Engine, op_id: str, event: str, **values: Any) -> None:
    with transaction(engine) as conn:
        conn.execute(update(operations).where(operations.c.operation_id == op_id).values(**values))
        emit(conn, op_id, event)


def rows(engine: Engine, *where: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(select(deliveries).where(*where).order_by(deliveries.c.created_at))
        return [dict(r) for r in found.mappings()]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    policy = {"retryDelay": 60, "backoffMultiplier": 2.0, "maxDelay": 3600}
    for retry, base in enumerate([60, 120, 240, 480, 960, 1920]):
        delay = outbox.backoff_seconds(policy, retry, rng)
        assert 0.9 * base <= delay <= 1.1 * base
    assert outbox.backoff_seconds(policy, 10, rng) <= 3600


def test_events_are_numbered_per_operation_and_fanned_out_once(
    engine: Engine, settings: Settings
) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    hook = add_webhook(engine, tenant, project)
    move(engine, op_id, "operation.started", status="Running")
    for pct in (10.0, 20.0):
        move(engine, op_id, "operation.progress", percentage=pct)
    with engine.connect() as conn:
        seqs = conn.execute(
            select(events.c.seq).where(events.c.operation_id == op_id).order_by(events.c.seq)
        ).scalars()
        assert list(seqs) == [1, 2, 3]
    assert outbox.fan_out(engine, settings) >= 3
    assert outbox.fan_out(engine, settings) == 0
    made = rows(engine, deliveries.c.webhook_id == hook)
    assert [d["event_type"] for d in made] == [
        "operation.started",
        "operation.progress",
        "operation.progress",
    ]


def test_filters_and_min_progress_increment(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    stepped = add_webhook(engine, tenant, project, filters={"minProgressIncrement": 25})
    other_type = add_webhook(
        engine, tenant, project, filters={"operationTypes": ["DataEnrichment"]}
    )
    high = add_webhook(engine, tenant, project, filters={"priorities": ["High"]})
    for pct in (5.0, 20.0, 26.0, 40.0, 51.0, 52.0, 90.0):
        move(engine, op_id, "operation.progress", percentage=pct)
    outbox.fan_out(engine, settings)
    with engine.connect() as conn:
        pcts = conn.execute(
            select(events.c.percentage)
            .join(deliveries, deliveries.c.event_id == events.c.event_id)
            .where(deliveries.c.webhook_id == stepped)
            .order_by(events.c.seq)
        ).scalars()
        assert list(pcts) == [26.0, 51.0, 90.0]
    assert rows(engine, deliveries.c.webhook_id.in_([other_type, high])) == []


def test_retries_then_dead_letter_then_redeliver(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    add_webhook(engine, tenant, project, events=["operation.started"])
    move(engine, op_id, "operation.started", status="Running")
    outbox.fan_out(engine, settings)
    owner = "test-owner"
    outbox.heartbeat(engine, owner)
    for attempt in range(1, 4):
        (due,) = outbox.lease_due(engine, owner, {owner}, {}, 8, 10)
        outbox.settle(engine, settings, owner, [outbox.Outcome(due, utc_now(), False, 500)])
        (row,) = rows(engine, deliveries.c.operation_id == op_id)
        assert row["attempt_count"] == attempt
        if attempt < 3:
            assert row["status"] == "Retrying"
            wait = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
            assert 0.9 * 2 ** (attempt - 1) <= wait <= 1.1 * 2 ** (attempt - 1)
            with transaction(engine) as conn:  # the retry is due now
                conn.execute(update(deliveries).values(next_attempt_at=utc_now()))
    assert row["status"] == "Failed" and row["next_attempt_at"] is None
    with transaction(engine) as conn:
        outbox.redeliver(conn, row["delivery_id"])
    (due,) = outbox.lease_due(engine, owner, {owner}, {}, 8, 10)
    outbox.settle(engine, settings, owner, [outbox.Outcome(due, utc_now(), True, 204)])
    (row,) = rows(engine, deliveries.c.operation_id == op_id)
    assert row["status"] == "Delivered" and row["attempt_count"] == 4
    assert [a["statusCode"] for a in row["attempts"]] == [500, 500, 500, 204]


def test_retry_after_is_a_lower_bound(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    add_webhook(engine, tenant, project, events=["operation.started"])
    move(engine, op_id, "operation.started", status="Running")
    outbox.fan_out(engine, settings)
    (due,) = outbox.lease_due(engine, "o", {"o"}, {}, 8, 10)
    outcome = outbox.Outcome(due, utc_now(), False, 503, retry_after=120)
    outbox.settle(engine, settings, "o", [outcome])
    (row,) = rows(engine, deliveries.c.operation_id == op_id)
    assert (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds() >= 120


def test_leases_of_a_dead_deliverer_are_taken_over(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    add_webhook(engine, tenant, project, events=["operation.started"])
    move(engine, op_id, "operation.started", status="Running")
    outbox.fan_out(engine, settings)
    outbox.heartbeat(engine, "first")
    assert len(outbox.lease_due(engine, "first", {"first"}, {}, 8, 10)) == 1
    # while "first" is alive its lease holds
    assert outbox.lease_due(engine, "second", {"first", "second"}, {}, 8, 10) == []
    # once its heartbeat is gone, the next deliverer takes the delivery
    with transaction(engine) as conn:
        conn.execute(update(deliverers).values(heartbeat_at=utc_now() - timedelta(minutes=1)))
    (taken,) = outbox.lease_due(engine, "second", {"second"}, {}, 8, 10)
    assert taken.message_id.startswith("msg_")


def test_per_endpoint_room_is_respected(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    slow = add_webhook(engine, tenant, project, events=["operation.progress"])
    fast = add_webhook(engine, tenant, project, events=["operation.progress"])
    op_id = add_operation(engine, tenant, project)
    for pct in range(1, 21):
        move(engine, op_id, "operation.progress", percentage=float(pct))
    outbox.fan_out(engine, settings)
    leased = outbox.lease_due(engine, "o", {"o"}, {slow: 0}, 4, 100)
    assert {d.webhook_id for d in leased} == {fast} and len(leased) == 4


def test_gone_and_repeated_failures_disable(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    gone = add_webhook(engine, tenant, project, events=["operation.progress"])
    failing = add_webhook(
        engine,
        tenant,
        project,
        events=["operation.progress"],
        retry_policy={**POLICY, "maxRetries": 0},
    )
    op_id = add_operation(engine, tenant, project)
    for pct in range(1, 6):
        move(engine, op_id, "operation.progress", percentage=float(pct))
    outbox.fan_out(engine, settings)
    due = outbox.lease_due(engine, "o", {"o"}, {}, 8, 100)
    first_gone = next(d for d in due if d.webhook_id == gone)
    failures = [d for d in due if d.webhook_id == failing]
    outcomes = [outbox.Outcome(first_gone, utc_now(), False, 410)]
    outcomes += [outbox.Outcome(d, utc_now(), False, 500) for d in failures]
    outbox.settle(engine, settings, "o", outcomes)
    with engine.connect() as conn:
        states = dict(conn.execute(select(webhooks.c.webhook_id, webhooks.c.status)).all())
        reasons = dict(
            conn.execute(select(webhooks.c.webhook_id, webhooks.c.disabled_reason)).all()
        )
        notices = conn.execute(
            select(events.c.event_type).where(
                events.c.tenant_id == tenant, events.c.operation_id.is_(None)
            )
        ).scalars()
        assert list(notices) == ["webhook.disabled", "webhook.disabled"]
    assert states[gone] == states[failing] == "Disabled"
    assert "410" in (reasons[gone] or "")
    assert "delivery attempts in a row failed" in (reasons[failing] or "")
    # nothing is left waiting for a disabled webhook
    waiting = rows(engine, deliveries.c.status.in_(outbox.OPEN), deliveries.c.webhook_id == gone)
    assert waiting == []


def test_purge_keeps_what_is_open_and_drops_what_is_old(engine: Engine, settings: Settings) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    add_webhook(engine, tenant, project, events=["operation.progress"])
    for pct in (10.0, 20.0):
        move(engine, op_id, "operation.progress", percentage=pct)
    outbox.fan_out(engine, settings)
    (first, second) = outbox.lease_due(engine, "o", {"o"}, {}, 8, 10)
    outbox.settle(engine, settings, "o", [outbox.Outcome(first, utc_now(), True, 200)])
    old = utc_now() - timedelta(days=settings.event_retention_days + 1)
    with transaction(engine) as conn:
        conn.execute(update(events).values(created_at=old))
        conn.execute(update(deliveries).values(created_at=old))
        conn.execute(update(operations).values(status="Completed"))
    assert outbox.purge(engine, settings) == 1  # the delivered event; the open one stays
    left = rows(engine, deliveries.c.operation_id == op_id)
    assert [d["delivery_id"] for d in left] == [second.delivery_id]


def _flood(engine: Engine, settings: Settings, tenant: str, projects: int, hooks: int) -> None:
    """`projects` projects of `tenant`, each with `hooks` webhooks and 5 progress events."""
    for _ in range(projects):
        project = str(uuid.uuid4())
        for _ in range(hooks):
            add_webhook(engine, tenant, project, events=["operation.progress"])
        op_id = add_operation(engine, tenant, project)
        for pct in range(1, 6):
            move(engine, op_id, "operation.progress", percentage=float(pct * 10))
    outbox.fan_out(engine, settings)


def test_an_old_backlog_of_one_tenant_does_not_hide_another_tenants_deliveries(
    engine: Engine, settings: Settings
) -> None:
    """Tenant A's 3 projects hold 150 due deliveries, all older than B's 2; a lease of 8 still
    takes B's first (round-robin across projects), and each project gets its turn."""
    _flood(engine, settings, str(uuid.uuid4()), projects=3, hooks=10)
    tenant_b, project_b = scope()
    hook_b = add_webhook(engine, tenant_b, project_b, events=["operation.progress"])
    op_b = add_operation(engine, tenant_b, project_b)
    move(engine, op_b, "operation.progress", percentage=50.0)
    move(engine, op_b, "operation.progress", percentage=90.0)
    outbox.fan_out(engine, settings)
    assert len(rows(engine, deliveries.c.status == "Pending")) == 152

    leased = outbox.lease_due(engine, "o", {"o"}, {}, 8, 8)
    assert len(leased) == 8
    assert [d.webhook_id for d in leased].count(hook_b) == 2
    projects = Counter(d.project_id for d in leased)
    assert len(projects) == 4 and max(projects.values()) == 2  # two rounds over 4 projects
    # B's two come in the order they were made (one endpoint, one operation)
    assert [d.event()["sequence"] for d in leased if d.webhook_id == hook_b] == [1, 2]


def test_a_project_holds_at_most_its_share_and_the_reserve_waits_for_a_quiet_tenant(
    engine: Engine, settings: Settings
) -> None:
    """With 40 slots and a reserve of 8, one project with work may hold 32. Then a second
    project of the same (busy) tenant and a project of a quiet tenant come due: only the quiet
    tenant's delivery gets a reserved slot."""
    tenant_a = str(uuid.uuid4())
    _flood(engine, settings, tenant_a, projects=1, hooks=20)
    slots = outbox.Slots(free=40, per_endpoint=8, capacity=40, reserve=8)
    first = outbox.lease_due(engine, "o", {"o"}, {}, 8, 40, slots)
    assert len(first) == 32  # (40 - 8) / 1 project
    (project_a,) = {d.project_id for d in first}

    _flood(engine, settings, tenant_a, projects=1, hooks=5)  # A's second project
    tenant_b, project_b = scope()
    add_webhook(engine, tenant_b, project_b, events=["operation.progress"])
    op_b = add_operation(engine, tenant_b, project_b)
    move(engine, op_b, "operation.progress", percentage=50.0)
    outbox.fan_out(engine, settings)
    held = {(tenant_a, project_a): 32}
    slots = outbox.Slots(free=8, per_endpoint=8, held=held, capacity=40, reserve=8)
    second = outbox.lease_due(engine, "o", {"o"}, {}, 8, 8, slots)
    assert [(d.tenant_id, d.project_id) for d in second] == [(tenant_b, project_b)]
    # once A's attempts end, its second project gets its share like any other
    slots = outbox.Slots(free=39, per_endpoint=8, held={(tenant_b, project_b): 1}, capacity=40)
    third = outbox.lease_due(engine, "o", {"o"}, {}, 8, 39, slots)
    assert len({d.project_id for d in third} - {project_a}) == 1


def test_blocked_endpoints_are_not_leased_and_keep_their_attempts(
    engine: Engine, settings: Settings
) -> None:
    """An endpoint with no room (its breaker open) is skipped: its deliveries stay due and
    untried, and the other endpoints' are leased as usual."""
    tenant, project = scope()
    tripped = add_webhook(engine, tenant, project, events=["operation.progress"])
    other = add_webhook(engine, tenant, project, events=["operation.progress"])
    op_id = add_operation(engine, tenant, project)
    for pct in (10.0, 20.0, 30.0):
        move(engine, op_id, "operation.progress", percentage=pct)
    outbox.fan_out(engine, settings)
    slots = outbox.Slots(free=10, per_endpoint=8, room={tripped: 0}, capacity=10)
    leased = outbox.lease_due(engine, "o", {"o"}, slots.room, 8, 10, slots)
    assert {d.webhook_id for d in leased} == {other} and len(leased) == 3
    waiting = rows(engine, deliveries.c.webhook_id == tripped)
    assert [(r["status"], r["attempt_count"], r["lease_owner"]) for r in waiting] == [
        ("Pending", 0, None)
    ] * 3


def test_due_projects_are_found_by_their_oldest_due_delivery(
    engine: Engine, settings: Settings
) -> None:
    """store.list_due_projects: the projects with due deliveries, the longest waiting first;
    one whose deliveries are all finished or all due later is not listed."""
    from pmops.store.deliveries import list_due_projects

    made = []
    for _ in range(4):
        tenant, project = scope()
        add_webhook(engine, tenant, project, events=["operation.progress"])
        op_id = add_operation(engine, tenant, project)
        move(engine, op_id, "operation.progress", percentage=50.0)
        made.append((tenant, project))
    outbox.fan_out(engine, settings)
    now = utc_now()
    due_at = {made[0]: -5, made[1]: -60, made[2]: 3600}  # made[3]: finished
    with transaction(engine) as conn:
        for (tenant, project), seconds in due_at.items():
            conn.execute(
                update(deliveries)
                .where(deliveries.c.tenant_id == tenant, deliveries.c.project_id == project)
                .values(next_attempt_at=now + timedelta(seconds=seconds))
            )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.tenant_id == made[3][0])
            .values(status="Delivered", next_attempt_at=None)
        )
    with transaction(engine) as conn:
        listed = [p for p in list_due_projects(conn, utc_now()) if p in made]
    assert listed == [made[1], made[0]]
