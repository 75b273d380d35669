"""`pmops` command line.

`pmops analyze PATH --out DIR` runs an operation's phases in this process, with a live progress
bar per phase, and writes DIR/results.json plus the artifacts. Exit code 0 on success, 2 on bad
input (one clear line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OPERATION_TYPES = ("ProcessMiningAnalysis", "DataEnrichment", "ReportGeneration")


def _parse_params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f"pmops: --params is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise SystemExit("pmops: --params must be a JSON object")
    return value


def analyze(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from analysis.errors import AnalysisError
    from analysis.eventlog import ColumnMapping
    from analysis.operations import RUNS
    from analysis.phases import PHASES
    from analysis.progress import OperationCancelled

    err = Console(stderr=True)
    source = Path(args.path)
    if not source.exists():
        err.print(f"pmops: no such file: {source}")
        return 2
    params = _parse_params(args.params)
    mapping = ColumnMapping(
        args.case_column, args.activity_column, args.timestamp_column, args.resource_column
    )
    out = Path(args.out)
    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[activity]}", style="dim"),
        TimeElapsedColumn(),
        console=err,
        disable=args.quiet,
    )
    tasks = {
        phase: bars.add_task(phase, total=None, start=False, activity="")
        for phase in PHASES[args.type]
    }

    def sink(phase: str, done: int, total: int, activity: str) -> None:
        task = tasks[phase]
        bars.start_task(task)
        bars.update(task, completed=done, total=max(total, 1), activity=activity[:60])

    try:
        run = RUNS[args.type](
            source, out, params, mapping, name=args.name or source.name, sink=sink
        )
        with bars:
            doc = run.run_all()
    except AnalysisError as exc:
        where = f" ({exc.field})" if exc.field else ""
        err.print(f"pmops: {exc.message}{where}", markup=False, highlight=False)
        return 2
    except (OperationCancelled, KeyboardInterrupt):
        err.print("pmops: interrupted; completed phases' outputs are kept in " + str(out))
        return 130
    if not args.quiet:
        summary = doc.get("summary", {})
        perf = doc.get("performance", {})
        err.print(
            f"wrote {out / 'results.json'} and {len(doc.get('artifacts', []))} artifacts in "
            f"{perf.get('totalExecutionTime', '?')}; summary: {json.dumps(summary)}",
            markup=False,
            highlight=False,
        )
    return 0


def up(args: argparse.Namespace) -> int:
    from pmops.supervisor import up as run_up

    return run_up()


def tokens_create(args: argparse.Namespace) -> int:
    import uuid

    from pmops.settings import get_settings
    from pmops.store import create_token, engine_for

    try:
        tenant = str(uuid.UUID(args.tenant))
        project = str(uuid.UUID(args.project)) if args.project else None
    except ValueError:
        print("pmops: --tenant and --project must be GUIDs", file=sys.stderr)
        return 2
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.resolved_database_url)
    print(create_token(engine, tenant, project, args.name or f"token for {tenant}"))
    return 0


def deliver(args: argparse.Namespace) -> int:
    from pmops.deliverer import serve

    serve()
    return 0


def project_secret(args: argparse.Namespace) -> int:
    import uuid

    from pmops.projects import AlreadyRevealed, reveal_secret, rotate_secret
    from pmops.settings import get_settings
    from pmops.store import engine_for

    try:
        tenant, project = str(uuid.UUID(args.tenant)), str(uuid.UUID(args.project))
    except ValueError:
        print("pmops: --tenant and --project must be GUIDs", file=sys.stderr)
        return 2
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.resolved_database_url)
    try:
        if args.rotate:
            shown = rotate_secret(engine, settings, tenant, project)
        else:
            shown = reveal_secret(engine, tenant, project)
    except AlreadyRevealed:
        print(
            "pmops: this project's signing secret was already shown once; "
            "`pmops project secret --rotate` makes a new one",
            file=sys.stderr,
        )
        return 1
    print(shown["secret"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="run an operation locally on an event log file")
    a.add_argument(
        "path",
        help="event log (CSV, XES, XES.GZ, Parquet) or, for ReportGeneration, "
        "a results.json of an earlier analysis",
    )
    a.add_argument("--out", default="out", help="output directory (default: ./out)")
    a.add_argument("--type", choices=OPERATION_TYPES, default="ProcessMiningAnalysis")
    a.add_argument("--params", help="the operation's `parameters` as JSON (or @file.json)")
    a.add_argument("--name", help="operation name shown in reports")
    a.add_argument("--case-column")
    a.add_argument("--activity-column")
    a.add_argument("--timestamp-column")
    a.add_argument("--resource-column")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=analyze)
    u = sub.add_parser("up", help="start the whole service (Prefect server, runner, API)")
    u.set_defaults(func=up)
    d = sub.add_parser("deliver", help="run a deliverer (webhooks, callbacks, email, Slack)")
    d.set_defaults(func=deliver)
    p = sub.add_parser("project", help="a project's signing secret")
    psub = p.add_subparsers(dest="project_command", required=True)
    ps = psub.add_parser("secret", help="print the signing secret (once), or rotate it")
    ps.add_argument("--tenant", required=True)
    ps.add_argument("--project", required=True)
    ps.add_argument("--rotate", action="store_true", help="make a new secret and print it")
    ps.set_defaults(func=project_secret)
    t = sub.add_parser("tokens", help="manage bearer tokens")
    tsub = t.add_subparsers(dest="tokens_command", required=True)
    tc = tsub.add_parser("create", help="print a new bearer token (stored hashed)")
    tc.add_argument("--tenant", required=True)
    tc.add_argument("--project")
    tc.add_argument("--name", help="principal shown as cancelledBy etc.")
    tc.set_defaults(func=tokens_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
