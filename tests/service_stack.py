"""The real service (`pmops up`) as a subprocess, and the HTTP helpers the service tests share.

A stack is one `pmops up` with its own data dir and free ports: a Prefect server, the runner and
the API, exactly as a developer starts it. Nothing of ours is mocked. The Prefect database is
migrated once per test session into a template directory and copied into each stack, which cuts
a stack's start from ~10 s to ~3 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from pmops.prefect_auth import basic_auth_header

REPO = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"
TERMINAL = {"Completed", "Failed", "Cancelled", "Timeout"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RELAXED_LIMITS = {
    "PMOPS_TOKEN_REQUESTS_PER_SECOND": "1000000",
    "PMOPS_TOKEN_REQUEST_BURST": "1000000",
    "PMOPS_AUTH_FAILURES_PER_ADDRESS": "1000000",
    "PMOPS_QUEUED_OPERATIONS_PER_PROJECT": "1000000",
    "PMOPS_WEBHOOKS_PER_PROJECT": "1000000",
    "PMOPS_STREAMS_PER_TOKEN": "1000000",
}


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMOPS_", "PREFECT_"))}
    env.update(PMOPS_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def migrate_prefect_template(target: Path) -> Path:
    """A migrated Prefect SQLite database (target/prefect.db) to copy into each stack."""
    work = target.with_name(target.name + ".partial")  # renamed only once complete
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "prefect.db"
    env = base_env(
        work,
        PREFECT_HOME=str(work),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{db}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=180,
    )
    work.rename(target)
    return target / "prefect.db"


class Stack:
    """One running `pmops up`; `client()` gives an httpx client for the dev tenant or another."""

    def __init__(
        self,
        data_dir: Path,
        template_db: Path | None = None,
        only: str | None = None,
        **settings: str | int | float,
    ) -> None:
        """`only`: `pmops up --only` (one machine's share, README "Scaling out")."""
        self.data_dir = data_dir
        self.only = only
        self.api_port, self.prefect_port = free_port(), free_port()
        extra = {
            "PMOPS_API_PORT": str(self.api_port),
            "PMOPS_PREFECT_PORT": str(self.prefect_port),
            # a killed run is Failed within 20 s + the sweep (the tests allow 60 s); 6 s failed
            # live runs as worker_lost on a loaded machine (docs/service.md)
            "PMOPS_HEARTBEAT_STALE_SECONDS": "20",
            # the suites send many requests from one address and token (fuzzing, matrices,
            # floods); the limits themselves are tested in process (tests/api/test_*limits*.py)
            **RELAXED_LIMITS,
        }
        extra.update({f"PMOPS_{k.upper()}": str(v) for k, v in settings.items()})
        self.env = base_env(data_dir, **extra)
        self.template_db = template_db
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tenant = self.project = self.token = ""
        self.leftovers: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, deadline: float = 120.0) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.template_db is not None:
            (self.data_dir / "prefect").mkdir(exist_ok=True)
            shutil.copy(self.template_db, self.data_dir / "prefect" / "prefect.db")
        self.log = (self.data_dir / "pmops-up.log").open("ab")
        only = ["--only", self.only] if self.only else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pmops.cli.commands", "up", *only],
            env=self.env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        token_file = self.data_dir / "dev-token"
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pmops up exited with {self.proc.returncode}:\n{self.logs()}")
            if self.only is not None and "api" not in self.only:
                if self.prefect_healthy():  # nothing of ours answers: the Prefect server does
                    return self
            elif token_file.exists() and self.healthy():
                text = token_file.read_text().split()
                if len(text) == 3:
                    self.tenant, self.project, self.token = text
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the stack did not become healthy in {deadline} s:\n{self.logs()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, grace: float = 60.0) -> None:
        if self.proc is None:
            return
        tree = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # what the supervisor left behind (it should leave nothing) is ended by its id
        _, alive = psutil.wait_procs(tree, timeout=2)
        self.leftovers = []
        for p in alive:
            try:
                self.leftovers.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                p.kill()
            except psutil.NoSuchProcess:
                continue
        self.log.close()
        self.proc = None

    def descendants(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def child(self, marker: str) -> psutil.Process:
        """The supervisor's child whose command line contains `marker` (e.g. 'uvicorn')."""
        assert self.proc is not None
        for p in psutil.Process(self.proc.pid).children():
            try:
                if marker in " ".join(p.cmdline()):
                    return p
            except psutil.NoSuchProcess:
                continue
        raise LookupError(marker)

    def restarted(self, marker: str, old_pid: int, deadline: float = 60.0) -> psutil.Process:
        """The supervisor's new child for `marker` once it has replaced process `old_pid`."""
        found: list[psutil.Process] = []

        def check() -> bool:
            try:
                p = self.child(marker)
            except LookupError:
                return False
            if p.pid == old_pid:
                return False
            found[:] = [p]
            return True

        if not eventually(check, deadline):
            raise AssertionError(f"{marker} was not restarted in {deadline} s\n{self.logs()}")
        return found[0]

    # -- Prefect's own API (what the Prefect UI shows) ----------------------------------------
    @property
    def prefect_auth(self) -> str:
        """The Prefect API's auth string: PMOPS_PREFECT_AUTH_STRING, else the one `pmops up`
        generated into the data dir."""
        given = self.env.get("PMOPS_PREFECT_AUTH_STRING")
        return given or (self.data_dir / "prefect-auth").read_text().strip()

    @property
    def prefect_headers(self) -> dict[str, str]:
        """What the operator's Prefect UI (and every pmops process) sends: basic auth."""
        return basic_auth_header(self.prefect_auth)

    def prefect_api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A call to Prefect's API with the stack's auth string (`auth=False`: without), asked
        again while its SQLite server answers 503 ("database is locked", which clears within
        moments), as Prefect's own client does."""
        url = f"http://127.0.0.1:{self.prefect_port}/api{path}"
        timeout = kw.pop("timeout", 10)
        end = time.monotonic() + (15 if kw.pop("busy_retry", True) else 0)
        headers = {
            **(self.prefect_headers if kw.pop("auth", True) else {}),
            **kw.pop("headers", {}),
        }
        while True:
            response = httpx.request(method, url, timeout=timeout, headers=headers, **kw)
            if response.status_code != 503 or time.monotonic() > end:
                return response
            time.sleep(0.2)

    def prefect_healthy(self) -> bool:
        try:
            return (
                self.prefect_api("GET", "/health", timeout=2, busy_retry=False).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        r = self.prefect_api("GET", f"/flow_runs/{flow_run_id}")
        r.raise_for_status()
        return dict(r.json())

    def flow_runs_of(self, operation_id: str) -> list[dict[str, Any]]:
        """Every flow run created for the operation (tag operation:<id>), oldest first."""
        r = self.prefect_api(
            "POST",
            "/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": [f"operation:{operation_id}"]}}},
        )
        r.raise_for_status()
        return sorted(r.json(), key=lambda run: run["created"])

    def set_flow_run_state(
        self, flow_run_id: str, state_type: str, message: str, name: str | None = None
    ) -> None:
        """Force a flow run's state in Prefect, as the runner or an operator in the UI does."""
        state = {"type": state_type, "message": message, **({"name": name} if name else {})}
        r = self.prefect_api(
            "POST", f"/flow_runs/{flow_run_id}/set_state", json={"state": state, "force": True}
        )
        r.raise_for_status()
        assert r.json()["status"] == "ACCEPT", r.json()

    def logs(self) -> str:
        out = []
        for path in [self.data_dir / "pmops-up.log", *sorted((self.data_dir / "logs").glob("*"))]:
            if path.is_file():
                out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    # -- tenants ------------------------------------------------------------------------------
    def create_token(
        self,
        tenant: str | None = None,
        project: str | None = None,
        expires_in: str | None = None,
        expires_at: datetime | None = None,
    ) -> Tenant:
        """A token made by `pmops tokens create` (`expires_in` as its --expires-in); one with
        `expires_at` (which may be past, as the CLI refuses) is written into the store directly."""
        tenant = tenant or str(uuid.uuid4())
        project = project or str(uuid.uuid4())
        if expires_at is not None:
            from pmops.store.tables import create_token, make_engine

            url = self.env.get("PMOPS_DATABASE_URL") or (
                f"sqlite:///{(self.data_dir / 'pmops.db').resolve()}"
            )
            engine = make_engine(url)
            try:
                token = create_token(
                    engine, tenant, project, "expiring token", expires_at, "Critical"
                )
            finally:
                engine.dispose()
            return Tenant(self, tenant, project, token)
        extra = ["--expires-in", expires_in] if expires_in is not None else []
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pmops.cli.commands",
                "tokens",
                "create",
                "--tenant",
                tenant,
                "--project",
                project,
                "--max-priority",  # the suites' tokens may use every priority
                "Critical",
                *extra,
            ],
            env=self.env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Tenant(self, tenant, project, out.stdout.strip())

    def dev(self) -> Tenant:
        return Tenant(self, self.tenant, self.project, self.token)


class Tenant:
    """A token and its tenant/project on a stack, with the calls the tests make."""

    def __init__(self, stack: Stack, tenant: str, project: str, token: str) -> None:
        self.stack, self.tenant, self.project, self.token = stack, tenant, project, token
        self.base = f"/api/{tenant}/{project}"
        self.http = httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(self._url(path), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(self._url(path), **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.request("DELETE", self._url(path), **kw)

    def _url(self, path: str) -> str:
        return path if path.startswith(("/api/", "/health", "http")) else self.base + path

    # -- datasets -------------------------------------------------------------------------
    def upload(self, path: Path, name: str | None = None, **headers: str) -> dict[str, Any]:
        # an upload is validated before it is answered: bpic2012 takes ~10 s on a quiet machine
        # and over 60 s beside the other worker's heaviest tests, so more than the usual 60 s
        with path.open("rb") as fh:
            r = self.post(
                "/datasets",
                files={"file": (name or path.name, fh)},
                headers=headers,
                timeout=300,
            )
        assert r.status_code == 201, r.text
        return dict(r.json())

    # -- operations -----------------------------------------------------------------------
    def start(
        self,
        dataset_id: str | None,
        name: str = "test analysis",
        operation_type: str = "ProcessMiningAnalysis",
        **body: Any,
    ) -> dict[str, Any]:
        params = dict(body.pop("parameters", {}))
        if dataset_id is not None:
            params["datasetId"] = dataset_id
        payload = {
            "operationType": operation_type,
            "operationName": name,
            "parameters": params,
            **body,
        }
        r = self.post("/async/operation", json=payload)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def status(self, operation_id: str) -> dict[str, Any]:
        r = self.get(f"/async/operation/{operation_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(
        self,
        operation_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda s: s["status"] in TERMINAL,
        deadline: float = 120.0,
        every: float = 0.2,
        seen: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            s = self.status(operation_id)
            if seen is not None:
                seen.append(s)
            if until(s):
                return s
            if time.monotonic() > end:
                raise AssertionError(
                    f"{operation_id} did not reach the expected state in {deadline} s; "
                    f"last status {s['status']} {s['progress']}\n{self.stack.logs()}"
                )
            time.sleep(every)

    def results(self, operation_id: str, **params: Any) -> httpx.Response:
        return self.get(f"/async/operation/{operation_id}/results", params=params)

    def close(self) -> None:
        self.http.close()


def concurrently(
    api: Tenant, n: int, call: Callable[[httpx.Client], httpx.Response]
) -> list[httpx.Response]:
    """`call(client)` from n threads (own clients) released together: a race, not a queue."""
    barrier = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.stack.url, headers=api.http.headers, timeout=60) as client:
            barrier.wait()
            return call(client)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def running_phase(name: str) -> Callable[[dict[str, Any]], bool]:
    """A wait condition: the operation is Running the named phase."""

    def check(s: dict[str, Any]) -> bool:
        if s["status"] in TERMINAL:
            raise AssertionError(f"{s['operationId']} ended ({s['status']}) before phase {name}")
        return s["status"] == "Running" and any(
            p["phaseName"] == name and p["status"] == "Running" for p in s["phases"]
        )

    return check


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with this status, naming `field` in `errors` when given."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body = dict(r.json())
    assert {"type", "title", "status", "detail", "instance"} <= set(body), body
    assert body["status"] == status
    if field is not None:
        fields = [e["field"] for e in body.get("errors") or []]
        assert field in fields, f"{field} not in {fields}: {body}"
    return body


def pid_of(status: dict[str, Any]) -> int:
    """The flow-run process's id from execution.workerNode ('host:pid')."""
    node = status["execution"]["workerNode"]
    assert node and ":" in node, node
    return int(node.rsplit(":", 1)[1])


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def frozen(proc: psutil.Process) -> Iterator[psutil.Process]:
    """SIGSTOP a process for the block (SIGCONT after, if it still exists)."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield proc
    finally:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGCONT)


def eventually(check: Callable[[], bool], deadline: float, every: float = 0.2) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(every)
    return check()


@contextmanager
def running_stack(
    data_dir: Path, template_db: Path | None = None, **settings: str | int | float
) -> Iterator[Stack]:
    stack = Stack(data_dir, template_db, **settings).start()
    try:
        yield stack
    finally:
        stack.stop()
