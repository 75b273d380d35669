"""Two deliverers fanning out at once on one PostgreSQL store (issue #15): their progress-mark
upserts take the shared rows' locks in the same order, so neither deadlocks.

Found by bench/bench_cluster_delivery.py: the second deliverer's fan-out died with
DeadlockDetected in store.set_progress_marks (each transaction upserted the marks in its own
event order), and with it the deliverer process."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pmops.store.deliveries import read_progress_marks, set_progress_marks

A = ("wh-a", "op-1")
B = ("wh-b", "op-1")


def _waiting_for_a_lock(engine: Engine, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if n:
            return True
        time.sleep(0.05)
    return False


def test_opposite_orders_do_not_deadlock(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    errors: list[BaseException] = []
    with first.connect() as one:
        one.begin()
        set_progress_marks(one, {A: 10.0})  # the first transaction holds A

        def other() -> None:
            try:
                with second.begin() as two:
                    set_progress_marks(two, {B: 20.0, A: 20.0})  # B before A, as its events came
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        assert _waiting_for_a_lock(first)  # the other waits for A (holding B, without the fix)
        set_progress_marks(one, {B: 10.0})  # would close the cycle
        one.commit()
        thread.join(60)
    assert not thread.is_alive()
    assert errors == []
    with first.connect() as conn:
        assert read_progress_marks(conn, ["op-1"]) == {A: 20.0, B: 20.0}
