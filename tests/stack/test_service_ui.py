"""The results pages for people (/ui) on the real service: signing in and out by cookie, the page
of an operation (finished, running, failed), its artifacts and live stream; and the page as
headless Chromium draws it, driven through chromedriver's W3C WebDriver API."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from PIL import Image

from tests.service_stack import REPO, Stack, Tenant, free_port

pytestmark = pytest.mark.xdist_group("stack")

COOKIE = "pmops_token"
WINDOW = (1400, 2400)


def page_of(op_id: str) -> str:
    return f"/ui/operations/{op_id}"


def browser(stack: Stack) -> httpx.Client:
    """A client like a browser without a session: it keeps cookies, follows no redirect."""
    return httpx.Client(base_url=stack.url, timeout=60, follow_redirects=False)


@contextmanager
def signed_in(stack: Stack, token: str) -> Iterator[httpx.Client]:
    with browser(stack) as client:
        r = client.post("/ui/login", data={"token": token, "next": "/ui/"})
        assert r.status_code == 303, r.text
        yield client


def tenant_wide_token(stack: Stack, tenant: str) -> str:
    """A token of a whole tenant (no project), as `pmops tokens create --tenant` makes it."""
    out = subprocess.run(
        [sys.executable, "-m", "pmops.cli.commands", "tokens", "create", "--tenant", tenant],
        env=stack.env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def read_events(
    client: httpx.Client, url: str, last_id: str | None = None, deadline: float = 180
) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", url, headers=headers, timeout=deadline) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                current[name] = value.strip()
            elif not line and current:
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    found.append(current)
                current = {}
    return found


# -- signing in and out ------------------------------------------------------------------------
def test_sign_in_page_and_sign_out(stack: Stack, api: Tenant, completed_analysis: dict) -> None:
    op_id = completed_analysis["operationId"]
    page = page_of(op_id)
    with browser(stack) as anon:
        r = anon.get(page)
        assert r.status_code == 303
        assert r.headers["location"] == f"/ui/login?next={quote(page, safe='')}"
        form = anon.get(r.headers["location"])
        assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in form.headers["content-security-policy"]
        assert 'name="token"' in form.text and f'name="next" value="{page}"' in form.text

        bad = anon.post("/ui/login", data={"token": "pmops_not-a-token", "next": page})
        assert bad.status_code == 401
        assert "That token is not valid." in bad.text and 'name="token"' in bad.text
        assert "set-cookie" not in bad.headers and COOKIE not in anon.cookies

        # another site cannot sign a person in (with its own token, say)
        forged = anon.post(
            "/ui/login",
            data={"token": api.token, "next": page},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        forged = anon.post(
            "/ui/login",
            data={"token": api.token, "next": page},
            headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"},
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers

        ok = anon.post("/ui/login", data={"token": api.token, "next": page})
        assert ok.status_code == 303 and ok.headers["location"] == page
        cookie = ok.headers["set-cookie"]
        attributes = {a.strip().lower() for a in cookie.split(";")}
        assert cookie.startswith(f"{COOKIE}={api.token};")
        assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
        assert "secure" not in attributes  # plain http here; https requests get Secure
        shown = anon.get(page)
        assert shown.status_code == 200, shown.text
        assert completed_analysis["operationName"] in html.unescape(shown.text)
        assert shown.headers["cache-control"] == "no-store"

        home = anon.get("/ui/")
        # the landing page lists the tenant's most recent operations (the suite makes many)
        newest = api.get("/async/operations", params={"pageSize": 5}).json()["operations"]
        assert home.status_code == 200
        assert any(f'href="/ui/operations/{o["operationId"]}"' in home.text for o in newest)

        # `next` leads only to this UI's pages
        for elsewhere in ("https://evil.example/", "//evil.example/ui/", "/api/x", "/ui/../api"):
            r = anon.post("/ui/login", data={"token": api.token, "next": elsewhere})
            assert r.status_code == 303 and r.headers["location"] == "/ui/", elsewhere

        out = anon.post("/ui/logout")
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert out.headers["set-cookie"].startswith(f'{COOKIE}="";')
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert COOKIE not in anon.cookies
        assert anon.get(page).status_code == 303

    # the Authorization header works as well as the cookie
    r = httpx.get(stack.url + page, headers={"Authorization": f"Bearer {api.token}"}, timeout=60)
    assert r.status_code == 200

    # a cookie whose token is no longer valid: back to signing in, the cookie cleared
    with browser(stack) as stale:
        stale.cookies.set(COOKIE, "pmops_revoked", domain="127.0.0.1", path="/ui")
        r = stale.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
        assert r.headers["set-cookie"].startswith(f'{COOKIE}="";')


def test_tenancy_is_a_wall(stack: Stack, api: Tenant, completed_analysis: dict) -> None:
    page = page_of(completed_analysis["operationId"])
    other_tenant = stack.create_token()
    other_project = stack.create_token(tenant=api.tenant)
    for token in (other_tenant.token, other_project.token):
        with signed_in(stack, token) as client:
            r = client.get(page)
            assert r.status_code == 404 and "Not found" in r.text
            assert completed_analysis["operationName"] not in html.unescape(r.text)
            assert f'href="{page}"' not in client.get("/ui/").text
            svg = client.get(f"{page}/artifacts/process-map.svg")
            assert svg.status_code == 404 and "<svg" not in svg.text
            assert client.get(f"{page}/events").status_code == 404
    other_tenant.close()
    other_project.close()
    # a token of the whole tenant sees every project's operations
    with signed_in(stack, tenant_wide_token(stack, api.tenant)) as client:
        assert client.get(page).status_code == 200


# -- the page of a finished analysis ------------------------------------------------------------
def test_the_page_of_a_completed_analysis(
    stack: Stack, api: Tenant, completed_analysis: dict
) -> None:
    op_id = completed_analysis["operationId"]
    results = api.results(op_id, format="detailed").json()
    summary = results["summary"]
    with signed_in(stack, api.token) as client:
        r = client.get(page_of(op_id))
    assert r.status_code == 200
    text = r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    for label, key in (
        ("Records analysed", "recordsAnalyzed"),
        ("Process variants", "processVariants"),
        ("Anomalies detected", "anomaliesDetected"),
    ):
        assert re.search(
            rf'class="label">{label}</div><div class="value">{summary[key]:,}</div>', text
        ), (label, summary[key])
    for label in ("Data quality score", "Overall confidence", "Duration", "Cost"):
        assert f'class="label">{label}<' in text
    cost = results["performance"]["resourceUtilization"]["totalCost"]
    assert cost in html.unescape(text)
    assert f'<img src="{page_of(op_id)}/artifacts/process-map.svg"' in text
    assert completed_analysis["prefect"]["uiUrl"] in text
    for chart in ("phase-durations", "anomaly-severities", "bottlenecks"):
        block = text.split(f'id="chart-{chart}"', 1)[1].split("</figure>", 1)[0]
        assert "<svg" in block and block.count("<rect") >= 2, chart
    # the anomalies table: the CSV's first 50 rows
    csv_text = api.get(f"/async/operation/{op_id}/artifacts/anomalies.csv").text
    rows = csv_text.splitlines()
    table = text.split('id="anomalies"', 1)[1].split("</section>", 1)[0]
    assert table.count("<tr>") == 1 + min(50, summary["anomaliesDetected"])
    assert f"<td>{rows[1].split(',')[0]}</td>" in table
    for rec in results["recommendations"]:
        assert rec["recommendation"] in html.unescape(text)
    for artifact in results["artifacts"]:
        name = Path(artifact["downloadUrl"].split("?")[0]).name
        assert f'href="{page_of(op_id)}/artifacts/{name}"' in text
    assert "Failed" not in text.split('id="summary"', 1)[1].split("</section>", 1)[0]
    # finished: no live stream, no script at all; nothing comes from another site
    assert "<script" not in text and 'id="live"' not in text
    assert not re.search(r'(src|href)="(https?:)?//(?!127\.0\.0\.1)', text)


def test_artifacts_by_cookie(stack: Stack, api: Tenant, completed_analysis: dict) -> None:
    op_id = completed_analysis["operationId"]
    base = f"{page_of(op_id)}/artifacts"
    with signed_in(stack, api.token) as client:
        svg = client.get(f"{base}/process-map.svg")
        assert svg.status_code == 200
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.headers["content-disposition"].startswith("inline")
        assert "sandbox" in svg.headers["content-security-policy"]
        assert svg.content == api.get(f"/async/operation/{op_id}/artifacts/process-map.svg").content
        assert b"<svg" in svg.content
        pdf = client.get(f"{base}/report.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("attachment")
        assert pdf.content.startswith(b"%PDF")
        # only the files the results document lists, by their bare names
        for name in (
            "..%2Fresults.json",
            "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            "%2E%2E%2Fresults.json",
            "results.json",
            "state",
            "%2Fetc%2Fpasswd",
            "process-map.svg%00",
        ):
            r = client.get(f"{base}/{name}")
            assert r.status_code == 404, (name, r.status_code)
            assert b"root:" not in r.content and b"recordsAnalyzed" not in r.content
        assert client.get(f"{page_of('op-does-not-exist')}/artifacts/x.svg").status_code == 404
    with browser(stack) as anon:
        r = anon.get(f"{base}/process-map.svg")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")


# -- a running operation, live ---------------------------------------------------------------
def test_a_running_operation_streams_until_its_page_is_finished(
    stack: Stack, api: Tenant, receipt_dataset: dict
) -> None:
    op = api.start(
        receipt_dataset["datasetId"], "live page", parameters={"analysisType": "standard"}
    )
    op_id = op["operationId"]
    with signed_in(stack, api.token) as client:
        r = client.get(page_of(op_id))
        assert r.status_code == 200
        text = r.text
        assert 'id="live"' in text and 'id="overall-bar"' in text
        assert "Records processed" in text and "Current activity" in text
        for phase in ("Data Loading and Validation", "Process Discovery", "Report Generation"):
            assert f'<div class="name">{phase}</div>' in text
        nonce = re.search(r"script-src 'nonce-([^']+)'", r.headers["content-security-policy"])
        assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in text
        assert "new EventSource(" in text
        found = re.search(r'data-events="([^"]+)"', text)
        assert found is not None
        events_url = html.unescape(found.group(1))
        assert events_url.startswith(f"{page_of(op_id)}/events?after=")

        events = read_events(client, events_url)
        types = [e["event"] for e in events]
        assert types[-1] == "operation.completed", types
        assert events[-1]["data"]["data"]["status"] == "Completed"
        assert "operation.progress" in types
        # a reconnecting EventSource resumes after Last-Event-ID
        rest = read_events(client, events_url, last_id=events[0]["id"])
        assert [e["id"] for e in rest] == [e["id"] for e in events[1:]]

        finished = client.get(page_of(op_id)).text
        assert 'id="live"' not in finished and "<script" not in finished
        assert 'class="label">Records analysed<' in finished
    with browser(stack) as anon:
        assert anon.get(f"{page_of(op_id)}/events").status_code == 401


def test_a_failed_operation_shows_why(stack: Stack, api: Tenant, receipt_dataset: dict) -> None:
    op = api.start(
        receipt_dataset["datasetId"],
        "fails in discovery",
        parameters={
            "analysisType": "standard",
            "faultInjection": {"failPhase": "Process Discovery"},
        },
    )
    final = api.wait(op["operationId"])
    assert final["status"] == "Failed", final
    with signed_in(stack, api.token) as client:
        text = client.get(page_of(op["operationId"])).text
    notice = text.split('id="notice"', 1)[1].split("</section>", 1)[0]
    assert "The operation failed" in notice
    assert final["error"]["message"] in html.unescape(notice)
    assert "Completed phases:" in notice and "Data Loading and Validation" in notice
    assert 'class="badge badge-failed">Failed<' in text


# -- headless Chromium -------------------------------------------------------------------------
class WebDriver:
    """The few W3C WebDriver calls the test needs, over chromedriver's HTTP API."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        prefix = f"/session/{self.session}" if self.session else ""
        r = self.http.request(method, prefix + path, json=body)
        payload = r.json()
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {payload}"
        return payload["value"]

    def start(self, args: list[str], binary: str) -> None:
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
        }
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = value["sessionId"]

    def element(self, css: str) -> str:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        return str(found[self.ELEMENT])

    def stop(self) -> None:
        if self.session:
            try:
                self.call("DELETE", "")
            finally:
                self.session = ""
        self.http.close()


@pytest.fixture
def chromedriver(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "headless Chromium is needed (Debian packages chromium and chromium-driver): "
            "run `make system-deps`"
        )
    port = free_port()
    log = (tmp_path / "chromedriver.log").open("wb")
    proc = subprocess.Popen(
        [driver, f"--port={port}", f"--log-path={tmp_path / 'chromedriver.log'}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wd = WebDriver(f"http://127.0.0.1:{port}")
    try:
        end = time.monotonic() + 30
        while True:
            try:
                if wd.http.get("/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < end, "chromedriver did not start"
            time.sleep(0.1)
        profile = tmp_path / "chromium-profile"
        wd.start(
            [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
            ],
            chromium,
        )
        yield wd
    finally:
        # what chromedriver started (Chromium and its helpers), ended by id if still there
        try:
            started = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        try:
            wd.stop()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _, alive = psutil.wait_procs(started, timeout=5)
            for p in alive:
                p.kill()
            log.close()


def browser_sign_in(wd: WebDriver, stack: Stack, token: str, page: str) -> None:
    """Through the login form, as a person does: the token never appears in a URL."""
    wd.call("POST", "/url", {"url": f"{stack.url}/ui/login?next={quote(page, safe='')}"})
    field = wd.element("input[name=token]")
    wd.call("POST", f"/element/{field}/value", {"text": token})
    wd.call("POST", f"/element/{wd.element('button[type=submit]')}/click", {})
    end = time.monotonic() + 30
    while wd.call("GET", "/url") != stack.url + page:
        assert time.monotonic() < end, wd.call("GET", "/source")
        time.sleep(0.1)


DOM_FACTS = """
const img = document.querySelector('#process-map img');
const box = img ? img.getBoundingClientRect() : null;
return {
  img: img ? {complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
              box: [box.width, box.height], src: img.getAttribute('src')} : null,
  text: document.body.innerText,
  viewport: [window.innerWidth, window.innerHeight],
  ratio: window.devicePixelRatio,
  chartBars: document.querySelectorAll('.chart svg rect').length,
  anomalyRows: document.querySelectorAll('#anomalies tbody tr').length,
  cookie: document.cookie,
};
"""


def test_chromium_draws_the_page(
    stack: Stack,
    api: Tenant,
    completed_analysis: dict,
    chromedriver: WebDriver,
    tmp_path: Path,
) -> None:
    wd = chromedriver
    op_id = completed_analysis["operationId"]
    page = page_of(op_id)
    summary = api.results(op_id).json()["summary"]
    browser_sign_in(wd, stack, api.token, page)
    for _ in range(100):  # the page's load includes the map; wait for it to be decoded
        facts = wd.call("POST", "/execute/sync", {"script": DOM_FACTS, "args": []})
        if facts["img"] and facts["img"]["complete"]:
            break
        time.sleep(0.1)

    shot = base64.b64decode(wd.call("GET", "/screenshot"))
    path = tmp_path / "operation-page.png"
    path.write_bytes(shot)
    print(f"\nscreenshot of {page}: {path}")

    # the map is drawn: the SVG decoded and laid out at a real size
    img = facts["img"]
    assert img is not None and img["src"] == f"{page}/artifacts/process-map.svg"
    assert img["complete"] and min(img["natural"]) > 0, img
    assert img["box"][0] > 600 and img["box"][1] > 100, img
    assert facts["chartBars"] >= 6 and facts["anomalyRows"] == min(50, summary["anomaliesDetected"])
    text = facts["text"].lower()
    for label, key in (
        ("records analysed", "recordsAnalyzed"),
        ("process variants", "processVariants"),
        ("anomalies detected", "anomaliesDetected"),
    ):
        assert label in text and f"{summary[key]:,}" in text, (label, summary[key])
    assert facts["cookie"] == ""  # HttpOnly: the page's scripts cannot read the token

    picture = Image.open(io.BytesIO(shot))
    width, height = (round(v * facts["ratio"]) for v in facts["viewport"])
    assert picture.format == "PNG" and picture.size == (width, height), (picture.size, facts)
    assert picture.size[0] == WINDOW[0] and picture.size[1] >= WINDOW[1] - 200, picture.size
    colours = picture.convert("RGB").getcolors(maxcolors=1 << 22) or []
    assert len(colours) > 200, f"{len(colours)} colours: a blank page? {path}"
    commonest = max(n for n, _ in colours)
    assert commonest < 0.9 * width * height, f"one colour fills the page: {path}"


LIVE_FACTS = """
return {
  live: !!document.getElementById('live'),
  figures: !!document.getElementById('figures'),
  marker: window.pmopsMarker === 1,
  percent: (document.getElementById('overall-percent') || {}).textContent || null,
  status: document.getElementById('status-badge').textContent,
};
"""


def test_chromium_follows_a_run_live(
    stack: Stack, api: Tenant, receipt_dataset: dict, chromedriver: WebDriver, tmp_path: Path
) -> None:
    """The page's script (allowed by the CSP's nonce) follows the cookie-authenticated stream and
    reloads the page on the terminal event, which then shows the finished run."""
    wd = chromedriver
    browser_sign_in(wd, stack, api.token, "/ui/")
    params = {"analysisType": "standard"}
    op_id = api.start(receipt_dataset["datasetId"], "watched live", parameters=params)[
        "operationId"
    ]
    wd.call("POST", "/url", {"url": stack.url + page_of(op_id)})
    first = wd.call("POST", "/execute/sync", {"script": LIVE_FACTS, "args": []})
    assert first["live"] and not first["figures"], first
    # gone when the page reloads itself
    wd.call("POST", "/execute/sync", {"script": "window.pmopsMarker = 1;", "args": []})
    seen = []
    end = time.monotonic() + 120
    while True:
        facts = wd.call("POST", "/execute/sync", {"script": LIVE_FACTS, "args": []})
        seen.append(facts)
        if facts["figures"]:
            break
        live_shot = tmp_path / "live-page.png"
        if facts["live"] and facts["percent"] != "0 %" and not live_shot.exists():
            live_shot.write_bytes(base64.b64decode(wd.call("GET", "/screenshot")))
            print(f"\nscreenshot of the live page at {facts['percent']}: {live_shot}")
        assert time.monotonic() < end, seen[-5:]
        time.sleep(0.1)
    assert not facts["marker"] and not facts["live"] and facts["status"] == "Completed", facts
    shown = [f["percent"] for f in seen if f["live"]]
    print("progress seen:", shown)
    assert any(p not in (None, "0 %") for p in shown), shown  # updated in place before the end
    assert api.status(op_id)["status"] == "Completed"
