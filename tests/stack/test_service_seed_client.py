"""The seed's own Python client (`AsyncOperationManager`), taken verbatim from the seed file at
test time, works unchanged against the running service."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service_stack import TERMINAL

pytestmark = pytest.mark.xdist_group("stack")

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "async-operations-api.ja.txt"


def seed_client_class() -> type:
    text = SEED.read_text(encoding="utf-8")
    start = text.index("import requests")
    namespace: dict[str, object] = {}
    exec(compile(text[start:], str(SEED), "exec"), namespace)  # the seed's code, unchanged
    return namespace["AsyncOperationManager"]  # type: ignore[return-value]


def test_seed_client_runs_unchanged(stack, api, receipt_dataset) -> None:
    manager = seed_client_class()(stack.url, api.tenant, api.project, api.token)
    started = manager.start_operation(
        "ProcessMiningAnalysis", "seed client verbatim", {"datasetId": receipt_dataset["datasetId"]}
    )
    assert started["status"] == "Initiated" and started["operationId"].startswith("op-")
    assert started["webhooksRegistered"] == 3  # the seed client always sends three callbacks
    deadline = time.monotonic() + 120
    status = manager.get_operation_status(started["operationId"])
    while status["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = manager.get_operation_status(started["operationId"])
    assert status["status"] == "Completed", status
    listed = manager.list_operations(status="Completed", operation_type="ProcessMiningAnalysis")
    assert started["operationId"] in [o["operationId"] for o in listed["operations"]]
    again = manager.cancel_operation(started["operationId"])
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
