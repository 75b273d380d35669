"""Security over HTTP against the real service: tenancy, tokens, traversal, hostile uploads (SSRF
in every URL field needs no run: tests/api/test_security.py).

One stack of its own with a small upload limit (413 is cheap) and only 127.0.0.77/32 allowed for
deliveries: tenant B's webhook and callbacks reach a receiver on that address, so B's operation
has real deliveries, while every other loopback form (127.0.0.1, 127.0.0.2, localhost, ...) is
still refused for the SSRF cases.

Who is who: B owns one of everything; A is another tenant; C is B's tenant with another project
(a wrong-project token). The cross-tenant matrix is built from the app's own route table, so a
new endpoint is covered (or the matrix fails, naming it) without editing this file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import re
import sqlite3
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from tests.receivers import HttpReceiver, wait_until
from tests.service_stack import REPO, Stack, Tenant, assert_problem, running_stack

pytestmark = [pytest.mark.security, pytest.mark.xdist_group("stack-security")]

RECEIVER_HOST = "127.0.0.77"
MAX_UPLOAD = 300_000
COOKIE = "pmops_token"
FINAL_DELIVERY = {"Delivered", "Failed", "Cancelled"}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NONCE_RE = re.compile(r"nonce-[A-Za-z0-9_-]+|nonce=\"[A-Za-z0-9_-]+\"")


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver(RECEIVER_HOST)
    yield r
    r.close()


@pytest.fixture(scope="module")
def sec_stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("security"),
        prefect_template,
        max_upload_bytes=MAX_UPLOAD,
        webhook_allow_networks=f"{RECEIVER_HOST}/32",
        callback_retry_delay=0.2,
        callback_max_delay=1,
    ) as s:
        yield s


# -- the world: B owns one of everything ----------------------------------------------------------
@dataclass
class World:
    stack: Stack
    a: Tenant
    b: Tenant
    c: Tenant  # B's tenant, another project
    b_ids: dict[str, str]  # path parameter -> B's value
    a_ids: dict[str, str]  # A's own operation and webhook
    b_secrets: list[str]  # everything of B that must never reach A or C
    b_files: list[str] = field(default_factory=list)


def _browser(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30, follow_redirects=False)


@contextmanager
def signed_in(stack: Stack, token: str) -> Iterator[httpx.Client]:
    with _browser(stack) as client:
        r = client.post("/ui/login", data={"token": token, "next": "/ui/"})
        assert r.status_code == 303, r.text
        yield client


def _deliveries(t: Tenant, path: str) -> list[dict[str, Any]]:
    r = t.get(path, params={"pageSize": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


def _quiet(t: Tenant, op_ids: list[str], webhook_id: str) -> bool:
    """Every delivery of B's operations and webhook is finished (nothing will change any more)."""
    found = _deliveries(t, f"/async/webhooks/{webhook_id}/deliveries")
    for op in op_ids:
        found += _deliveries(t, f"/async/operation/{op}/deliveries")
    return bool(found) and all(d["status"] in FINAL_DELIVERY for d in found)


@pytest.fixture(scope="module")
def world(sec_stack: Stack, receiver: HttpReceiver, datasets: Path) -> Iterator[World]:
    stack = sec_stack
    a, b = stack.create_token(), stack.create_token()
    c = stack.create_token(tenant=b.tenant)
    tag = uuid.uuid4().hex[:10]
    # B: a dataset under a recognisable name, a webhook and an operation with callbacks
    b_file = f"b-private-{tag}.xes"
    b_ds = b.upload(datasets / "running-example.xes", name=b_file)
    b_secret = b.get("/async/signing-secret").json()["secret"]
    hook_url = receiver.url(f"/b-hook-{tag}")
    hook = b.post(
        "/async/webhooks",
        json={
            "webhookUrl": hook_url,
            "webhookName": f"b-hook-name-{tag}",
            "events": ["operation.started", "operation.completed", "operation.failed"],
            "authentication": {"type": "hmac-sha256", "secret": f"b-hook-secret-{tag}"},
            "retryPolicy": {"maxRetries": 1, "retryDelay": 0.2, "maxDelay": 1},
        },
    )
    assert hook.status_code == 201, hook.text
    callback = receiver.url(f"/b-callback-{tag}")
    op = b.start(
        b_ds["datasetId"],
        f"b-op-name-{tag}",
        callbacks={"onCompletion": callback, "onError": callback},
    )
    batch = b.post(
        "/async/batch",
        json={
            "batchName": f"b-batch-name-{tag}",
            "operations": [
                {
                    "operationName": f"b-batch-op-{tag}",
                    "operationType": "ProcessMiningAnalysis",
                    "operationKey": "only",
                    "parameters": {"datasetId": b_ds["datasetId"]},
                }
            ],
        },
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["batchId"]
    owner = f"b-owner-{tag}@example.com"
    r = b.http.put(f"{b.base}/async/notification-settings", json={"ownerEmails": [owner]})
    assert r.status_code == 200, r.text
    # A: its own dataset, operation and webhook (for the mixed-id requests)
    a_ds = a.upload(datasets / "running-example.xes")
    a_op = a.start(a_ds["datasetId"], "a's own analysis")
    a_hook = a.post(
        "/async/webhooks",
        json={
            "webhookUrl": receiver.url("/a-hook"),
            "webhookName": "a",
            "events": ["batch.started"],
        },
    )
    assert a_hook.status_code == 201, a_hook.text

    final = b.wait(op["operationId"])
    assert final["status"] == "Completed", final
    assert a.wait(a_op["operationId"])["status"] == "Completed"
    batch_ops = wait_until(lambda: _batch_done(b, batch_id), deadline=120)
    op_ids = [op["operationId"], *batch_ops]
    hook_id = hook.json()["webhookId"]
    assert wait_until(lambda: _quiet(b, op_ids, hook_id), deadline=90), "B's deliveries"
    hook_dlv = _deliveries(b, f"/async/webhooks/{hook_id}/deliveries")[0]["deliveryId"]
    op_dlv = _deliveries(b, f"/async/operation/{op['operationId']}/deliveries")[0]["deliveryId"]
    results = b.results(op["operationId"]).json()
    names = [x["downloadUrl"].split("?")[0].rsplit("/", 1)[1] for x in results["artifacts"]]
    assert names, results
    b_ids = {
        "tenantId": b.tenant,
        "projectId": b.project,
        "operationId": op["operationId"],
        "batchId": batch_id,
        "webhookId": hook_id,
        "deliveryId": op_dlv,
        "webhookDeliveryId": hook_dlv,
        "datasetId": b_ds["datasetId"],
        "name": names[0],
    }
    secrets = [
        *b_ids.values(),
        *batch_ops,
        b_file,
        b_secret,
        f"b-hook-{tag}",
        f"b-hook-name-{tag}",
        f"b-hook-secret-{tag}",
        f"b-callback-{tag}",
        f"b-op-name-{tag}",
        f"b-batch-name-{tag}",
        f"b-batch-op-{tag}",
        owner,
    ]
    secrets.remove(names[0])  # artifact names are the same for every operation
    a_ids = {"operationId": a_op["operationId"], "webhookId": a_hook.json()["webhookId"]}
    w = World(stack, a, b, c, b_ids, a_ids, secrets, names)
    yield w
    for t in (a, b, c):
        t.close()


def _batch_done(b: Tenant, batch_id: str) -> list[str] | None:
    body = b.get(f"/async/batch/{batch_id}").json()
    if body["status"] not in ("Completed", "Failed", "Cancelled"):
        return None
    assert body["status"] == "Completed", body
    return [m["operationId"] for m in body["operations"]]


# -- B's state, read from the store and the disk ------------------------------------------------
def snapshot(w: World) -> dict[str, Any]:
    """Every row of B's tenant in every table, B's operations' rows in the tables keyed by
    operation, and B's files: what any request of A or C might have changed."""
    db = sqlite3.connect(f"file:{w.stack.data_dir / 'pmops.db'}?mode=ro", uri=True)
    out: dict[str, Any] = {}
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        op_ids = [
            r[0]
            for r in db.execute(
                "SELECT operation_id FROM operations WHERE tenant_id = ?", (w.b.tenant,)
            )
        ]
        marks = ",".join("?" * len(op_ids))
        for table in tables:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            if "tenant_id" in columns and "project_id" in columns:
                where, args = "tenant_id = ? AND project_id = ?", [w.b.tenant, w.b.project]
            elif "tenant_id" in columns:
                where, args = "tenant_id = ?", [w.b.tenant]
            elif "operation_id" in columns:
                where, args = f"operation_id IN ({marks})", op_ids
            else:
                continue
            rows = db.execute(f"SELECT * FROM {table} WHERE {where}", args).fetchall()
            out[table] = sorted(map(repr, rows))
    finally:
        db.close()
    files = []
    for root in (
        w.stack.data_dir / "datasets" / w.b.tenant,
        *(w.stack.data_dir / "operations" / op for op in op_ids),
    ):
        files += [(str(p), p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()]
    out["files"] = files
    return out


def settled_snapshot(w: World) -> dict[str, Any]:
    previous = snapshot(w)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(1)
        now = snapshot(w)
        if now == previous:
            return now
        previous = now
    raise AssertionError("B's state kept changing without anyone touching it")


# -- the matrix ---------------------------------------------------------------------------------
API = "/api/{tenantId}/{projectId}"
# a plausible body per write route: were the tenancy check missing, it would act on B's things
BODIES: dict[tuple[str, str], Callable[[dict[str, str]], dict[str, Any]]] = {
    ("POST", f"{API}/async/operation"): lambda v: {
        "json": {
            "operationType": "ProcessMiningAnalysis",
            "operationName": "mallory",
            "parameters": {"datasetId": v["datasetId"]},
        }
    },
    ("POST", f"{API}/async/batch"): lambda v: {
        "json": {
            "batchName": "mallory",
            "operations": [
                {
                    "operationName": "mallory",
                    "operationType": "ProcessMiningAnalysis",
                    "operationKey": "k",
                    "parameters": {"datasetId": v["datasetId"]},
                }
            ],
        }
    },
    ("POST", f"{API}/datasets"): lambda v: {
        "files": {"file": ("mallory.csv", b"case,activity,timestamp\n1,a,2024-01-01T00:00:00\n")}
    },
    ("POST", f"{API}/async/webhooks"): lambda v: {
        "json": {
            "webhookUrl": f"http://{RECEIVER_HOST}:9/mallory",
            "webhookName": "mallory",
            "events": ["operation.completed"],
        }
    },
    ("PATCH", f"{API}/async/webhooks/{{webhookId}}"): lambda v: {"json": {"status": "Disabled"}},
    ("DELETE", f"{API}/async/operation/{{operationId}}"): lambda v: {
        "json": {"reason": "mallory", "forceTermination": True}
    },
    ("POST", f"{API}/async/operation/{{operationId}}/retry"): lambda v: {
        "json": {"retryMode": "restart"}
    },
    ("PUT", f"{API}/async/notification-settings"): lambda v: {
        "json": {"ownerEmails": ["mallory@attacker.example"]}
    },
}
# requests beside the plain one
QUERIES: dict[str, list[dict[str, str]]] = {
    f"{API}/async/operation/{{operationId}}/results": [
        {"format": "download"},
        {"format": "detailed"},
    ]
}
# write routes without a resource id, on the caller's own path: what they must answer when they
# name B's things in the body (None: they act on the caller's own project only, which B's
# unchanged state after the matrix shows)
OWN_WRITES: dict[tuple[str, str], int | None] = {
    ("POST", f"{API}/async/operation"): 422,
    ("POST", f"{API}/async/batch"): 422,
    ("POST", f"{API}/datasets"): None,
    ("POST", f"{API}/async/webhooks"): None,
    ("POST", f"{API}/async/signing-secret/rotate"): 200,
    ("PUT", f"{API}/async/notification-settings"): 200,
}
UI_SESSION = {("POST", "/ui/login"), ("POST", "/ui/logout")}  # exercised by signing in and out


def route_table() -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, the /ui pages (not in the OpenAPI) too.

    FastAPI 0.150 keeps an included router as one entry of `app.routes`; its routes are under
    it. The OpenAPI document is the cross-check: each of its operations must be in the table, so
    a walk that stops finding routes fails here instead of leaving the matrix empty."""
    app = create_app()

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                yield from walk(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
                continue
            for method in sorted(set(getattr(route, "methods", None) or ()) - {"HEAD", "OPTIONS"}):
                yield method, prefix + str(route.path)

    table = sorted(set(walk(app.routes, "")))
    documented = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}
    }
    assert documented and documented <= set(table), sorted(documented - set(table))
    assert any(path.startswith("/ui/operations/") for _, path in table), table
    return table


def params_of(template: str) -> list[str]:
    return re.findall(r"{(\w+)}", template)


def fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)


def fake(value: str) -> str:
    """A value of the same shape that never existed."""
    if UUID_RE.search(value):
        return UUID_RE.sub(lambda _: str(uuid.uuid4()), value)
    return f"nothing-{uuid.uuid4().hex[:8]}-{value}"


@dataclass
class Probe:
    label: str
    method: str
    template: str
    client: httpx.Client
    values: dict[str, str]
    query: dict[str, str] | None = None
    known: tuple[str, ...] = ()  # B's values this caller legitimately knows (its own tenant)

    def send(self, values: dict[str, str] | None = None) -> httpx.Response:
        values = values or self.values
        make = BODIES.get((self.method, self.template))
        kw = make(values) if make else {}
        return self.client.request(
            self.method, fill(self.template, values), params=self.query, timeout=30, **kw
        )


class Matrix:
    def __init__(self, w: World) -> None:
        self.w, self.tried, self.failures = w, 0, []
        self.exercised: set[tuple[str, str]] = set()

    def fail(self, probe: Probe, why: str, r: httpx.Response | None = None) -> None:
        shown = f" -> {r.status_code} {r.text[:300]}" if r is not None else ""
        self.failures.append(f"[{probe.label}] {probe.method} {probe.template} {why}{shown}")

    def leaks(self, probe: Probe, values: dict[str, str], r: httpx.Response) -> list[str]:
        sent = fill(probe.template, values) + repr(probe.query) + repr(values)
        body = r.text + repr(dict(r.headers))
        return [s for s in self.w.b_secrets if s in body and s not in sent and s not in probe.known]

    def expect_absent(self, probe: Probe) -> None:
        """404, nothing of B in it, and the same answer as for ids that never existed."""
        self.exercised.add((probe.method, probe.template))
        r = probe.send()
        self.tried += 1
        if r.status_code != 404:
            self.fail(probe, "expected 404", r)
            return
        if leaked := self.leaks(probe, probe.values, r):
            self.fail(probe, f"leaks {leaked}", r)
        twins = {
            k: fake(v) if v in self.w.b_secrets and v not in probe.known else v
            for k, v in probe.values.items()
        }
        r2 = probe.send(twins)
        self.tried += 1
        back = r2.text
        for key, value in twins.items():
            back = back.replace(value, probe.values[key])
        if (r2.status_code, _plain(back), r2.headers.get("content-type")) != (
            r.status_code,
            _plain(r.text),
            r.headers.get("content-type"),
        ):
            self.fail(probe, f"differs from a never-existing id: {r2.status_code} {back[:300]}", r)

    def expect_clean(self, probe: Probe, statuses: tuple[int, ...]) -> httpx.Response:
        self.exercised.add((probe.method, probe.template))
        r = probe.send()
        self.tried += 1
        if r.status_code not in statuses:
            self.fail(probe, f"expected one of {statuses}", r)
        if leaked := self.leaks(probe, probe.values, r):
            self.fail(probe, f"leaks {leaked}", r)
        return r


def _plain(text: str) -> str:
    return NONCE_RE.sub("nonce", text)


def test_cross_tenant_matrix(world: World, record_property: Any) -> None:
    """Every method of every route of the app (from its route table): A's token on B's
    tenant/project path with B's ids, A's own path with B's ids (and with A's operation or
    webhook and B's delivery), C's (B's tenant, other project) token on B's path and on its own
    path with B's ids, and the /ui pages with A's and C's sign-in cookies on B's operation and
    artifact: each answers 404 with nothing of B in the body, the same as for ids that never
    existed. The caller's own lists and settings answer without B's things; public routes too.
    Then B's rows, files and settings are exactly as before."""
    w = world
    before = settled_snapshot(w)
    m = Matrix(w)
    a_own = {"tenantId": w.a.tenant, "projectId": w.a.project}
    c_own = {"tenantId": w.c.tenant, "projectId": w.c.project}
    b_path = {k: w.b_ids[k] for k in ("tenantId", "projectId")}
    routes = route_table()
    with signed_in(w.stack, w.a.token) as a_ui, signed_in(w.stack, w.c.token) as c_ui:
        m.exercised.add(("POST", "/ui/login"))
        for method, template in routes:
            params = params_of(template)
            ids = [p for p in params if p not in ("tenantId", "projectId")]
            queries = [None, *QUERIES.get(template, [])]

            has_body = (method, template) in BODIES

            def b_values(
                base: dict[str, str], ids: list[str] = ids, has_body: bool = has_body
            ) -> dict[str, str]:
                values = dict(base)
                if has_body:  # a start names B's dataset in its body
                    values["datasetId"] = w.b_ids["datasetId"]
                for p in ids:
                    key = "webhookDeliveryId" if p == "deliveryId" and "webhookId" in ids else p
                    values[p] = w.b_ids[key]
                return values

            for query in queries:
                if template.startswith("/api/"):
                    for label, client, base, known in (
                        ("A on B's path", w.a.http, b_path, ()),
                        ("C on B's project", w.c.http, b_path, (w.b.tenant,)),
                    ):
                        m.expect_absent(
                            Probe(label, method, template, client, b_values(base), query, known)
                        )
                    for label, client, base, known in (
                        ("A's path, B's ids", w.a.http, a_own, ()),
                        ("C's path, B's ids", w.c.http, c_own, (w.b.tenant,)),
                    ):
                        values = b_values(base)
                        probe = Probe(label, method, template, client, values, query, known)
                        if ids:
                            m.expect_absent(probe)
                        elif method == "GET":
                            m.expect_clean(probe, (200, 409))
                        elif (method, template) in OWN_WRITES:
                            status = OWN_WRITES[(method, template)]
                            if status is None:
                                m.exercised.add((method, template))
                            elif status == 422:
                                _expect_same_refusal(m, probe)
                            else:
                                m.expect_clean(probe, (status,))
                        else:
                            m.failures.append(f"{method} {template}: add it to OWN_WRITES")
                    if "deliveryId" in ids:  # A's own operation or webhook, B's delivery
                        values = b_values(a_own)
                        for p in ("operationId", "webhookId"):
                            if p in ids:
                                values[p] = w.a_ids[p]
                        m.expect_absent(
                            Probe("A's parent, B's delivery", method, template, w.a.http, values)
                        )
                    if method == "GET":  # the owner gets it: the ids above are real ones
                        r = w.b.http.request(method, fill(template, b_values(b_path)), params=query)
                        m.tried += 1
                        if r.status_code not in (200, 409):
                            m.failures.append(f"B's own {template} {query}: {r.status_code}")
                elif template.startswith("/ui/") and ids:
                    for label, client, known in (
                        ("A's cookie", a_ui, ()),
                        ("C's cookie", c_ui, (w.b.tenant,)),
                    ):
                        probe = Probe(label, method, template, client, b_values({}), query, known)
                        m.expect_absent(probe)
                elif (method, template) in UI_SESSION:
                    continue
                else:  # public routes and the caller's own UI pages
                    for label, client, known in (("A", a_ui, ()), ("C", c_ui, (w.b.tenant,))):
                        probe = Probe(label, method, template, client, {}, query, known)
                        m.expect_clean(probe, (200, 503))
        for client in (a_ui, c_ui):
            out = client.post("/ui/logout")
            assert out.status_code == 303, out.text
        m.exercised.add(("POST", "/ui/logout"))
    record_property("tried", m.tried)
    record_property("observed", f"{m.tried} requests, {len(m.failures)} wrong answers")
    missed = set(routes) - m.exercised
    assert not missed, f"routes the matrix did not exercise: {sorted(missed)}"
    assert not m.failures, "\n".join(m.failures)
    after = settled_snapshot(w)
    changed = [k for k in before if before[k] != after.get(k)]
    assert not changed, f"B's state changed in {changed}"


def _expect_same_refusal(m: Matrix, probe: Probe) -> None:
    """A start naming B's dataset on the caller's own path: the same 422 as for a dataset that
    never existed (no existence oracle), and nothing started."""
    m.exercised.add((probe.method, probe.template))
    r = probe.send()
    twin = dict(probe.values, datasetId=str(uuid.uuid4()))
    r2 = probe.send(twin)
    m.tried += 2
    if r.status_code != 422:
        m.fail(probe, "expected 422", r)
    elif r2.text.replace(twin["datasetId"], probe.values["datasetId"]) != r.text:
        m.fail(probe, f"differs from a dataset that never existed: {r2.text[:300]}", r)
    if leaked := m.leaks(probe, probe.values, r):
        m.fail(probe, f"leaks {leaked}", r)


# -- tokens -------------------------------------------------------------------------------------
def _tampered(token: str) -> dict[str, dict[str, str]]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    middle = token[:10] + ("x" if token[10] != "x" else "y") + token[11:]
    return {
        "last character changed": {"Authorization": f"Bearer {flipped}"},
        "a middle character changed": {"Authorization": f"Bearer {middle}"},
        "truncated": {"Authorization": f"Bearer {token[:-1]}"},
        "prefix only": {"Authorization": "Bearer pmops_"},
        "extra characters": {"Authorization": f"Bearer {token}x"},
        "doubled": {"Authorization": f"Bearer {token}{token}"},
        "two tokens": {"Authorization": f"Bearer {token} {token}"},
        "its stored SHA-256": {
            "Authorization": f"Bearer {hashlib.sha256(token.encode()).hexdigest()}"
        },
        "Basic scheme": {"Authorization": f"Basic {token}"},
        "Token scheme": {"Authorization": f"Token {token}"},
        "no scheme": {"Authorization": token},
        "empty bearer": {"Authorization": "Bearer "},
        "empty header": {"Authorization": ""},
        "no header": {},
    }


def test_tampered_and_expired_tokens(world: World, record_property: Any) -> None:
    """Tampered tokens (a character changed, truncated, extra characters, the stored hash,
    another scheme, empty, missing) and an expired one: 401 with WWW-Authenticate on the API,
    and the sign-in form refuses them (401, no cookie)."""
    w = world
    path = f"{w.a.base}/async/operations"
    expired = w.stack.create_token(
        w.a.tenant, w.a.project, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    cases = _tampered(w.a.token)
    tried = 0
    assert raw_request(w.stack, path, {"Authorization": f"Bearer {w.a.token}"})[0] == 200
    for label, headers in cases.items():
        status, got, raw = raw_request(w.stack, path, headers)
        tried += 1
        assert status == 401, (label, status, raw[:200])
        assert got["content-type"].startswith("application/problem+json"), label
        assert got["www-authenticate"].startswith("Bearer"), label
        assert w.a.tenant.encode() not in raw.replace(path.encode(), b""), label
    with httpx.Client(base_url=w.stack.url, timeout=30) as anon:
        r = anon.get(path, headers={"Authorization": f"Bearer {expired.token}"})
        tried += 1
        body = assert_problem(r, 401)
        assert body["detail"] == "the bearer token has expired"
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    tokens = [
        h["Authorization"].removeprefix("Bearer ")
        for h in cases.values()
        if h.get("Authorization", "").startswith("Bearer ")
    ]
    for token in [t for t in tokens if t.strip()] + [expired.token]:
        with _browser(w.stack) as client:
            r = client.post("/ui/login", data={"token": token, "next": "/ui/"})
            tried += 1
            assert r.status_code == 401, (token, r.status_code)
            assert "www-authenticate" in r.headers and COOKIE not in client.cookies
            if token == expired.token:
                assert "That token has expired." in r.text
    record_property("tried", tried)


def test_expiry_is_checked_even_when_cached(world: World) -> None:
    """A token that expires while its principal is in the API's 30 s cache: accepted before, 401
    "expired" after, on the API and on the results page (signed-in cookie sent back to the
    sign-in form)."""
    w = world
    until = datetime.now(UTC) + timedelta(seconds=4)
    t = w.stack.create_token(w.a.tenant, w.a.project, expires_at=until)
    page = f"/ui/operations/{w.a_ids['operationId']}"
    with signed_in(w.stack, t.token) as ui:
        assert t.get("/async/operations").status_code == 200  # now cached
        assert ui.get(page).status_code == 200
        while datetime.now(UTC) < until + timedelta(seconds=0.5):
            time.sleep(0.2)
        r = t.get("/async/operations")
        assert_problem(r, 401)
        assert r.json()["detail"] == "the bearer token has expired"
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        gone = ui.get(page)
        assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
        assert COOKIE not in ui.cookies
        events = ui.get(f"{page}/events")
        assert_problem(events, 401)
    t.close()


def test_cli_expires_in(world: World) -> None:
    """`pmops tokens create --expires-in 1h` makes a working token with an expiry in the store;
    a malformed duration exits 2 without making one."""
    w = world
    t = w.stack.create_token(expires_in="1h")
    assert t.get("/async/operations").status_code == 200
    db = sqlite3.connect(f"file:{w.stack.data_dir / 'pmops.db'}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256(t.token.encode()).hexdigest()
        (stored,) = db.execute(
            "SELECT expires_at FROM tokens WHERE token_hash = ?", (digest,)
        ).fetchone()
        (count,) = db.execute("SELECT count(*) FROM tokens").fetchone()
    finally:
        db.close()
    assert stored is not None
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pmops.cli.commands",
            "tokens",
            "create",
            "--tenant",
            w.a.tenant,
            "--expires-in",
            "soon",
        ],
        env=w.stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--expires-in" in bad.stderr and not bad.stdout.strip()
    db = sqlite3.connect(f"file:{w.stack.data_dir / 'pmops.db'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM tokens").fetchone() == (count,)
    finally:
        db.close()
    t.close()


# -- path traversal -----------------------------------------------------------------------------
def raw_get(stack: Stack, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (httpx would normalise dot segments)."""
    status, _, body = raw_request(stack, path, headers)
    return status, body


def raw_request(
    stack: Stack, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """GET with the path and headers sent as given (httpx refuses e.g. "Bearer " as a value)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        return response.status, got, response.read()
    finally:
        conn.close()


def test_artifact_path_traversal(world: World, record_property: Any) -> None:
    """Artifact names with ../, %2e%2e%2f, double encoding, backslashes, absolute paths, NUL,
    overlong UTF-8, and names of files that are not the operation's artifacts (its results.json
    and checkpoints, another operation's files, the dataset, the store), on the API's and the
    results page's artifact routes, as the operation's owner: never 2xx, never 5xx, and the
    canary files beside the operation's folder are never served."""
    w = world
    op, data = w.b_ids["operationId"], w.stack.data_dir
    canary = f"canary-{uuid.uuid4().hex}"
    for place in (data / "operations" / "canary.txt", data / "canary.txt"):
        place.write_text(canary)
    other = w.a_ids["operationId"]
    dataset = f"datasets%2f{w.b.tenant}%2f{w.b_ids['datasetId']}%2f{w.b_files[0]}"
    b_file = next(s for s in w.b_secrets if s.endswith(".xes"))
    evil = [
        "../canary.txt",
        "..%2fcanary.txt",
        "%2e%2e%2fcanary.txt",
        "%2e%2e/canary.txt",
        "%252e%252e%252fcanary.txt",
        "..%252fcanary.txt",
        "..%5ccanary.txt",
        "..\\canary.txt",
        "%2e%2e%5c%2e%2e%5ccanary.txt",
        "....//canary.txt",
        "..%2f..%2fcanary.txt",
        "%c0%ae%c0%ae%c0%afcanary.txt",
        "%2fetc%2fpasswd",
        "%2f" + "%2f".join(str(data / "canary.txt").strip("/").split("/")),
        "/etc/passwd",
        "canary.txt",
        "..",
        "%2e%2e",
        ".",
        "%00",
        "canary.txt%00.svg",
        f"{w.b_files[0]}%00",
        "results.json",
        ".state%2f1.pkl",
        "..%2f..%2fpmops.db",
        "../../pmops.db",
        f"..%2f{other}%2fresults.json",
        f"..%2f{other}%2f{w.b_files[0]}",
        f"..%2f..%2f{dataset}",
        b_file,
        "dev-token",
        "..%2f..%2fdev-token",
    ]
    listed = set(w.b_files)
    api = f"{w.b.base}/async/operation/{op}/artifacts/"
    with signed_in(w.stack, w.b.token) as ui:
        cookie = {"Cookie": f"{COOKIE}={ui.cookies[COOKIE]}"}
        bearer = {"Authorization": f"Bearer {w.b.token}"}
        # the listed artifacts are served on both routes: the routes work
        for name in listed:
            assert raw_get(w.stack, api + name, bearer)[0] == 200, name
            assert raw_get(w.stack, f"/ui/operations/{op}/artifacts/{name}", cookie)[0] == 200
        tried = 0
        wrong = []
        for name in evil:
            for prefix, headers in (
                (api, bearer),
                (f"/ui/operations/{op}/artifacts/", cookie),
                # the traversal in the operation's segment instead
                (f"{w.b.base}/async/operation/..%2f{op}/artifacts/", bearer),
                (f"/ui/operations/%2e%2e%2f{op}/artifacts/", cookie),
            ):
                status, body = raw_get(w.stack, prefix + name, headers)
                tried += 1
                if not 400 <= status < 500 or canary.encode() in body or b"SQLite" in body:
                    wrong.append(f"{prefix}{name}: {status} {body[:120]!r}")
    record_property("tried", tried)
    assert not wrong, "\n".join(wrong)


# -- uploads ------------------------------------------------------------------------------------
def _upload_state(w: World, t: Tenant) -> tuple[int, list[str]]:
    total = t.get("/datasets").json()["totalDatasets"]
    folder = w.stack.data_dir / "datasets" / t.tenant
    return total, sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


def test_oversized_upload(world: World, record_property: Any) -> None:
    """A file one byte over PMOPS_MAX_UPLOAD_BYTES, one well over, and one announcing 10 GB
    (refused before its body is read) and a chunked one without a length (stopped as it passes
    the limit): 413 naming `file`, and nothing left in the store or in
    the upload folder."""
    w = world
    before = _upload_state(w, w.a)
    for size in (MAX_UPLOAD + 1, MAX_UPLOAD * 4):
        body = b"case,activity,timestamp\n" + b"1,a,2024-01-01T00:00:00\n" * (size // 24 + 1)
        r = w.a.post("/datasets", files={"file": ("big.csv", body[:size])})
        assert_problem(r, 413, "file")
    # 10 GB announced, a few bytes sent: the answer comes without waiting for the rest (it
    # used to be spooled to a temporary file whole before the limit was applied)
    conn = http.client.HTTPConnection("127.0.0.1", w.stack.api_port, timeout=30)
    try:
        conn.putrequest("POST", f"{w.a.base}/datasets")
        conn.putheader("Authorization", f"Bearer {w.a.token}")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(10 * 1024**3))
        conn.endheaders(b"--x\r\n")
        response = conn.getresponse()  # a socket timeout here: the server waited for the body
        assert response.status == 413
        assert response.getheader("content-type", "").startswith("application/problem+json")
        assert b'"field":"file"' in response.read()
    finally:
        conn.close()
    # no Content-Length at all (chunked): counted as it streams in, stopped past the limit
    # (plus 1 MiB for the multipart framing), before the route spools it
    conn = http.client.HTTPConnection("127.0.0.1", w.stack.api_port, timeout=30)
    try:
        conn.putrequest("POST", f"{w.a.base}/datasets")
        conn.putheader("Authorization", f"Bearer {w.a.token}")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        chunks = [head] + [b"1,a,2024-01-01T00:00:00\n" * 2730] * (
            (MAX_UPLOAD + 2**20) // 65520 + 2
        )
        for chunk in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        # the body is not finished (no last chunk): an answer now means it was not read whole
        response = conn.getresponse()  # a socket timeout here: the server waited for the rest
        assert response.status == 413
        assert b'"field":"file"' in response.read()
    finally:
        conn.close()
    assert _upload_state(w, w.a) == before
    record_property("tried", 4)


XES_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'
LAUGHS = XES_HEAD + (
    b'<!DOCTYPE log [\n<!ENTITY lol "lol">\n'
    + b"".join(
        b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<log xes.version="1.0"><trace><string key="concept:name" value="&lol9;"/>'
    b'<event><string key="concept:name" value="a"/>'
    b'<date key="time:timestamp" value="2024-01-01T00:00:00"/></event></trace></log>\n'
)
XXE = XES_HEAD + (
    b'<!DOCTYPE log [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<log xes.version="1.0"><trace><string key="concept:name" value="&xxe;"/>'
    b'<event><string key="concept:name" value="a"/>'
    b'<date key="time:timestamp" value="2024-01-01T00:00:00"/></event></trace></log>\n'
)
XXE_PARAMETER = XES_HEAD + (
    b'<!DOCTYPE log [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>\n'
    b'<log xes.version="1.0"></log>\n'
)
# a DOCTYPE after a long prologue: the scan must look past the first block
LATE_DOCTYPE = XES_HEAD + b"<!--" + b" " * 2_000_000 + b"-->" + LAUGHS[len(XES_HEAD) :]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _gzip_bomb() -> bytes:
    # ~60 MB of whitespace inside an XES: ~60 kB compressed, far past 200x
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        gz.write(XES_HEAD + b'<log xes.version="1.0">')
        chunk = b" " * (1 << 20)
        for _ in range(60):
            gz.write(chunk)
        gz.write(b"</log>\n")
    return out.getvalue()


def test_hostile_uploads(world: World, datasets: Path, record_property: Any) -> None:
    """Billion laughs, XXE (general and parameter entities), a DTD after a long prologue, the
    same gzipped, a gzip bomb (>200x), a gzip inside a gzip, a ZIP archive holding a real XES, a
    zip bomb: each 422 naming `file`, and no dataset or file left behind. Hostile file names
    (.., a path, NUL, control characters) are stored by a safe base name or refused, never 5xx."""
    w = world
    running = (datasets / "running-example.xes").read_bytes()
    bomb = _gzip_bomb()
    assert len(bomb) < MAX_UPLOAD
    cases = {
        "billion-laughs.xes": LAUGHS,
        "xxe.xes": XXE,
        "xxe-parameter.xes": XXE_PARAMETER,
        "billion-laughs.xes.gz": gzip.compress(LAUGHS),
        "xxe.xes.gz": gzip.compress(XXE),
        "bomb.xes.gz": bomb,
        "twice.xes.gz": gzip.compress(gzip.compress(running)),
        "archive.zip": _zip({"running-example.xes": running}),
        "archive.xes": _zip({"running-example.xes": running}),
        "zip-bomb.zip": _zip({f"{i}.xes": b" " * (50 << 20) for i in range(1)}),
    }
    late = gzip.compress(LATE_DOCTYPE)
    assert len(late) < MAX_UPLOAD
    cases["late-doctype.xes.gz"] = late
    before = _upload_state(w, w.a)
    tried = 0
    for name, data in cases.items():
        assert len(data) <= MAX_UPLOAD, name
        r = w.a.post("/datasets", files={"file": (name, data)})
        tried += 1
        body = assert_problem(r, 422, "file")
        assert "root:" not in r.text, (name, body)  # nothing of /etc/passwd
    assert _upload_state(w, w.a) == before
    # hostile names: the file is a good one; the name must not reach the disk as a path
    small = running
    for name in [
        "..",
        ".",
        "../../escape.xes",
        "..\\..\\escape.xes",
        "/etc/x.xes",
        "a\x00b.xes",
        "a\nb.xes",
        "é" * 150 + ".xes",
        "%2e%2e",
        " ",
        "a" * 600 + ".xes",
    ]:
        r = w.a.post("/datasets", files={"file": (name, small)})
        tried += 1
        assert r.status_code in (201, 400, 422), (name, r.status_code, r.text[:300])
        if r.status_code == 201:
            stored = r.json()["fileName"]
            assert "/" not in stored and "\\" not in stored and stored not in (".", ".."), stored
            assert "\x00" not in stored, stored
        else:
            assert_problem(r, r.status_code, "file")
    # each upload lives in datasets/<tenant>/<dataset id>/<base name>, nowhere else
    mine = w.stack.data_dir / "datasets" / w.a.tenant
    outside = [p for p in w.stack.data_dir.rglob("escape.xes") if p.parent.parent != mine]
    outside += [p for p in (*mine.parent.glob("*"), *mine.glob("*")) if p.is_file()]
    assert not outside, outside
    record_property("tried", tried)
