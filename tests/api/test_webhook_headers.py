"""A webhook's extra headers are checked at registration by the rule the sender applies
(pmops.contract.headers): what the sender would refuse at every delivery is a 422 naming
`headers.<name>` now. A delivery that fails anyway (a webhook stored before the rule) records a
short, stable message and logs one line, without a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pmops.delivery import outbox
from pmops.delivery.deliverer import Deliverer
from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem

RECEIVER = "http://127.0.0.1:9/hdr"  # loopback is allowed on this app; nothing listens there

BAD = [
    ("X-Tab", "a\x0bb"),
    ("X-Del", "a\x7f"),
    ("X-Nul", "a\x00"),
    ("X-Crlf", "a\r\nX-Injected: 1"),
    ("X-Tab2", "a\tb"),
    ("TE", "trailers"),
    ("Keep-Alive", "timeout=5"),
    ("Upgrade", "h2c"),
    ("Connection", "close"),
    ("Transfer-Encoding", "chunked"),
    ("Host", "evil.example"),
    ("Content-Length", "1"),
    ("Proxy-Authorization", "Basic x"),
    ("Trailer", "X-A"),
    ("Webhook-Signature", "v1,forged"),
    ("X-Pmops-Event", "x"),
    ("Bad Name", "x"),
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[n for n, _ in BAD])
def test_bad_headers_are_refused_at_registration(served: Served, name: str, value: str) -> None:
    api = served.tenant()
    body = {
        "webhookUrl": RECEIVER,
        "webhookName": "headers",
        "events": ["operation.completed"],
        "headers": {"X-Fine": "ok", name: value},
    }
    problem = assert_problem(api.post("/async/webhooks", json=body), 422, f"headers.{name}")
    assert "Error" not in problem["detail"]
    assert api.get("/async/webhooks").json()["webhooks"] == []


def test_ordinary_headers_are_accepted(hooks: Client) -> None:
    headers = {"X-Source": "pmops", "Authorization": "Bearer abc", "X-Ünicode": "x"}
    body = {"webhookUrl": RECEIVER, "webhookName": "h", "events": ["operation.completed"]}
    r = hooks.post("/async/webhooks", json={**body, "headers": headers})
    assert_problem(r, 422, "headers.X-Ünicode")  # not a token: no sender could send it
    del headers["X-Ünicode"]
    r = hooks.post("/async/webhooks", json={**body, "headers": headers})
    assert r.status_code == 201, r.text


@pytest.fixture
def hooks(served: Served) -> Client:
    return served.tenant()


def due_with(headers: dict[str, str], target: str = RECEIVER) -> outbox.Due:
    return outbox.Due(
        delivery_id="dl-1",
        kind="webhook",
        target=target,
        endpoint_key="127.0.0.1:9",
        policy={},
        attempt_count=2,
        retry_base=0,
        attempts=[],
        webhook_id="wh-1",
        tenant_id="t",
        project_id="p",
        operation_id="op-1",
        event_type="operation.completed",
        message_id="msg_1",
        body="{}",
        headers=headers,
        secrets=["s"],
    )


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Keep-Alive": "5"}, "invalid header Keep-Alive: "),
        ({"X-A": "a\x0bb"}, "invalid header X-A: control character in the value"),
        ({}, "connection refused"),
    ],
)
def test_a_failed_attempt_is_one_short_line(
    served: Served, caplog: pytest.LogCaptureFixture, headers: dict[str, str], error: str
) -> None:
    deliverer = Deliverer(served.settings, served.engine)

    async def attempt() -> outbox.Outcome:
        deliverer.in_flight[due_with(headers).endpoint_key] += 1
        await deliverer._attempt(due_with(headers))
        await deliverer.sender.close()
        return deliverer.outcomes[-1]

    with caplog.at_level(logging.INFO, logger="pmops.delivery"):
        outcome = asyncio.run(attempt())
    assert not outcome.success and outcome.error is not None
    assert outcome.error.startswith(error), outcome.error
    assert "Error" not in outcome.error and len(outcome.error) < 120
    lines = [r for r in caplog.records if r.name.startswith("pmops.delivery")]
    assert len(lines) == 1 and lines[0].exc_info is None, lines
    assert "attempt 3" in lines[0].getMessage() and outcome.error in lines[0].getMessage()
