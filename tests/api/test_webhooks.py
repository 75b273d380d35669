"""Webhooks CRUD and the URL checks on webhooks and callbacks, in process (nothing is delivered:
delivery, signatures, retries and notifications are in tests/stack/test_service_webhooks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem

ALL_EVENTS = [
    "operation.started",
    "operation.progress",
    "operation.phase.completed",
    "operation.completed",
    "operation.failed",
    "operation.cancelled",
    "operation.timeout",
]
FAST_RETRIES = {"maxRetries": 8, "retryDelay": 0.2, "backoffMultiplier": 2.0, "maxDelay": 1.0}
RECEIVER = "http://127.0.0.1:9/reg"  # loopback is allowed on this app; nothing listens there


@pytest.fixture
def project(served: Served, datasets: Path) -> Client:
    """A fresh tenant and project with the receipt log uploaded."""
    tenant = served.tenant()
    tenant.dataset = tenant.upload(datasets / "receipt.xes.gz")["datasetId"]  # type: ignore[attr-defined]
    return tenant


@pytest.fixture(scope="module")
def hooks(served: Served) -> Client:
    """A tenant for the tests that need no dataset."""
    return served.tenant()


def register(api: Client, url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "webhookUrl": url,
        "webhookName": overrides.pop("name", "test hook"),
        "events": overrides.pop("events", ALL_EVENTS),
        "retryPolicy": overrides.pop("retryPolicy", FAST_RETRIES),
        **overrides,
    }
    r = api.post("/async/webhooks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_register_read_list_delete(served: Served, hooks: Client) -> None:
    secret = "your-webhook-secret-key"
    hook = register(
        hooks,
        RECEIVER,
        authentication={"type": "hmac-sha256", "secret": secret},
        headers={"X-Source": "mindzie-api"},
        filters={"operationTypes": ["ProcessMiningAnalysis"], "priorities": ["High"]},
    )
    assert hook["webhookId"].startswith("wh-") and hook["status"] == "Active"
    assert hook["eventsSubscribed"] == ALL_EVENTS
    assert hook["lastDelivery"] is None
    assert hook["deliveryStats"] == {
        "totalDeliveries": 0,
        "successfulDeliveries": 0,
        "failedDeliveries": 0,
        "averageResponseTime": None,
    }
    one = hooks.get(f"/async/webhooks/{hook['webhookId']}")
    listed = hooks.get("/async/webhooks")
    for r in (one, listed):
        assert r.status_code == 200 and secret not in r.text
    assert [h["webhookId"] for h in listed.json()["webhooks"]] == [hook["webhookId"]]
    other = served.tenant()
    for call in (other.get, other.delete):
        assert_problem(call(f"{hooks.base}/async/webhooks/{hook['webhookId']}"), 404)
    assert_problem(other.get(f"{other.base}/async/webhooks/{hook['webhookId']}/deliveries"), 404)
    assert other.get("/async/webhooks").json()["webhooks"] == []
    assert hooks.delete(f"/async/webhooks/{hook['webhookId']}").status_code == 204
    assert_problem(hooks.get(f"/async/webhooks/{hook['webhookId']}"), 404)


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://10.0.0.7/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://192.168.1.20:8080/x", "private"),
        ("http://100.64.0.1/x", "carrier-grade"),
        ("http://[::1]:8080/x", "loopback"),
        ("http://[::ffff:10.0.0.1]/x", "private"),
        ("http://224.0.0.1/x", "multicast"),
        ("ftp://example.com/x", "http"),
        ("http:///nohost", "host"),
    ],
)
def test_unsafe_webhook_urls_are_rejected(hooks: Client, url: str, words: str) -> None:
    r = hooks.post(
        "/async/webhooks", json={"webhookUrl": url, "webhookName": "x", "events": ALL_EVENTS}
    )
    problem = assert_problem(r, 422, "webhookUrl")
    assert words in problem["detail"].lower()


def test_unsafe_callbacks_are_rejected_and_unresolvable_hosts_accepted(project: Client) -> None:
    body = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "ssrf",
        "parameters": {"datasetId": project.dataset},  # type: ignore[attr-defined]
        "callbacks": {"onProgress": "http://169.254.169.254/x"},
    }
    assert_problem(project.post("/async/operation", json=body), 422, "callbacks.onProgress")
    # the seed's own examples: a host that does not resolve (here, a closed network) is taken
    hook = register(project, "https://your-app.com/webhooks/async-operations")
    assert hook["status"] == "Active"
    settings = project.post(
        "/async/webhooks",
        json={"webhookUrl": "http://127.0.0.1:1/x", "webhookName": "x", "events": ["nope"]},
    )
    assert_problem(settings, 422, "events.0")
