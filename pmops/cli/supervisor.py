"""`pmops up`: the whole service under one supervising command.

Starts, in order, a Prefect server (SQLite under the data dir, or PMOPS_PREFECT_DATABASE_URL),
the runner serving one deployment per operation type (in workpool execution: a Prefect worker of
the work pool instead), the API (uvicorn) and the deliverer (webhooks, callbacks, email, Slack).
A child that dies is restarted (at most 5 times a minute); Ctrl-C stops all of them. Data
stays in the data dir, so the next start keeps it.

`--only api,runner,deliverer,prefect` starts only those parts (one machine's share when the
service runs on several, README "Scaling out"). With PMOPS_PREFECT_API_URL set no Prefect server
is started at all: the children use that one, once its /health answers.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pmops.prefect_auth import auth_file, configured, prefect_auth_string
from pmops.settings import Settings, get_settings
from pmops.store.engine import engine_for
from pmops.store.schema import StoreNotCurrent, upgrade_store
from pmops.store.tokens import create_token

TRUE_WORDS = ("1", "true", "yes", "on", "t", "y")


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
        PREFECT_SERVER_API_HOST=settings.prefect_host,
        PREFECT_SERVER_API_PORT=str(settings.prefect_port),
        # the operator's own Prefect setting wins, then PMOPS_PREFECT_DATABASE_URL
        PREFECT_SERVER_DATABASE_CONNECTION_URL=os.environ.get(
            "PREFECT_SERVER_DATABASE_CONNECTION_URL"
        )
        or settings.prefect_database_url
        or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        # SQLite answers "database is locked" under bursts; these services add writes we do
        # not need (the API queues runs itself and marks dead ones)
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_LEVEL="WARNING",
        PM4PY_SHOW_PROGRESS_BAR="false",
        PMOPS_DATA_DIR=str(settings.data_dir.resolve()),
    )
    # a Prefect worker (workpool execution) asks for runs as often as the runner does; Prefect's
    # default of 10 s would add 12-21 s between submit and Running
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(settings.runner_poll_seconds))
    env.update(client_handshakes(env, local_server=not settings.prefect_api_url))
    return env


def client_handshakes(env: Mapping[str, str], local_server: bool) -> dict[str, str]:
    """Prefect client settings that skip requests each new client makes and pmops does not need.

    Every flow run is a new process with new Prefect clients; each asked the server for a CSRF
    token (answered 422: Prefect's server has CSRF protection off unless
    PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED is set) and for its API version: 4.8 requests
    per quick analysis, about a tenth of the server's requests (bench/notes/load.md). The CSRF
    handshake stays on when the operator turned protection on; the version check stays on when
    the Prefect server is not the one `pmops up` starts from this same installation. An
    operator's own setting of either wins."""
    out: dict[str, str] = {}
    protected = env.get("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "").lower() in TRUE_WORDS
    if "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED" not in env and not protected:
        out["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] = "false"
    if "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED" not in env and local_server:
        out["PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED"] = "false"
    return out


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
        self.finish(self.terminate(), grace)

    def terminate(self) -> list[psutil.Process]:
        """SIGTERM sent (when it runs); its own children then, which `finish` waits for."""
        if not self.alive():
            return []
        assert self.proc is not None
        try:
            family: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.send_signal(signal.SIGTERM)
        return family

    def finish(self, family: list[psutil.Process], grace: float = 10.0) -> None:
        """Wait for the child to exit after `terminate` (killed after `grace` s)."""
        if self.proc is None:
            return
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


def stop_all(children: list[Child]) -> None:
    """Every child stopped: the runner, the API and the deliverer at once, then the Prefect
    server, which the others may still call while they stop (the runner reports its runs)."""
    server = [c for c in children if c.name == "prefect-server"]
    others = [c for c in children if c.name != "prefect-server"]
    families = [c.terminate() for c in others]
    for child, family in zip(others, families, strict=True):
        child.finish(family)
    for child in server:
        child.stop()


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


# the parts `pmops up --only` may name, in the order they start
PARTS = ("prefect", "runner", "api", "deliverer")


def parse_only(text: str | None) -> frozenset[str]:
    """The parts named by `--only` (a comma list; None or empty: all of them). ValueError naming
    the unknown ones."""
    if text is None or not text.strip():
        return frozenset(PARTS)
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(PARTS))
    if unknown:
        raise ValueError(
            f"unknown part{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in --only "
            f"(the parts are {', '.join(PARTS)})"
        )
    return frozenset(names)


def plan(settings: Settings, parts: frozenset[str]) -> list[Child]:
    """The children `pmops up` starts for these parts, in start order. The Prefect server only
    when it is ours (no PMOPS_PREFECT_API_URL); the runner is a Prefect worker of the work pool
    in workpool execution (deployments/workpool.py)."""
    py = sys.executable
    children: list[Child] = []
    if "prefect" in parts and not settings.prefect_api_url:
        children.append(Child("prefect-server", [py, "-m", "prefect", "server", "start"]))
    if "runner" in parts:
        if settings.execution == "workpool":
            children.append(Child("worker", [py, "-m", "deployments.workpool"]))
        else:
            children.append(Child("runner", [py, "-m", "deployments.serve"]))
    if "api" in parts:
        uvicorn = [py, "-m", "uvicorn", "api.main:app", "--log-level", "warning"]
        where = ["--host", settings.api_host, "--port", str(settings.api_port)]
        children.append(Child("api", uvicorn + where))
    if "deliverer" in parts:
        children.append(Child("deliverer", [py, "-m", "pmops.delivery.deliverer"]))
    return children


def prepare_store(settings: Settings) -> bool:
    """The store's schema first: the processes below refuse a store behind their release."""
    try:
        before, after = upgrade_store(settings.resolved_database_url)
    except StoreNotCurrent as exc:
        print(f"pmops: {exc}", file=sys.stderr)
        return False
    if before not in (None, after):
        print(f"pmops: upgraded the store to revision {after} (from {before})", flush=True)
    return True


def start_prefect(
    settings: Settings, children: list[Child], env: dict[str, str], logs: Path
) -> bool:
    """Our Prefect server started (when it is ours) and answering, or the remote one answering
    (when anything else is to start); False, said on stderr, when it does not within 120 s."""
    server = next((c for c in children if c.name == "prefect-server"), None)
    health = f"{settings.resolved_prefect_api_url.rstrip('/')}/health"
    if server is not None:
        print(f"pmops: starting the Prefect server (logs in {logs})", flush=True)
        server.start(env, logs)
    elif children:
        print(f"pmops: waiting for Prefect at {settings.resolved_prefect_api_url}", flush=True)
    else:
        return True
    if wait_http(health, 120):
        return True
    if server is not None:
        print("pmops: the Prefect server did not start; see its log", file=sys.stderr)
        server.stop()
    else:
        print(f"pmops: Prefect at {health} did not answer", file=sys.stderr)
    return False


class Stopping:
    """Set by SIGINT/SIGTERM: `pmops up` then stops every child and returns."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def stop(self, *_: object) -> None:
        self.set = True


def supervise(children: list[Child], env: dict[str, str], logs: Path, stop: Stopping) -> None:
    """Restart a child that died (at most 5 times a minute) until `stop` is set; stop all."""
    while not stop.set:
        time.sleep(0.5)
        for child in children:
            if stop.set or child.alive():
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60] + [now]
            if len(child.restarts) > 5:
                print(f"pmops: {child.name} keeps dying; stopping", file=sys.stderr)
                stop.set = True
                break
            print(f"pmops: {child.name} exited; restarting it", file=sys.stderr, flush=True)
            child.start(env, logs)
    stop_all(children)
    print("pmops: stopped", flush=True)


def up(settings: Settings | None = None, only: str | None = None) -> int:
    """`pmops up [--only PARTS]`: 0 after Ctrl-C, 1 when a part could not start, 2 on a wrong
    --only (or nothing to start)."""
    settings = settings or get_settings()
    try:
        parts = parse_only(only)
    except ValueError as exc:
        print(f"pmops: {exc}", file=sys.stderr)
        return 2
    children = plan(settings, parts)
    if not children:
        print(
            "pmops: nothing to start: the Prefect server is elsewhere (PMOPS_PREFECT_API_URL)",
            file=sys.stderr,
        )
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if any(c.name != "prefect-server" for c in children) and not prepare_store(settings):
        return 1
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = prefect_env(settings)
    stop = Stopping()
    if not start_prefect(settings, children, env, logs):
        return 1
    # before the runner: it schedules the development project's monthly pipeline
    dev = dev_token(settings) if "api" in parts else None
    for child in children:
        if child.name != "prefect-server":
            child.start(env, logs)
    if dev is not None:
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        if not wait_http(f"{api_url}/health", 60):
            print("pmops: the API did not answer; see its log", file=sys.stderr)
        print(banner(settings, api_url, *dev), flush=True)
    else:
        print(f"pmops: running {', '.join(c.name for c in children)}", flush=True)
    supervise(children, env, logs, stop)
    return 0
