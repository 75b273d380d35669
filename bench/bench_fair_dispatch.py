"""Fair dispatch, in process, on SQLite and PostgreSQL (issue #16: a flood in one project delays
another's operation by at most one slot turn).

Project A queues `--queued` operations at Critical, project B one at High; the Dispatcher (worker
limit 2, a fake orchestrator that records the runs it is asked for) fills both slots with A's,
then B queues and slots free one at a time (the oldest running operation completes). Printed:
A's dispatches before B's, and the selection's time (what dispatch_once reads when slots are
free: the slots held per project, the projects with Initiated work, the chosen project's head)
as the median/max of `--n` selections with two slots free; the old global query (highest
priority then oldest over all projects) is timed alongside for comparison. Also timed: a start's
queue-wait estimate for B (fair.seconds_ahead: a GROUP BY over the queued rows) against the old
one (the queued seconds at equal or higher priority). PostgreSQL gets a
fresh database (127.0.0.1:5432, trust auth as postgres), VACUUM ANALYZEd after the load, dropped at
the end.

  .venv/bin/python bench/bench_fair_dispatch.py [--queued 2000] [--n 200]
      [--backends sqlite,postgresql] [--pg-admin postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from pmops.contract.requests import PRIORITY_RANK
from pmops.service.dispatcher import Dispatcher
from pmops.service.fair import FairQueue, seconds_ahead
from pmops.service.orchestrator import OperationRunSpec, Orchestrator
from pmops.settings import Settings
from pmops.store import queue
from pmops.store.engine import make_engine, transaction, utc_now
from pmops.store.operations import queued_seconds_ahead, update_operation
from pmops.store.tables import operations


class Recording:
    def __init__(self) -> None:
        self.created: list[str] = []

    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        self.created.append(operation.operation_id)
        return str(uuid.uuid4())


def rows(project: tuple[str, str], n: int, priority: str) -> list[dict[str, Any]]:
    now = utc_now()
    return [
        {
            "operation_id": f"op-{uuid.uuid4()}",
            "tenant_id": project[0],
            "project_id": project[1],
            "operation_type": "ProcessMiningAnalysis",
            "operation_name": "fair bench",
            "priority": priority,
            "priority_rank": PRIORITY_RANK[priority],
            "status": "Initiated",
            "request": {"parameters": {"datasetId": "x"}},
            "created_at": now + timedelta(microseconds=i),
            "timeout_at": now + timedelta(hours=1),
            "percentage": 0.0,
            "processed_records": 0,
            "cancel_requested": False,
        }
        for i in range(n)
    ]


def load(engine: Engine, batch: list[dict[str, Any]]) -> None:
    for i in range(0, len(batch), 5000):
        with transaction(engine) as conn:
            conn.execute(insert(operations), batch[i : i + 5000])


def timed(fn: Any, n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def plans(engine: Engine, backend: str, a: tuple[str, str]) -> dict[str, str]:
    """Each selection statement's plan: PostgreSQL's EXPLAIN ANALYZE (index and server time),
    SQLite's EXPLAIN QUERY PLAN (the index it reads)."""
    from sqlalchemy import func, select

    from pmops.store.tables import operation_counts as oc

    o = operations.c
    statements = {
        "slots_held": select(o.tenant_id, o.project_id, func.count())
        .where(o.status.in_(queue.UNFINISHED), o.flow_run_id.is_not(None))
        .group_by(o.tenant_id, o.project_id),
        "projects": select(oc.c.tenant_id, oc.c.project_id)
        .where(oc.c.status == "Initiated", oc.c.n > 0)
        .group_by(oc.c.tenant_id, oc.c.project_id),
        "head_of_A": select(operations)
        .where(o.tenant_id == a[0], o.project_id == a[1], o.status == "Initiated")
        .where(o.flow_run_id.is_(None))
        .order_by(o.priority_rank.desc(), o.created_at.asc())
        .limit(2),
    }
    out = {}
    with engine.connect() as conn:
        for name, stmt in statements.items():
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            if backend == "postgresql":
                lines = [r[0] for r in conn.exec_driver_sql("EXPLAIN ANALYZE " + sql)]
                scan = next(x.strip() for x in lines if " on " in x)
                server = next(x for x in lines if x.startswith("Execution Time"))
                out[name] = f"{scan.split('  (')[0]}; {server}"
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
                out[name] = " / ".join(str(r[-1]) for r in rows)
    return out


def measure(engine: Engine, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    a = (str(uuid.uuid4()), str(uuid.uuid4()))
    b = (str(uuid.uuid4()), str(uuid.uuid4()))
    t = time.perf_counter()
    load(engine, rows(a, args.queued, "Critical"))
    load_s = time.perf_counter() - t
    if backend == "postgresql":
        # what autovacuum does after a bulk load: statistics, the visibility map, and the
        # counters' row versions (one per insert) cleaned; VACUUM runs outside a transaction
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE operations")
            conn.exec_driver_sql("VACUUM ANALYZE operation_counts")
    fake = Recording()
    d = Dispatcher(engine, Settings(worker_limit=2), cast(Orchestrator, fake))
    d.dispatch_once()
    running = list(fake.created)
    [b_row] = rows(b, 1, "High")
    load(engine, [b_row])
    d.dispatch_once()  # both slots held: nothing starts
    while b_row["operation_id"] not in fake.created:
        with transaction(engine) as conn:
            update_operation(conn, running.pop(0), {"status": "Completed"})
        before = len(fake.created)
        d.dispatch_once()
        running += fake.created[before:]
    order = fake.created
    a_before_b = order.index(b_row["operation_id"])
    # the selection with two free slots (A's and B's queues as they are now; read only)
    fair = FairQueue()

    def fair_select() -> None:
        with engine.connect() as conn:
            active = queue.count_active_runs_by_project(conn)
            fair.select(conn, {}, 2)
            del active

    def global_select() -> None:
        with engine.connect() as conn:
            queue.count_active_runs(conn)
            queue.list_queued_operations(conn, 2)

    def fair_estimate() -> None:
        with engine.connect() as conn:
            seconds_ahead(conn, *b, PRIORITY_RANK["High"])

    def global_estimate() -> None:
        with engine.connect() as conn:
            queued_seconds_ahead(conn, PRIORITY_RANK["High"])

    fair_select()
    global_select()
    return {
        **plans(engine, backend, a),
        "backend": backend,
        "queued_in_a": args.queued,
        "load_s": round(load_s, 1),
        "a_dispatches_before_b": a_before_b,
        "fair_selection": timed(fair_select, args.n),
        "old_global_selection": timed(global_select, args.n),
        "start_wait_estimate": timed(fair_estimate, args.n),
        "old_start_wait_estimate": timed(global_estimate, args.n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=2000)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                engine = make_engine(f"sqlite:///{tmp}/store.db")
                print(measure(engine, backend, args), flush=True)
                engine.dispose()
            continue
        import psycopg

        name = f"pmops_bench_fair_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg_admin, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        base = args.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        engine = make_engine(f"{base}/{name}")
        try:
            print(measure(engine, backend, args), flush=True)
        finally:
            engine.dispose()
            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
