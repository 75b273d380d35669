"""Webhook delivery with several deliverer processes on one PostgreSQL store (issue #15 goal).

100 webhooks x 1,000 events (100,000 deliveries) to a real loopback receiver, as the throughput
part of bench_webhooks.py: events written one per transaction through
`pmops.service.events.emit` (as flow runs write them) while the deliverers run; first event
written -> last delivery received. Each configuration runs in a PostgreSQL database of its own
(created and dropped here) with its own deliverer processes (`python -m pmops.delivery.deliverer`,
PMOPS_DATABASE_URL=postgresql+psycopg://...) and its own receiver (bench/_receiver.py --ids).

Goal (issue #15): TWO deliverers: <= 15 s, and no delivery received twice unless an attempt of
it failed (duplicates counted at the receiver by X-Pmops-Delivery: one delivery = one event to one
webhook; a repeat whose X-Pmops-Attempt is > 1 followed a failed attempt).
Baseline: ONE deliverer on the same PostgreSQL setup, run right before (no goal).

Store statistics: this machine's PostgreSQL runs with autovacuum off, so a fresh database is never
analyzed. A service's store has statistics from its history, in which nearly every delivery is
finished (next_attempt_at NULL); so before the timed part each configuration delivers a warm-up
(10 events to the same 100 webhooks) and runs ANALYZE, which gives exactly such statistics.
--no-analyze skips both (a never-analyzed store). Either way the lease query
(store.list_due_deliveries) is planned for a handful of due rows and sorts the whole backlog on
each lease (bench/notes/cluster.md).

Usage: .venv/bin/python bench/bench_cluster_delivery.py [--deliverers 2] [--rounds 1]
    [--hooks 100] [--events 1000] [--no-analyze] [--no-wait]
Raw figures: bench/results/cluster_delivery.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import (
    ForeignLoad,
    at_most,
    command_line,
    foreign_metric,
    free_port,
    machine,
    metric,
    wait_quiet,
    write_json,
)
from bench.bench_webhooks import Bench, start

PY = sys.executable
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, uniquely named PostgreSQL database (its SQLAlchemy URL), dropped after."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Cluster(Bench):
    """bench_webhooks.Bench with `n` deliverers on a PostgreSQL store and an id-recording
    receiver."""

    def __init__(self, data_dir: Path, database_url: str, n: int) -> None:
        os.environ["PMOPS_DATA_DIR"] = str(data_dir)
        os.environ["PMOPS_DATABASE_URL"] = database_url
        from pmops.settings import get_settings
        from pmops.store.engine import make_engine

        get_settings.cache_clear()
        self.settings = get_settings()
        self.engine = make_engine(database_url)  # creates the schema in the empty database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(PMOPS_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8", PYTHONUNBUFFERED="1")
        self.receiver = start(
            [PY, "bench/_receiver.py", str(self.port), "--ids"], env, data_dir / "receiver.log"
        )
        self.deliverers = [
            start([PY, "-m", "pmops.delivery.deliverer"], env, data_dir / f"deliverer-{i}.log")
            for i in range(n)
        ]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/dump", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        self._wait_heartbeats(n, deadline + 40)

    def _wait_heartbeats(self, n: int, deadline: float) -> None:
        """Until every deliverer has written its heartbeat (its imports are done)."""
        from sqlalchemy import func, select

        from pmops.store.tables import deliverers

        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(deliverers)).scalar_one() >= n:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{n} deliverers did not all beat within the deadline")

    def close(self) -> None:
        for proc in (*self.deliverers, self.receiver):
            proc.terminate()
            proc.wait(30)
        self.engine.dispose()


def warm_up(bench: Cluster, ops: list[str], hooks: int, events: int = 10) -> None:
    """A store with a history, as in service: `events` events fanned out and delivered, then
    ANALYZE (this PostgreSQL server runs with autovacuum off)."""
    for i in range(events):
        bench.emit(ops[i % len(ops)], 0.0)
    got = bench.wait_for("/t/", hooks * events, 120)
    if sum(1 for r in got if r[0].startswith("/t/")) < hooks * events:
        raise RuntimeError("the warm-up deliveries did not all arrive")
    with bench.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    time.sleep(1.0)
    bench.dump()


def autovacuum(bench: Cluster) -> str:
    with bench.engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW autovacuum").scalar())


def fan(bench: Cluster, hooks: int, events: int, analyze: bool = True) -> dict[str, Any]:
    """The 100 x 1,000 fan-out: wall time, duplicates, each deliverer's CPU, load."""
    tenant, project = bench.project()
    for i in range(hooks):
        bench.webhook(tenant, project, f"/t/{i}")
    ops = [bench.operation(tenant, project) for _ in range(10)]
    bench.dump()
    if analyze:
        warm_up(bench, ops, hooks)
    procs = [psutil.Process(d.pid) for d in bench.deliverers]
    cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
    load_before = load_average()
    started = time.time()
    for i in range(events):
        bench.emit(ops[i % len(ops)], float(i // len(ops)))
    written = time.time() - started
    want = hooks * events
    got = [r for r in bench.wait_for("/t/", want, 300) if r[0].startswith("/t/")]
    time.sleep(2.0)  # a late duplicate would arrive after the last expected delivery
    got += [r for r in bench.dump() if r[0].startswith("/t/")]
    cpu = [round(sum(p.cpu_times()[:2]) - c, 1) for p, c in zip(procs, cpu0, strict=True)]
    first: dict[str, float] = {}
    for r in got:
        first[str(r[3])] = min(float(r[1]), first.get(str(r[3]), float("inf")))
    per_id = Counter(str(r[3]) for r in got)
    retried = {str(r[3]) for r in got if str(r[4]) not in ("", "1")}
    repeats = {d: c for d, c in per_id.items() if c > 1}
    # the last delivery's first arrival (a late duplicate does not count)
    total = max(first.values()) - started if len(first) >= want else float("nan")
    # incomplete (the 300 s wait ran out): the rate so far
    seen = (max(first.values()) - started) if first else float("nan")
    return {
        "deliverers": len(procs),
        "webhooks": hooks,
        "events": events,
        "deliveries_expected": want,
        "requests_received": len(got),
        "distinct_deliveries_received": len(per_id),
        "duplicates": sum(c - 1 for c in repeats.values()),
        "duplicates_without_a_failed_attempt": sum(
            c - 1 for d, c in repeats.items() if d not in retried
        ),
        "events_written_seconds": round(written, 2),
        "first_event_to_last_delivery_seconds": round(total, 2),
        "deliveries_per_second": round(len(per_id) / seen, 1) if seen == seen else 0.0,
        "deliverer_cpu_seconds": cpu,
        "deliverer_rss_mb": [round(p.memory_info().rss / 2**20, 1) for p in procs],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "statistics": "ANALYZE after a warm-up" if analyze else "none (never analyzed)",
        "server_autovacuum": autovacuum(bench),
    }


def run(deliverers: int, hooks: int, events: int, analyze: bool) -> dict[str, Any]:
    with (
        fresh_database("pmops_clusterbench") as url,
        tempfile.TemporaryDirectory(prefix="pmops-bench-cluster-") as tmp,
    ):
        bench = Cluster(Path(tmp), url, deliverers)
        try:
            with ForeignLoad() as foreign:
                row = fan(bench, hooks, events, analyze)
        finally:
            bench.close()
    row["other_processes"] = foreign.report()
    return row


def metrics(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        n = row["deliverers"]
        label = f"{n} deliverer{'s' if n > 1 else ''}"
        complete = row["distinct_deliveries_received"] >= row["deliveries_expected"]
        total = row["first_event_to_last_delivery_seconds"]
        head = f"{label}: {row['webhooks']} webhooks × {row['events']:,} events"
        if n >= 2:
            out.append(
                metric(
                    f"{head}: first event -> last delivery",
                    total,
                    "s",
                    "<= 15 s",
                    complete and at_most(total, 15),
                )
            )
            dup = row["duplicates_without_a_failed_attempt"]
            out.append(
                metric(f"{label}: duplicates without a failed attempt", dup, "", "= 0", dup == 0)
            )
        else:
            out.append(metric(f"{head} (baseline): first event -> last delivery", total, "s"))
        out.append(metric(f"{label}: deliveries per second", row["deliveries_per_second"], "/s"))
        out.append(
            metric(
                f"{label}: deliveries received",
                row["distinct_deliveries_received"],
                "",
                f"= {row['deliveries_expected']:,}",
                complete,
            )
        )
        out.append(metric(f"{label}: duplicates in all", row["duplicates"], ""))
        out.append(metric(f"{label}: deliverer CPU, sum", sum(row["deliverer_cpu_seconds"]), "s"))
        out.append(metric(f"{label}: 1-min load average before", row["load_average_before"][0], ""))
        out.append(foreign_metric(row["other_processes"], label))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deliverers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="baseline + cluster pairs")
    parser.add_argument("--cluster-only", action="store_true", help="no one-deliverer baseline")
    parser.add_argument("--hooks", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument(
        "--no-analyze", action="store_true", help="no warm-up and ANALYZE: a never-analyzed store"
    )
    parser.add_argument("--no-wait", action="store_true")
    args = parser.parse_args()
    if not args.no_wait:
        wait_quiet()
    rows = []
    for _ in range(args.rounds):
        for n in (1, args.deliverers) if not args.cluster_only else (args.deliverers,):
            rows.append(run(n, args.hooks, args.events, not args.no_analyze))
            print(f"{n} deliverer(s): {rows[-1]}", file=sys.stderr)
    doc = {"command": command_line(), "machine": machine(), "runs": rows, "metrics": metrics(rows)}
    path = write_json("cluster_delivery", doc)
    print(f"`{doc['command']}`\n")
    print(
        "| deliverers | received | first event -> last delivery | deliveries/s | duplicates "
        "(without a failed attempt) | deliverer CPU s | load avg 1/5/15 before | other "
        "processes' CPU |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['deliverers']} | {r['distinct_deliveries_received']:,}/"
            f"{r['deliveries_expected']:,} | {r['first_event_to_last_delivery_seconds']:.1f} s | "
            f"{r['deliveries_per_second']:,.0f} | {r['duplicates']} "
            f"({r['duplicates_without_a_failed_attempt']}) | "
            f"{' + '.join(str(c) for c in r['deliverer_cpu_seconds'])} | "
            f"{' / '.join(str(x) for x in r['load_average_before'])} | "
            f"{100 * r['other_processes']['foreign_share_of_machine']:.0f} % |"
        )
    print(f"\n(raw: {path})")


if __name__ == "__main__":
    main()
