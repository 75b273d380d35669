"""`pmops up`: the whole service under one supervising command.

Starts, in order, a Prefect server (SQLite under the data dir), the runner serving one deployment
per operation type, the API (uvicorn) and the deliverer (webhooks, callbacks, email, Slack).
A child that dies is restarted (at most 5 times a minute); Ctrl-C stops all of them. Data
stays in the data dir, so the next start keeps it.

Prefect's API is locked with an auth string (pmops/prefect_auth.py): the server requires it, every
child sends it, and the operator signs in to the Prefect UI with it (`pmops prefect-auth`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pmops.prefect_auth import auth_file, configured, prefect_auth_string
from pmops.settings import Settings, get_settings
from pmops.store.engine import engine_for
from pmops.store.schema import StoreNotCurrent, upgrade_store
from pmops.store.tokens import create_token


def prefect_env(settings: Settings) -> dict[str, str]:
    """Environment shared by the server, the runner and the API's Prefect client.

    The server requires the auth string (PMOPS_PREFECT_AUTH_STRING, else the one generated once
    into DATA_DIR/prefect-auth) and every child sends it: the runner, the flow-run processes it
    starts (they inherit its environment), the API and the deliverer."""
    home = (settings.data_dir / "prefect").resolve()
    home.mkdir(parents=True, exist_ok=True)
    auth = prefect_auth_string(settings, create=True)
    assert auth is not None  # created when missing
    env = dict(os.environ)
    # Prefect's client sends an API key (Prefect Cloud's) instead of the auth string if both are
    # set: the server would answer 401
    env.pop("PREFECT_API_KEY", None)
    env.update(
        PREFECT_SERVER_API_AUTH_STRING=auth,
        PREFECT_API_AUTH_STRING=auth,
        PREFECT_HOME=str(home),
        PREFECT_API_URL=settings.resolved_prefect_api_url,
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(settings.prefect_port),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        # SQLite answers "database is locked" under bursts; these services add writes we do
        # not need (the API queues runs itself and marks dead ones)
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_LEVEL="WARNING",
        PM4PY_SHOW_PROGRESS_BAR="false",
        PMOPS_DATA_DIR=str(settings.data_dir.resolve()),
    )
    return env


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str], log_dir: Path) -> None:
        log = (log_dir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(self.argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # its own children (the runner's flow-run processes) must not outlive it
        _, alive = psutil.wait_procs(family, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def dev_token(settings: Settings) -> tuple[str, str, str]:
    """A development tenant, project and token, created once and kept in the data dir."""
    path = settings.data_dir / "dev-token"
    if path.exists():
        tenant, project, token = path.read_text().split()
        return tenant, project, token
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    engine = engine_for(settings.resolved_database_url)
    # the operator's own development token on this machine: every priority
    token = create_token(engine, tenant, project, "developer", max_priority="Critical")
    path.write_text(f"{tenant} {project} {token}\n")
    path.chmod(0o600)
    return tenant, project, token


def banner(settings: Settings, api_url: str, tenant: str, project: str, token: str) -> str:
    """What `pmops up` prints once everything answers: where things are and how to sign in."""
    ui = settings.resolved_prefect_api_url.removesuffix("/api")
    sign_in = (
        "PMOPS_PREFECT_AUTH_STRING"
        if configured(settings) is not None
        else f"`pmops prefect-auth` or {auth_file(settings).resolve()}"
    )
    return f"""
pmops is running.
  API docs     {api_url}/docs
  API base     {api_url}/api/{tenant}/{project}
  Prefect UI   {ui}
               (it asks for the auth string once: {sign_in})
  dev token    {token}
  (tenant {tenant}, project {project})
Ctrl-C stops everything; data stays in {settings.data_dir.resolve()}.
"""


def up(settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # the store's schema first: the processes below refuse a store behind their release
    try:
        before, after = upgrade_store(settings.resolved_database_url)
    except StoreNotCurrent as exc:
        print(f"pmops: {exc}", file=sys.stderr)
        return 1
    if before not in (None, after):
        print(f"pmops: upgraded the store to revision {after} (from {before})", flush=True)
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = prefect_env(settings)
    py = sys.executable
    server = Child("prefect-server", [py, "-m", "prefect", "server", "start"])
    runner = Child("runner", [py, "-m", "deployments.serve"])
    api = Child(
        "api",
        [
            py,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            settings.api_host,
            "--port",
            str(settings.api_port),
            "--log-level",
            "warning",
        ],
    )
    deliverer = Child("deliverer", [py, "-m", "pmops.delivery.deliverer"])
    children = [server, runner, api, deliverer]
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    print(f"pmops: starting the Prefect server (logs in {logs})", flush=True)
    server.start(env, logs)
    if not wait_http(f"{settings.resolved_prefect_api_url}/health", 120):
        print("pmops: the Prefect server did not start; see its log", file=sys.stderr)
        server.stop()
        return 1
    # before the runner: it schedules the development project's monthly pipeline
    tenant, project, token = dev_token(settings)
    runner.start(env, logs)
    api.start(env, logs)
    deliverer.start(env, logs)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if not wait_http(f"{api_url}/health", 60):
        print("pmops: the API did not answer; see its log", file=sys.stderr)
    print(banner(settings, api_url, tenant, project, token), flush=True)
    while not stopping:
        time.sleep(0.5)
        for child in children:
            if stopping or child.alive():
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60] + [now]
            if len(child.restarts) > 5:
                print(f"pmops: {child.name} keeps dying; stopping", file=sys.stderr)
                stopping = True
                break
            print(f"pmops: {child.name} exited; restarting it", file=sys.stderr, flush=True)
            child.start(env, logs)
    for child in reversed(children):
        child.stop()
    print("pmops: stopped", flush=True)
    return 0
