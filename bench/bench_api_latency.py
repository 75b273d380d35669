"""API latency under load (issue #3 goal: POST start p99 <= 100 ms, GET status p99 <= 25 ms,
with 50 concurrent clients and 10,000 stored operations).

For each mode it starts its own `pmops up` (temp data dir, free ports, single uvicorn worker):
  runner     the full stack, PMOPS_WORKER_LIMIT=--worker-limit; the started operations are
             dispatched and run, so their flow-run processes compete with the API for the CPUs
  no-runner  Prefect server + API only (bench/_up.py --no-runner; the deployments are registered
             but nothing executes the flow runs): isolates the API's own latency
The store is seeded with --ops terminal operations copied from the row of one real
running-example.xes analysis (request, progress and results JSON; Completed 85 %, Failed 7 %,
Cancelled 5 %, Timeout 3 %, nothing the dispatcher or the sweep would touch; see
_stack.template_row). Then for each client count in --clients (closed loop: each client sends its
next request an exponentially distributed time, mean --think seconds, after the previous answer,
the first after a random offset, so 50 independent clients do not arrive in lockstep; 0 = at
once, saturating the API), warm-up excluded:
  GET  /async/operation/{id} on random stored operations  (--gets requests)
  POST /async/operation  ProcessMiningAnalysis on the uploaded dataset  (--posts requests)
--profile attaches py-spy to the uvicorn process during each measured phase (pip install py-spy
into the venv first) and prints the hottest api/ and pmops/ functions.

  .venv/bin/python bench/bench_api_latency.py [--modes runner,no-runner] [--ops 10000]
      [--gets 2000] [--posts 500] [--clients 50] [--think 0] [--worker-limit 2] [--profile]
Raw figures: bench/results/api_latency.json (py-spy stacks: bench/results/api_latency_*.txt)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import Profiler, find_child, hotspots, pyspy, run_load
from _stack import (
    DATASETS,
    RESULTS,
    ROOT,
    ForeignLoad,
    Stack,
    at_most,
    command_line,
    foreign_metric,
    machine,
    metric,
    summary,
    template_row,
    wait_quiet,
    write_json,
)

GOALS = {"GET": 0.025, "POST": 0.100}


def in_process(stack: Stack, ids: list[str], dataset_id: str, repeat: int = 30) -> dict[str, Any]:
    """The handlers' own work without HTTP, on the seeded store (median ms of `repeat` calls)."""
    import json
    import statistics

    from sqlalchemy import text

    from pmops.service.estimates import estimate_seconds
    from pmops.service.operations import callback_stats, get_operation_or_404, status_view
    from pmops.service.scope import Principal, Scope
    from pmops.settings import Settings
    from pmops.store.engine import make_engine

    engine = make_engine(stack.db_url)
    settings = Settings(data_dir=stack.data_dir, prefect_port=stack.prefect_port)
    scope = Scope(stack.tenant, stack.project, Principal(stack.tenant, stack.project, "bench"))
    rng = random.Random(5)

    def timed(fn: Any) -> float:
        xs = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t)
        return round(statistics.median(xs) * 1000, 2)

    out: dict[str, Any] = {}
    try:

        def get_status() -> str:
            op_id = rng.choice(ids)
            row = get_operation_or_404(engine, scope, op_id, status_only=True)
            return json.dumps(status_view(row, settings, callback_stats(engine, op_id)))

        out["GET: get_operation_or_404 + callback_stats + status_view + json.dumps"] = timed(
            get_status
        )
        out["POST: estimate_seconds (events=42)"] = timed(
            lambda: estimate_seconds(engine, "ProcessMiningAnalysis", 42)
        )
        if stack.db_url.startswith("sqlite"):
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT events, phase_seconds, startup_seconds "
                    "FROM run_throughput WHERE operation_type = 'ProcessMiningAnalysis' "
                    "ORDER BY ended_at DESC LIMIT 200"
                ).all()
                out["estimate_seconds query plan"] = " / ".join(str(r[-1]) for r in plan)
                out["store size MB"] = round(
                    conn.execute(text("PRAGMA page_count")).scalar_one()
                    * conn.execute(text("PRAGMA page_size")).scalar_one()
                    / 1e6
                )
    except Exception as exc:  # the API's internals may have moved: say so, keep the HTTP figures
        out["error"] = f"{type(exc).__name__}: {exc}"
    engine.dispose()
    return out


def measure_mode(mode: str, args: argparse.Namespace, template: dict[str, Any]) -> list[dict]:
    stack = Stack(runner=mode == "runner", worker_limit=args.worker_limit, keep=args.keep)
    rows: list[dict[str, Any]] = []
    try:
        stack.start()
        dataset_id = stack.upload(args.log)
        engine = stack.engine()
        ids, seed_seconds = stack.seed(engine, template, args.ops, dataset_id)
        engine.dispose()
        print(f"[{mode}] seeded {len(ids)} operations in {seed_seconds:.1f} s", file=sys.stderr)
        inproc = in_process(stack, ids, dataset_id)
        print(f"[{mode}] in-process: {inproc}", file=sys.stderr)
        rng = random.Random(11)
        get_url = f"{stack.base}/async/operation/"
        post_url = f"{stack.base}/async/operation"

        def get_req(i: int) -> tuple[str, str, None]:
            return "GET", get_url + rng.choice(ids), None

        def post_req(i: int) -> tuple[str, str, dict]:
            return "POST", post_url, stack.start_body(dataset_id, f"load {mode} {i}")

        api_pid = find_child(stack.proc.pid, "api.main:app") if stack.proc else None
        for clients in args.clients:
            run_load(get_req, args.warmup_gets, clients, stack.headers)
            run_load(post_req, args.warmup_posts, clients, stack.headers)
            for phase, make, n in (("GET", get_req, args.gets), ("POST", post_req, args.posts)):
                prof_path = RESULTS / f"api_latency_{mode}_{clients}_{phase}.txt"
                use_prof = args.profile and api_pid is not None and pyspy() is not None
                with ForeignLoad() as noise:
                    if use_prof:
                        prof_path.unlink(missing_ok=True)
                        with Profiler(api_pid, prof_path):
                            res = run_load(make, n, clients, stack.headers, args.budget, args.think)
                    else:
                        res = run_load(make, n, clients, stack.headers, args.budget, args.think)
                res["foreign_load"] = noise.report()
                res["stats"] = summary(res.pop("latencies"))
                res.update(mode=mode, clients=clients, phase=phase, seed_seconds=seed_seconds)
                res["in_process_ms"] = inproc
                res["worker_limit"] = args.worker_limit if mode == "runner" else None
                if use_prof:
                    res["profile"] = hotspots(prof_path)
                    res["profile_file"] = str(prof_path.relative_to(ROOT))
                rows.append(res)
                s = res["stats"]
                print(
                    f"[{mode} c={clients}] {phase}: p50 {s['p50'] * 1000:.1f} ms "
                    f"p99 {s['p99'] * 1000:.1f} ms {res['throughput_rps']:.0f} req/s "
                    f"codes {res['codes']}",
                    file=sys.stderr,
                )
    finally:
        stack.stop()
        if args.keep:
            print(f"[{mode}] data dir kept: {stack.data_dir}", file=sys.stderr)
    return rows


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def metrics(rows: list[dict], think: float) -> list[dict]:
    """p99 goals apply to polling clients (think > 0); a saturating closed loop (think 0)
    measures capacity, so its figures carry no goal (BENCHMARKS.md says why)."""
    out = []
    for r in rows:
        s, goal = r["stats"], GOALS[r["phase"]]
        what = "GET status" if r["phase"] == "GET" else "POST start"
        label = f"{r['mode']}, {r['clients']} clients, {what}"
        if think <= 0:
            label += " (saturating)"
        out.append(metric(f"{label}: p50", s["p50"] * 1000, "ms"))
        out.append(metric(f"{label}: p95", s["p95"] * 1000, "ms"))
        done = r["completed"] >= r["requested"]
        if think > 0:
            out.append(
                metric(
                    f"{label}: p99",
                    s["p99"] * 1000,
                    "ms",
                    f"<= {goal * 1000:.0f} ms",
                    at_most(s["p99"], goal) and done,
                )
            )
        else:
            out.append(metric(f"{label}: p99", s["p99"] * 1000, "ms"))
        out.append(metric(f"{label}: max", s["max"] * 1000, "ms"))
        out.append(metric(f"{label}: throughput", r["throughput_rps"], "req/s"))
    if rows:
        worst = max(rows, key=lambda r: r["foreign_load"]["foreign_share_of_machine"])
        out.append(foreign_metric(worst["foreign_load"], "worst phase"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="runner,no-runner")
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--posts", type=int, default=500)
    ap.add_argument("--warmup-gets", type=int, default=200)
    ap.add_argument("--warmup-posts", type=int, default=20)
    ap.add_argument(
        "--clients",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[50],
        help="comma-separated concurrent client counts",
    )
    ap.add_argument("--think", type=float, default=0.0, help="seconds between a client's requests")
    ap.add_argument("--worker-limit", type=int, default=2)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per measured phase")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dirs (logs)")
    ap.add_argument("--log", type=Path, default=DATASETS / "running-example.xes")
    ap.add_argument(
        "--no-wait", action="store_true", help="do not wait for the machine to be quiet first"
    )
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    template = template_row(args.log)
    if not args.no_wait:
        wait_quiet()
    rows = [r for mode in modes for r in measure_mode(mode, args, template)]

    print(
        f"\n## API latency: {args.ops:,} stored operations, single uvicorn worker, closed loop "
        f"(think {args.think:g} s), warm-up excluded\n"
    )
    print(
        "| mode | clients | request | n | p50 ms | p95 ms | p99 ms | max ms | req/s | codes "
        "| other procs' CPU | goal p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = r["mode"] + (f" (limit {r['worker_limit']})" if r["mode"] == "runner" else "")
        s = r["stats"]
        goal = GOALS[r["phase"]]
        verdict = f"<= {goal * 1000:.0f} ms {'met' if s['p99'] <= goal else 'MISSED'}"
        if r["completed"] < r["requested"]:
            verdict += f" (budget: {r['completed']}/{r['requested']} done)"
        print(
            f"| {label} | {r['clients']} | {r['phase']} | {s['n']} | {ms(s['p50'])} | "
            f"{ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} | {r['throughput_rps']:.0f} | "
            f"{r['codes']} | {r['foreign_load']['foreign_share_of_machine']:.0%} | {verdict} |"
        )
    for r in rows:
        prof = r.get("profile")
        if not prof:
            continue
        print(
            f"\n### py-spy: {r['mode']}, {r['clients']} clients, {r['phase']} "
            f"({prof['busy_samples']} busy samples; inclusive % of busy samples)\n"
        )
        print("| function (api/, pmops/) | incl % |")
        print("|---|---|")
        for key, p in prof["inclusive_ours"][:10]:
            print(f"| `{key}` | {p} |")
        print("\nself-time top: " + ", ".join(f"`{k}` {p}%" for k, p in prof["self_top"][:6]))
    seen = set()
    for r in rows:
        if r["mode"] in seen:
            continue
        seen.add(r["mode"])
        print(f"\nin-process ({r['mode']} stack's store, median ms): {r['in_process_ms']}")
    print(
        "\nclient CPU on the same cores (s of CPU / s of wall): "
        + ", ".join(
            f"{r['mode']} c={r['clients']} {r['phase']} "
            f"{r['client_cpu_seconds']:.1f}/{r['wall_seconds']:.1f}"
            for r in rows
        )
    )
    path = write_json(
        "api_latency",
        {
            "machine": machine(),
            "args": vars(args) | {"log": str(args.log)},
            "results": rows,
            "metrics": metrics(rows, args.think),
        },
    )
    print(f"\ncommand: `{command_line()}`  raw: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
