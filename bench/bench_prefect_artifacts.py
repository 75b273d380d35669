"""What one Prefect artifact request costs the Prefect server, in CPU (issue #15, throughput).

A flow run of pmops publishes its progress, summary, tables and links as Prefect artifacts
(flows/publish.py). The queue bench's wall time and CPU per operation drift by a fifth with this
machine's speed from one minute to the next, which hides a few per cent; this measures the
request kinds themselves, alternated in rounds, against a Prefect server of their own (SQLite,
as `pmops up` runs it):
  keyed    create_markdown_artifact with a fresh key (a new artifact collection: two events)
  unkeyed  create_markdown_artifact without a key (one event)
  update   update_progress_artifact (one event)
Server CPU per request = the server process's CPU over the batch and the 3 s after it (its
event persister writes the events in the background), divided by the requests; client CPU per
request = the calling process's CPU over the batch.

Usage: .venv/bin/python bench/bench_prefect_artifacts.py [--requests 60] [--rounds 4]
Raw figures: bench/results/prefect_artifacts.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import command_line, free_port, machine, write_json

KINDS = ("keyed", "unkeyed", "update")


def measure(requests: int, rounds: int) -> dict[str, Any]:
    import httpx
    import psutil

    port = free_port()
    home = tempfile.mkdtemp(prefix="pmops-bench-artifacts-")
    env = {
        "PREFECT_HOME": home,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    os.environ.update(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        from prefect import flow
        from prefect.artifacts import (
            create_markdown_artifact,
            create_progress_artifact,
            update_progress_artifact,
        )

        proc = psutil.Process(server.pid)
        got: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}

        def server_cpu() -> float:
            return float(sum(proc.cpu_times()[:2]))

        @flow(name="artifact-requests", persist_result=False)
        def requests_flow() -> None:
            for _ in range(rounds):
                for kind in KINDS:
                    progress = create_progress_artifact(0.0) if kind == "update" else None
                    time.sleep(1.5)
                    cpu0, own0 = server_cpu(), time.process_time()
                    for i in range(requests):
                        if kind == "keyed":
                            create_markdown_artifact("x", key=f"k-{uuid.uuid4().hex[:12]}")
                        elif kind == "unkeyed":
                            create_markdown_artifact("x")
                        else:
                            assert progress is not None
                            update_progress_artifact(progress, float(i + 1))  # type: ignore[arg-type]
                    own = time.process_time() - own0
                    time.sleep(3.0)  # the event persister catches up
                    got[kind].append(
                        ((server_cpu() - cpu0) / requests * 1000, own / requests * 1000)
                    )

        requests_flow()
    finally:
        server.terminate()
        server.wait(30)
    return {
        kind: {
            "server_cpu_ms_per_request": [round(s, 2) for s, _ in rows],
            "client_cpu_ms_per_request": [round(c, 2) for _, c in rows],
            "server_median": round(statistics.median(s for s, _ in rows), 2),
            "client_median": round(statistics.median(c for _, c in rows), 2),
        }
        for kind, rows in got.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    found = measure(args.requests, args.rounds)
    doc = {"command": command_line(), "machine": machine(), "kinds": found}
    path = write_json("prefect_artifacts", doc)
    print(f"`{doc['command']}`\n")
    print("| request | server CPU ms (median; each round) | client CPU ms (median) |")
    print("|---|---|---|")
    for kind, row in found.items():
        rounds = ", ".join(str(x) for x in row["server_cpu_ms_per_request"])
        print(f"| {kind} | {row['server_median']} ({rounds}) | {row['client_median']} |")
    print(f"\n(raw: {path})")


if __name__ == "__main__":
    main()
