"""`pmops` command line (typer): the service's own commands here, the API client's in
pmops/cli_client.py.

`pmops analyze PATH --out DIR` runs an operation's phases in this process, with a live progress
bar per phase, and writes DIR/results.json plus the artifacts. Exit code 0 on success, 2 on bad
input (one clear line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pmops.contract.enums import Priority

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
    from analysis.forked import allow_second_core
    from analysis.phases import PHASES
    from analysis.progress import OperationCancelled
    from analysis.runs import RUNS

    allow_second_core()  # a fresh process of its own: children may compute beside it (forked.py)
    err, source = Console(stderr=True), Path(args.path)
    if not source.exists():
        err.print(f"pmops: no such file: {source}")
        return 2
    params = _parse_params(args.params)
    try:
        mapping = ColumnMapping.from_dict(
            {
                "caseColumn": args.case_column,
                "activityColumn": args.activity_column,
                "timestampColumn": args.timestamp_column,
                "resourceColumn": args.resource_column,
                "timestampFormat": getattr(args, "timestamp_format", None),
                "timezone": getattr(args, "timezone", None),
            }
        )
    except AnalysisError as exc:
        err.print(f"pmops: {exc.message} ({exc.field})", markup=False, highlight=False)
        return 2
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
    from pmops.cli.supervisor import up as run_up

    return run_up(only=getattr(args, "only", None))


def tokens_create(args: argparse.Namespace) -> int:
    import uuid

    from pmops.settings import get_settings
    from pmops.store.engine import engine_for, utc_now
    from pmops.store.tokens import create_token

    try:
        tenant = str(uuid.UUID(args.tenant))
        project = str(uuid.UUID(args.project)) if args.project else None
    except ValueError:
        print("pmops: --tenant and --project must be GUIDs", file=sys.stderr)
        return 2
    expires_at = None
    if args.expires_in is not None:
        try:
            expires_at = utc_now() + parse_duration(args.expires_in)
        except ValueError as exc:
            print(f"pmops: --expires-in: {exc}", file=sys.stderr)
            return 2
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.resolved_database_url)
    name = args.name or f"token for {tenant}"
    allowed = getattr(args, "max_priority", "High")
    print(create_token(engine, tenant, project, name, expires_at, allowed))
    if expires_at is not None:
        print(f"expires at {expires_at.isoformat(timespec='seconds')}", file=sys.stderr)
    return 0


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """ "90" (seconds), "30s", "15m", "12h", "30d", "2w" or a sum such as "1h30m"."""
    import re

    spec = text.strip().lower()
    if spec.isdigit():
        spec += "s"
    parts = re.findall(r"(\d+)\s*([smhdw])", spec)
    if not parts or re.sub(r"\s*\d+\s*[smhdw]\s*", "", spec):
        raise ValueError(f"{text!r} is not a duration such as 3600, 90m, 12h, 30d or 1h30m")
    seconds = sum(int(n) * DURATION_UNITS[unit] for n, unit in parts)
    if not 0 < seconds <= 100 * 365 * 86_400:
        raise ValueError("must be more than 0 seconds and at most 100 years")
    return timedelta(seconds=seconds)


def prefect_auth(args: argparse.Namespace) -> int:
    from pmops.prefect_auth import auth_file, prefect_auth_string
    from pmops.settings import get_settings

    settings = get_settings()
    auth = prefect_auth_string(settings)
    if auth is None:
        print(
            f"pmops: no Prefect auth string yet ({auth_file(settings)}): `pmops up` makes one",
            file=sys.stderr,
        )
        return 1
    print(auth)
    return 0


def deliver(args: argparse.Namespace) -> int:
    from pmops.delivery.deliverer import serve

    serve()
    return 0


def project_secret(args: argparse.Namespace) -> int:
    import uuid

    from pmops.service.projects import AlreadyRevealed, reveal_secret, rotate_secret
    from pmops.settings import get_settings
    from pmops.store.engine import engine_for

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


def db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from pmops.settings import get_settings
    from pmops.store.schema import StoreNotCurrent, check_store, upgrade_store

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        before, after = upgrade_store(settings.resolved_database_url)
        found = check_store(settings.resolved_database_url)
    except (StoreNotCurrent, SQLAlchemyError) as exc:
        print(f"pmops: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"pmops: the store is at revision {after} (head): nothing to do")
    else:
        print(f"pmops: upgraded the store to revision {after} (from {before or 'none'})")
    if found:  # changed by hand since: the revisions do not undo that (docs/migrations.md)
        print("pmops: but it differs from this pmops's models:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def db_check(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from pmops.settings import get_settings
    from pmops.store.schema import HEAD, check_store

    url = get_settings().resolved_database_url
    database = make_url(url).database
    if url.startswith("sqlite") and database and not Path(database).exists():
        print(f"pmops: no store at {database}: `pmops db upgrade` creates it", file=sys.stderr)
        return 1
    try:
        found = check_store(url)
    except SQLAlchemyError as exc:
        print(f"pmops: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"pmops: the store is at revision {HEAD} (head) and matches the models")
        return 0
    print("pmops: the store is not what this pmops needs:")
    for line in found:
        print(f"  {line}")
    return 1


app = typer.Typer(
    name="pmops",
    help="pmops: long process-mining analyses as an asynchronous service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tokens_app = typer.Typer(help="manage bearer tokens", no_args_is_help=True)
project_app = typer.Typer(help="a project's signing secret", no_args_is_help=True)
db_app = typer.Typer(help="the app store's schema (Alembic migrations)", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
app.add_typer(project_app, name="project")
app.add_typer(db_app, name="db")


@app.command("analyze", help="run an operation locally on an event log file (no server)")
def analyze_command(
    path: Annotated[
        str,
        typer.Argument(
            help="event log (CSV, XES, XES.GZ, Parquet) or, for ReportGeneration, a "
            "results.json of an earlier analysis"
        ),
    ],
    out: Annotated[str, typer.Option(help="output directory")] = "out",
    type: Annotated[str, typer.Option(help=" | ".join(OPERATION_TYPES))] = OPERATION_TYPES[0],
    params: Annotated[
        str | None, typer.Option(help="the operation's `parameters` as JSON (or @file.json)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="operation name shown in reports")] = None,
    case_column: Annotated[str | None, typer.Option()] = None,
    activity_column: Annotated[str | None, typer.Option()] = None,
    timestamp_column: Annotated[str | None, typer.Option()] = None,
    resource_column: Annotated[str | None, typer.Option()] = None,
    timestamp_format: Annotated[
        str | None, typer.Option(help="how to read the timestamps, e.g. %d.%m.%Y %H:%M:%S")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone of timestamps without an offset (default UTC)")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no progress bars")] = False,
) -> None:
    if type not in OPERATION_TYPES:
        raise typer.BadParameter(
            f"must be one of {', '.join(OPERATION_TYPES)}", param_hint="--type"
        )
    args = argparse.Namespace(**{k: v for k, v in locals().items()})
    raise typer.Exit(analyze(args))


@app.command("up", help="start the whole service (Prefect server, runner, API, deliverer)")
def up_command(
    only: Annotated[
        str | None,
        typer.Option(
            help="start only these parts, a comma list of prefect, runner, api, deliverer "
            "(default: all; one machine's share, README 'Scaling out')",
        ),
    ] = None,
) -> None:
    raise typer.Exit(up(argparse.Namespace(only=only)))


@app.command(
    "prefect-auth",
    help="print the Prefect API's auth string: what the Prefect UI asks for at sign-in",
)
def prefect_auth_command() -> None:
    raise typer.Exit(prefect_auth(argparse.Namespace()))


@app.command("deliver", help="run a deliverer (webhooks, callbacks, email, Slack)")
def deliver_command() -> None:
    raise typer.Exit(deliver(argparse.Namespace()))


@tokens_app.command("create", help="print a new bearer token (stored hashed)")
def tokens_create_command(
    tenant: Annotated[str, typer.Option(help="tenant GUID")],
    project: Annotated[str | None, typer.Option(help="project GUID (all if omitted)")] = None,
    name: Annotated[str | None, typer.Option(help="principal shown as cancelledBy etc.")] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(help="refused after this long: 3600, 90m, 12h, 30d, 1h30m (never if omitted)"),
    ] = None,
    max_priority: Annotated[
        Priority,
        typer.Option(
            help="the highest priority its operations may ask for (a higher one is 403)",
        ),
    ] = Priority.High,
) -> None:
    args = argparse.Namespace(
        tenant=tenant,
        project=project,
        name=name,
        expires_in=expires_in,
        max_priority=Priority(max_priority).value,
    )
    raise typer.Exit(tokens_create(args))


@project_app.command("secret", help="print the signing secret (once), or rotate it")
def project_secret_command(
    tenant: Annotated[str, typer.Option(help="tenant GUID")],
    project: Annotated[str, typer.Option(help="project GUID")],
    rotate: Annotated[bool, typer.Option(help="make a new secret and print it")] = False,
) -> None:
    args = argparse.Namespace(tenant=tenant, project=project, rotate=rotate)
    raise typer.Exit(project_secret(args))


@db_app.command("upgrade", help="bring the store to this release's schema (creates an empty one)")
def db_upgrade_command() -> None:
    raise typer.Exit(db_upgrade(argparse.Namespace()))


@db_app.command(
    "check",
    help="exit 0 when the store is at this release's revision and matches its models; "
    "else list the differences and exit 1",
)
def db_check_command() -> None:
    raise typer.Exit(db_check(argparse.Namespace()))


# the service's own commands: a command line that starts with one of them runs without the API
# client's commands and options, whose import (httpx, the SDK) takes ~0.5 s
LOCAL_COMMANDS = frozenset({"analyze", "up", "deliver", "tokens", "project", "db"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in LOCAL_COMMANDS:
        from pmops.cli import client as cli_client

        cli_client.register(app)
    try:
        app(args=argv, prog_name="pmops", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
