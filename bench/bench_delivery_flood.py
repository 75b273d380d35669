"""Fair delivery (issue #16): tenant B's webhook latency beside tenant A's hanging webhooks.

Tenant A: `--a-projects` projects x `--a-hooks` webhooks (6 x 50 = 300, the per-project limit of
50 reached in each), every one pointing at a receiver that never answers (a listening socket
nobody accepts from: the request goes out, no byte comes back), and one operation per project
writing `--a-events` progress events (14: 4,200 open deliveries, the issue saw 3,922 after one
42-event operation). The webhooks have the API's default retry policy. Tenant B: one project, one
webhook to a receiver answering 200 at once (bench/_receiver.py), and an operation writing a
progress event every 1/`--b-rate` s for `--seconds`; B's latency is each event's `timestamp` ->
its arrival at B's receiver.

Scenarios, each on a fresh store with a fresh deliverer process (`python -m
pmops.delivery.deliverer`, as `pmops up` runs it, default settings: 256 slots, 10 s timeout):
  alone     B only
  flood     B beside A's flood (A's events written first, B's start 2 s later)
  baseline  (with --baseline REV) the flood again, the deliverer run from the code at git REV
            (extracted with `git archive`; the store schema is the same)

Usage: .venv/bin/python bench/bench_delivery_flood.py [--baseline 51902ff] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import (
    ForeignLoad,
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

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def never_answering() -> Iterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def code_at(rev: str, into: Path) -> Path:
    """The pmops package as it was at git `rev`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "archive", rev, "pmops"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


class Run:
    """A fresh store, B's receiver and a deliverer (from `code`, or this checkout)."""

    def __init__(self, data_dir: Path, code: Path | None) -> None:
        os.environ["PMOPS_DATA_DIR"] = str(data_dir)
        from pmops.settings import get_settings
        from pmops.store.engine import engine_for

        get_settings.cache_clear()
        self.settings = get_settings()
        self.engine = engine_for(self.settings.resolved_database_url)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(PMOPS_DATA_DIR=str(data_dir), PMOPS_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8")
        self.receiver = subprocess.Popen(
            [PY, "bench/_receiver.py", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=(data_dir / "receiver.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        if code is not None:  # `-m` puts the working directory first on sys.path
            env["PYTHONPATH"] = str(code)
        self.deliverer = subprocess.Popen(
            [PY, "-m", "pmops.delivery.deliverer"],
            cwd=code or ROOT,
            env=env,
            stdout=(data_dir / "deliverer.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/dump", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(2.0)  # the deliverer's imports and first heartbeat

    def close(self) -> None:
        for proc in (self.deliverer, self.receiver):
            proc.terminate()
        for proc in (self.deliverer, self.receiver):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def dump(self) -> list[tuple[str, float, float]]:
        return [tuple(r) for r in httpx.get(f"{self.url}/dump", timeout=60).json()]

    def webhooks(self, tenant: str, project: str, urls: list[str]) -> None:
        from pmops.store.engine import transaction, utc_now
        from pmops.store.tables import webhooks
        from pmops.store.webhooks import DEFAULT_WEBHOOK_POLICY

        rows = [
            {
                "webhook_id": f"wh-{uuid.uuid4()}",
                "tenant_id": tenant,
                "project_id": project,
                "url": url,
                "name": "flood",
                "events": ["operation.progress"],
                "filters": {},
                "secret": "bench-secret-key",
                "retry_policy": DEFAULT_WEBHOOK_POLICY,
                "headers": {},
                "status": "Active",
                "created_at": utc_now(),
            }
            for url in urls
        ]
        with transaction(self.engine) as conn:
            conn.execute(webhooks.insert(), rows)

    def operation(self, tenant: str, project: str) -> str:
        from datetime import timedelta

        from pmops.store.engine import transaction, utc_now
        from pmops.store.tables import operations

        op_id = f"op-{uuid.uuid4()}"
        now = utc_now()
        with transaction(self.engine) as conn:
            conn.execute(
                operations.insert().values(
                    operation_id=op_id,
                    tenant_id=tenant,
                    project_id=project,
                    operation_type="ProcessMiningAnalysis",
                    operation_name="bench",
                    priority="Normal",
                    priority_rank=1,
                    status="Running",
                    request={},
                    created_at=now,
                    started_at=now,
                    timeout_at=now + timedelta(hours=1),
                    percentage=0.0,
                    processed_records=0,
                    cancel_requested=False,
                )
            )
        return op_id

    def emit(self, op_id: str, pct: float) -> None:
        from sqlalchemy import update

        from pmops.service.events import emit
        from pmops.store.engine import transaction
        from pmops.store.tables import operations

        with transaction(self.engine) as conn:
            conn.execute(
                update(operations).where(operations.c.operation_id == op_id).values(percentage=pct)
            )
            emit(conn, op_id, "operation.progress")

    def open_deliveries(self, tenant: str) -> int:
        from sqlalchemy import func, select

        from pmops.store.deliveries import OPEN
        from pmops.store.tables import deliveries

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        deliveries.c.tenant_id == tenant, deliveries.c.status.in_(OPEN)
                    )
                ).scalar_one()
            )


def scenario(args: argparse.Namespace, code: Path | None, flood: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pmops-bench-flood-") as tmp, never_answering() as hang:
        run = Run(Path(tmp), code)
        try:
            tenant_a, tenant_b, project_b = (str(uuid.uuid4()) for _ in range(3))
            open_a = 0
            if flood:
                ops = []
                for p in range(args.a_projects):
                    project = str(uuid.uuid4())
                    run.webhooks(
                        tenant_a, project, [f"{hang}/a/{p}/{i}" for i in range(args.a_hooks)]
                    )
                    ops.append(run.operation(tenant_a, project))
                for step in range(1, args.a_events + 1):
                    for op_id in ops:
                        run.emit(op_id, float(step))
                time.sleep(2.0)
                open_a = run.open_deliveries(tenant_a)
            run.webhooks(tenant_b, project_b, [f"{run.url}/b"])
            op_b = run.operation(tenant_b, project_b)
            run.dump()
            n = int(args.seconds * args.b_rate)
            t0 = time.monotonic()
            for i in range(n):
                run.emit(op_b, float(i % 100))
                time.sleep(max(0.0, t0 + (i + 1) / args.b_rate - time.monotonic()))
            got: list[tuple[str, float, float]] = []
            end = time.monotonic() + args.wait
            while time.monotonic() < end:
                got += run.dump()
                if sum(1 for r in got if r[0] == "/b") >= n:
                    break
                time.sleep(0.5)
            ms = [(arrived - stamp) * 1000 for path, arrived, stamp in got if path == "/b"]
            return {"events": n, "received": len(ms), "a_open_deliveries": open_a, **summary(ms)}
        finally:
            run.close()


def metrics(rows: dict[str, dict[str, Any]], foreign: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, row in rows.items():
        complete = row["received"] >= row["events"]
        out.append(metric(f"B event -> delivered, {name}: p50", row["p50"], "ms"))
        goal = "<= 1,000 ms" if name == "beside A's flood" else None
        met = complete and at_most(row["p95"], 1000) if goal else None
        out.append(metric(f"B event -> delivered, {name}: p95", row["p95"], "ms", goal, met))
        out.append(metric(f"B event -> delivered, {name}: max", row["max"], "ms"))
        out.append(metric(f"B delivered, {name}", row["received"], f"of {row['events']}"))
    out.append(foreign_metric(foreign))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-projects", type=int, default=6)
    parser.add_argument("--a-hooks", type=int, default=50)
    parser.add_argument("--a-events", type=int, default=14)
    parser.add_argument("--b-rate", type=float, default=2.0, help="B's events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long B writes events")
    parser.add_argument("--wait", type=float, default=300.0, help="then wait for B's at most")
    parser.add_argument("--baseline", default=None, help="also run the flood with this git rev")
    parser.add_argument("--no-wait", action="store_true")
    args = parser.parse_args()
    if not args.no_wait:
        wait_quiet()
    rows: dict[str, dict[str, Any]] = {}
    with ForeignLoad() as foreign, tempfile.TemporaryDirectory(prefix="pmops-base-") as base:
        rows["alone"] = scenario(args, None, flood=False)
        rows["beside A's flood"] = scenario(args, None, flood=True)
        if args.baseline:
            code = code_at(args.baseline, Path(base))
            rows[f"beside A's flood, before (at {args.baseline})"] = scenario(args, code, True)
    doc = {
        "command": command_line(),
        "machine": machine(),
        "scenarios": rows,
        "other_processes": foreign.report(),
        "metrics": metrics(rows, foreign.report()),
    }
    path = write_json("delivery_flood", doc)
    print(f"`{doc['command']}`\n")
    print("| B's webhook | A's open deliveries | B delivered | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['a_open_deliveries']:,} | {row['received']}/{row['events']} | "
            f"{row['p50']:.1f} | {row['p95']:.1f} | {row['max']:.1f} |"
        )
    print(f"\nother processes during the run: {foreign.report()}  (raw: {path})")


if __name__ == "__main__":
    main()
