"""DELETE /async/operation/{id} answers the operation's real outcome, in process: the flow run's
side (claim, finish) is driven through pmops.service.lifecycle on the app's own store, as a run
would. Cancelled when the cancel took; a 409 naming the final status when completion won; the
status and the events agree with the answer. (The race itself, repeated: tests/service.)"""

from __future__ import annotations

import threading
from typing import Any

from pmops.service.lifecycle import claim, finish
from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem


def running(served: Served, api: Client, dataset: dict[str, Any]) -> str:
    op_id = str(api.start(dataset["datasetId"], "to race")["operationId"])
    assert claim(served.engine, op_id, None, "host:1") is not None
    return op_id


def event_types(api: Client, op_id: str) -> list[str]:
    r = api.get(f"/async/operation/{op_id}/events")
    return [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]


def test_graceful_cancel_overtaken_by_completion_is_409(
    served: Served, api: Client, receipt_dataset: dict[str, Any]
) -> None:
    op_id = running(served, api, receipt_dataset)
    done = threading.Timer(0.2, finish, (served.engine, op_id, "Completed", {"summary": {}}))
    done.start()
    r = api.delete(f"/async/operation/{op_id}", json={"reason": "too late"})
    done.join()
    body = assert_problem(r, 409)
    assert body["operationStatus"] == "Completed" and "Completed" in body["detail"]
    assert api.status(op_id)["status"] == "Completed"
    kinds = event_types(api, op_id)
    assert "operation.completed" in kinds and "operation.cancelled" not in kinds


def test_cancel_that_takes_answers_cancelled(
    served: Served, api: Client, receipt_dataset: dict[str, Any]
) -> None:
    op_id = running(served, api, receipt_dataset)
    r = api.delete(f"/async/operation/{op_id}", json={"forceTermination": True})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Cancelled"
    assert not finish(served.engine, op_id, "Completed", {"summary": {}})
    assert api.status(op_id)["status"] == "Cancelled"
    kinds = event_types(api, op_id)
    assert "operation.cancelled" in kinds and "operation.completed" not in kinds
    body = assert_problem(api.delete(f"/async/operation/{op_id}"), 409)
    assert body["operationStatus"] == "Cancelled"
