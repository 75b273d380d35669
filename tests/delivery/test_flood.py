"""Fair delivery under a webhook flood (issue #16): tenant A's hundreds of webhooks to receivers
that never answer cannot starve tenant B's deliveries, and a receiver that keeps timing out is
put behind its circuit breaker instead of spending slots.

The real deliverer (pmops.delivery.deliverer.Deliverer, its asyncio loop in a thread of this
process) on a real SQLite store; events written through pmops.service.events.emit as flow runs
write them; real receivers on loopback: B's answers at once (tests.receivers.HttpReceiver), A's
is a listening socket that never accepts nor answers. No timing asserts: the checks are about
what happened (B's deliveries all arrived while every one of A's attempts was still hanging),
and the latencies are recorded as observations (the figures: bench/bench_delivery_flood.py).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from pmops.delivery.deliverer import Deliverer
from pmops.service.events import emit
from pmops.settings import Settings
from pmops.store.engine import engine_for, transaction, utc_now
from pmops.store.tables import deliveries, operations, webhooks
from tests.receivers import HttpReceiver, always, wait_until

# generous: a loaded 2-core machine; below the flood's attempt timeout on purpose
DEADLINE = 45.0
POLICY = {"maxRetries": 5, "retryDelay": 0.1, "backoffMultiplier": 2.0, "maxDelay": 1.0}


@contextmanager
def never_answering() -> Iterator[str]:
    """A receiver that never answers: a listening socket nobody accepts from. Connections
    complete in the kernel's backlog and the requests are sent; no byte ever comes back."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def running(deliverer: Deliverer) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(deliverer.run(),))
    thread.start()
    try:
        yield
    finally:

        def stop() -> None:
            # the hanging attempts end now (their leases are handed back), so the drain does
            # not wait them out
            for task in list(deliverer.tasks):
                task.cancel()
            deliverer.stop()

        loop.call_soon_threadsafe(stop)
        thread.join(DEADLINE * 2)
        # a loop still running cannot be closed: say so rather than hide the first failure
        # behind asyncio's RuntimeError
        assert not thread.is_alive(), "the deliverer did not stop within its deadline"
        loop.close()


def add_webhook(engine: Engine, tenant: str, project: str, url: str) -> str:
    hook_id = f"wh-{uuid.uuid4()}"
    with transaction(engine) as conn:
        conn.execute(
            webhooks.insert().values(
                webhook_id=hook_id,
                tenant_id=tenant,
                project_id=project,
                url=url,
                name="flood",
                events=["operation.progress"],
                filters={},
                secret="flood-test-secret",
                retry_policy=POLICY,
                headers={},
                status="Active",
                created_at=utc_now(),
            )
        )
    return hook_id


def add_operation(engine: Engine, tenant: str, project: str) -> str:
    op_id = f"op-{uuid.uuid4()}"
    now = utc_now()
    with transaction(engine) as conn:
        conn.execute(
            operations.insert().values(
                operation_id=op_id,
                tenant_id=tenant,
                project_id=project,
                operation_type="ProcessMiningAnalysis",
                operation_name="flood",
                priority="Normal",
                priority_rank=1,
                status="Running",
                request={},
                created_at=now,
                started_at=now,
                timeout_at=now + timedelta(hours=1),
                percentage=0.0,
                processed_records=0,
                cancel_requested=False,
            )
        )
    return op_id


def progress(engine: Engine, op_id: str, pct: float) -> None:
    with transaction(engine) as conn:
        conn.execute(
            update(operations).where(operations.c.operation_id == op_id).values(percentage=pct)
        )
        emit(conn, op_id, "operation.progress")


def attempts_of(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            select(func.coalesce(func.sum(deliveries.c.attempt_count), 0)).where(
                deliveries.c.tenant_id == tenant
            )
        ).scalar_one()
    return int(found)


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, webhook_allow_networks="127.0.0.0/8", **values)


@pytest.mark.fault
def test_b_is_delivered_beside_a_flood_of_300_hanging_webhooks(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Tenant A: 6 projects x 50 webhooks (the per-project limit) to a receiver that never
    answers, 5 progress events each: 1,500 deliveries whose attempts hang (60 s timeout). Then
    tenant B writes 20 events one at a time for its one webhook. All of B's 20 arrive while not
    one of A's attempts has ended (none settled): A's projects hold only their share of the 256
    slots and B is leased first from the reserve."""
    settings = settings_for(tmp_path, delivery_timeout_seconds=60.0)
    engine = engine_for(settings.resolved_database_url)
    tenant_a, tenant_b, project_b = (str(uuid.uuid4()) for _ in range(3))
    receiver = HttpReceiver()
    receiver.answer("/b", always(200))
    deliverer = Deliverer(settings, engine)
    try:
        with never_answering() as hang, running(deliverer):
            ops_a = []
            for _ in range(6):
                project = str(uuid.uuid4())
                for i in range(50):
                    add_webhook(engine, tenant_a, project, f"{hang}/a/{i}")
                ops_a.append(add_operation(engine, tenant_a, project))
            for step in range(1, 6):
                for op_id in ops_a:
                    progress(engine, op_id, step * 10.0)
            # A's attempts fill their share of the slots (and hang there)
            wait_until(lambda: len(deliverer.tasks) >= 150, DEADLINE)
            flooding = len(deliverer.tasks)

            add_webhook(engine, tenant_b, project_b, receiver.url("/b"))
            op_b = add_operation(engine, tenant_b, project_b)
            written = []  # when each of B's events was committed (the receiver's clock)
            for i in range(20):
                progress(engine, op_b, float(i + 1))
                written.append(time.monotonic())
                time.sleep(0.05)
            wait_until(lambda: attempts_of(engine, tenant_b) >= 20, DEADLINE)
            arrived = receiver.at("/b")
            in_flight_a = sum(n for (t, _), n in deliverer.held.items() if t == tenant_a)
            assert attempts_of(engine, tenant_a) == 0  # every A attempt is still hanging
    finally:
        receiver.close()
    assert sorted(r.json()["sequence"] for r in arrived) == list(range(1, 21))
    late = sorted((r.at - written[r.json()["sequence"] - 1]) * 1000 for r in arrived)
    record_property("tried", 20)
    record_property(
        "observed",
        f"A: 300 hanging webhooks, {flooding} attempts in flight when B started "
        f"({in_flight_a} at the end, of {settings.delivery_concurrency} slots); B: 20/20 "
        f"delivered before any A attempt ended, event -> arrival p50 "
        f"{statistics.median(late):.0f} ms, max {late[-1]:.0f} ms",
    )


@pytest.mark.fault
def test_an_endpoint_that_keeps_timing_out_stops_spending_slots(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """3 webhooks to a receiver that never answers (0.5 s attempt timeout, one attempt at a
    time each, breaker after 2 timeouts in a row for 60 s), 10 events each: each webhook gets
    exactly 2 attempts, then its deliveries wait, due, untried and unleased, for as long as
    the breaker is open."""
    settings = settings_for(
        tmp_path,
        delivery_timeout_seconds=0.5,
        delivery_per_endpoint=1,
        delivery_breaker_timeouts=2,
        delivery_breaker_seconds=60.0,
    )
    engine = engine_for(settings.resolved_database_url)
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    deliverer = Deliverer(settings, engine)
    with never_answering() as hang, running(deliverer):
        hooks = [add_webhook(engine, tenant, project, f"{hang}/{i}") for i in range(3)]
        op_id = add_operation(engine, tenant, project)
        for step in range(1, 11):
            progress(engine, op_id, step * 5.0)
        wait_until(lambda: all(deliverer.breakers.is_open(h) for h in hooks), DEADLINE)
        wait_until(lambda: attempts_of(engine, tenant) >= 6, DEADLINE)  # settled in the store
        first = attempts_of(engine, tenant)
        time.sleep(3.0)  # six attempt timeouts' worth: an open breaker sends nothing
        later = attempts_of(engine, tenant)
        with engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.attempt_count, deliveries.c.lease_owner, deliveries.c.status)
            ).all()
        busy = len(deliverer.tasks)
    assert first == later == 6
    untried = [r for r in rows if r.attempt_count == 0]
    assert len(untried) == 24 and all(r.lease_owner is None for r in untried)
    assert {r.status for r in rows} == {"Pending", "Retrying"}
    assert busy == 0
    record_property("tried", 30)
    record_property(
        "observed",
        f"3 hanging webhooks: {later} attempts in all over 3 s with the breakers open "
        f"(2 each), {len(untried)} deliveries waiting untried, {busy} slots in use",
    )
