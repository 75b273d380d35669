"""Several deliverers on one PostgreSQL store (issue #15): two concurrent `lease_due` calls over
200 due deliveries never lease the same delivery twice, whether each knows the other is alive
or not (a deliverer that started after the other's last heartbeat read)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from pmops.delivery import outbox
from pmops.store.engine import transaction
from pmops.store.tables import deliveries, events
from tests.store.helpers import add_deliveries, add_event, delivery_row, scope

TRIALS = 20
DUE = 200


def _due_deliveries(engine: Engine, n: int) -> None:
    with transaction(engine) as conn:
        conn.execute(deliveries.delete())
        conn.exec_driver_sql("TRUNCATE deliverers")
    tenant, project = scope()
    add_event(engine, tenant, project, None, None, "webhook.disabled")
    with engine.connect() as conn:
        event_id = conn.execute(select(events.c.event_id)).scalars().first()
    assert event_id is not None
    # each on its own endpoint, so the per-endpoint room never limits a lease
    rows = [delivery_row(event_id, tenant, project, endpoint_key=f"e{i}") for i in range(n)]
    add_deliveries(engine, rows)


def _lease_together(
    engines: tuple[Engine, Engine], know_each_other: bool
) -> tuple[Counter[str], Counter[str]]:
    """Both deliverers lease at once (limit 100 each): how often each delivery was leased, how
    many each deliverer leased."""
    owners = ("first", "second")
    for engine, owner in zip(engines, owners, strict=True):
        outbox.heartbeat(engine, owner)
    taken: Counter[str] = Counter()
    per_owner: Counter[str] = Counter({owner: 0 for owner in owners})
    start = threading.Barrier(2)
    lock = threading.Lock()

    def lease(engine: Engine, owner: str) -> None:
        live = set(owners) if know_each_other else {owner}
        start.wait()
        due = outbox.lease_due(engine, owner, live, {}, 100, 100)
        with lock:
            taken.update(d.delivery_id for d in due)
            per_owner[owner] += len(due)

    threads = [
        threading.Thread(target=lease, args=(e, o)) for e, o in zip(engines, owners, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return taken, per_owner


@pytest.mark.parametrize("know_each_other", [True, False], ids=["live-known", "live-stale"])
def test_two_deliverers_never_lease_the_same_delivery(
    engines: tuple[Engine, Engine], know_each_other: bool
) -> None:
    doubles = leased = both = 0
    for _ in range(TRIALS):
        _due_deliveries(engines[0], DUE)
        taken, per_owner = _lease_together(engines, know_each_other)
        doubles += sum(1 for n in taken.values() if n > 1)
        leased += sum(taken.values())
        both += all(per_owner.values())
    print(
        f"\n{TRIALS} trials x {DUE} due, two deliverers leasing 100 each at once: {leased} "
        f"leases, {doubles} double leases, both leased something in {both} trials"
    )
    assert doubles == 0
    assert leased >= TRIALS * 100  # at least one of them leased its 100 each time


def test_a_deliverer_started_since_the_last_heartbeat_keeps_its_leases(
    engines: tuple[Engine, Engine],
) -> None:
    """`second` read the live deliverers before `first` started: its `live` lacks `first`,
    whose leases must hold all the same (the deliverers table says it is alive)."""
    _due_deliveries(engines[0], DUE)
    outbox.heartbeat(engines[1], "second")
    outbox.heartbeat(engines[0], "first")
    first = outbox.lease_due(engines[0], "first", {"first", "second"}, {}, 100, 100)
    second = outbox.lease_due(engines[1], "second", {"second"}, {}, 100, 100)
    assert len(first) == len(second) == 100
    assert not {d.delivery_id for d in first} & {d.delivery_id for d in second}
