"""`Critical` needs a token scope the operator grants (`pmops tokens create --max-priority`): a
start, a batch member or a retry asking for more than its token's max priority is a 403 naming
the field; tokens made without the grant may ask for up to High."""

from __future__ import annotations

from typing import Any

import pytest

from pmops.service.errors import Problem
from pmops.service.limits import check_priority
from pmops.service.scope import Principal, Scope
from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem


@pytest.fixture(scope="module")
def high(served: Served, api: Client) -> Client:
    """A token of tenant A's project made without a grant: at most High."""
    return served.tenant(api.tenant, api.project, max_priority="High")


def start_body(dataset_id: str, priority: str) -> dict[str, Any]:
    return {
        "operationType": "ProcessMiningAnalysis",
        "operationName": f"at {priority}",
        "parameters": {"datasetId": dataset_id},
        "priority": priority,
    }


def test_critical_start_needs_the_grant(
    high: Client, api: Client, receipt_dataset: dict[str, Any]
) -> None:
    ds = receipt_dataset["datasetId"]
    r = high.post("/async/operation", json=start_body(ds, "Critical"))
    body = assert_problem(r, 403, "priority")
    assert "High" in body["detail"] and "--max-priority" in body["detail"]
    for priority in ("Low", "Normal", "High"):
        ok = high.post("/async/operation", json=start_body(ds, priority))
        assert ok.status_code == 202, ok.text
    granted = api.post("/async/operation", json=start_body(ds, "Critical"))
    assert granted.status_code == 202, granted.text


def test_batch_member_above_the_max_is_refused(
    high: Client, receipt_dataset: dict[str, Any]
) -> None:
    ds = receipt_dataset["datasetId"]
    batch = {
        "batchName": "too urgent",
        "operations": [
            {**start_body(ds, "High"), "operationKey": "a"},
            {**start_body(ds, "Critical"), "operationKey": "b"},
        ],
    }
    assert_problem(high.post("/async/batch", json=batch), 403, "operations[1].priority")


def test_retry_above_the_max_is_refused(high: Client, receipt_dataset: dict[str, Any]) -> None:
    op_id = high.start(receipt_dataset["datasetId"], "to retry", priority="High")["operationId"]
    assert high.delete(f"/async/operation/{op_id}").json()["status"] == "Cancelled"
    body = {
        "retryMode": "restart",
        "updatedParameters": {"resourceAllocation": {"priority": "Critical"}},
    }
    r = high.post(f"/async/operation/{op_id}/retry", json=body)
    assert_problem(r, 403, "updatedParameters.resourceAllocation.priority")
    ok = high.post(f"/async/operation/{op_id}/retry", json={"retryMode": "restart"})
    assert ok.status_code == 202, ok.text


def test_a_critical_original_retried_by_a_high_token(
    api: Client, high: Client, receipt_dataset: dict[str, Any]
) -> None:
    """A retry keeps the original's priority: a token without the grant cannot retry it so."""
    op_id = api.start(receipt_dataset["datasetId"], "critical", priority="Critical")["operationId"]
    assert api.delete(f"/async/operation/{op_id}").json()["status"] == "Cancelled"
    r = high.post(f"/async/operation/{op_id}/retry", json={"retryMode": "restart"})
    assert_problem(r, 403, "priority")


def test_check_priority_defaults_to_high() -> None:
    scope = Scope("t", "p", Principal("t", "p", "someone"))
    check_priority(scope, "High")
    with pytest.raises(Problem) as caught:
        check_priority(scope, "Critical")
    assert caught.value.status == 403
    assert caught.value.errors == [{"field": "priority", "message": "at most High for this token"}]
