"""The API process dies while operations run: the supervisor restarts it and nothing is lost."""

from __future__ import annotations

import signal

import pytest

from tests.service_stack import eventually, running_phase

pytestmark = [pytest.mark.fault, pytest.mark.xdist_group("stack")]


def test_api_restart_with_an_operation_in_flight(stack, api, bpic_dataset, receipt_dataset) -> None:
    """SIGKILL the API while a bpic2012 analysis runs: the supervisor restarts it, the flow run
    goes on without it, progress never goes back, the operation completes and is listed, and the
    restarted API dispatches new work."""
    op = api.start(
        bpic_dataset["datasetId"], "survives the API", parameters={"analysisType": "quick"}
    )
    op_id = op["operationId"]
    api.wait(op_id, running_phase("Process Discovery"), deadline=90, every=0.1)
    old = stack.child("uvicorn")
    old.send_signal(signal.SIGKILL)
    old.wait(10)
    assert eventually(lambda: stack.healthy() and stack.child("uvicorn").pid != old.pid, 60), (
        f"the API did not come back\n{stack.logs()}"
    )
    # the flow run went on without the API; its status is all there
    seen: list[dict] = []
    final = api.wait(op_id, deadline=120, every=0.05, seen=seen)
    percentages = [s["progress"]["percentage"] for s in seen]
    assert percentages == sorted(percentages), percentages
    assert final["status"] == "Completed", final
    assert final["progress"]["percentage"] == 100
    assert api.results(op_id).json()["summary"]["recordsAnalyzed"] == 262200
    page = api.get("/async/operations", params={"pageSize": 100}).json()
    assert op_id in [o["operationId"] for o in page["operations"]]
    # and the restarted API dispatches new work
    nxt = api.start(
        receipt_dataset["datasetId"], "after restart", parameters={"analysisType": "quick"}
    )
    assert api.wait(nxt["operationId"], deadline=90)["status"] == "Completed"
