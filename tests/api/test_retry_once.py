"""One active retry per original: 20 concurrent retries of one Cancelled operation make exactly
one retry; the others are a 409 naming it. Once it has ended, the original can be retried again.
(The store's side on PostgreSQL too: tests/store/test_store_retries.py.)"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Client
from tests.service_stack import assert_problem


def cancelled(api: Client, dataset: dict[str, Any]) -> str:
    op_id = str(api.start(dataset["datasetId"], "to retry")["operationId"])
    r = api.delete(f"/async/operation/{op_id}")
    assert r.status_code == 200 and r.json()["status"] == "Cancelled", r.text
    return op_id


def test_twenty_concurrent_retries_make_one(api: Client, receipt_dataset: dict[str, Any]) -> None:
    original = cancelled(api, receipt_dataset)
    answers = api.concurrently(
        20, "POST", f"/async/operation/{original}/retry", json={"retryMode": "restart"}
    )
    made = [r for r in answers if r.status_code == 202]
    assert len(made) == 1, [r.status_code for r in answers]
    retry_id = made[0].json()["newOperationId"]
    assert made[0].json()["retryNumber"] == 1
    for r in answers:
        if r is made[0]:
            continue
        body = assert_problem(r, 409, "operationId")
        assert body["activeRetryId"] == retry_id and retry_id in body["detail"]
    listed = api.get("/async/operations", params={"pageSize": 100}).json()["operations"]
    assert sum(1 for o in listed if o["operationName"] == "to retry") == 2  # original + one retry

    # the retry ended: the original may be retried again
    assert api.delete(f"/async/operation/{retry_id}").status_code == 200
    again = api.post(f"/async/operation/{original}/retry", json={"retryMode": "restart"})
    assert again.status_code == 202, again.text
    assert again.json()["retryNumber"] == 2
