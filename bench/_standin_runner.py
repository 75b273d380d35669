"""A stand-in for the runner's flow-run processes, for bench_cluster_dispatch.py.

The real runner (deployments.serve) starts a process per flow run, whose body claims its
operation (`pmops.service.lifecycle.claim`: Initiated -> Running), analyses and finishes it. A
quick analysis of running-example.xes costs ~1.6 s of CPU, so 1,000 of them would take the
shared 2-core machine over a quarter of an hour per configuration. This process does what the
flow body does to the store and nothing else: every --poll seconds it reads the operations that a
dispatcher has given a flow run (Initiated, flow_run_id set), claims each through
`lifecycle.claim` (the flow body's own call, with the run's id) unless its run stands by for a
slot (PMOPS_STANDBY_RUNS: the flow body waits in `lifecycle.wait_for_slot` until the dispatcher
grants it one; here it is claimed at a later poll, once granted), and --hold seconds later
finishes it Completed through `lifecycle.finish`. The Prefect flow runs the dispatchers created
stay Scheduled in the (real) Prefect server: nothing picks them up there.

Usage: python bench/_standin_runner.py DATABASE_URL [--poll 0.1] [--hold 1.0]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--hold", type=float, default=1.0)
    args = parser.parse_args()

    from sqlalchemy import select

    from pmops.service.lifecycle import claim, finish
    from pmops.store.engine import make_engine
    from pmops.store.tables import operations, standby_runs

    engine = make_engine(args.database_url)
    stop = False

    def halt(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    running: dict[str, float] = {}  # operation id -> when to finish it
    c = operations.c
    while not stop:
        with engine.connect() as conn:
            rows = conn.execute(
                select(c.operation_id, c.flow_run_id)
                .where(c.status == "Initiated", c.flow_run_id.is_not(None))
                .where(~c.operation_id.in_(select(standby_runs.c.operation_id)))
            ).all()
        for op_id, run_id in rows:
            if op_id not in running and claim(engine, op_id, run_id, "standin") is not None:
                running[op_id] = time.monotonic() + args.hold
        now = time.monotonic()
        for op_id in [o for o, due in running.items() if due <= now]:
            finish(engine, op_id, "Completed", None)
            del running[op_id]
        time.sleep(args.poll)
    engine.dispose()


if __name__ == "__main__":
    main()
