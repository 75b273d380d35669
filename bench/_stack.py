"""Shared pieces of the service benchmarks: a throw-away `pmops up`, seeding, statistics.

Stack starts `pmops up` (or bench/_up.py --no-runner) as a subprocess in a temporary data dir
with free ports, waits until the API, Prefect and (optionally) the runner's deployments are
ready, and stops it with SIGINT. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
RELAXED_LIMITS = {
    "PMOPS_TOKEN_REQUESTS_PER_SECOND": "1000000",
    "PMOPS_TOKEN_REQUEST_BURST": "1000000",
    "PMOPS_AUTH_FAILURES_PER_ADDRESS": "1000000",
    "PMOPS_QUEUED_OPERATIONS_PER_PROJECT": "1000000",
    "PMOPS_WEBHOOKS_PER_PROJECT": "1000000",
    "PMOPS_STREAMS_PER_TOKEN": "1000000",
}
DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
PY = sys.executable
DEPLOYMENTS = ("ProcessMiningAnalysis/pmops", "DataEnrichment/pmops", "ReportGeneration/pmops")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])


class Stack:
    """One `pmops up` in its own data dir. Use as a context manager."""

    def __init__(
        self,
        *,
        runner: bool = True,
        worker_limit: int = 2,
        database_url: str | None = None,
        data_dir: Path | None = None,
        keep: bool = False,
    ) -> None:
        self.runner = runner
        self.worker_limit = worker_limit
        self.database_url = database_url
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="pmops-bench-"))
        self.keep = keep
        self.api_port = free_port()
        self.prefect_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tenant = self.project = self.token = ""

    # -- environment ------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PMOPS_DATA_DIR=str(self.data_dir),
            PMOPS_API_PORT=str(self.api_port),
            PMOPS_PREFECT_PORT=str(self.prefect_port),
            PMOPS_WORKER_LIMIT=str(self.worker_limit),
            PYTHONUNBUFFERED="1",
        )
        # the benches load the service on purpose from one address and token: the per-tenant
        # limits (docs/limits.md) would measure themselves; a bench of a limit sets its own
        for name, value in RELAXED_LIMITS.items():
            env.setdefault(name, value)
        env.pop("PMOPS_PREFECT_API_URL", None)
        env.pop("PMOPS_PREFECT_AUTH_STRING", None)  # the stack's own, generated in its data dir
        env.pop("PREFECT_API_URL", None)
        if self.database_url:
            env["PMOPS_DATABASE_URL"] = self.database_url
        else:
            env.pop("PMOPS_DATABASE_URL", None)
        return env

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'pmops.db'}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_headers(self) -> dict[str, str]:
        """Basic auth with the Prefect API's auth string `pmops up` keeps in the data dir."""
        from pmops.prefect_auth import basic_auth_header

        path = self.data_dir / "prefect-auth"
        return basic_auth_header(path.read_text().strip() if path.exists() else None)

    @property
    def base(self) -> str:
        return f"{self.api}/api/{self.tenant}/{self.project}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def engine(self) -> Any:
        from pmops.store.engine import make_engine

        return make_engine(self.db_url)

    def prepare_token(self) -> None:
        """Create the dev tenant/project/token before start, so seeding can run first."""
        from pmops.store.tokens import create_token

        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "dev-token"
        if path.exists():
            self.tenant, self.project, self.token = path.read_text().split()
            return
        tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
        engine = self.engine()
        token = create_token(engine, tenant, project, "developer", max_priority="Critical")
        engine.dispose()
        path.write_text(f"{tenant} {project} {token}\n")
        self.tenant, self.project, self.token = tenant, project, token

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> Stack:
        argv = (
            [PY, "-m", "pmops.cli.commands", "up"]
            if self.runner
            else [PY, "bench/_up.py", "--no-runner"]
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.data_dir / "up.log").open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + timeout
        token_file = self.data_dir / "dev-token"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pmops up exited {self.proc.returncode}; see {self.data_dir}")
            if token_file.exists() and self._healthy():
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"stack not ready after {timeout} s; see {self.data_dir}/logs")
        self.tenant, self.project, self.token = token_file.read_text().split()
        self._wait_deployments(deadline)  # --no-runner registers them too
        return self

    def _healthy(self) -> bool:
        try:
            r = httpx.get(f"{self.api}/health", timeout=2)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def _wait_deployments(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            ok = 0
            for name in DEPLOYMENTS:
                try:
                    r = httpx.get(
                        f"{self.prefect_api}/deployments/name/{name}",
                        headers=self.prefect_headers,
                        timeout=2,
                    )
                    ok += r.status_code == 200
                except httpx.HTTPError:
                    pass
            if ok == len(DEPLOYMENTS):
                return
            time.sleep(0.3)
        raise RuntimeError("the runner did not register its deployments")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir and not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API helpers ------------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        with path.open("rb") as fh:
            r = httpx.post(
                f"{self.base}/datasets",
                headers=self.headers,
                files={"file": (path.name, fh)},
                timeout=300,
            )
        r.raise_for_status()
        return str(r.json()["datasetId"])

    def seed(
        self,
        engine: Any,
        template: dict[str, Any],
        n: int,
        dataset_id: str | None = None,
        **kw: Any,
    ) -> tuple[list[str], float]:
        """n copies of the template row as this stack's tenant/project (and dataset); the ids and
        the seconds seeding took."""
        scoped = {**template, "tenant_id": self.tenant, "project_id": self.project}
        if dataset_id is not None:
            scoped["dataset_id"] = dataset_id
        t = time.perf_counter()
        ids = seed_operations(engine, scoped, n, **kw)
        return ids, time.perf_counter() - t

    def start_body(self, dataset_id: str, name: str = "bench") -> dict[str, Any]:
        return {
            "operationType": "ProcessMiningAnalysis",
            "operationName": name,
            "parameters": {"datasetId": dataset_id},
        }

    def run_one(self, dataset_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Start one operation and wait for a terminal status; returns its store row."""
        r = httpx.post(
            f"{self.base}/async/operation",
            headers=self.headers,
            json=self.start_body(dataset_id, "template"),
            timeout=30,
        )
        r.raise_for_status()
        op_id = r.json()["operationId"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = httpx.get(f"{self.base}/async/operation/{op_id}", headers=self.headers, timeout=30)
            if s.json()["status"] in ("Completed", "Failed", "Cancelled", "Timeout"):
                break
            time.sleep(0.2)
        from sqlalchemy import select

        from pmops.store.tables import operations

        engine = self.engine()
        with engine.connect() as conn:
            row = (
                conn.execute(select(operations).where(operations.c.operation_id == op_id))
                .mappings()
                .one()
            )
        engine.dispose()
        return dict(row)


def template_row(log: Path, refresh: bool = False) -> dict[str, Any]:
    """The store row of one real ProcessMiningAnalysis of `log` (request, progress, results...),
    made once on a throw-away stack and cached in bench/results/template_row.json."""
    cache = RESULTS / "template_row.json"
    if cache.exists() and not refresh:
        doc = json.loads(cache.read_text())
        if doc.get("log") == str(log):
            return dict(doc["row"])
    with Stack(runner=True) as stack:
        row = stack.run_one(stack.upload(log))
    if row["status"] != "Completed":
        raise RuntimeError(f"the template operation ended {row['status']}: {row.get('error')}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"log": str(log), "row": row}, default=str))
    return json.loads(json.dumps(row, default=str))


# -- seeding ---------------------------------------------------------------------------------
STATUS_MIX = (("Completed", 0.85), ("Failed", 0.07), ("Cancelled", 0.05), ("Timeout", 0.03))
TYPE_MIX = (("ProcessMiningAnalysis", 0.8), ("DataEnrichment", 0.1), ("ReportGeneration", 0.1))
PRIORITIES = (("Low", 0.2), ("Normal", 0.6), ("High", 0.15), ("Critical", 0.05))
RANK = {"Low": 0, "Normal": 1, "High": 2, "Critical": 3}


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    x, acc = rng.random(), 0.0
    for value, share in mix:
        acc += share
        if x < acc:
            return value
    return mix[-1][0]


def seed_operations(
    engine: Any,
    template: dict[str, Any],
    n: int,
    *,
    batch: int = 2000,
    seed: int = 7,
    spread_days: float = 180.0,
) -> list[str]:
    """Insert n terminal operations shaped like `template` (a real row); returns their ids.

    Only terminal statuses: the dispatcher never picks them up and the sweep never touches them.
    created_at is spread over the last `spread_days` days (strictly before now).
    """
    from pmops.store.engine import transaction
    from pmops.store.tables import operations, throughput

    rng = random.Random(seed)
    now = datetime.now(UTC)
    ids: list[str] = []
    step = spread_days * 86400 / max(1, n)
    keep = {c.name for c in operations.columns}
    base = {k: v for k, v in template.items() if k in keep}
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            status = _pick(rng, STATUS_MIX)
            prio = _pick(rng, PRIORITIES)
            created = now - timedelta(seconds=(n - i) * step + 60)
            started = created + timedelta(seconds=rng.uniform(0.5, 3))
            ended = started + timedelta(seconds=rng.uniform(3, 600))
            op_id = f"op-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            flow_run = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            row = dict(base)
            row.update(
                operation_id=op_id,
                operation_type=_pick(rng, TYPE_MIX),
                operation_name=f"seeded analysis {i}",
                priority=prio,
                priority_rank=RANK[prio],
                status=status,
                created_at=created,
                timeout_at=created + timedelta(hours=1),
                started_at=started,
                ended_at=ended,
                heartbeat_at=ended,
                flow_run_id=flow_run,
                execution_id=f"exec-{flow_run}",
                result_dir=str(Path(template.get("result_dir") or "/nonexistent").parent / op_id),
                cancel_requested=status == "Cancelled",
                cancel_request=None,
                cancellation=None,
                error=(
                    {"code": "internal_error", "message": "seeded failure", "field": None}
                    if status == "Failed"
                    else None
                ),
                percentage=100.0 if status == "Completed" else round(rng.uniform(0, 95), 1),
            )
            if status != "Completed":
                row["results"] = None
            rows.append(row)
            ids.append(op_id)
        # what a completed run leaves for later estimates (flows/lifecycle.py)
        rates = [
            {
                "operation_id": r["operation_id"],
                "operation_type": r["operation_type"],
                "events": 42,
                "phase_seconds": rng.uniform(1.0, 3.0),
                "startup_seconds": rng.uniform(1.0, 2.5),
                "ended_at": r["ended_at"],
            }
            for r in rows
            if r["status"] == "Completed"
        ]
        with transaction(engine) as conn:
            conn.execute(operations.insert(), rows)
            conn.execute(throughput.insert(), rates)
    return ids


# -- statistics and output -------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": sum(values) / len(values) if values else float("nan"),
    }


def metric(
    name: str,
    value: float | None,
    unit: str,
    goal: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One headline figure for bench/run_all.py (the "metrics" list of every result JSON).

    `goal` is the issue's target as people read it ("<= 1.0 s"), `met` this run's verdict; both
    None for figures without a goal. A missing or NaN value is null and never counts as met."""
    v = None if value is None or value != value else float(value)
    return {
        "name": name,
        "value": v,
        "unit": unit,
        "goal": goal,
        "met": (bool(met) and v is not None) if goal is not None and met is not None else None,
    }


def at_most(value: float | None, limit: float) -> bool:
    return value is not None and value == value and value <= limit


def foreign_metric(report: dict[str, Any], during: str = "") -> dict[str, Any]:
    """ForeignLoad.report() as a metric: how much others skewed this run's figures."""
    label = "other processes' CPU" + (f" ({during})" if during else "")
    return metric(label, 100 * report.get("foreign_share_of_machine", 0.0), "% of machine")


def write_json(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"command": command_line(), "when": datetime.now(UTC).isoformat(), **doc}
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


def machine() -> dict[str, Any]:
    import platform

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "api", "flows", "pmops", "deployments"),
    }


class ForeignLoad:
    """CPU seconds used by processes outside this benchmark's process tree while it runs (other
    people's test runs on the same machine skew latency figures; this says by how much)."""

    def __init__(self, interval: float = 1.0) -> None:
        import threading

        self.interval = interval
        self.foreign = 0.0
        self.mine = 0.0
        self.wall = 0.0
        self.top: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _snapshot(self) -> dict[int, tuple[float, str, bool]]:
        import psutil

        me = os.getpid()
        try:
            mine = {me} | {p.pid for p in psutil.Process(me).children(recursive=True)}
        except psutil.Error:
            mine = {me}
        snap = {}
        for p in psutil.process_iter(["pid", "name", "cpu_times"]):
            ct = p.info["cpu_times"]
            if ct is None:
                continue
            snap[p.info["pid"]] = (
                ct.user + ct.system,
                p.info["name"] or "?",
                p.info["pid"] in mine,
            )
        return snap

    def _loop(self) -> None:
        prev = self._snapshot()
        t0 = time.monotonic()
        while not self._stop.wait(self.interval):
            cur = self._snapshot()
            for pid, (cpu, name, mine) in cur.items():
                before = prev.get(pid)
                delta = cpu - (before[0] if before else 0.0) if before else 0.0
                if delta <= 0:
                    continue
                if mine:
                    self.mine += delta
                else:
                    self.foreign += delta
                    if name not in ("kdamond.0",):
                        self.top[name] = self.top.get(name, 0.0) + delta
            prev = cur
        self.wall = time.monotonic() - t0

    def __enter__(self) -> ForeignLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, Any]:
        top = sorted(self.top.items(), key=lambda kv: -kv[1])[:5]
        return {
            "wall_seconds": round(self.wall, 1),
            "foreign_cpu_seconds": round(self.foreign, 1),
            "own_cpu_seconds": round(self.mine, 1),
            "foreign_share_of_machine": round(self.foreign / (self.wall * (os.cpu_count() or 1)), 3)
            if self.wall
            else 0.0,
            "foreign_top": {k: round(v, 1) for k, v in top},
        }


def wait_quiet(max_wait: float = 600.0, busy_below: float = 25.0) -> float:
    """Wait (up to max_wait s) until the machine's CPU use stays below busy_below % for 9 s."""
    import psutil

    t0, calm = time.monotonic(), 0
    while time.monotonic() - t0 < max_wait and calm < 3:  # three quiet 3-second windows in a row
        if psutil.cpu_percent(interval=3) < busy_below:
            calm += 1
        else:
            calm = 0
            print("waiting for a quiet machine (other processes use the CPUs)", file=sys.stderr)
    return time.monotonic() - t0
