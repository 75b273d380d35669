"""The queue when workers are busy (PMOPS_WORKER_LIMIT=1, one standby run): the operation that
would get the next slot has its flow run started ahead, which waits Running in Prefect while the
operation stays Queued and executes nothing; a queued operation is cancelled before it ever
runs; a Critical one overtakes a Low one queued before it, standby or not. The same queue against
the fake orchestrator, and the upload limit, are tested in process (tests/api/test_queue.py,
tests/store/test_standby.py)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.service_stack import TERMINAL, eventually, running_phase, running_stack

pytestmark = pytest.mark.xdist_group("stack-aux")  # a stack of its own


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path, datasets: Path):
    with running_stack(
        tmp_path_factory.mktemp("stack-limit-1"),
        prefect_template,
        worker_limit=1,
    ) as stack:
        api = stack.dev()
        yield (
            stack,
            api,
            api.upload(datasets / "bpic2012.xes.gz"),
            api.upload(datasets / "receipt.xes.gz"),
        )
        api.close()


def flow_runs_of(stack, operation_id: str) -> list[dict]:
    return stack.flow_runs_of(operation_id)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_queued_cancel_and_priority(busy) -> None:
    stack, api, bpic, receipt = busy
    long = api.start(bpic["datasetId"], "long", parameters={"analysisType": "comprehensive"})
    api.wait(long["operationId"], running_phase("Data Loading and Validation"), deadline=90)

    queued = api.start(receipt["datasetId"], "queued then cancelled", priority="High")
    # it would get the next slot: its flow run is started ahead and stands by, Running in
    # Prefect, while the operation stays Queued (Initiated) and executes nothing
    standing = eventually(
        lambda: (
            [r["state_type"] for r in flow_runs_of(stack, queued["operationId"])] == ["RUNNING"]
        ),
        deadline=90,
    )
    assert standing, flow_runs_of(stack, queued["operationId"])
    low = api.start(
        receipt["datasetId"], "low", priority="Low", parameters={"analysisType": "quick"}
    )
    time.sleep(0.05)
    critical = api.start(
        receipt["datasetId"], "critical", priority="Critical", parameters={"analysisType": "quick"}
    )
    # all three wait while the one worker is busy; their estimates include the wait
    for op in (queued, low, critical):
        s = api.status(op["operationId"])
        assert s["status"] == "Initiated" and s["progress"]["startTime"] is None
        assert op["estimatedCompletion"] > long["estimatedCompletion"]
    assert api.status(queued["operationId"])["execution"]["workerNode"] is None
    for op in (low, critical):  # one standby run only: these wait in the API's queue
        assert "prefect" not in api.status(op["operationId"]), "no flow run beyond the standby"

    r = api.delete(f"/async/operation/{queued['operationId']}", json={"reason": "not needed"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "Cancelled" and body["progressAtCancellation"] == 0
    assert body["partialResults"]["completedPhases"] == 0
    assert body["partialResults"]["completedPhaseNames"] == []
    assert body["partialResults"]["available"] is False

    # the worker frees up (stopping the long one saves time): the Critical one goes next
    r = api.delete(f"/async/operation/{long['operationId']}", json={"forceTermination": True})
    assert r.status_code == 200, r.text

    # at most one operation runs at a time, until all are done
    deadline = time.monotonic() + 180
    ids = [long["operationId"], low["operationId"], critical["operationId"]]
    while True:
        page = api.get("/async/operations", params={"pageSize": 100}).json()
        assert page["summary"]["running"] <= 1, page["summary"]
        if all(o["status"] in TERMINAL for o in page["operations"] if o["operationId"] in ids):
            break
        assert time.monotonic() < deadline, page
        time.sleep(0.3)
    assert api.status(long["operationId"])["status"] == "Cancelled"
    for op_id in ids[1:]:
        assert api.status(op_id)["status"] == "Completed"

    # the Critical one started first, and the Low one only after it had finished. Started: the
    # operation's own start, when its process claimed it. Prefect's start times of the runs do
    # not order them: granted the freed slot, Critical's standby run may still be on its way to
    # Running when Low's, created as the next standby run, gets there first and waits
    crit, lo = api.status(critical["operationId"]), api.status(low["operationId"])
    assert when(crit["progress"]["startTime"]) < when(lo["progress"]["startTime"])
    assert when(lo["progress"]["startTime"]) >= when(crit["phases"][-1]["endTime"])

    # the cancelled one never ran: no worker, no start; its standby run ended without it
    gone = api.status(queued["operationId"])
    assert gone["status"] == "Cancelled"
    assert gone["progress"]["startTime"] is None and gone["execution"]["workerNode"] is None
    assert [r["state_type"] for r in flow_runs_of(stack, queued["operationId"])] == ["CANCELLED"]
    assert gone["phases"] and all(p["status"] == "Pending" for p in gone["phases"])
    results = api.results(queued["operationId"]).json()
    assert results["status"] == "Cancelled" and results["success"] is False


def test_stopping_leaves_no_process_behind(busy) -> None:
    """A run in flight when the service stops: `pmops up` stops all of its processes."""
    stack, api, bpic, _ = busy
    op = api.start(bpic["datasetId"], "in flight at stop")
    api.wait(op["operationId"], lambda s: s["status"] == "Running", deadline=90, every=0.1)
    tree = stack.descendants()
    assert len(tree) >= 4  # server, runner, API, the flow run
    stack.stop()
    assert stack.leftovers == []
