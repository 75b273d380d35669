"""Security over HTTP in process: SSRF in every URL field. No run is needed, so it runs against
the app with a fake orchestrator (tests/api/conftest.py); the rest of the security suite needs
real runs and stays on the stack (tests/stack/test_security.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Client, served_app

pytestmark = pytest.mark.security

RECEIVER_HOST = "127.0.0.77"


@pytest.fixture(scope="module")
def a(tmp_path_factory: pytest.TempPathFactory, datasets: Path) -> Iterator[Client]:
    """A tenant with a dataset, on an app that allows deliveries to 127.0.0.77/32 only."""
    with served_app(
        tmp_path_factory.mktemp("security"), webhook_allow_networks=f"{RECEIVER_HOST}/32"
    ) as served:
        client = served.tenant()
        client.upload(datasets / "running-example.xes")
        yield client


SSRF_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://127.0.0.2/",
    "http://127.255.255.254/",
    "http://0.0.0.0/",
    "http://0/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://localhost:4200/api/flow_runs",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://100.64.0.1/",
    "http://100.100.100.200/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://127.000.000.001/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://2852039166/",
    "http://evil@127.0.0.1/",
    "http://user:pass@127.0.0.1/",
    "http://example.com@127.0.0.1/",
    "http://127.0.0.1#@example.com/",
    "http://127.0.0.1\t/",
    "http://[::1]:80/",
    "HTTP://127.0.0.1/",
    "http:/127.0.0.1/",
    "http:\\\\127.0.0.1\\",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/_HELO",
    "dict://127.0.0.1:11211/stat",
    "ftp://127.0.0.1/",
    "ldap://127.0.0.1/",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "//127.0.0.1/",
    "127.0.0.1",
]


def test_ssrf_urls_refused(a: Client, record_property: Any) -> None:
    """Loopback in every spelling, private, link-local and metadata, CGNAT, IPv6 loopback/ULA/
    link-local, IPv4-mapped, IPv4-compatible, 6to4 and NAT64 embeddings, decimal/octal/hex IPv4,
    userinfo tricks and non-http schemes, as a webhook URL, each callbacks URL of a start
    request, each batch callback and a batch operation's callbacks, and the Slack URL: all 422
    naming the field; nothing registered or started. (127.0.0.77/32 is allowed on this app,
    so every loopback address above is refused by the rules, not by chance.)"""
    dataset = a.get("/datasets").json()["datasets"][0]["datasetId"]
    ops_before = a.get("/async/operations").json()["summary"]["totalOperations"]
    hooks_before = a.get("/async/webhooks").json()
    tried, wrong = 0, []

    def check(r: httpx.Response, field: str, url: str) -> None:
        nonlocal tried
        tried += 1
        fields = [e.get("field") for e in (r.json().get("errors") or [])] if r.content else []
        # the batch names an operation's field operations[0].x, pydantic's errors operations.0.x
        fields += [re.sub(r"\[(\d+)\]", r".\1", f) for f in fields if f]
        if r.status_code != 422 or field not in fields:
            wrong.append(f"{field}={url!r}: {r.status_code} {fields} {r.text[:200]}")

    start = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "ssrf",
        "parameters": {"datasetId": dataset},
    }
    for url in SSRF_URLS:
        r = a.post(
            "/async/webhooks",
            json={"webhookUrl": url, "webhookName": "ssrf", "events": ["operation.completed"]},
        )
        check(r, "webhookUrl", url)
        for cb in ("onProgress", "onCompletion", "onError"):
            r = a.post("/async/operation", json={**start, "callbacks": {cb: url}})
            check(r, f"callbacks.{cb}", url)
        for cb in ("onBatchStart", "onOperationComplete", "onBatchComplete"):
            batch = {
                "batchName": "ssrf",
                "operations": [{**start, "operationKey": "k"}],
                "batchCallbacks": {cb: url},
            }
            r = a.post("/async/batch", json=batch)
            check(r, f"batchCallbacks.{cb}", url)
        batch = {
            "batchName": "ssrf",
            "operations": [{**start, "operationKey": "k", "callbacks": {"onError": url}}],
        }
        check(a.post("/async/batch", json=batch), "operations.0.callbacks.onError", url)
        r = a.request("PUT", "/async/notification-settings", json={"slackWebhookUrl": url})
        check(r, "slackWebhookUrl", url)
    record_property("tried", tried)
    record_property("observed", f"{tried} URL fields tried, {len(wrong)} not refused")
    assert not wrong, "\n".join(wrong)
    assert a.get("/async/operations").json()["summary"]["totalOperations"] == ops_before
    assert a.get("/async/webhooks").json() == hooks_before
