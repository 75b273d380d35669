"""Submit -> Running with three API processes on one PostgreSQL store (issue #15 goal).

Each configuration gets a PostgreSQL database of its own (created and dropped here) and its own
`pmops up` without the runner (bench/_up.py --no-runner: a real Prefect server, the API, the
deliverer, and a process that registers the deployments), plus --apis - 1 more API processes
(`python -m uvicorn api.main:app` on their own ports, same data dir, same store, same Prefect).
Every API process runs the dispatcher; the PostgreSQL advisory-lock leader
(pmops/service/leader.py) and the dispatch section (pg_try_advisory_xact_lock) let one of them
create the Prefect flow runs, within PMOPS_WORKER_LIMIT across the cluster.

What executes the runs: bench/_standin_runner.py, NOT the real runner (a quick analysis costs
~1.6 s CPU; 1,000 of them would take the shared 2-core machine over 15 min per configuration).
It claims each dispatched operation through the flow body's own `lifecycle.claim` (Initiated ->
Running) within --standin-poll s and finishes it Completed --hold s later. So the figure is
API + dispatcher + Prefect flow-run creation + claim; the real runner adds its Prefect poll
(0.2 s) and process spawn (bench_submit_to_running.py measures those).

--n submissions (one project, running-example.xes, ProcessMiningAnalysis) are POSTed at --rate
per second, round-robin over the API processes. Submit -> Running = the operation's started_at
(store, written by the claim) - the wall time the POST was sent. Worker-limit overruns: every
--sample s the store's operations holding a worker slot (Initiated or Running with a flow run that
is not a standby run waiting for its slot, the dispatcher's own count) and those Running are
counted cluster-wide; a sample above PMOPS_WORKER_LIMIT is an overrun. Also the most Running at
once from the started_at/ended_at intervals (no sampling gaps).

Goal (issue #15): THREE APIs: submit -> Running p50 <= 1.0 s, 0 worker-limit overruns.
Baseline: ONE API process on the same setup, run right before (same goal shown, for comparison).

Usage: .venv/bin/python bench/bench_cluster_dispatch.py [--apis 3] [--n 1000] [--rate 10]
    [--limit 10] [--hold 0.5] [--rounds 1] [--no-wait]
Raw figures: bench/results/cluster_dispatch.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import (
    DATASETS,
    PY,
    ROOT,
    ForeignLoad,
    Stack,
    at_most,
    command_line,
    foreign_metric,
    free_port,
    machine,
    metric,
    summary,
    wait_quiet,
    write_json,
)
from bench.bench_cluster_delivery import fresh_database, load_average

TERMINAL = ("Completed", "Failed", "Cancelled", "Timeout")


class Sampler:
    """Operations holding a worker slot, and Running, cluster-wide, every `every` s."""

    def __init__(self, url: str, every: float) -> None:
        from pmops.store.engine import make_engine

        self.engine = make_engine(url)
        self.every = every
        self.samples: list[tuple[float, int, int]] = []  # (time, slots held, Running)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from sqlalchemy import case, func, select

        from pmops.store.tables import operations, standby_runs

        c = operations.c
        query = (
            select(
                func.count().filter(c.flow_run_id.is_not(None)),
                func.coalesce(func.sum(case((c.status == "Running", 1), else_=0)), 0),
            )
            .where(c.status.in_(("Initiated", "Running")))
            .where(~c.operation_id.in_(select(standby_runs.c.operation_id)))
        )
        while not self._stop.wait(self.every):
            with self.engine.connect() as conn:
                slots, running = conn.execute(query).one()
            self.samples.append((time.time(), int(slots), int(running)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()


def start_api(stack: Stack, port: int, log: Path) -> subprocess.Popen[bytes]:
    """One more API process on the stack's data dir, store and Prefect server."""
    env = {**stack.env, "PMOPS_API_PORT": str(port)}
    argv = [PY, "-m", "uvicorn", "api.main:app", "--log-level", "warning"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API on {url} exited {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API on {url} did not answer within {seconds} s")


def api_processes(stack: Stack, extra: list[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    assert stack.proc is not None
    own = [
        p
        for p in psutil.Process(stack.proc.pid).children(recursive=True)
        if "api.main:app" in " ".join(p.cmdline())
    ]
    return own + [psutil.Process(p.pid) for p in extra]


def submit_all(
    stack: Stack, urls: list[str], dataset_id: str, n: int, rate: float
) -> list[dict[str, Any]]:
    """n POSTs at `rate` per second, round-robin over the APIs: (api, sent, status, operation)."""
    clients = [httpx.Client(headers=stack.headers, timeout=60) for _ in urls]
    out: list[dict[str, Any]] = [{} for _ in range(n)]

    def one(i: int, due: float) -> None:
        time.sleep(max(0.0, due - time.monotonic()))
        k = i % len(urls)
        base = f"{urls[k]}/api/{stack.tenant}/{stack.project}"
        sent = time.time()
        try:
            r = clients[k].post(
                f"{base}/async/operation", json=stack.start_body(dataset_id, f"cluster {i}")
            )
            op = r.json().get("operationId") if r.status_code == 202 else None
            out[i] = {"api": k, "sent": sent, "status": r.status_code, "op": op}
        except httpx.HTTPError as exc:
            out[i] = {"api": k, "sent": sent, "status": None, "op": None, "error": str(exc)}

    t0 = time.monotonic() + 0.5
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(n):
            pool.submit(one, i, t0 + i / rate)
    for c in clients:
        c.close()
    return out


def store_rows(url: str) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from pmops.store.engine import make_engine
    from pmops.store.tables import operations

    engine = make_engine(url)
    c = operations.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.operation_id, c.status, c.created_at, c.started_at, c.ended_at)
        ).mappings()
        out = {str(r["operation_id"]): dict(r) for r in rows}
    engine.dispose()
    return out


def wait_done(url: str, ops: set[str], seconds: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    rows = store_rows(url)
    while time.monotonic() < deadline:
        if all(rows.get(o, {}).get("status") in TERMINAL for o in ops):
            break
        time.sleep(1.0)
        rows = store_rows(url)
    return rows


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def ts(value: Any) -> float | None:
    from datetime import UTC

    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def measure(stack: Stack, urls: list[str], procs: list[psutil.Process], args: Any) -> dict:
    dataset_id = stack.upload(DATASETS / "running-example.xes")
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    load_before = load_average()
    with Sampler(stack.db_url, args.sample) as sampler, ForeignLoad() as foreign:
        t0 = time.monotonic()
        sent = submit_all(stack, urls, dataset_id, args.n, args.rate)
        submit_seconds = time.monotonic() - t0
        ops = {s["op"] for s in sent if s.get("op")}
        rows = wait_done(stack.db_url, ops, 300)
    cpu = [round(sum(p.cpu_times()[:2]) - c, 1) for p, c in zip(procs, cpu0, strict=True)]
    latency, intervals = [], []
    for s in sent:
        row = rows.get(s.get("op") or "")
        started = ts(row["started_at"]) if row else None
        if started is not None:
            latency.append(started - s["sent"])
            ended = ts(row["ended_at"]) if row else None
            intervals.append((started, ended if ended is not None else time.time()))
    limit = args.limit
    return {
        "apis": len(urls),
        "worker_limit": limit,
        "submissions": args.n,
        "accepted": len(ops),
        "rejected": {str(k): v for k, v in _statuses(sent).items() if k != 202},
        "completed": sum(1 for o in ops if rows.get(o, {}).get("status") == "Completed"),
        "submit_seconds": round(submit_seconds, 1),
        "submit_to_running_s": summary(latency),
        "samples": len(sampler.samples),
        "max_slots_held": max((s[1] for s in sampler.samples), default=0),
        "max_running_sampled": max((s[2] for s in sampler.samples), default=0),
        "samples_over_limit": sum(1 for s in sampler.samples if s[1] > limit or s[2] > limit),
        "max_running_from_intervals": most_at_once(intervals),
        "api_cpu_seconds": cpu,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "other_processes": foreign.report(),
    }


def _statuses(sent: list[dict[str, Any]]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for s in sent:
        out[s.get("status")] = out.get(s.get("status"), 0) + 1
    return out


def run(apis: int, args: Any) -> dict[str, Any]:
    with fresh_database("pmops_clusterbench") as url:
        stack = Stack(runner=False, worker_limit=args.limit, database_url=url)
        extra: list[subprocess.Popen[bytes]] = []
        standin: subprocess.Popen[bytes] | None = None
        try:
            stack.start()
            urls = [stack.api]
            for i in range(apis - 1):
                port = free_port()
                extra.append(start_api(stack, port, stack.data_dir / f"api-{i + 2}.log"))
                urls.append(f"http://127.0.0.1:{port}")
            for u, p in zip(urls[1:], extra, strict=True):
                wait_healthy(u, p)
            standin = subprocess.Popen(
                [
                    *(PY, "bench/_standin_runner.py", url),
                    *("--poll", str(args.standin_poll), "--hold", str(args.hold)),
                ],
                cwd=ROOT,
                env=stack.env,
                stdout=(stack.data_dir / "standin.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            return measure(stack, urls, api_processes(stack, extra), args)
        finally:
            for p in [*extra, *([standin] if standin else [])]:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            stack.stop()


def metrics(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        label = f"{row['apis']} API process{'es' if row['apis'] > 1 else ''}"
        lat = row["submit_to_running_s"]
        complete = row["completed"] >= row["submissions"]
        goal = row["apis"] >= 2
        out.append(
            metric(
                f"{label}: submit -> Running p50 ({row['submissions']:,} submissions)",
                lat["p50"],
                "s",
                "<= 1.0 s" if goal else None,
                complete and at_most(lat["p50"], 1.0) if goal else None,
            )
        )
        out.append(metric(f"{label}: submit -> Running p95", lat["p95"], "s"))
        out.append(metric(f"{label}: submit -> Running max", lat["max"], "s"))
        over = row["samples_over_limit"]
        out.append(
            metric(
                f"{label}: samples over the worker limit ({row['worker_limit']})",
                over,
                "",
                "= 0" if goal else None,
                over == 0 and row["max_running_from_intervals"] <= row["worker_limit"]
                if goal
                else None,
            )
        )
        out.append(metric(f"{label}: most Running at once", row["max_running_from_intervals"], ""))
        out.append(
            metric(
                f"{label}: operations completed",
                row["completed"],
                "",
                f"= {row['submissions']:,}",
                complete,
            )
        )
        out.append(metric(f"{label}: API CPU, sum", sum(row["api_cpu_seconds"]), "s"))
        out.append(metric(f"{label}: 1-min load average before", row["load_average_before"][0], ""))
        out.append(foreign_metric(row["other_processes"], label))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--apis", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="submissions per second")
    parser.add_argument("--limit", type=int, default=10, help="PMOPS_WORKER_LIMIT")
    parser.add_argument("--hold", type=float, default=0.5, help="stand-in run length, s")
    parser.add_argument("--standin-poll", type=float, default=0.1)
    parser.add_argument("--sample", type=float, default=0.1, help="slot sampling interval, s")
    parser.add_argument("--rounds", type=int, default=1, help="baseline + cluster pairs")
    parser.add_argument("--no-wait", action="store_true")
    args = parser.parse_args()
    if not args.no_wait:
        wait_quiet()
    rows = []
    for _ in range(args.rounds):
        for apis in (1, args.apis):
            rows.append(run(apis, args))
            print(f"{apis} API(s): {rows[-1]}", file=sys.stderr)
    doc = {
        "command": command_line(),
        "machine": machine(),
        "executor": "bench/_standin_runner.py (claims via lifecycle.claim, no analysis)",
        "settings": vars(args),
        "runs": rows,
        "metrics": metrics(rows),
    }
    path = write_json("cluster_dispatch", doc)
    print(f"`{doc['command']}`\n")
    print(
        "| APIs | completed | submit -> Running p50 / p95 / max | slots held max (limit) | "
        "samples over limit | most Running at once | API CPU s | load avg 1/5/15 before | "
        "other processes' CPU |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        lat = r["submit_to_running_s"]
        print(
            f"| {r['apis']} | {r['completed']:,}/{r['submissions']:,} | {lat['p50']:.2f} / "
            f"{lat['p95']:.2f} / {lat['max']:.2f} s | {r['max_slots_held']} ({r['worker_limit']})"
            f" | {r['samples_over_limit']} of {r['samples']} | {r['max_running_from_intervals']} "
            f"| {' + '.join(str(c) for c in r['api_cpu_seconds'])} | "
            f"{' / '.join(str(x) for x in r['load_average_before'])} | "
            f"{100 * r['other_processes']['foreign_share_of_machine']:.0f} % |"
        )
    print(
        f"\n{args.n:,} submissions at {args.rate:g}/s; runs executed by bench/_standin_runner.py "
        f"(claim, hold {args.hold:g} s, Completed). (raw: {path})"
    )


if __name__ == "__main__":
    main()
