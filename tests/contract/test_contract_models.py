"""The contract's response models against the seed's own examples, and the JSON they write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from api.routes.answers import typed
from pmops.contract import responses as r
from pmops.sdk import models as sdk_models

SEED: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "api" / "seed_examples.json").read_text()
)

# each answer example of the seed, and the model of that answer
ANSWERS: dict[str, type[BaseModel]] = {
    "start_response": r.OperationStarted,
    "status_response": r.OperationStatusView,
    "list_response": r.OperationList,
    "cancel_response": r.Cancellation,
    "results_response": r.Results,
    "webhook_response": r.Webhook,
    "retry_response": r.RetryStarted,
    "batch_response": r.BatchStarted,
}


@pytest.mark.parametrize("example", sorted(ANSWERS))
def test_the_seeds_answer_validates_and_comes_back_as_it_was(example: str) -> None:
    """Key by key, types included: 67 stays 67 (not 67.0), nothing is added or dropped."""
    model = ANSWERS[example]
    parsed = model.model_validate(SEED[example])
    assert json.loads(parsed.model_dump_json(exclude_unset=True)) == SEED[example]
    again = json.loads(parsed.model_dump_json(exclude_unset=True))
    assert _types(again) == _types(SEED[example])


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_the_status_and_list_examples_are_typed_not_just_accepted() -> None:
    status = r.OperationStatusView.model_validate(SEED["status_response"])
    assert status.status == "Running" and not status.finished
    assert status.execution is not None and status.execution.resourceUsage is not None
    assert status.execution.resourceUsage.cpuUsage == 78
    assert [p.status for p in status.phases] == ["Completed", "Completed", "Running", "Pending"]
    assert status.phases[2].modelsTraining == 3
    listing = r.OperationList.model_validate(SEED["list_response"])
    assert listing.summary.totalOperations == 47 and listing.hasNextPage
    assert [item.operationType for item in listing.operations] == [
        "ProcessMiningAnalysis",
        "DataEnrichment",
    ]


def test_integral_numbers_are_json_integers() -> None:
    """memoryGB: 2, minProgressIncrement: 10, retryDelay: 60; a fraction stays a fraction."""
    view = {
        "operationId": "op-1",
        "operationType": "ProcessMiningAnalysis",
        "operationName": "n",
        "status": "Initiated",
        "trackingUrl": "/x",
        "resourcesAllocated": {"cpuUnits": 2.0, "memoryGB": 2.0, "estimatedCost": "$0.01"},
    }
    answer = typed(r.OperationStarted, view, 202)
    body = json.loads(bytes(answer.body))
    assert body["resourcesAllocated"] == {"cpuUnits": 2, "memoryGB": 2, "estimatedCost": "$0.01"}
    assert isinstance(body["resourcesAllocated"]["memoryGB"], int)
    assert answer.status_code == 202 and answer.media_type == "application/json"
    hook = r.Webhook.model_validate(
        {
            "webhookId": "wh-1",
            "webhookUrl": "https://example.com",
            "webhookName": "w",
            "status": "Active",
            "filters": {"minProgressIncrement": 10.0},
            "retryPolicy": {"retryDelay": 60.0, "backoffMultiplier": 1.5},
        }
    )
    dumped = json.loads(hook.model_dump_json(exclude_unset=True))
    assert dumped["filters"] == {"minProgressIncrement": 10}
    assert dumped["retryPolicy"] == {"retryDelay": 60, "backoffMultiplier": 1.5}


def test_a_view_keeps_its_own_fields_and_leaves_out_what_it_did_not_send() -> None:
    view = {
        "operationId": "op-1",
        "status": "Cancelled",
        "partialResults": {"available": True, "completedPhaseNames": ["Process Discovery"]},
        "somethingNew": {"kept": True},
    }
    body = json.loads(bytes(typed(r.Cancellation, view).body))
    assert body == view


def test_progress_saved_is_a_number() -> None:
    saved = r.PreservedResults.model_validate({"progressSaved": "45%"})
    assert json.loads(saved.model_dump_json(exclude_unset=True)) == {"progressSaved": 45}


def test_the_sdk_parses_with_the_contracts_classes() -> None:
    assert sdk_models.OperationStatusView is r.OperationStatusView
    assert sdk_models.OperationStatus is r.OperationStatusView  # the SDK's older name
    assert sdk_models.Results is r.Results


def test_every_field_of_every_contract_model_is_described() -> None:
    from pmops.contract import requests

    models = [
        m
        for module in (requests, r)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
    ]
    assert len(models) > 40
    undescribed = [
        f"{m.__name__}.{name}"
        for m in models
        for name, field in m.model_fields.items()
        if not field.description
    ]
    assert undescribed == []
