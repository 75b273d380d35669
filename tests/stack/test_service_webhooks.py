"""Webhooks, callbacks, email and Slack against the real service and real receivers on loopback.

Signatures are checked with the `standardwebhooks` package (an independent implementation) and
X-Signature-256 with hashlib. Each test works in a project of its own, so webhooks registered by
one test never hear another's operations. Registration and the URL checks are tested in
process: tests/api/test_webhooks.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import sys
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
import pytest
from standardwebhooks import Webhook

from tests.receivers import HttpReceiver, MailReceiver, always, wait_until
from tests.service_stack import REPO, Tenant, assert_problem, running_phase, running_stack

pytestmark = pytest.mark.xdist_group("stack-hooks")

FAST_RETRIES = {"maxRetries": 8, "retryDelay": 0.2, "backoffMultiplier": 2.0, "maxDelay": 1.0}
ALL_EVENTS = [
    "operation.started",
    "operation.progress",
    "operation.phase.completed",
    "operation.completed",
    "operation.failed",
    "operation.cancelled",
    "operation.timeout",
]
DISABLE_AFTER = 25


@pytest.fixture(scope="module")
def http() -> Any:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def mail() -> Any:
    receiver = MailReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def hook_stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path, mail: Any):
    with running_stack(
        tmp_path_factory.mktemp("hooks"),
        prefect_template,
        webhook_allow_networks="127.0.0.0/8",
        smtp_host="127.0.0.1",
        smtp_port=mail.port,
        smtp_security="none",
        smtp_sender="pmops@test.local",
        callback_retry_delay=0.2,
        callback_max_delay=1,
        webhook_disable_after_failures=DISABLE_AFTER,
        webhook_disable_after_seconds=0,
        public_url="https://pmops.example",
        worker_limit=3,
    ) as s:
        yield s


@pytest.fixture
def project(hook_stack: Any, datasets: Path) -> Any:
    """A fresh tenant and project with the receipt log uploaded."""
    tenant = hook_stack.create_token()
    tenant.dataset = tenant.upload(datasets / "receipt.xes.gz")["datasetId"]
    yield tenant
    tenant.close()


def register(api: Tenant, url: str, **overrides: Any) -> dict[str, Any]:
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


def run(api: Tenant, **body: Any) -> dict[str, Any]:
    op = api.start(api.dataset, body.pop("name", "hooked analysis"), **body)  # type: ignore[attr-defined]
    final = api.wait(op["operationId"])
    return {"start": op, "final": final, "id": op["operationId"]}


def deliveries(api: Tenant, path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = api.get(path, params={"page": page, "pageSize": 100})
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["deliveries"]
        if not body["hasNextPage"]:
            return out
        page += 1


def settled(api: Tenant, path: str) -> list[dict[str, Any]]:
    """The deliveries at path once none of them is waiting any more."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        found[:] = deliveries(api, path)
        return bool(found) and all(d["status"] not in ("Pending", "Retrying") for d in found)

    assert wait_until(done, 60), found
    return found


def verify(request: Any, secret: str | bytes) -> dict[str, Any]:
    """Standard Webhooks verification by the standardwebhooks package, and X-Signature-256."""
    event = Webhook(secret).verify(request.body, request.headers)
    # Webhook() takes raw key bytes, or a "whsec_<base64>" string as our generated secrets are
    raw = secret if isinstance(secret, bytes) else base64.b64decode(secret.removeprefix("whsec_"))
    expected = "sha256=" + hmac.new(raw, request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-signature-256"] == expected
    return dict(event)


def of_operation(received: dict[str, dict[str, Any]], op_id: str) -> list[dict[str, Any]]:
    return sorted(
        (e for e in received.values() if e.get("operationId") == op_id),
        key=lambda e: e["sequence"],
    )


# -- registration -------------------------------------------------------------------------------
# -- events and signatures -----------------------------------------------------------------------
def test_events_are_signed_complete_and_counted(project: Tenant, http: HttpReceiver) -> None:
    secret = "your-webhook-secret-key"
    hook = register(
        project,
        http.url("/all"),
        authentication={"type": "hmac-sha256", "secret": secret},
        headers={"X-Source": "mindzie-api", "X-Environment": "test"},
    )
    r = project.get("/async/signing-secret")
    assert r.status_code == 200
    project_secret = r.json()["secret"]
    assert project_secret.startswith("whsec_")
    assert_problem(project.get("/async/signing-secret"), 409)
    callbacks = {k: http.url(f"/cb/{project.project}/{k}") for k in ("onProgress", "onCompletion")}
    callbacks["onError"] = http.url(f"/cb/{project.project}/onError")
    done = run(project, callbacks=callbacks)
    op_id = done["id"]
    assert done["final"]["status"] == "Completed"
    assert done["start"]["webhooksRegistered"] == 3 + 1  # callbacks + the matching webhook

    events = wait_until(
        lambda: (
            (e := of_operation(http.events("/all"), op_id))
            and e[-1]["type"] == "operation.completed"
            and e
        )
    )
    types = [e["type"] for e in events]
    assert types[0] == "operation.started" and types[-1] == "operation.completed"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    phases = [e["phaseName"] for e in events if e["type"] == "operation.phase.completed"]
    assert phases == [p["phaseName"] for p in done["final"]["phases"]]
    progress = [
        e["data"]["progress"]["percentage"] for e in events if e["type"].endswith("progress")
    ]
    assert progress == sorted(progress) and len(set(progress)) == len(progress) and progress
    assert events[-1]["data"]["status"] == "Completed"
    assert events[-1]["data"]["operationId"] == op_id
    for request in http.at("/all"):
        event = verify(request, secret.encode())
        assert request.headers["webhook-id"] == event["id"]
        assert request.headers["x-source"] == "mindzie-api"
        assert request.headers["x-environment"] == "test"

    on_progress = wait_until(lambda: http.at(f"/cb/{project.project}/onProgress"))
    completion = wait_until(lambda: http.at(f"/cb/{project.project}/onCompletion"))
    for request in [*on_progress, *completion]:
        verify(request, project_secret)
    assert {r.json()["type"] for r in completion} == {"operation.completed"}
    assert http.at(f"/cb/{project.project}/onError") == []
    progress_kinds = {r.json()["type"] for r in on_progress}
    assert progress_kinds == {
        "operation.started",
        "operation.progress",
        "operation.phase.completed",
    }

    # the status's callbacks block and the webhook's stats count what the receivers got
    logged = settled(project, f"/async/operation/{op_id}/deliveries")
    callbacks_logged = [d for d in logged if d["kind"] == "callback"]
    status = project.status(op_id)["callbacks"]
    assert status["progressCallbacksSent"] == len(on_progress)
    assert status["callbacksSuccessful"] == len(on_progress) + len(completion)
    assert status["callbacksSuccessful"] == len(callbacks_logged)
    assert status["callbacksFailed"] == 0
    assert status["lastProgressCallback"] is not None
    hook_logged = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert all(d["status"] == "Delivered" for d in hook_logged)
    assert all(d["attempts"][-1]["statusCode"] == 200 for d in hook_logged)
    stats = project.get(f"/async/webhooks/{hook['webhookId']}").json()
    assert stats["deliveryStats"]["totalDeliveries"] == len(http.at("/all")) == len(hook_logged)
    assert stats["deliveryStats"]["successfulDeliveries"] == len(hook_logged)
    assert stats["deliveryStats"]["averageResponseTime"] > 0
    assert stats["lastDelivery"]["statusCode"] == 200


def test_filters_and_min_progress_increment(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    other_type = register(
        project, http.url(f"/{p}/type"), filters={"operationTypes": ["DataEnrichment"]}
    )
    high_only = register(
        project, http.url(f"/{p}/high"), filters={"priorities": ["High", "Critical"]}
    )
    register(
        project,
        http.url(f"/{p}/step"),
        events=["operation.progress", "operation.completed"],
        filters={"minProgressIncrement": 25},
    )
    register(project, http.url(f"/{p}/every"), events=["operation.progress", "operation.completed"])
    done = run(project)
    assert done["start"]["webhooksRegistered"] == 2
    op_id = done["id"]
    for path in (f"/{p}/step", f"/{p}/every"):
        wait_until(
            lambda path=path: any(
                e["type"] == "operation.completed" for e in of_operation(http.events(path), op_id)
            )
        )
    stepped = [
        e["data"]["progress"]["percentage"]
        for e in of_operation(http.events(f"/{p}/step"), op_id)
        if e["type"] == "operation.progress"
    ]
    every = [
        e["data"]["progress"]["percentage"]
        for e in of_operation(http.events(f"/{p}/every"), op_id)
        if e["type"] == "operation.progress"
    ]
    assert len(every) > len(stepped) >= 1
    assert stepped[0] >= 25
    assert all(b - a >= 25 for a, b in pairwise(stepped))
    assert set(stepped) <= set(every)
    assert http.at(f"/{p}/type") == [] and http.at(f"/{p}/high") == []
    for hook in (other_type, high_only):
        assert deliveries(project, f"/async/webhooks/{hook['webhookId']}/deliveries") == []


# -- failures, retries, dead letters --------------------------------------------------------------
@pytest.mark.fault
def test_a_receiver_that_fails_for_a_while_gets_every_event(
    project: Tenant, http: HttpReceiver
) -> None:
    """A receiver answers 500 to its first 4 requests: it gets every event a steady receiver got,
    each retried under one webhook-id, 500s then a 200 in its attempt log. (Counted in requests,
    not seconds, so a slow machine whose first event comes late still meets the outage.)"""
    p = project.project
    http.answer(f"/{p}/flaky", lambda _r, n: (500 if n < 4 else 200, {}, 0.0))
    hook = register(project, http.url(f"/{p}/flaky"), events=ALL_EVENTS[:1] + ALL_EVENTS[2:])
    register(project, http.url(f"/{p}/steady"), events=ALL_EVENTS[:1] + ALL_EVENTS[2:])
    done = run(project)
    op_id = done["id"]

    def both_completed() -> bool:
        # deliveries are made from the events after the run has ended: wait for the last one
        return all(
            any(e["type"] == "operation.completed" for e in of_operation(http.events(path), op_id))
            for path in (f"/{p}/steady", f"/{p}/flaky")
        )

    assert wait_until(both_completed, 120), "operation.completed never reached both receivers"
    logged = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert all(d["status"] == "Delivered" for d in logged), logged
    steady = of_operation(http.events(f"/{p}/steady"), op_id)
    flaky = of_operation(http.events(f"/{p}/flaky"), op_id)
    assert [e["id"] for e in flaky] == [e["id"] for e in steady]
    assert [e["type"] for e in flaky][-1] == "operation.completed"
    retried = [d for d in logged if d["attemptCount"] > 1]
    assert retried, "the receiver failed its first 4 requests: some deliveries needed retries"
    for d in retried:
        codes = [a["statusCode"] for a in d["attempts"]]
        assert codes[-1] == 200 and set(codes[:-1]) == {500}
        # one event, one webhook-id on every attempt
        ids = {
            r.headers["webhook-id"]
            for r in http.at(f"/{p}/flaky")
            if r.json()["id"] == d["eventId"]
        }
        assert ids == {d["eventId"]}


def test_retry_after_is_honoured(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    http.answer(
        f"/{p}/later", lambda _r, n: (503, {"Retry-After": "2"}, 0.0) if n == 0 else (200, {}, 0.0)
    )
    hook = register(project, http.url(f"/{p}/later"), events=["operation.completed"])
    run(project)
    (delivery,) = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    first, second = http.at(f"/{p}/later")[:2]
    assert delivery["status"] == "Delivered"
    assert [a["statusCode"] for a in delivery["attempts"]] == [503, 200]
    assert second.at - first.at >= 1.9  # FAST_RETRIES alone would retry after ~0.2 s


def test_dead_letter_then_redeliver(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    http.answer(f"/{p}/dead", always(500))
    hook = register(
        project,
        http.url(f"/{p}/dead"),
        events=["operation.completed"],
        retryPolicy={"maxRetries": 1, "retryDelay": 0.2, "backoffMultiplier": 2, "maxDelay": 1},
    )
    run(project)
    (dead,) = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert dead["status"] == "Failed" and dead["attemptCount"] == 2
    assert dead["lastError"] == "HTTP 500"
    failed_only = project.get(
        f"/async/webhooks/{hook['webhookId']}/deliveries", params={"status": "Failed"}
    ).json()["deliveries"]
    assert [d["deliveryId"] for d in failed_only] == [dead["deliveryId"]]
    http.answer(f"/{p}/dead", always(200))
    url = f"/async/webhooks/{hook['webhookId']}/deliveries/{dead['deliveryId']}/redeliver"
    r = project.post(url)
    assert r.status_code == 202, r.text
    (again,) = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert again["status"] == "Delivered" and again["attemptCount"] == 3
    ids = {r.headers["webhook-id"] for r in http.at(f"/{p}/dead")}
    assert ids == {dead["eventId"]}
    assert_problem(project.post(url.replace(dead["deliveryId"], "dlv-nope")), 404)


def test_a_redirect_is_a_failure_and_not_followed(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    http.answer(f"/{p}/moved", always(302, {"Location": http.url(f"/{p}/elsewhere")}))
    hook = register(
        project,
        http.url(f"/{p}/moved"),
        events=["operation.completed"],
        retryPolicy={"maxRetries": 0, "retryDelay": 1, "backoffMultiplier": 1, "maxDelay": 1},
    )
    run(project)
    (d,) = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert d["status"] == "Failed" and d["attempts"][0]["statusCode"] == 302
    assert "redirect" in d["lastError"]
    assert http.at(f"/{p}/elsewhere") == []


def test_gone_disables_the_webhook_and_tells_the_owner(
    project: Tenant, http: HttpReceiver, mail: MailReceiver
) -> None:
    p = project.project
    r = project.http.put(
        f"{project.base}/async/notification-settings",
        json={"ownerEmails": [f"owner-{p}@test.local"], "slackWebhookUrl": http.url(f"/{p}/slack")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["slackWebhookConfigured"] is True and http.url("") not in r.text
    http.answer(f"/{p}/gone", always(410))
    hook = register(project, http.url(f"/{p}/gone"))
    run(project)
    disabled = wait_until(
        lambda: (
            (h := project.get(f"/async/webhooks/{hook['webhookId']}").json())["status"]
            == "Disabled"
            and h
        )
    )
    assert "410" in disabled["disabledReason"]
    assert len(http.at(f"/{p}/gone")) == 1  # nothing more after the 410
    logged = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert {d["status"] for d in logged} == {"Failed"}
    told = wait_until(lambda: [m for to, m in mail.messages if to == [f"owner-{p}@test.local"]])
    assert "disabled" in told[0]["subject"].lower()
    assert hook["webhookId"] in told[0].get_payload(decode=True).decode()
    slack = wait_until(lambda: http.at(f"/{p}/slack"))
    assert "disabled" in slack[0].json()["text"].lower()
    r = project.http.patch(
        f"{project.base}/async/webhooks/{hook['webhookId']}", json={"status": "Active"}
    )
    assert r.status_code == 200 and r.json()["status"] == "Active"


def test_a_webhook_failing_too_often_is_disabled(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    http.answer(f"/{p}/down", always(500))
    hook = register(
        project,
        http.url(f"/{p}/down"),
        retryPolicy={"maxRetries": 3, "retryDelay": 0.1, "backoffMultiplier": 1, "maxDelay": 0.1},
    )
    run(project)
    disabled = wait_until(
        lambda: (
            (h := project.get(f"/async/webhooks/{hook['webhookId']}").json())["status"]
            == "Disabled"
            and h
        )
    )
    # both rules hold (DISABLE_AFTER failures in a row, over the disable window), so the count
    # it names is at least DISABLE_AFTER: attempts go on until the window has passed as well
    found = re.match(r"(\d+) delivery attempts in a row failed over", disabled["disabledReason"])
    assert found and int(found[1]) >= DISABLE_AFTER, disabled["disabledReason"]
    assert disabled["deliveryStats"]["failedDeliveries"] >= DISABLE_AFTER


# -- isolation and durability ---------------------------------------------------------------------
def test_a_slow_receiver_does_not_hold_up_others(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    http.answer(f"/{p}/slow", always(200, delay=4.0))
    register(project, http.url(f"/{p}/slow"))
    register(project, http.url(f"/{p}/fast"))
    done = run(project)
    fast = wait_until(
        lambda: (
            (e := of_operation(http.events(f"/{p}/fast"), done["id"]))
            and e[-1]["type"] == "operation.completed"
            and e
        )
    )
    # every event reached the fast receiver while the slow one was still working through its
    # share (8 at a time, 4 s each)
    answered_slow = [r for r in http.at(f"/{p}/slow") if r.answered]
    assert len(answered_slow) < len(fast)


@pytest.mark.fault
def test_a_killed_deliverer_loses_nothing(
    project: Tenant, hook_stack: Any, http: HttpReceiver
) -> None:
    """SIGKILL the deliverer while deliveries to a slow receiver are in flight: the supervisor
    restarts it and the slow receiver gets every event the control receiver got."""
    p = project.project
    http.answer(f"/{p}/held", always(200, delay=1.5))
    register(project, http.url(f"/{p}/held"))
    register(project, http.url(f"/{p}/control"))
    op = project.start(project.dataset, "kill the deliverer")  # type: ignore[attr-defined]
    assert wait_until(lambda: http.at(f"/{p}/held"))  # deliveries are in flight now
    old = hook_stack.child("pmops.delivery.deliverer")
    old.kill()
    psutil.wait_procs([old], timeout=10)
    hook_stack.restarted("pmops.delivery.deliverer", old.pid)
    project.wait(op["operationId"])

    def ids(path: str) -> list[str]:
        return [e["id"] for e in of_operation(http.events(path), op["operationId"])]

    # Both receivers end with the same events. The control receiver may also be missing some
    # for a while: an attempt the killed deliverer had in flight to it is taken up again only
    # when its lease runs out, which can be after the later events (and `operation.completed`)
    # have already arrived there.
    both = wait_until(
        lambda: (
            (held := of_operation(http.events(f"/{p}/held"), op["operationId"]))
            and held[-1]["type"] == "operation.completed"
            and ids(f"/{p}/control") == [e["id"] for e in held]
            and held
        ),
        deadline=120,
    )
    assert both, (ids(f"/{p}/held"), ids(f"/{p}/control"))
    # and none is missing: sequence numbers run from 1 without a gap
    assert [e["sequence"] for e in both] == list(range(1, len(both) + 1))


# -- notifications --------------------------------------------------------------------------------
def test_email_and_slack_notifications(
    project: Tenant, http: HttpReceiver, mail: MailReceiver
) -> None:
    p = project.project
    r = project.http.put(
        f"{project.base}/async/notification-settings",
        json={"slackWebhookUrl": http.url(f"/{p}/slack-in")},
    )
    assert r.status_code == 200
    people = [f"analyst-{p}@test.local", f"manager-{p}@test.local"]
    done = run(
        project,
        name="Monthly receipts",
        notifications={
            "email": people,
            "slack": {"channel": "#process-mining", "mentionUsers": ["@analyst", "U024BE7LH"]},
        },
    )
    (_to, message), *_ = wait_until(lambda: [(t, m) for t, m in mail.messages if t == people])
    assert "Completed" in message["subject"] and "Monthly receipts" in message["subject"]
    body = message.get_payload(decode=True).decode()
    results = f"https://pmops.example{project.base}/async/operation/{done['id']}/results"
    assert results in body and done["id"] in body
    (post,) = wait_until(lambda: http.at(f"/{p}/slack-in"))
    slack = post.json()
    assert slack["channel"] == "#process-mining"
    assert "<@U024BE7LH>" in slack["text"] and "@analyst" in slack["text"]
    assert results in slack["text"]
    logged = settled(project, f"/async/operation/{done['id']}/deliveries")
    kinds = {d["kind"]: d for d in logged}
    assert kinds["email"]["status"] == "Delivered" and kinds["slack"]["status"] == "Delivered"
    assert kinds["email"]["attempts"][0]["detail"].startswith("250")
    assert http.url("") not in str(kinds["slack"])  # the Slack URL is a credential


def test_failure_and_cancel_events(project: Tenant, http: HttpReceiver, datasets: Path) -> None:
    p = project.project
    register(project, http.url(f"/{p}/ends"), events=["operation.failed", "operation.cancelled"])
    failed = run(
        project,
        parameters={"timeWindow": {"startDate": "2030-01-01"}},
        callbacks={"onError": http.url(f"/{p}/error")},
    )
    assert failed["final"]["status"] == "Failed"
    (error,) = wait_until(lambda: http.at(f"/{p}/error"))
    assert error.json()["type"] == "operation.failed"
    assert error.json()["data"]["error"]["field"] == "parameters.timeWindow"
    bpic = project.upload(datasets / "bpic2012.xes.gz")["datasetId"]
    op = project.start(
        bpic, "cancel me", callbacks={"onCompletion": http.url(f"/{p}/cancelled-cb")}
    )
    project.wait(op["operationId"], until=running_phase("Data Loading and Validation"))
    r = project.delete(
        f"/async/operation/{op['operationId']}",
        json={"reason": "wrong log", "forceTermination": True, "notifyCallbacks": False},
    )
    assert r.status_code == 200, r.text
    ends = wait_until(
        lambda: (
            (e := http.events(f"/{p}/ends"))
            and len(e) == 2
            and sorted(x["type"] for x in e.values())
        )
    )
    assert ends == ["operation.cancelled", "operation.failed"]
    cancelled = next(
        e for e in http.events(f"/{p}/ends").values() if e["type"] == "operation.cancelled"
    )
    assert cancelled["data"]["cancellation"]["reason"] == "wrong log"
    time.sleep(1.0)  # the deliverer polls every 50 ms: a callback would have been sent by now
    assert http.at(f"/{p}/cancelled-cb") == []  # notifyCallbacks: false


# -- the project's signing secret -----------------------------------------------------------------
def test_a_rotated_secret_signs_beside_the_old_one(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    old = project.get("/async/signing-secret").json()["secret"]
    r = project.post("/async/signing-secret/rotate")
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old and new.startswith("whsec_") and r.json()["previousSecretValidUntil"]
    run(project, callbacks={"onCompletion": http.url(f"/{p}/rotated")})
    (request,) = wait_until(lambda: http.at(f"/{p}/rotated"))
    assert len(request.headers["webhook-signature"].split()) == 2
    verify(request, new)  # X-Signature-256 is signed with the current secret
    Webhook(old).verify(request.body, request.headers)  # receivers not switched yet still verify


def test_the_cli_shows_the_secret_once_and_rotates(hook_stack: Any) -> None:
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pmops.cli.commands", "project", "secret", "--tenant", tenant,
             "--project", project, *extra],
            env=hook_stack.env, cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    first = cli()
    assert first.returncode == 0 and first.stdout.startswith("whsec_")
    again = cli()
    assert again.returncode == 1 and "--rotate" in again.stderr
    rotated = cli("--rotate")
    assert rotated.returncode == 0 and rotated.stdout.startswith("whsec_")
    assert rotated.stdout != first.stdout


def test_a_host_that_does_not_resolve_is_a_failed_attempt(project: Tenant) -> None:
    hook = register(
        project,
        "https://your-app.com/webhooks/async-operations",
        events=["operation.completed"],
        retryPolicy={"maxRetries": 1, "retryDelay": 0.2, "backoffMultiplier": 1, "maxDelay": 1},
    )
    run(project)
    (d,) = settled(project, f"/async/webhooks/{hook['webhookId']}/deliveries")
    assert d["status"] == "Failed" and d["attemptCount"] == 2
    assert all(a["statusCode"] is None for a in d["attempts"])
    assert "your-app.com" in d["lastError"]


# -- batches -------------------------------------------------------------------------------------
def test_batch_events_and_callbacks(project: Tenant, http: HttpReceiver) -> None:
    p = project.project
    batch_events = ["batch.started", "batch.operation.completed", "batch.completed"]
    register(project, http.url(f"/{p}/batch-hook"), events=batch_events)
    secret = project.get("/async/signing-secret").json()["secret"]
    ds = project.dataset  # type: ignore[attr-defined]
    body = {
        "batchName": "with callbacks",
        "operations": [
            {
                "operationKey": key,
                "operationName": key,
                "operationType": "ProcessMiningAnalysis",
                "dependencies": deps,
                "parameters": {"datasetId": ds, "analysisType": "quick"},
            }
            for key, deps in (("one", []), ("two", ["one"]))
        ],
        "batchCallbacks": {
            name: http.url(f"/{p}/batch-cb/{name}")
            for name in ("onBatchStart", "onOperationComplete", "onBatchComplete")
        },
    }
    r = project.post("/async/batch", json=body)
    assert r.status_code == 202, r.text
    batch_id = r.json()["batchId"]
    done = wait_until(
        lambda: any(
            e["type"] == "batch.completed" for e in http.events(f"/{p}/batch-hook").values()
        ),
        deadline=120,
    )
    assert done
    events = sorted(http.events(f"/{p}/batch-hook").values(), key=lambda e: e["timestamp"])
    assert [e["type"] for e in events] == [
        "batch.started",
        "batch.operation.completed",
        "batch.operation.completed",
        "batch.completed",
    ]
    assert all(e["batchId"] == batch_id for e in events)
    assert [e["operationKey"] for e in events[1:3]] == ["one", "two"]
    assert events[-1]["data"]["status"] == "Completed"
    for name, count in (("onBatchStart", 1), ("onOperationComplete", 2), ("onBatchComplete", 1)):
        path = f"/{p}/batch-cb/{name}"
        assert wait_until(lambda path=path, count=count: len(http.at(path)) >= count)
        got = http.at(path)
        assert len(got) == count
        for request in got:
            verify(request, secret)
