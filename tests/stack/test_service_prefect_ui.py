"""The Prefect UI's Cancel on the real service: a running analysis whose flow run an operator
sets Cancelling in Prefect (the UI's request, with Prefect's auth string) ends Cancelled in the
API, its completed phases kept, its reason naming Prefect, one operation.cancelled event; never
the worker_lost failure its killed process would otherwise become."""

from __future__ import annotations

import pytest

from tests.service_stack import eventually, running_phase

pytestmark = pytest.mark.xdist_group("stack")

LOAD, DISCOVERY, ML = (
    "Data Loading and Validation",
    "Process Discovery",
    "Machine Learning Analysis",
)


def test_cancel_in_the_prefect_ui(api, stack, bpic_dataset) -> None:
    op = api.start(
        bpic_dataset["datasetId"],
        "cancelled in the UI",
        parameters={"analysisType": "comprehensive"},
    )
    op_id = op["operationId"]
    live = api.wait(op_id, running_phase(ML), deadline=90, every=0.1)
    run_id = live["prefect"]["flowRunId"]
    r = stack.prefect_api(
        "POST",
        f"/flow_runs/{run_id}/set_state",
        json={"state": {"type": "CANCELLING", "message": "an operator in the UI"}, "force": True},
    )
    assert r.status_code in (200, 201), r.text
    final = api.wait(op_id, deadline=60)
    assert final["status"] == "Cancelled", final
    doc = api.results(op_id, format="detailed").json()
    phases = {p["phaseName"]: p for p in doc["phaseResults"]}
    assert phases[LOAD]["status"] == phases[DISCOVERY]["status"] == "Completed"
    r = api.get(f"/async/operation/{op_id}/events")
    kinds = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert kinds.count("operation.cancelled") == 1 and "operation.failed" not in kinds
    assert eventually(lambda: stack.flow_run(run_id)["state_type"] == "CANCELLED", 60)
