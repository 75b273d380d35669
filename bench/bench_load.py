"""Load (issue #7): a mixed API workload from a separate process, then a burst of queued operations.

Part 1, mixed load. A full `pmops up` (runner on, PMOPS_WORKER_LIMIT=--worker-limit, default 2 =
the service default; single uvicorn worker), the store seeded with --stored terminal operations of
the stack's tenant/project (copies of one real running-example.xes analysis, see
_stack.template_row), running-example.xes uploaded. The load generator is a separate process (this
script with --generator: asyncio + httpx, closed loop, one keep-alive connection per client,
--clients clients, --warmup s of warm-up then --seconds s measured; it writes every measured
request to a JSON file the parent reads). Each client picks its next request by weight (--mix):
  status   GET /async/operation/{id}: a random seeded operation (4 in 5) or one this load started
  list     GET /async/operations: no filter or a status/type/priority/date filter, pageSize 20-100,
           page 1 (7 in 10) or a random deeper page, includeDetails 1 in 5
  results  GET /async/operation/{id}/results of a random seeded Completed operation (summary, or
           detailed 1 in 5)
  start    POST /async/operation: ProcessMiningAnalysis {"analysisType": "quick"} on the upload
Per endpoint: requests, req/s, p50/p95/p99/max and errors (any non-2xx, transport error or
timeout; goal 0). A sampler (psutil, every 0.5 s and once at the end) takes the RSS and CPU of
each process of the stack, told apart by command line: supervisor, Prefect server, runner, its
helpers (forkserver, multiprocessing resource tracker), flow-run processes (forks of the
forkserver: count and peaks) and their children (graphviz dot), API (uvicorn), deliverer, plus
the load generator. RSS counts pages a fork shares with its forkserver.

Part 2, queue burst, on a fresh stack (part 1 leaves thousands of started operations queued):
PMOPS_WORKER_LIMIT=--queue-worker-limit (default 2, the service default: with --ops 100 on this
2-core machine, ~60 % busy with other work, limit 2 gave 8.1-9.3 ops/min and limit 4 8.6 with
runs twice as long and 1.6x the flow runs' RSS: more runs at once only share the same cores),
--ops operations
(ProcessMiningAnalysis quick on running-example.xes) POSTed at once from --burst-clients
connections, priorities shuffled (--queue-mix, default High 10 %, Normal 60 %, Low 30 %).
Reported: first POST -> last completion, ops/min, status counts, queue wait per priority (store
created_at -> creation of its Prefect flow run, i.e. dispatch), and priority inversions: pairs
(lower L, higher H) where L was dispatched while H was already submitted (its 202 received at least
--inversion-grace s before: the dispatcher's select -> create window) and still waiting; the count
without grace is reported too.

It reports figures, met or missed; it never asserts.

  .venv/bin/python bench/bench_load.py [--clients 50] [--seconds 60] [--warmup 10]
      [--stored 10000] [--ops 1000] [--worker-limit 2] [--queue-worker-limit 2]
      [--parts load,queue] [--no-wait]
Raw figures: bench/results/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import (
    DATASETS,
    PY,
    RANK,
    ROOT,
    ForeignLoad,
    Stack,
    command_line,
    foreign_metric,
    machine,
    metric,
    summary,
    template_row,
    wait_quiet,
    write_json,
)

ENDPOINTS = {
    "status": "GET status",
    "list": "GET list",
    "results": "GET results",
    "start": "POST start",
}
STATUSES = ("Initiated", "Running", "Completed", "Failed", "Cancelled", "Timeout")
TYPES = ("ProcessMiningAnalysis", "DataEnrichment", "ReportGeneration")
PRIOS = ("Low", "Normal", "High", "Critical")
TERMINAL = ("Completed", "Failed", "Cancelled", "Timeout")


def parse_mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        out[name.strip()] = float(weight)
    return out


def start_body(dataset_id: str, name: str, priority: str = "Normal") -> dict[str, Any]:
    return {
        "operationType": "ProcessMiningAnalysis",
        "operationName": name,
        "priority": priority,
        "parameters": {"datasetId": dataset_id, "analysisType": "quick"},
    }


# -- the load generator (its own process) -----------------------------------------------------
def list_params(rng: random.Random, stored: int) -> dict[str, Any]:
    size = rng.choice((20, 20, 50, 100))
    params: dict[str, Any] = {"pageSize": size}
    f = rng.random()
    if f < 0.4:
        deepest = max(2, stored // size)
    else:
        deepest = 10
        if f < 0.6:
            params["status"] = rng.choice(STATUSES)
        elif f < 0.75:
            params["operationType"] = rng.choice(TYPES)
        elif f < 0.9:
            params["priority"] = rng.choice(PRIOS)
        else:  # a 30-day window inside the seeded 180 days
            end = datetime.now(UTC) - timedelta(days=rng.uniform(0, 150))
            params["dateFrom"] = (end - timedelta(days=30)).isoformat().replace("+00:00", "Z")
            params["dateTo"] = end.isoformat().replace("+00:00", "Z")
    params["page"] = 1 if rng.random() < 0.7 else rng.randint(2, deepest)
    if rng.random() < 0.2:
        params["includeDetails"] = "true"
    return params


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    base, ids, completed = spec["base"], spec["ids"], spec["completed"]
    names = list(spec["mix"])
    weights = [spec["mix"][n] for n in names]
    started: list[str] = []
    records: list[tuple[str, float, float, str]] = []
    t0 = time.monotonic()
    measure_from = t0 + spec["warmup"]
    stop = measure_from + spec["seconds"]

    def request(rng: random.Random, k: int, i: int) -> tuple[str, str, str, Any, Any]:
        ep = rng.choices(names, weights)[0]
        if ep == "status":
            pool = started if started and rng.random() < 0.2 else ids
            return ep, "GET", f"{base}/async/operation/{rng.choice(pool)}", None, None
        if ep == "list":
            return ep, "GET", f"{base}/async/operations", list_params(rng, len(ids)), None
        if ep == "results":
            fmt = "detailed" if rng.random() < 0.2 else "summary"
            url = f"{base}/async/operation/{rng.choice(completed)}/results"
            return ep, "GET", url, {"format": fmt}, None
        body = start_body(spec["dataset_id"], f"load {k}-{i}")
        return ep, "POST", f"{base}/async/operation", None, body

    async def client(k: int) -> None:
        rng = random.Random(spec["seed"] * 1000 + k)
        # one connection per simulated user (see _load.py: a shared pool costs client CPU)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            headers=spec["headers"], limits=limits, timeout=spec["timeout"]
        ) as http:
            await asyncio.sleep(rng.uniform(0, 0.5))  # not all 50 in lockstep
            i = 0
            while (now := time.monotonic()) < stop:
                ep, method, url, params, body = request(rng, k, i)
                i += 1
                t = time.perf_counter()
                try:
                    r = await http.request(method, url, params=params, json=body)
                    code = str(r.status_code)
                    if ep == "start" and r.status_code == 202:
                        started.append(r.json()["operationId"])
                except httpx.TimeoutException:
                    code = "timeout"
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                lat = time.perf_counter() - t
                if now >= measure_from:
                    records.append((ep, round(now - measure_from, 4), lat, code))

    cpu0 = time.process_time()
    await asyncio.gather(*(client(k) for k in range(spec["clients"])))
    return {
        "records": records,
        "started": started,
        "client_cpu_seconds": time.process_time() - cpu0,
        "wall_seconds": time.monotonic() - t0,
    }


def generator_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    out = asyncio.run(generate(spec))
    Path(spec["out"]).write_text(json.dumps(out))


# -- process memory and CPU of the stack ------------------------------------------------------
class ProcessSampler:
    """RSS and CPU of every process under the stack's supervisor (and the load generator), by
    role, every `interval` s in a thread and once more on `final()`."""

    def __init__(self, root_pid: int, extra: dict[int, str] | None = None, interval: float = 0.5):
        self.root_pid, self.extra, self.interval = root_pid, dict(extra or {}), interval
        self.roles: dict[int, str] = {}
        self.first_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self.peak: dict[str, float] = collections.defaultdict(float)
        self.peak_single: dict[str, float] = collections.defaultdict(float)
        self.peak_count: dict[str, int] = collections.defaultdict(int)
        self.end: dict[str, float] = {}
        self.end_count: dict[str, int] = {}
        self.seen: dict[str, set[int]] = collections.defaultdict(set)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._baseline = True

    def _role(self, proc: Any) -> str:
        import psutil

        pid = proc.pid
        if pid in self.roles:
            return self.roles[pid]
        if pid == self.root_pid:
            role = "supervisor"
        elif pid in self.extra:
            role = self.extra[pid]
        else:
            try:
                cmd = " ".join(proc.cmdline())
                parent = proc.parent()
                parent_cmd = " ".join(parent.cmdline()) if parent else ""
            except psutil.Error:
                return "?"
            if "api.main:app" in cmd:
                role = "API (uvicorn)"
            elif "pmops.delivery.deliverer" in cmd:
                role = "deliverer"
            elif "forkserver" in cmd:  # before the runner: its preload list names the runner
                # flow runs are forks of the forkserver and inherit its command line
                role = "flow runs" if "forkserver" in parent_cmd else "runner helpers"
            elif "spawn_main" in cmd:  # PMOPS_WARM_START=false: spawned flow runs
                role = "flow runs"
            elif "resource_tracker" in cmd:
                role = "runner helpers"
            elif "deployments.serve" in cmd or "_up.py --register-only" in cmd:
                role = "runner"
            elif "prefect" in cmd and "server" in cmd:
                role = "Prefect server"
            elif parent is not None and self._role(parent) in ("flow runs", "flow-run children"):
                role = "flow-run children"  # e.g. graphviz `dot` for the visualisations
            else:
                role = f"other ({proc.name()})"
        self.roles[pid] = role
        return role

    def sample(self) -> None:
        import psutil

        try:
            procs = [psutil.Process(self.root_pid)]
            procs += procs[0].children(recursive=True)
        except psutil.Error:
            procs = []
        for pid in self.extra:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        rss: dict[str, float] = collections.defaultdict(float)
        count: dict[str, int] = collections.defaultdict(int)
        for proc in procs:
            try:
                with proc.oneshot():
                    role = self._role(proc)
                    if role == "?":  # gone (or a zombie) before it could be told apart
                        continue
                    mb = proc.memory_info().rss / 2**20
                    ct = proc.cpu_times()
            except psutil.Error:
                continue
            cpu = ct.user + ct.system
            # a process already running at the first sample counts from there, a new one from 0
            self.first_cpu.setdefault(proc.pid, cpu if self._baseline else 0.0)
            self.last_cpu[proc.pid] = cpu
            rss[role] += mb
            count[role] += 1
            self.seen[role].add(proc.pid)
            self.peak_single[role] = max(self.peak_single[role], mb)
        self._baseline = False
        for role, mb in rss.items():
            self.peak[role] = max(self.peak[role], mb)
            self.peak_count[role] = max(self.peak_count[role], count[role])
        self.end, self.end_count = dict(rss), dict(count)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ProcessSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, dict[str, Any]]:
        cpu: dict[str, float] = collections.defaultdict(float)
        for pid, last in self.last_cpu.items():
            role = self.roles.get(pid, "?")
            cpu[role] += last - self.first_cpu.get(pid, 0.0)
        return {
            role: {
                "processes_seen": len(self.seen[role]),
                "max_at_once": self.peak_count[role],
                "peak_rss_mb": round(self.peak[role], 1),
                "peak_single_rss_mb": round(self.peak_single[role], 1),
                "end_rss_mb": round(self.end.get(role, 0.0), 1),
                "end_count": self.end_count.get(role, 0),
                "cpu_seconds": round(cpu[role], 1),
            }
            for role in sorted(self.seen, key=_role_order)
        } | {"_samples": {"n": self.samples, "interval_s": self.interval}}


ROLE_ORDER = [
    "supervisor",
    "Prefect server",
    "runner",
    "runner helpers",
    "flow runs",
    "flow-run children",
    "API (uvicorn)",
    "deliverer",
    "load generator",
]


def _role_order(role: str) -> int:
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


# -- part 1: mixed load -----------------------------------------------------------------------
def part_load(args: argparse.Namespace, template: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import select

    from pmops.store.tables import operations

    stack = Stack(runner=True, worker_limit=args.worker_limit, keep=args.keep)
    try:
        stack.start()
        dataset_id = stack.upload(args.log)
        engine = stack.engine()
        ids, seed_seconds = stack.seed(engine, template, args.stored, dataset_id)
        with engine.connect() as conn:
            completed = list(
                conn.execute(
                    select(operations.c.operation_id).where(
                        operations.c.project_id == stack.project,
                        operations.c.status == "Completed",
                    )
                ).scalars()
            )
        print(f"[load] seeded {len(ids)} operations in {seed_seconds:.1f} s", file=sys.stderr)
        spec_path = stack.data_dir / "loadgen-spec.json"
        out_path = stack.data_dir / "loadgen-out.json"
        mix = parse_mix(args.mix)
        spec_path.write_text(
            json.dumps(
                {
                    "base": stack.base,
                    "headers": stack.headers,
                    "ids": ids,
                    "completed": completed,
                    "dataset_id": dataset_id,
                    "mix": mix,
                    "clients": args.clients,
                    "warmup": args.warmup,
                    "seconds": args.seconds,
                    "timeout": args.timeout,
                    "seed": 23,
                    "out": str(out_path),
                }
            )
        )
        assert stack.proc is not None
        with (stack.data_dir / "loadgen.log").open("wb") as log:
            gen = subprocess.Popen(
                [PY, __file__, "--generator", str(spec_path)], cwd=ROOT, stdout=log, stderr=log
            )
            sampler = ProcessSampler(stack.proc.pid, {gen.pid: "load generator"})
            with ForeignLoad() as noise, sampler:
                try:
                    gen.wait(args.warmup + args.seconds + args.timeout + 120)
                except subprocess.TimeoutExpired:
                    gen.kill()
                    gen.wait()
                sampler.sample()  # at the end: the generator has just finished
        if gen.returncode != 0 or not out_path.exists():
            tail = (stack.data_dir / "loadgen.log").read_text()[-2000:]
            raise RuntimeError(f"the load generator exited {gen.returncode}: {tail}")
        out = json.loads(out_path.read_text())
        with engine.connect() as conn:
            queued = conn.execute(
                select(operations.c.status).where(operations.c.operation_id.in_(out["started"]))
            ).scalars()
            started_status = dict(collections.Counter(queued))
        engine.dispose()
    finally:
        stack.stop()
        if args.keep:
            print(f"[load] data dir kept: {stack.data_dir}", file=sys.stderr)
    by_ep: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
    for ep, _, lat, code in out["records"]:
        by_ep[ep].append((lat, code))
    endpoints = {}
    for ep in [*mix, "all"]:
        rows = [r for rs in by_ep.values() for r in rs] if ep == "all" else by_ep.get(ep, [])
        codes = collections.Counter(code for _, code in rows)
        errors = {c: n for c, n in codes.items() if not (c.isdigit() and 200 <= int(c) < 300)}
        endpoints[ep] = {
            "label": ENDPOINTS.get(ep, "all endpoints"),
            "weight": mix.get(ep),
            "requests": len(rows),
            "throughput_rps": len(rows) / args.seconds,
            "stats": summary([lat for lat, _ in rows]),
            "codes": dict(codes),
            "errors": errors,
            "error_count": sum(errors.values()),
        }
    return {
        "worker_limit": args.worker_limit,
        "stored": len(ids),
        "completed_stored": len(completed),
        "seed_seconds": round(seed_seconds, 1),
        "clients": args.clients,
        "warmup_seconds": args.warmup,
        "measured_seconds": args.seconds,
        "mix": mix,
        "endpoints": endpoints,
        "started_ops": len(out["started"]),
        "started_ops_status_at_end": started_status,
        "generator_cpu_seconds": round(out["client_cpu_seconds"], 1),
        "processes": sampler.report(),
        "foreign_load": noise.report(),
    }


# -- part 2: queue burst ----------------------------------------------------------------------
async def burst(stack: Stack, bodies: list[dict[str, Any]], clients: int) -> list[dict[str, Any]]:
    todo: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for i, body in enumerate(bodies):
        todo.put_nowait((i, body))
    out: list[dict[str, Any]] = [{} for _ in bodies]
    url = f"{stack.base}/async/operation"

    async def client() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(headers=stack.headers, limits=limits, timeout=120) as http:
            while not todo.empty():
                i, body = todo.get_nowait()
                sent = time.time()
                try:
                    r = await http.post(url, json=body)
                    code = str(r.status_code)
                    op_id = r.json().get("operationId") if r.status_code == 202 else None
                except httpx.TimeoutException:
                    code, op_id = "timeout", None
                except httpx.HTTPError as exc:
                    code, op_id = type(exc).__name__, None
                out[i] = {
                    "priority": body["priority"],
                    "sent": sent,
                    "acked": time.time(),
                    "code": code,
                    "operation_id": op_id,
                }

    await asyncio.gather(*(client() for _ in range(clients)))
    return out


def prefect_dispatch_times(stack: Stack) -> dict[str, float]:
    """operation id -> creation time (epoch s) of its first Prefect flow run (the dispatch)."""
    out: dict[str, float] = {}
    offset = 0
    with httpx.Client(timeout=60, headers=stack.prefect_headers) as http:
        while True:
            r = http.post(
                f"{stack.prefect_api}/flow_runs/filter",
                json={
                    "flow_runs": {"tags": {"all_": [f"project:{stack.project}"]}},
                    "sort": "ID_DESC",
                    "limit": 200,
                    "offset": offset,
                },
            )
            r.raise_for_status()
            runs = r.json()
            for run in runs:
                op = next((t[10:] for t in run["tags"] if t.startswith("operation:")), None)
                if op is None:
                    continue
                created = datetime.fromisoformat(run["created"].replace("Z", "+00:00")).timestamp()
                out[op] = min(created, out.get(op, created))
            if len(runs) < 200:
                return out
            offset += 200


def inversions(items: list[tuple[int, float, float]], grace: float) -> dict[str, Any]:
    """Pairs (lower L, higher H) where L was dispatched while H, submitted at least `grace` s
    before, was still waiting; `ops`: distinct Ls; `worst_s`: the longest H had been submitted
    when such an L was dispatched. items: (rank, submitted, dispatched)."""
    pairs, lows, worst = 0, set(), 0.0
    for i, (rl, _, dl) in enumerate(items):
        for rh, sh, dh in items:
            if rh > rl and dh > dl and sh + grace <= dl:
                pairs += 1
                lows.add(i)
                worst = max(worst, dl - sh)
    return {"pairs": pairs, "ops": len(lows), "worst_s": round(worst, 2), "grace_s": grace}


def part_queue(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from pmops.store.tables import operations

    mix = parse_mix(args.queue_mix)
    total = sum(mix.values())
    prios: list[str] = []
    for prio, w in mix.items():
        prios += [prio] * round(args.ops * w / total)
    prios = (prios + ["Normal"] * args.ops)[: args.ops]
    random.Random(31).shuffle(prios)
    bodies = [start_body("", f"queued {i}", p) for i, p in enumerate(prios)]

    stack = Stack(runner=True, worker_limit=args.queue_worker_limit, keep=args.keep)
    try:
        stack.start()
        dataset_id = stack.upload(args.log)
        for b in bodies:
            b["parameters"]["datasetId"] = dataset_id
        engine = stack.engine()
        assert stack.proc is not None
        sampler = ProcessSampler(stack.proc.pid)
        with ForeignLoad() as noise, sampler:
            t_first = time.time()
            posted = asyncio.run(burst(stack, bodies, args.burst_clients))
            t_posted = max(p["acked"] for p in posted)
            ids = [p["operation_id"] for p in posted if p["operation_id"]]
            print(
                f"[queue] {len(ids)}/{len(bodies)} accepted in {t_posted - t_first:.1f} s",
                file=sys.stderr,
            )
            deadline = time.monotonic() + args.queue_timeout
            last_note = 0.0
            while True:
                with engine.connect() as conn:
                    counts = dict(
                        conn.execute(
                            select(operations.c.status, func.count())
                            .where(operations.c.project_id == stack.project)
                            .group_by(operations.c.status)
                        ).all()
                    )
                done = sum(n for s, n in counts.items() if s in TERMINAL)
                if done >= len(ids) or time.monotonic() > deadline:
                    break
                if time.monotonic() - last_note > 30:
                    last_note = time.monotonic()
                    print(f"[queue] {time.time() - t_first:.0f} s: {counts}", file=sys.stderr)
                time.sleep(1.0)
            sampler.sample()
        with engine.connect() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    select(
                        operations.c.operation_id,
                        operations.c.priority,
                        operations.c.status,
                        operations.c.created_at,
                        operations.c.started_at,
                        operations.c.ended_at,
                    ).where(operations.c.project_id == stack.project)
                ).mappings()
            ]
        engine.dispose()
        dispatched = prefect_dispatch_times(stack)
    finally:
        stack.stop()
        if args.keep:
            print(f"[queue] data dir kept: {stack.data_dir}", file=sys.stderr)

    acked = {p["operation_id"]: p["acked"] for p in posted if p["operation_id"]}
    status_counts = dict(collections.Counter(r["status"] for r in rows))
    ends = [r["ended_at"].timestamp() for r in rows if r["ended_at"] is not None]
    last_end = max(ends) if ends else float("nan")
    n_completed = status_counts.get("Completed", 0)
    completion = last_end - t_first
    items: list[tuple[int, float, float]] = []
    raw: list[dict[str, Any]] = []
    per_prio: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for r in rows:
        op, prio = r["operation_id"], r["priority"]
        created = r["created_at"].timestamp()
        per_prio[prio]["ops"].append(1)
        if r["status"] == "Completed":
            per_prio[prio]["completed"].append(1)
        d = dispatched.get(op)
        if d is None and r["started_at"] is not None:
            d = r["started_at"].timestamp()  # no flow run found: its start stands in
        if d is None:
            continue
        per_prio[prio]["queue_wait"].append(d - created)
        if r["started_at"] is not None and r["ended_at"] is not None:
            per_prio[prio]["run"].append((r["ended_at"] - r["started_at"]).total_seconds())
        items.append((RANK[prio], acked.get(op, created), d))
        raw.append(
            {
                "operation_id": op,
                "priority": prio,
                "status": r["status"],
                "created": created,
                "acked": acked.get(op),
                "dispatched": d,
                "started": r["started_at"].timestamp() if r["started_at"] else None,
                "ended": r["ended_at"].timestamp() if r["ended_at"] else None,
            }
        )
    strict = inversions(items, 0.0)
    graced = inversions(items, args.inversion_grace)
    priorities = {
        prio: {
            "ops": len(v["ops"]),
            "completed": len(v["completed"]),
            "queue_wait_s": summary(v["queue_wait"]),
            "run_s": summary(v["run"]),
        }
        for prio, v in sorted(per_prio.items(), key=lambda kv: -RANK[kv[0]])
    }
    return {
        "worker_limit": args.queue_worker_limit,
        "ops": len(bodies),
        "accepted": len(ids),
        "post_codes": dict(collections.Counter(p["code"] for p in posted)),
        "burst_clients": args.burst_clients,
        "mix": mix,
        "post_seconds": round(t_posted - t_first, 2),
        "completion_seconds": round(completion, 1),
        "ops_per_minute": round(n_completed / completion * 60, 1) if completion > 0 else None,
        "status_counts": status_counts,
        "all_completed": n_completed == len(bodies),
        "dispatch_source": f"Prefect flow-run creation ({len(dispatched)} runs found)",
        "inversions": graced,
        "inversions_strict": strict,
        "priorities": priorities,
        "processes": sampler.report(),
        "foreign_load": noise.report(),
        "operations": raw,  # epoch seconds
    }


# -- output -----------------------------------------------------------------------------------
def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def print_load(r: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    print(
        f"\n## Mixed load: {r['clients']} clients, closed loop, {r['measured_seconds']:g} s "
        f"measured after {r['warmup_seconds']:g} s warm-up, {r['stored']:,} stored operations, "
        f"runner on (worker limit {r['worker_limit']}), single uvicorn worker\n"
    )
    print("| endpoint | weight | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ep, e in r["endpoints"].items():
        s = e["stats"]
        weight = f"{e['weight']:g}" if e["weight"] is not None else ""
        errs = "0" if not e["errors"] else f"{e['error_count']} {e['errors']}"
        print(
            f"| {e['label']} | {weight} | {e['requests']} | {e['throughput_rps']:.1f} | "
            f"{ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} | {errs} |"
        )
        metrics.append(metric(f"{e['label']}: throughput", e["throughput_rps"], "req/s"))
        if ep != "all":
            for p in ("p50", "p95", "p99"):
                metrics.append(metric(f"{e['label']}: {p}", s[p] * 1000, "ms"))
    errors = r["endpoints"]["all"]["error_count"]
    metrics.append(metric("mixed load: errors", errors, "requests", "0", errors == 0))
    print(
        f"\nerrors (non-2xx, transport errors, timeouts): {errors} (goal 0: "
        f"{'met' if errors == 0 else 'MISSED'}); operations started by the load: "
        f"{r['started_ops']} (status when it stopped: {r['started_ops_status_at_end']}); "
        f"load generator CPU {r['generator_cpu_seconds']} s"
    )
    print_processes(r["processes"], metrics, "mixed load")
    fl = r["foreign_load"]
    metrics.append(foreign_metric(fl, "mixed load"))
    print(
        f"\nother processes' CPU during the load: {fl['foreign_share_of_machine']:.0%} of the "
        f"machine ({fl['foreign_top']})"
    )


def print_processes(procs: dict[str, Any], metrics: list[dict[str, Any]], part: str) -> None:
    print(
        f"\n| process ({part}) | processes (max at once / seen) | peak RSS MB | "
        "peak single MB | end RSS MB | CPU s |"
    )
    print("|---|---|---|---|---|---|")
    for role, p in procs.items():
        if role.startswith("_"):
            continue
        end = p["end_rss_mb"] if p["end_count"] else "exited"
        print(
            f"| {role} | {p['max_at_once']} / {p['processes_seen']} | {p['peak_rss_mb']} | "
            f"{p['peak_single_rss_mb']} | {end} | {p['cpu_seconds']} |"
        )
        if part == "mixed load":
            metrics.append(metric(f"{part}: peak RSS {role}", p["peak_rss_mb"], "MB"))
    s = procs.get("_samples", {})
    print(
        f"\nRSS sampled every {s.get('interval_s')} s ({s.get('n')} samples) and at the end; a "
        "role's RSS is the sum over its processes (forks share pages with the forkserver, "
        "counted in each)"
    )


def print_queue(q: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    n = q["ops"]
    print(
        f"\n## Queue burst: {n:,} operations (ProcessMiningAnalysis quick, running-example.xes) "
        f"POSTed at once from {q['burst_clients']} connections, worker limit {q['worker_limit']}\n"
    )
    inv, strict = q["inversions"], q["inversions_strict"]
    print("| figure | value |")
    print("|---|---|")
    print(f"| POSTs accepted | {q['accepted']}/{n} in {q['post_seconds']} s {q['post_codes']} |")
    print(f"| first POST -> last completion | {q['completion_seconds']} s |")
    print(f"| throughput | {q['ops_per_minute']} ops/min |")
    print(f"| status at the end | {q['status_counts']} |")
    print(
        f"| priority inversions (submitted >= {inv['grace_s']} s before) | {inv['pairs']} pairs, "
        f"{inv['ops']} ops, longest wait {inv['worst_s']} s "
        f"(goal 0: {'met' if inv['pairs'] == 0 else 'MISSED'}) |"
    )
    print(
        f"| priority inversions, no grace | {strict['pairs']} pairs, {strict['ops']} ops, "
        f"longest wait {strict['worst_s']} s |"
    )
    print(f"\ndispatch time: {q['dispatch_source']}\n")
    waits: list[dict[str, Any]] = []
    print("| priority | ops | completed | queue wait mean s | p50 s | max s | run mean s |")
    print("|---|---|---|---|---|---|---|")
    for prio, p in q["priorities"].items():
        w, run = p["queue_wait_s"], p["run_s"]
        print(
            f"| {prio} | {p['ops']} | {p['completed']} | {w['mean']:.1f} | {w['p50']:.1f} | "
            f"{w['max']:.1f} | {run['mean']:.2f} |"
        )
        waits.append(metric(f"queue burst: mean queue wait {prio}", w["mean"], "s"))
    print_processes(q["processes"], metrics, "queue burst")
    fl = q["foreign_load"]
    waits.append(foreign_metric(fl, "queue burst"))
    print(
        f"\nother processes' CPU during the burst: {fl['foreign_share_of_machine']:.0%} of the "
        f"machine ({fl['foreign_top']})"
    )
    completed = q["status_counts"].get("Completed", 0)
    metrics += [
        metric(f"{n:,} queued ops: completion time", q["completion_seconds"], "s"),
        metric(f"{n:,} queued ops: throughput", q["ops_per_minute"], "ops/min"),
        metric(f"{n:,} queued ops: completed", completed, "ops", f"{n}", completed == n),
        metric("priority inversions", inv["pairs"], "pairs", "0", inv["pairs"] == 0),
        *waits,
    ]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--generator":
        generator_main(Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="load,queue", help="load, queue or both")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds of part 1")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--stored", type=int, default=10_000, help="seeded terminal operations")
    ap.add_argument("--mix", default="status=50,list=20,results=15,start=15")
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, s (an error)")
    ap.add_argument("--worker-limit", type=int, default=2, help="part 1's PMOPS_WORKER_LIMIT")
    ap.add_argument("--ops", type=int, default=1000, help="operations queued at once (part 2)")
    ap.add_argument("--queue-worker-limit", type=int, default=2)
    ap.add_argument("--queue-mix", default="High=10,Normal=60,Low=30")
    ap.add_argument("--burst-clients", type=int, default=50)
    ap.add_argument("--queue-timeout", type=float, default=7200.0, help="s to wait for the queue")
    ap.add_argument("--inversion-grace", type=float, default=0.5)
    ap.add_argument("--keep", action="store_true", help="keep the temp data dirs (logs)")
    ap.add_argument("--log", type=Path, default=DATASETS / "running-example.xes")
    ap.add_argument(
        "--no-wait", action="store_true", help="do not wait for the machine to be quiet first"
    )
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    template = template_row(args.log) if "load" in parts else {}
    if not args.no_wait:
        wait_quiet()
    doc: dict[str, Any] = {"machine": machine(), "args": vars(args) | {"log": str(args.log)}}
    metrics: list[dict[str, Any]] = []
    if "load" in parts:
        doc["load"] = part_load(args, template)
        print_load(doc["load"], metrics)
    if "queue" in parts:
        if "load" in parts and not args.no_wait:
            wait_quiet()  # part 1's stack has just stopped
        doc["queue"] = part_queue(args)
        print_queue(doc["queue"], metrics)
    doc["metrics"] = metrics
    path = write_json("load", doc)
    print(f"\ncommand: `{command_line()}`  raw: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
