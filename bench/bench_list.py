"""List-page latency (issue #3 goal: one page of GET /async/operations in at most 50 ms with
100,000 operations of one tenant/project), on SQLite and on PostgreSQL.

For each backend it seeds the store BEFORE starting its own `pmops up` (temp data dir, free
ports): --ops terminal operations copied from the row of one real running-example.xes analysis
(request, progress and results JSON, ~18 KB a row; Completed 85 %, Failed 7 %, Cancelled 5 %,
Timeout 3 %; ProcessMiningAnalysis 80 %, DataEnrichment 10 %, ReportGeneration 10 %), created
over the last 180 days, batched inserts. PostgreSQL: a fresh database on 127.0.0.1:5432 (user
postgres, trust auth), VACUUM ANALYZEd after the load as autovacuum would, dropped at the end;
SQLite is left as the app leaves it (no ANALYZE). Then --n sequential requests per query (after
--warmup): page 1, status filters, a type filter, a deep page, pageSize=100. Also, in-process,
the SQL statements list_operations runs, each timed, with their query plans.

  .venv/bin/python bench/bench_list.py [--ops 100000] [--n 50] [--backends sqlite,postgresql]
      [--deep-page 2000] [--pg-admin postgresql://postgres@127.0.0.1:5432/postgres]
Raw figures: bench/results/list.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import (
    DATASETS,
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

GOAL = 0.050


def queries(deep: int) -> dict[str, dict[str, Any]]:
    return {
        "page 1 (pageSize 20)": {"page": 1, "pageSize": 20},
        "status=Completed, page 1": {"status": "Completed", "page": 1, "pageSize": 20},
        "status=Failed, page 1": {"status": "Failed", "page": 1, "pageSize": 20},
        "operationType=DataEnrichment, page 1": {
            "operationType": "DataEnrichment",
            "page": 1,
            "pageSize": 20,
        },
        f"deep page {deep} (pageSize 20)": {"page": deep, "pageSize": 20},
        "page 1 (pageSize 100)": {"page": 1, "pageSize": 100},
    }


def create_pg_database(admin: str) -> tuple[str, str]:
    import psycopg

    name = f"pmops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_pg_database(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql_breakdown(stack: Stack, qs: dict[str, dict[str, Any]], repeat: int = 10) -> dict:
    """Each SQL statement pmops.service.operations.list_operations runs for each query: median ms,
    plan."""
    from sqlalchemy import event

    from pmops.service.operations import list_operations
    from pmops.service.scope import Principal, Scope
    from pmops.settings import Settings
    from pmops.store.engine import make_engine

    engine = make_engine(stack.db_url)
    settings = Settings(data_dir=stack.data_dir, prefect_port=stack.prefect_port)
    scope = Scope(stack.tenant, stack.project, Principal(stack.tenant, stack.project, "bench"))
    seen: list[tuple[str, Any, float]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        seen.append((statement, params, time.perf_counter() - conn.info.pop("t0", 0.0)))

    out: dict[str, Any] = {}
    for label, q in qs.items():
        kwargs = dict(
            status=q.get("status"),
            operation_type=q.get("operationType"),
            priority=None,
            date_from=None,
            date_to=None,
            include_details=False,
            page=q["page"],
            page_size=q["pageSize"],
        )
        try:
            totals = []
            per_stmt: dict[str, list[float]] = {}
            params_of: dict[str, Any] = {}
            for _ in range(repeat):
                seen.clear()
                t = time.perf_counter()
                list_operations(engine, settings, scope, **kwargs)
                totals.append(time.perf_counter() - t)
                for stmt, params, dt in seen:
                    if stmt.lstrip().upper().startswith(("BEGIN", "PRAGMA", "ROLLBACK", "COMMIT")):
                        continue
                    per_stmt.setdefault(stmt, []).append(dt)
                    params_of[stmt] = params
            stmts = []
            for stmt in per_stmt:
                stmts.append(
                    {
                        "sql": " ".join(stmt.split())[:300],
                        # raw driver execute + fetchall: the database's share, no JSON decoding
                        "median_ms": raw_ms(engine, stmt, params_of[stmt]),
                        "plan": explain(engine, stmt, params_of[stmt]),
                    }
                )
            out[label] = {
                "list_operations_median_ms": round(statistics.median(totals) * 1000, 2),
                "statements": stmts,
                "python_top": python_top(
                    lambda kw=kwargs: list_operations(engine, settings, scope, **kw)
                ),
            }
        except Exception as exc:  # the API's internals may have moved; keep the HTTP figures
            out[label] = {"error": f"{type(exc).__name__}: {exc}"}
    engine.dispose()
    return out


def raw_ms(engine: Any, stmt: str, params: Any, repeat: int = 7) -> float:
    xs = []
    with engine.connect() as conn:
        for _ in range(repeat):
            t = time.perf_counter()
            conn.exec_driver_sql(stmt, params).fetchall()
            xs.append(time.perf_counter() - t)
    return round(statistics.median(xs) * 1000, 2)


def python_top(fn: Any, top: int = 6) -> list[tuple[str, float]]:
    """cProfile of 5 calls: the functions with the most own time (ms per call)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[: top + 2]
    out = []
    for (file, _line, name), (_cc, _nc, tt, _ct, _callers) in rows:
        short = file.split("site-packages/")[-1].split("/work/main/")[-1].split("python3.11/")[-1]
        if short.startswith("bench/"):
            continue
        out.append((f"{short}:{name}", round(tt / 5 * 1000, 2)))
    return out[:top]


def explain(engine: Any, stmt: str, params: Any) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()
            return " / ".join(str(r[-1]) for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params).all()
        return " / ".join(str(r[0]).strip() for r in rows)


def measure_backend(backend: str, args: argparse.Namespace, template: dict) -> dict[str, Any]:
    pg_name = None
    url = None
    if backend == "postgresql":
        pg_name, url = create_pg_database(args.pg_admin)
    stack = Stack(runner=not args.no_runner, database_url=url, keep=args.keep)
    out: dict[str, Any] = {"backend": backend}
    try:
        stack.prepare_token()
        engine = stack.engine()
        _, seconds = stack.seed(engine, template, args.ops, batch=args.batch)
        out["seed_seconds"] = round(seconds, 1)
        if backend == "postgresql":
            with engine.connect() as conn:
                conn.commit()
                # what autovacuum does after a bulk load: statistics and the visibility map
                # (index-only scans); VACUUM cannot run inside a transaction
                conn.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
                conn.exec_driver_sql("VACUUM ANALYZE operations")
                conn.connection.driver_connection.autocommit = False  # type: ignore[union-attr]
                out["db_size_mb"] = round(
                    conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
                    / 1e6
                )
        else:
            out["db_size_mb"] = round((stack.data_dir / "pmops.db").stat().st_size / 1e6)
        engine.dispose()
        print(
            f"[{backend}] seeded {args.ops:,} operations in {out['seed_seconds']} s "
            f"({out['db_size_mb']} MB)",
            file=sys.stderr,
        )
        stack.start()
        qs = queries(args.deep_page)
        results: dict[str, Any] = {}
        with (
            httpx.Client(headers=stack.headers, timeout=120) as client,
            ForeignLoad() as noise,
        ):
            url_ = f"{stack.base}/async/operations"
            for label, q in qs.items():
                for _ in range(args.warmup):
                    client.get(url_, params=q)
                lat, codes, items = [], {}, 0
                for _ in range(args.n):
                    t = time.perf_counter()
                    r = client.get(url_, params=q)
                    lat.append(time.perf_counter() - t)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        items = len(r.json()["operations"])
                results[label] = {"stats": summary(lat), "codes": codes, "items": items}
                s = results[label]["stats"]
                print(
                    f"[{backend}] {label}: p50 {s['p50'] * 1000:.1f} ms max {s['max'] * 1000:.1f}"
                    f" ms ({items} items, codes {codes})",
                    file=sys.stderr,
                )
        out["foreign_load"] = noise.report()
        out["queries"] = results
        out["sql"] = sql_breakdown(stack, qs)
    finally:
        stack.stop()
        if args.keep:
            print(f"[{backend}] data dir kept: {stack.data_dir}", file=sys.stderr)
        if pg_name:
            drop_pg_database(args.pg_admin, pg_name)
    return out


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def metrics(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        for label, q in r["queries"].items():
            s = q["stats"]
            name = f"{r['backend']}, {label}"
            ok = all(str(c) == "200" for c in q["codes"])
            out.append(metric(f"{name}: p50", s["p50"] * 1000, "ms"))
            out.append(
                metric(
                    f"{name}: p95",
                    s["p95"] * 1000,
                    "ms",
                    "<= 50 ms",
                    ok and at_most(s["p95"], GOAL),
                )
            )
            out.append(
                metric(
                    f"{name}: max",
                    s["max"] * 1000,
                    "ms",
                    "<= 50 ms",
                    ok and at_most(s["max"], GOAL),
                )
            )
        out.append(foreign_metric(r["foreign_load"], r["backend"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--deep-page", type=int, default=2000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-runner", action="store_true", help="API + Prefect server only")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dirs")
    ap.add_argument("--log", type=Path, default=DATASETS / "running-example.xes")
    ap.add_argument(
        "--no-wait", action="store_true", help="do not wait for the machine to be quiet first"
    )
    args = ap.parse_args()
    template = template_row(args.log)
    if not args.no_wait:
        wait_quiet()
    results = [
        measure_backend(b.strip(), args, template) for b in args.backends.split(",") if b.strip()
    ]

    print(
        f"\n## List page latency: {args.ops:,} operations of one tenant/project, "
        f"{args.n} sequential requests each (warm-up {args.warmup} excluded)\n"
    )
    print("| backend | query | items | p50 ms | p95 ms | max ms | goal <= 50 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for label, q in r["queries"].items():
            s = q["stats"]
            ok = s["max"] <= GOAL
            verdict = "met" if ok else ("p95 met, max MISSED" if s["p95"] <= GOAL else "MISSED")
            print(
                f"| {r['backend']} | {label} | {q['items']} | {ms(s['p50'])} | {ms(s['p95'])} | "
                f"{ms(s['max'])} | {verdict} |"
            )
    print(
        "\n### In-process: list_operations vs its SQL (execute + fetch, no decoding), median ms\n"
    )
    print(
        "| backend | query | list_operations ms | SQL ms (count; page) | top own time (ms/call) |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        for label, b in r["sql"].items():
            if "error" in b:
                print(f"| {r['backend']} | {label} | {b['error']} | | |")
                continue
            parts = "; ".join(str(st["median_ms"]) for st in b["statements"])
            hot = ", ".join(f"`{k}` {v}" for k, v in b["python_top"][:2])
            print(
                f"| {r['backend']} | {label} | {b['list_operations_median_ms']} | {parts} | {hot} |"
            )
    for r in results:
        fl = r["foreign_load"]
        print(
            f"\n{r['backend']}: seeded in {r['seed_seconds']} s, {r['db_size_mb']} MB; other "
            f"processes' CPU during the requests: {fl['foreign_share_of_machine']:.0%}"
        )
    path = write_json(
        "list",
        {
            "machine": machine(),
            "args": vars(args) | {"log": str(args.log)},
            "results": results,
            "metrics": metrics(results),
        },
    )
    print(f"\ncommand: `{command_line()}`  raw: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
