"""The API's own queue and the dispatcher against the orchestrator protocol, in process: what
starts next when a worker slot frees, what happens while the orchestrator is down, and a run that
ends without starting its operation. Each test has an app of its own (its settings differ).
The same on real Prefect: tests/stack/test_service_queue.py and test_service_durability.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pmops.service.orchestrator import RunStateType
from tests.api.conftest import Client, FakeOrchestrator, Served, served_app
from tests.service_stack import assert_problem


def eventually(check: Callable[[], Any], deadline: float = 20.0) -> Any:
    """check()'s first truthy value, asked every 50 ms (fails after `deadline` s)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, "the condition did not hold in time"
        time.sleep(0.05)


@pytest.fixture
def one_worker(tmp_path: Path, datasets: Path) -> Iterator[tuple[Served, Client, str]]:
    """An app with one worker slot, its dev-like tenant and the receipt log uploaded."""
    with served_app(tmp_path, worker_limit=1, standby_runs=0, max_upload_bytes=4_000_000) as served:
        api = served.tenant()
        yield served, api, api.upload(datasets / "receipt.xes.gz")["datasetId"]


def run_of(api: Client, operation_id: str) -> str | None:
    prefect = api.status(operation_id).get("prefect")
    return None if prefect is None else str(prefect["flowRunId"])


def test_priority_decides_what_starts_next(one_worker) -> None:
    served, api, ds = one_worker
    fake: FakeOrchestrator = served.orchestrator
    first = api.start(ds, "first")["operationId"]
    eventually(lambda: fake.created() == [first])
    low = api.start(ds, "low", priority="Low")["operationId"]
    time.sleep(0.05)  # created later: a Critical one still goes first
    critical = api.start(ds, "critical", priority="Critical")["operationId"]
    for op_id in (low, critical):  # no run is created before a worker slot is free
        s = api.status(op_id)
        assert s["status"] == "Initiated" and "prefect" not in s
    # the slot frees (the first is cancelled, its run with it): the Critical one goes next
    first_run = run_of(api, first)
    r = api.delete(f"/async/operation/{first}", json={"forceTermination": True})
    assert r.status_code == 200 and r.json()["status"] == "Cancelled", r.text
    assert (first_run, "request") in fake.called("cancel_run")
    eventually(lambda: fake.created() == [first, critical])
    assert run_of(api, critical) is not None and run_of(api, low) is None
    api.delete(f"/async/operation/{critical}", json={"forceTermination": True})
    eventually(lambda: fake.created() == [first, critical, low])
    assert run_of(api, low) is not None


def test_orchestrator_down_then_back(one_worker) -> None:
    """While the orchestrator is unavailable the API answers, /health says so, operations wait;
    once it is back they are dispatched."""
    served, api, ds = one_worker
    fake: FakeOrchestrator = served.orchestrator
    fake.up = False
    r = api.get("/health")
    assert r.status_code == 503 and r.json()["checks"]["prefect"] == "unavailable"
    op = api.start(ds, "waits for the orchestrator")["operationId"]
    eventually(lambda: fake.called("create_run"))  # tried, refused
    assert api.status(op)["status"] == "Initiated" and run_of(api, op) is None
    fake.up = True
    assert eventually(lambda: run_of(api, op)) in fake.runs
    assert api.get("/health").json()["checks"]["prefect"] == "ok"


def test_a_run_that_ends_unstarted_is_dispatched_once_more_then_failed(one_worker) -> None:
    served, api, ds = one_worker
    fake: FakeOrchestrator = served.orchestrator
    op = api.start(ds, "never started")["operationId"]
    first = eventually(lambda: run_of(api, op))
    fake.set_state(first, RunStateType.CRASHED, "its process could not reach the server")
    second = eventually(lambda: (run_of(api, op) or first) != first and run_of(api, op))
    assert [args[1] for args in fake.called("create_run")] == [1, 2]  # attempt 2: a new run
    assert api.status(op)["status"] == "Initiated"
    fake.set_state(second, RunStateType.CRASHED, "again")
    failed = api.wait(op)
    assert failed["status"] == "Failed" and failed["error"]["code"] == "run_not_started"
    assert "2 flow runs" in failed["error"]["message"]


def test_upload_over_the_limit_is_413(one_worker, datasets: Path) -> None:
    """PMOPS_MAX_UPLOAD_BYTES is 4 MB on this app; nothing of a refused upload stays."""
    served, api, _ = one_worker
    before = api.get("/datasets").json()["totalDatasets"]
    big = (datasets / "bpic2012.xes.gz").read_bytes() + b"\0" * 1_000_000
    r = api.post("/datasets", files={"file": ("big.xes.gz", big)})
    assert_problem(r, 413, "file")
    assert api.get("/datasets").json()["totalDatasets"] == before
    uploads = served.settings.data_dir / "datasets" / api.tenant
    assert len(list(uploads.iterdir())) == before


def test_the_dispatcher_looks_more_often_while_every_slot_is_held(one_worker) -> None:
    """A slot frees when a run writes its end to the store, which wakes nothing in the API: while
    every slot is held the dispatcher looks every FULL_SLOTS_POLL_SECONDS, else at its interval."""
    from pmops.service.dispatcher import FULL_SLOTS_POLL_SECONDS, Dispatcher

    served, api, ds = one_worker
    dispatcher: Dispatcher = served.app.state.dispatcher
    interval = served.settings.dispatch_interval_seconds
    assert interval > FULL_SLOTS_POLL_SECONDS
    assert dispatcher.next_wait() == interval  # nothing runs
    first = api.start(ds, "first")["operationId"]
    eventually(lambda: served.orchestrator.created() == [first])
    eventually(lambda: dispatcher.next_wait() == FULL_SLOTS_POLL_SECONDS)
    assert dispatcher.next_wait(failed=True) == interval  # a failing round backs off as before
    api.delete(f"/async/operation/{first}", json={"forceTermination": True})
    eventually(lambda: dispatcher.next_wait() == interval)
