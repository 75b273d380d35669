"""Retry (endpoint 7) and automatic retries against the real service.

A failure is injected in the ML phase (`parameters.faultInjection`, allowed on the test stack by
PMOPS_FAULT_INJECTION). A resume retry restores loading and discovery from the original's
checkpoints: their results are identical and marked `preservedFrom`; a restart recomputes all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.service_stack import Tenant, assert_problem

pytestmark = pytest.mark.xdist_group("stack")

ML = "Machine Learning Analysis"
FAIL_IN_ML = {"analysisType": "standard", "faultInjection": {"failPhase": ML}}


def failed_in_ml(api: Tenant, dataset: str, **body: Any) -> dict[str, Any]:
    op = api.start(dataset, "fails in ML", parameters=FAIL_IN_ML, **body)
    final = api.wait(op["operationId"])
    assert final["status"] == "Failed", final
    assert final["error"]["code"] == "injected_fault"
    assert [p["status"] for p in final["phases"]] == ["Completed", "Completed", "Failed", "Pending"]
    return final


def retry(api: Tenant, op_id: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"/async/operation/{op_id}/retry", json=body)
    assert r.status_code == 202, r.text
    assert r.headers["Location"].endswith(r.json()["newOperationId"])
    return dict(r.json())


def test_resume_reuses_the_completed_phases(api: Tenant, receipt_dataset: dict) -> None:
    original = failed_in_ml(api, receipt_dataset["datasetId"])
    answer = retry(
        api,
        original["operationId"],
        retryMode="resume",
        retryReason="fixed the ML input",
        modifyParameters=True,
        updatedParameters={"faultInjection": None},
    )
    assert answer["originalOperationId"] == original["operationId"]
    assert answer["retryNumber"] == 1 and answer["status"] == "Initiated"
    assert answer["resumeFromPhase"] == ML
    preserved = answer["preservedResults"]
    assert preserved["phasesPreserved"] == 2
    assert preserved["recordsProcessed"] == original["execution"]["totalRecords"] > 0
    assert preserved["progressSaved"] == 50  # a number, as the seed: load 0.15 + discovery 0.35
    final = api.wait(answer["newOperationId"])
    assert final["status"] == "Completed", final
    assert final["retryOf"]["originalOperationId"] == original["operationId"]
    assert final["retryOf"]["preservedPhases"] == [
        "Data Loading and Validation",
        "Process Discovery",
    ]
    new_doc = api.results(answer["newOperationId"], format="detailed").json()
    old_doc = api.results(original["operationId"], format="detailed").json()
    old_phases = {p["phaseName"]: p for p in old_doc["phaseResults"]}
    for phase in new_doc["phaseResults"][:2]:
        assert phase["preservedFrom"] == original["operationId"]
        # the same outputs, not recomputed: even the original's start and end times
        assert phase["results"] == old_phases[phase["phaseName"]]["results"]
        assert phase["startTime"] == old_phases[phase["phaseName"]]["startTime"]
    for phase in new_doc["phaseResults"][2:]:
        assert "preservedFrom" not in phase and phase["status"] == "Completed"
    # the original is left as it was, and points at its retry
    again = api.status(original["operationId"])
    assert again["status"] == "Failed" and again["retries"] == [answer["newOperationId"]]
    assert again["phases"] == original["phases"]


def test_restart_recomputes_everything(api: Tenant, receipt_dataset: dict) -> None:
    original = failed_in_ml(api, receipt_dataset["datasetId"])
    answer = retry(
        api,
        original["operationId"],
        retryMode="restart",
        updatedParameters={"faultInjection": None},
    )
    assert answer["resumeFromPhase"] == "Data Loading and Validation"
    assert answer["preservedResults"]["phasesPreserved"] == 0
    final = api.wait(answer["newOperationId"])
    assert final["status"] == "Completed"
    doc = api.results(answer["newOperationId"], format="detailed").json()
    assert all("preservedFrom" not in p for p in doc["phaseResults"])


def test_changed_parameters_recompute_from_where_they_matter(
    api: Tenant, receipt_dataset: dict
) -> None:
    original = failed_in_ml(api, receipt_dataset["datasetId"])
    answer = retry(
        api,
        original["operationId"],
        updatedParameters={"faultInjection": None, "algorithm": "heuristics"},
    )
    assert answer["resumeFromPhase"] == "Process Discovery"
    assert answer["preservedResults"]["preservedPhaseNames"] == ["Data Loading and Validation"]
    final = api.wait(answer["newOperationId"])
    assert final["status"] == "Completed"


def test_retry_is_refused_where_it_makes_no_sense(
    api: Tenant, stack: Any, completed_analysis: dict
) -> None:
    op_id = completed_analysis["operationId"]
    assert_problem(api.post(f"/async/operation/{op_id}/retry", json={}), 409)
    assert_problem(api.post("/async/operation/op-nope/retry", json={}), 404)
    other = stack.create_token()
    try:
        assert_problem(other.post(f"{api.base}/async/operation/{op_id}/retry", json={}), 404)
    finally:
        other.close()
    assert_problem(
        api.post(f"/async/operation/{op_id}/retry", json={"retryMode": "sideways"}),
        422,
        "retryMode",
    )


def test_automatic_retries_follow_the_policy(api: Tenant, receipt_dataset: dict) -> None:
    policy = {"maxRetries": 2, "retryDelay": 1, "backoffMultiplier": 2}
    first = failed_in_ml(api, receipt_dataset["datasetId"], retryPolicy=policy)
    chain = [first]
    for number in (1, 2):
        later = api.wait(
            chain[-1]["operationId"], until=lambda s: bool(s.get("retries")), deadline=60
        )
        (next_id,) = later["retries"]
        final = api.wait(next_id)
        assert final["status"] == "Failed"  # the fault is in the parameters it inherits
        assert final["retryOf"]["retryNumber"] == number and final["retryOf"]["automatic"]
        assert final["retryOf"]["preservedPhases"] == [
            "Data Loading and Validation",
            "Process Discovery",
        ]
        chain.append(final)
    # no third retry: maxRetries is 2
    assert api.status(chain[-1]["operationId"])["retries"] == []
    created = [datetime.fromisoformat(s["dateCreated"].replace("Z", "+00:00")) for s in chain]
    ended = [
        datetime.fromisoformat(s["progress"]["estimatedCompletion"].replace("Z", "+00:00"))
        for s in chain
    ]
    # each retry waited retryDelay x backoffMultiplier^n after the failure before it (1 s, 2 s)
    assert (created[1] - ended[0]).total_seconds() >= 1 - 1
    assert (created[2] - ended[1]).total_seconds() >= 2 - 1


SEED_ALLOCATION = {"cpuUnits": 6, "memoryGB": 12, "priority": "Critical"}


def stop(api: Tenant, op_id: str) -> dict[str, Any] | None:
    """Cancel at once; the cancel answer, or None if it had already ended."""
    r = api.delete(f"/async/operation/{op_id}", json={"forceTermination": True})
    if r.status_code == 409:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_retries_are_numbered_per_lineage_and_get_their_resources(
    api: Tenant, receipt_dataset: dict
) -> None:
    original = failed_in_ml(api, receipt_dataset["datasetId"])
    op_id = original["operationId"]
    bodies = [
        {"retryMode": "restart", "updatedParameters": {"resourceAllocation": SEED_ALLOCATION}},
        {"retryMode": "restart"},
        {"retryMode": "restart"},
    ]
    # three retries of one original, one after the other (one retry of an original is active at
    # a time: tests/api/test_retry_once.py races them): each gets its own number in the lineage
    answers = []
    for n, body in enumerate(bodies):
        answer = retry(api, op_id, **body)
        answers.append(answer)
        if n == 0:
            shown = api.status(answer["newOperationId"])
            assert shown["priority"] == "Critical"
            assert shown["retryOf"]["resourceAllocation"] == {"cpuUnits": 6, "memoryGB": 12}
        released = stop(api, answer["newOperationId"])
        if n == 0 and released is not None:
            assert released["resourcesReleased"]["cpuUnits"] == 6
            assert released["resourcesReleased"]["memoryGB"] == 12
        api.wait(answer["newOperationId"])
    assert [a["retryNumber"] for a in answers] == [1, 2, 3]
    allocated, plain = answers[0], answers[1]
    assert allocated["resourcesAllocated"]["cpuUnits"] == 6
    assert allocated["resourcesAllocated"]["memoryGB"] == 12
    assert plain["resourcesAllocated"]["cpuUnits"] != 6
    # the same estimated time on six CPUs and 12 GB costs more
    assert cost(allocated) > cost(plain)
    assert isinstance(allocated["preservedResults"]["progressSaved"], int)
    # a retry of a retry is the lineage's next, and keeps the allocation it had
    again = retry(api, allocated["newOperationId"], retryMode="restart")
    assert again["retryNumber"] == 4
    assert again["resourcesAllocated"]["cpuUnits"] == 6
    assert api.status(again["newOperationId"])["retryOf"]["lineage"] == op_id
    stop(api, again["newOperationId"])
    # a bad allocation is a 422 naming it, not silently dropped
    bad = {"updatedParameters": {"resourceAllocation": {"cpuUnits": 0, "memoryGB": "lots"}}}
    problem = assert_problem(api.post(f"/async/operation/{op_id}/retry", json=bad), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {
        "updatedParameters.resourceAllocation.cpuUnits",
        "updatedParameters.resourceAllocation.memoryGB",
    }


def cost(answer: dict[str, Any]) -> float:
    return float(answer["resourcesAllocated"]["estimatedCost"].lstrip("$"))
