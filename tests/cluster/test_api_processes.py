"""Two API apps (the real lifespan: dispatcher, leader election, event feed) on one PostgreSQL
store, each with its own fake orchestrator: one of them dispatches, within the worker limit
across both; when it stops the other takes over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from pmops.service.events import emit
from pmops.store.engine import transaction, utc_now
from pmops.store.operations import update_operation
from pmops.store.queue import Project
from tests.api.conftest import Served, served_app
from tests.store.helpers import scope
from tests.store.test_fair_dispatch import queue_many

LIMIT = 2
STANDBY = 1  # runs started ahead of a slot (PMOPS_STANDBY_RUNS): created too, by the leader
RUNS = LIMIT + STANDBY


def _until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _created(apps: list[Served]) -> list[str]:
    return [op for app in apps for op in app.orchestrator.created()]


def _follower_streams(leader: Served, follower: Served, project: Project, op_id: str) -> None:
    """A stream opened on the follower gets the events written through the leader."""
    client = follower.tenant(*project)
    answer: list[httpx.Response] = []
    reading = threading.Thread(
        target=lambda: answer.append(client.get(f"/async/operation/{op_id}/events"))
    )
    reading.start()
    assert _until(lambda: follower.app.state.feed.streams == 1)
    with transaction(leader.engine) as conn:
        update_operation(conn, op_id, {"status": "Running", "started_at": utc_now()})
        emit(conn, op_id, "operation.started")
    with transaction(leader.engine) as conn:
        update_operation(conn, op_id, {"status": "Completed", "ended_at": utc_now()})
        emit(conn, op_id, "operation.completed")
    reading.join(30)
    (r,) = answer
    kinds = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert kinds[-2:] == ["operation.started", "operation.completed"]


def test_one_app_dispatches_and_the_other_takes_over(cluster_url: str, tmp_path: Path) -> None:
    stacks = {name: ExitStack() for name in ("a", "b")}
    with stacks["a"], stacks["b"]:
        apps = [
            stack.enter_context(
                served_app(
                    tmp_path / name,
                    database_url=cluster_url,
                    worker_limit=LIMIT,
                    standby_runs=STANDBY,
                )
            )
            for name, stack in stacks.items()
        ]
        project = scope()
        queued = queue_many(apps[0].engine, project, 10)
        assert _until(lambda: len(_created(apps)) == RUNS)
        time.sleep(1.0)  # both dispatchers go round many times: still the limit, one dispatcher
        assert len(_created(apps)) == RUNS
        leaders = [app for app in apps if app.orchestrator.created()]
        assert len(leaders) == 1
        (leader,) = leaders
        (follower,) = [app for app in apps if app is not leader]
        assert leader.app.state.dispatcher.leading and not follower.app.state.dispatcher.leading
        _follower_streams(leader, follower, project, leader.orchestrator.created()[0])
        # the leader's process stops; the runs it created end, freeing both slots (and the standby)
        stacks["a" if leader is apps[0] else "b"].close()
        clock = time.monotonic()
        assert _until(lambda: follower.app.state.dispatcher.leading)
        print(f"\nthe other API app leads after {time.monotonic() - clock:.2f} s")
        with transaction(follower.engine) as conn:
            for op_id in leader.orchestrator.created():
                update_operation(conn, op_id, {"status": "Completed", "ended_at": utc_now()})
        assert _until(lambda: len(follower.orchestrator.created()) == RUNS), (
            follower.orchestrator.created()
        )
        time.sleep(0.5)
        assert len(follower.orchestrator.created()) == RUNS
        assert set(leader.orchestrator.created() + follower.orchestrator.created()) <= set(queued)
