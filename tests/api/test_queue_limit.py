"""Queued operations per project (PMOPS_QUEUED_OPERATIONS_PER_PROJECT): a start, a batch (all
its operations) or a retry that would pass it is 429 naming `operations`, with Retry-After;
another project's queue is its own; a cancelled operation frees its place."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pmops.service.retries import run_due_retries
from pmops.store.engine import transaction, utc_now
from pmops.store.retries import has_retry_schedule, insert_retry_schedule, list_due_retries
from tests.api.conftest import Served, served_app
from tests.service_stack import assert_problem

LIMIT = 4


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(
        tmp_path_factory.mktemp("queuelimit"), queued_operations_per_project=LIMIT
    ) as s:
        yield s


def member(dataset_id: str, key: str) -> dict[str, Any]:
    return {
        "operationKey": key,
        "operationType": "ProcessMiningAnalysis",
        "operationName": key,
        "parameters": {"datasetId": dataset_id},
    }


def test_queue_limit_per_project(limited: Served, datasets: Path) -> None:
    a = limited.tenant()
    ds = a.upload(datasets / "receipt.xes.gz")["datasetId"]
    ids = [a.start(ds, f"op {i}")["operationId"] for i in range(LIMIT - 1)]

    # a batch of two would pass the limit by one: refused whole
    batch = {"batchName": "two", "operations": [member(ds, "x"), member(ds, "y")]}
    r = a.post("/async/batch", json=batch)
    body = assert_problem(r, 429, "operations")
    assert body["limit"] == "PMOPS_QUEUED_OPERATIONS_PER_PROJECT"
    assert body["queuedOperations"] == LIMIT - 1 and body["maxQueuedOperations"] == LIMIT
    assert int(r.headers["Retry-After"]) >= 1

    ids.append(a.start(ds, "the last place")["operationId"])
    r = a.post("/async/operation", json=start_body(ds))
    assert_problem(r, 429, "operations")
    assert int(r.headers["Retry-After"]) >= 1
    listed = a.get("/async/operations").json()["summary"]["totalOperations"]
    assert listed == LIMIT  # nothing of the refused ones was recorded

    # another project of the same tenant has a queue of its own
    other = limited.tenant(a.tenant)
    ds_other = other.upload(datasets / "receipt.xes.gz")["datasetId"]
    other.start(ds_other, "elsewhere")

    # a cancelled operation leaves the queue; its retry needs a place again
    assert a.delete(f"/async/operation/{ids[0]}").json()["status"] == "Cancelled"
    retry = a.post(f"/async/operation/{ids[0]}/retry", json={"retryMode": "restart"})
    assert retry.status_code == 202, retry.text
    assert a.delete(f"/async/operation/{ids[1]}").status_code == 200
    one = a.post("/async/batch", json={"batchName": "one", "operations": [member(ds, "z")]})
    assert one.status_code == 202, one.text
    assert_problem(a.post("/async/operation", json=start_body(ds)), 429, "operations")


def start_body(dataset_id: str) -> dict[str, Any]:
    return {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "one too many",
        "parameters": {"datasetId": dataset_id},
    }


def test_an_automatic_retry_waits_while_the_queue_is_full(limited: Served, datasets: Path) -> None:
    """Its schedule is postponed by Retry-After, not forgotten, and not in other projects' way."""
    a = limited.tenant()
    ds = a.upload(datasets / "receipt.xes.gz")["datasetId"]
    original = a.start(ds, "original")["operationId"]
    assert a.delete(f"/async/operation/{original}").json()["status"] == "Cancelled"
    for i in range(LIMIT):
        a.start(ds, f"filler {i}")
    with transaction(limited.engine) as conn:
        insert_retry_schedule(conn, original, utc_now() - timedelta(seconds=1))
    assert run_due_retries(limited.engine, limited.settings) == 0
    with limited.engine.connect() as conn:
        assert has_retry_schedule(conn, original)
        assert list_due_retries(conn, utc_now(), 50) == []  # postponed
