"""Prefect's API is locked (issue #16): `pmops up` sets PREFECT_SERVER_API_AUTH_STRING, so a local
process without the auth string can neither list the tenants' flow runs nor change their states,
while pmops's own processes (API, runner, flow runs) carry it and operations complete.

A stack of its own; a second test runs pmops against a Prefect server started "elsewhere" (its
own process and database, its own auth string) through PMOPS_PREFECT_API_URL and
PMOPS_PREFECT_AUTH_STRING, as a several-machines deployment does.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from pmops.prefect_auth import basic_auth_header
from tests.service_stack import (
    REPO,
    TERMINAL,
    Stack,
    base_env,
    eventually,
    free_port,
    running_stack,
)

pytestmark = [pytest.mark.security, pytest.mark.xdist_group("stack-prefect-auth")]

UNAUTHORIZED = {"exception_message": "Unauthorized"}


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("prefect-auth"), prefect_template) as s:
        yield s


def running_operation(stack: Stack, datasets: Path) -> tuple[str, str]:
    """(operation id, flow run id) of a bpic2012 analysis that is Running."""
    api = stack.dev()
    try:
        ds = api.upload(datasets / "bpic2012.xes.gz")
        op = api.start(ds["datasetId"], "locked prefect", parameters={"analysisType": "standard"})
        status = api.wait(
            op["operationId"], until=lambda s: s["status"] == "Running" or s["status"] in TERMINAL
        )
    finally:
        api.close()
    assert status["status"] == "Running", status
    return op["operationId"], status["prefect"]["flowRunId"]


def wrong_credentials(stack: Stack) -> dict[str, dict[str, str]]:
    """Every way of not having the auth string: none, a wrong one, pmops's own bearer token,
    the right password without its user, garbage."""
    user, _, password = stack.prefect_auth.partition(":")
    return {
        "none": {},
        "wrong string": basic_auth_header("pmops:not-the-secret"),
        "pmops bearer token": {"Authorization": f"Bearer {stack.token}"},
        "password only": basic_auth_header(password),
        "user only": basic_auth_header(f"{user}:"),
        "not base64": {"Authorization": "Basic !!!not-base64!!!"},
        "scheme only": {"Authorization": "Basic"},
    }


def refused_websocket(port: int, token: str | None, subprotocol: bool) -> str:
    """How Prefect's event stream (every flow run's events, with their tags) answers a client
    that authenticates with `token`: 'closed <code>', 'sent <first message>' or 'open' (no
    event within 5 s, the connection still open)."""

    async def attempt() -> str:
        url = f"ws://127.0.0.1:{port}/api/events/out"
        protocols: Any = ["prefect"] if subprotocol else None
        try:
            async with websockets.connect(url, subprotocols=protocols, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                await ws.send(json.dumps({"type": "filter", "filter": {}}))
                try:
                    first = await asyncio.wait_for(ws.recv(), timeout=5)
                except TimeoutError:
                    return "open"
                return f"sent {str(first)[:200]}"
        except websockets.exceptions.ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        except websockets.exceptions.InvalidStatus as exc:
            return f"closed http {exc.response.status_code}"

    return asyncio.run(attempt())


def test_the_auth_less_prefect_request(auth_stack: Stack, datasets: Path, record_property) -> None:
    """The auth-less Prefect request: while a bpic2012 analysis runs, a local process without
    Prefect's auth string (none, a wrong one, pmops's bearer token, half of it, garbage) lists
    flow runs (POST /api/flow_runs/filter), reads the run, forces it CANCELLING
    (POST /api/flow_runs/{id}/set_state), deletes it, reads Prefect's settings and opens its
    event stream. Every HTTP request is 401 and the stream is closed unauthenticated; the run
    stays Running without a Cancelling state, the operation completes, and the same requests
    with the auth string (what the Prefect UI sends after sign-in) are answered."""
    stack = auth_stack
    op_id, run_id = running_operation(stack, datasets)
    tried, wrong = 0, []
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/flow_runs/filter", {"flow_runs": {}}),
        ("POST", "/flow_runs/count", {}),
        ("GET", f"/flow_runs/{run_id}", None),
        (
            "POST",
            f"/flow_runs/{run_id}/set_state",
            {"state": {"type": "CANCELLING", "message": "auth-less"}, "force": True},
        ),
        ("DELETE", f"/flow_runs/{run_id}", None),
        ("POST", "/deployments/filter", {}),
        ("GET", "/admin/settings", None),
        ("POST", "/health", {}),  # only GET /health and /ready are open
    ]
    for label, headers in wrong_credentials(stack).items():
        for method, path, body in attempts:
            r = stack.prefect_api(method, path, json=body, headers=headers, auth=False)
            tried += 1
            if r.status_code != 401 or r.json() != UNAUTHORIZED or "tenant:" in r.text:
                wrong.append(f"{label}: {method} {path} -> {r.status_code} {r.text[:200]}")
    for token, subprotocol in [(None, True), ("pmops:not-the-secret", True), (None, False)]:
        answer = refused_websocket(stack.prefect_port, token, subprotocol)
        tried += 1
        if not answer.startswith("closed"):
            wrong.append(f"events/out with {token!r}: {answer}")
    assert wrong == [], "\n".join(wrong)
    # nothing changed: the run kept running and was never Cancelling, the operation completed
    assert stack.flow_run(run_id)["state_type"] in ("RUNNING", "COMPLETED")
    api = stack.dev()
    final = api.wait(op_id)
    api.close()
    assert final["status"] == "Completed", final
    assert eventually(lambda: stack.flow_run(run_id)["state_type"] == "COMPLETED", 60)
    states = stack.prefect_api("GET", "/flow_run_states/", params={"flow_run_id": run_id}).json()
    assert "CANCELLING" not in [s["type"] for s in states], states
    # with the auth string the same requests are answered (the open health check too)
    listed = stack.prefect_api("POST", "/flow_runs/filter", json={"flow_runs": {}})
    assert listed.status_code == 200 and run_id in [r["id"] for r in listed.json()]
    assert stack.prefect_api("GET", "/health", auth=False).status_code == 200
    signed_in = refused_websocket(stack.prefect_port, stack.prefect_auth, True)
    assert not signed_in.startswith("closed"), signed_in
    record_property("tried", tried)
    record_property(
        "observed",
        f"{tried} requests without the auth string: all refused (401, or the event stream closed);"
        " the run stayed Running and its operation Completed",
    )


def test_operator_signs_in_to_the_prefect_ui_and_a_restart_keeps_the_string(
    auth_stack: Stack,
) -> None:
    """The Prefect UI asks for the auth string (its ui-settings say auth BASIC), `pmops
    prefect-auth` prints the one in DATA_DIR/prefect-auth (mode 0600), and after a restart of the
    whole service the same string still signs in."""
    stack = auth_stack
    ui = f"http://127.0.0.1:{stack.prefect_port}"
    settings = httpx.get(f"{ui}/ui-settings", timeout=10).json()
    assert settings["auth"] == "BASIC", settings
    page = httpx.get(f"{ui}/", timeout=10, follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    secret = stack.data_dir / "prefect-auth"
    assert secret.stat().st_mode & 0o777 == 0o600
    shown = subprocess.run(
        [sys.executable, "-m", "pmops.cli.commands", "prefect-auth"],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before = shown.stdout.strip()
    assert before == secret.read_text().strip() == stack.prefect_auth
    assert "pmops prefect-auth" in (stack.data_dir / "pmops-up.log").read_text()
    stack.stop()
    stack.template_db = None  # keep Prefect's database: a plain restart
    stack.start()
    assert stack.prefect_auth == before
    assert stack.prefect_api("POST", "/flow_runs/filter", json={}).status_code == 200
    assert stack.prefect_api("POST", "/flow_runs/filter", json={}, auth=False).status_code == 401


@pytest.fixture
def prefect_elsewhere(tmp_path: Path, prefect_template: Path) -> Iterator[tuple[str, str]]:
    """A Prefect server of its own (as on another machine): (API URL, its auth string)."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    shutil.copy(prefect_template, home / "prefect.db")
    port, auth = free_port(), "operator:chosen-elsewhere"
    env = base_env(
        home,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_AUTH_STRING=auth,
    )
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert eventually(up, 120), (home / "server.log").read_text()[-3000:]
        yield url, auth
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_an_external_prefect_with_the_operators_auth_string(
    tmp_path: Path, prefect_template: Path, prefect_elsewhere: tuple[str, str], datasets: Path
) -> None:
    """Several machines: pmops runs its operations on a Prefect server started elsewhere with its
    own auth string, given as PMOPS_PREFECT_AUTH_STRING (it wins: nothing is generated)."""
    url, auth = prefect_elsewhere
    with running_stack(
        tmp_path / "pmops", prefect_template, prefect_api_url=url, prefect_auth_string=auth
    ) as stack:
        api = stack.dev()
        ds = api.upload(datasets / "receipt.xes.gz")
        op = api.start(ds["datasetId"], "elsewhere", parameters={"analysisType": "quick"})
        final = api.wait(op["operationId"])
        api.close()
        assert final["status"] == "Completed", final
        assert not (stack.data_dir / "prefect-auth").exists()
        run = final["prefect"]["flowRunId"]
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{url}/flow_runs/{run}").status_code == 401
            found = http.get(f"{url}/flow_runs/{run}", headers=basic_auth_header(auth))
        assert found.status_code == 200, found.text
        assert f"operation:{op['operationId']}" in found.json()["tags"]
        deadline = time.monotonic() + 60
        while found.json()["state_type"] != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.5)
            found = httpx.get(f"{url}/flow_runs/{run}", headers=basic_auth_header(auth))
        assert found.json()["state_type"] == "COMPLETED"
