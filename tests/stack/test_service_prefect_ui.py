"""The Prefect UI's actions on the real service (runner, flow-run processes), made through
Prefect's API with its auth string as the UI makes them. Cancel: a running analysis whose flow run
is set Cancelling ends Cancelled in the API, its completed phases kept, one operation.cancelled
event, never the worker_lost failure its killed process would otherwise become. Retry: a failed
operation's ended run set back to Scheduled (AwaitingRetry) is started again by the runner and
becomes a pmops retry, named in the run's state message."""

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


def test_retry_in_the_prefect_ui(api, stack, receipt_dataset) -> None:
    """The UI's Retry of a failed operation's run: the runner starts the run again, and it
    becomes a pmops retry (a new operation in the chain), named in the run's state message."""
    params = {"analysisType": "standard", "faultInjection": {"failPhase": ML}}
    op = api.start(receipt_dataset["datasetId"], "fails, retried in the UI", parameters=params)
    op_id = op["operationId"]
    failed = api.wait(op_id)
    assert failed["status"] == "Failed", failed
    run_id = failed["prefect"]["flowRunId"]
    assert eventually(lambda: stack.flow_run(run_id)["state_type"] == "FAILED", 60)
    r = stack.prefect_api(
        "POST",
        f"/flow_runs/{run_id}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True},
    )
    assert r.status_code in (200, 201), r.text
    assert eventually(lambda: stack.flow_run(run_id)["state_type"] == "COMPLETED", 90)
    message = stack.flow_run(run_id)["state"]["message"]
    assert message.startswith("retried in pmops as operation "), message
    retried = api.status(op_id)["retries"]
    assert len(retried) == 1 and retried[0] in message
    again = api.wait(retried[0], deadline=120)
    assert again["retryOf"]["originalOperationId"] == op_id
    assert again["status"] == "Failed"  # the same request: the same injected fault
