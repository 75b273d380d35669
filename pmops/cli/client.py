"""The API client's commands of `pmops` (typer + rich), over pmops.sdk.

Where the API is and who you are: `--url/--token/--tenant/--project` before the command, or
PMOPS_URL, PMOPS_TOKEN, PMOPS_TENANT, PMOPS_PROJECT; without them, the development token that
`make run` wrote (`.pmops/dev-token`) on http://127.0.0.1:8000.

Exit codes: 0 done (for `watch`/`--wait`: the operation completed); 1 the operation ended
Failed, Cancelled or Timeout; 2 the API refused the request (4xx, its problem is printed);
3 not found; 4 the API could not be reached or failed (5xx).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from pmops.sdk import Client, NotFound, PmopsError, ServerError, models

T = TypeVar("T")
out = Console()
err = Console(stderr=True)
EVENTS = [
    "operation.started",
    "operation.progress",
    "operation.phase.completed",
    "operation.completed",
    "operation.failed",
    "operation.cancelled",
    "operation.timeout",
]

datasets_app = typer.Typer(help="event logs: upload and list", no_args_is_help=True)
webhooks_app = typer.Typer(help="webhooks: add, list, remove, delivery log", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.callback()(_connection)
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(webhooks_app, name="webhooks")
    for command in (submit, status, watch, ls, cancel, results, retry, batch):
        app.command()(command)


_where: dict[str, str | None] = {}


def _connection(
    url: Annotated[str | None, typer.Option(envvar="PMOPS_URL", help="the API")] = None,
    token: Annotated[str | None, typer.Option(envvar="PMOPS_TOKEN", help="bearer token")] = None,
    tenant: Annotated[str | None, typer.Option(envvar="PMOPS_TENANT", help="tenant id")] = None,
    project: Annotated[str | None, typer.Option(envvar="PMOPS_PROJECT", help="project id")] = None,
) -> None:
    """pmops: long process-mining analyses as an asynchronous service."""
    _where.update(url=url, token=token, tenant=tenant, project=project)


def _client() -> Client:
    url = _where.get("url") or "http://127.0.0.1:8000"
    token, tenant, project = _where.get("token"), _where.get("tenant"), _where.get("project")
    if not (token and tenant and project):
        dev = Path(os.environ.get("PMOPS_DATA_DIR", ".pmops")) / "dev-token"
        if dev.exists():
            tenant, project, token = dev.read_text().split()
    if not (token and tenant and project):
        err.print("pmops: give --token, --tenant and --project (or PMOPS_TOKEN, ...)")
        raise typer.Exit(2)
    return Client(url, token, tenant, project)


def _call(fn: Callable[[Client], T]) -> T:
    """fn(client), with the API's errors turned into a message and an exit code."""
    try:
        with _client() as client:
            return fn(client)
    except NotFound as exc:
        err.print(f"[red]not found:[/] {exc.detail}")
        raise typer.Exit(3) from None
    except ServerError as exc:
        err.print(f"[red]the API failed:[/] {exc.detail}")
        raise typer.Exit(4) from None
    except PmopsError as exc:
        err.print(f"[red]refused ({exc.status}):[/] {exc.detail}", highlight=False)
        for e in exc.errors:
            err.print(f"  {e.get('field')}: {e.get('message')}", highlight=False)
        raise typer.Exit(2) from None
    except httpx.TransportError as exc:
        err.print(f"[red]cannot reach the API:[/] {exc}")
        raise typer.Exit(4) from None


def _json_arg(text: str) -> Any:
    """JSON text, or @file.json."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc.msg} at column {exc.colno}") from None


def _pairs(values: list[str] | None) -> dict[str, Any]:
    """key=value options; a value that parses as JSON is taken as JSON."""
    found: dict[str, Any] = {}
    for item in values or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--param")
        try:
            found[key] = json.loads(value)
        except json.JSONDecodeError:
            found[key] = value
    return found


def _print_json(value: Any) -> None:
    data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    out.print_json(json.dumps(data))


# -- datasets ------------------------------------------------------------------------------------
@datasets_app.command("upload")
def datasets_upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="event log")],
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
) -> None:
    """Upload an event log (CSV, XES, XES.GZ, Parquet); prints its datasetId."""
    mapping = {
        k: v
        for k, v in {
            "caseColumn": case_column,
            "activityColumn": activity_column,
            "timestampColumn": timestamp_column,
            "resourceColumn": resource_column,
            "timestampFormat": timestamp_format,
            "timezone": timezone,
        }.items()
        if v
    }
    ds = _call(lambda c: c.upload_dataset(file, **mapping))
    err.print(f"uploaded {file.name}: {ds.events} events, {ds.cases} cases")
    out.print(ds.datasetId)


@datasets_app.command("ls")
def datasets_ls() -> None:
    """The project's datasets."""
    found = _call(lambda c: c.list_datasets())
    table = Table("datasetId", "file", "events", "cases", "created")
    for d in found.datasets:
        table.add_row(d.datasetId, d.fileName or "", str(d.events), str(d.cases), d.createdAt)
    out.print(table)


# -- operations ----------------------------------------------------------------------------------
def submit(
    operation_type: Annotated[
        str, typer.Option("--type", help="ProcessMiningAnalysis | DataEnrichment | ...")
    ] = "ProcessMiningAnalysis",
    name: Annotated[str | None, typer.Option(help="operationName")] = None,
    dataset: Annotated[str | None, typer.Option(help="parameters.datasetId")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="a parameter as key=value (value may be JSON)")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="Low | Normal | High | Critical")] = None,
    file: Annotated[
        str | None, typer.Option(help="the whole start request as JSON or @file.json")
    ] = None,
    wait: Annotated[bool, typer.Option(help="then watch it to the end")] = False,
) -> None:
    """Start an operation; prints its operationId."""
    body: dict[str, Any] = _json_arg(file) if file else {}
    params = {**body.pop("parameters", {}), **_pairs(param)}
    if dataset:
        params["datasetId"] = dataset
    kind = body.pop("operationType", operation_type)
    label = body.pop("operationName", name or f"{kind} from the CLI")
    if priority:
        body["priority"] = priority
    op = _call(lambda c: c.start_operation(kind, label, params, **body))
    err.print(f"started {op.operationType} '{op.operationName}', about {op.estimatedDuration}")
    out.print(op.operationId)
    if wait:
        watch(op.operationId)


def status(
    operation_id: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json", help="the whole status as JSON")] = False,
) -> None:
    """An operation's status."""
    s = _call(lambda c: c.get_operation(operation_id))
    if as_json:
        _print_json(s)
        return
    out.print(f"[bold]{s.operationName}[/] ({s.operationType}) {s.operationId}")
    out.print(f"status {s.status}, {s.progress.percentage:.0f} % ({s.progress.currentPhase})")
    table = Table("phase", "status", "duration", "progress")
    for p in s.phases:
        progress = f"{p.progress:.0f} %" if p.progress is not None else ""
        table.add_row(p.phaseName, p.status, p.duration or "", progress)
    out.print(table)
    if s.error:
        out.print(f"[red]error:[/] {s.error.get('message')}")


def watch(operation_id: Annotated[str, typer.Argument()]) -> None:
    """A live progress bar per phase until the operation ends (exit 1 unless it completed)."""

    def follow(client: Client) -> models.OperationStatus:
        first = client.get_operation(operation_id)
        bars = Progress(
            TextColumn("{task.description:<30}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.0f} %"),
            TextColumn("{task.fields[note]}", style="dim"),
            console=err,
        )
        tasks: dict[str, TaskID] = {}
        with bars:
            overall = bars.add_task("overall", total=100, note=first.status)
            for p in first.phases:
                tasks[p.phaseName] = bars.add_task(p.phaseName, total=100, note=p.status)
            for event in client.events(operation_id):
                snap = models.OperationStatus.model_validate(event.data)
                bars.update(overall, completed=snap.progress.percentage, note=snap.status)
                for p in snap.phases:
                    done = 100 if p.status == "Completed" else (p.progress or 0)
                    note = p.currentActivity or p.status
                    bars.update(tasks[p.phaseName], completed=done, note=note[:50])
                if event.terminal:
                    break
        return client.wait(operation_id, timeout=60, stream=False)

    final = _call(follow)
    colour = "green" if final.status == "Completed" else "red"
    out.print(f"[{colour}]{final.status}[/] {final.operationId} in {final.progress.elapsedTime}")
    if final.error:
        out.print(f"[red]error:[/] {final.error.message}")
    raise typer.Exit(0 if final.status == "Completed" else 1)


def ls(
    status_filter: Annotated[str | None, typer.Option("--status")] = None,
    operation_type: Annotated[str | None, typer.Option("--type")] = None,
    priority: Annotated[str | None, typer.Option()] = None,
    page: Annotated[int, typer.Option()] = 1,
    page_size: Annotated[int, typer.Option()] = 20,
) -> None:
    """List operations (newest first) with the summary of the filtered set."""
    found = _call(
        lambda c: c.list_operations(
            status_filter, operation_type, priority, None, None, False, page, page_size
        )
    )
    table = Table("operationId", "name", "type", "status", "%", "priority", "started", "duration")
    for o in found.operations:
        table.add_row(
            o.operationId,
            o.operationName,
            o.operationType,
            o.status,
            f"{o.progress:.0f}",
            o.priority or "",
            o.startTime or "",
            o.duration or "",
        )
    out.print(table)
    s = found.summary
    err.print(
        f"{s.totalOperations} operations: {s.running} running, {s.completed} completed, "
        f"{s.failed} failed, {s.cancelled} cancelled"
        + (" (more: --page)" if found.hasNextPage else "")
    )


def cancel(
    operation_id: Annotated[str, typer.Argument()],
    reason: Annotated[str | None, typer.Option()] = None,
    force: Annotated[bool, typer.Option(help="stop now instead of at the next checkpoint")] = False,
) -> None:
    """Cancel an operation (completed phases stay downloadable)."""
    done = _call(lambda c: c.cancel_operation(operation_id, reason, force=force))
    urls = done.partialResults.downloadUrls if done.partialResults else []
    out.print(f"cancelled at {done.progressAtCancellation} % ({done.phaseAtCancellation})")
    for url in urls:
        out.print(f"  {url}")


def results(
    operation_id: Annotated[str, typer.Argument()],
    download: Annotated[
        Path | None, typer.Option(help="download every artifact into this directory")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the detailed results as JSON")] = False,
) -> None:
    """A finished operation's results (summary, artifacts); --download saves the files."""

    def fetch(client: Client) -> models.Results:
        found: models.Results = client.get_results(
            operation_id, format="detailed" if as_json else "summary"
        )
        if download is not None:
            for a in found.artifacts:
                name = (a.downloadUrl or "").split("?", 1)[0].rsplit("/", 1)[-1]
                if name:
                    client.download_artifact(operation_id, name, download / name)
                    err.print(f"saved {download / name}")
        return found

    found = _call(fetch)
    if as_json:
        _print_json(found)
        return
    table = Table("figure", "value")
    for key, value in found.summary.items():
        if not key.endswith("Method"):
            table.add_row(key, str(value))
    out.print(table)
    for a in found.artifacts:
        out.print(f"{a.type:<14} {a.format:<5} {a.size or '':>10}  {a.downloadUrl}")


def retry(
    operation_id: Annotated[str, typer.Argument()],
    mode: Annotated[str, typer.Option(help="resume | restart")] = "resume",
    param: Annotated[list[str] | None, typer.Option(help="updated parameter key=value")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Retry a failed, cancelled or timed-out operation; prints the new operationId."""
    updates = _pairs(param) or None
    started = _call(
        lambda c: c.retry_operation(operation_id, mode, reason=reason, updated_parameters=updates)
    )
    kept = started.preservedResults.phasesPreserved if started.preservedResults else 0
    err.print(f"retry {started.retryNumber}: from {started.resumeFromPhase}, {kept} phases kept")
    out.print(started.newOperationId)


def batch(
    file: Annotated[str, typer.Argument(help="the batch request, a JSON file (or @file)")],
    wait: Annotated[bool, typer.Option(help="wait until the batch ends")] = False,
) -> None:
    """Submit a batch of dependent operations; prints its batchId."""
    body = _json_arg(file if file.startswith("@") else "@" + file)
    answer = _call(lambda c: c.create_batch(body))
    err.print(f"batch '{answer['batchName']}' with {answer['totalOperations']} operations")
    out.print(answer["batchId"])
    if not wait:
        return

    def until_done(client: Client) -> models.Batch:
        import time

        while True:
            found: models.Batch = client.get_batch(answer["batchId"])
            if found.finished:
                return found
            time.sleep(1.0)

    final = _call(until_done)
    table = Table("key", "operationId", "status")
    for o in final.operations:
        table.add_row(o.operationKey, o.operationId, o.status)
    out.print(table)
    raise typer.Exit(0 if final.status == "Completed" else 1)


# -- webhooks ------------------------------------------------------------------------------------
@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option()] = "pmops CLI webhook",
    event: Annotated[
        list[str] | None, typer.Option(help="event type (repeat); default all")
    ] = None,
    secret: Annotated[str | None, typer.Option(help="HMAC secret (else the project's)")] = None,
) -> None:
    """Register a webhook; prints its webhookId."""
    hook = _call(lambda c: c.create_webhook(url, name, event or EVENTS, secret=secret))
    out.print(hook.webhookId)


@webhooks_app.command("ls")
def webhooks_ls() -> None:
    """The project's webhooks with their delivery statistics."""
    found = _call(lambda c: c.list_webhooks())
    table = Table("webhookId", "name", "url", "status", "sent", "ok", "failed", "avg ms")
    for h in found.webhooks:
        st = h.deliveryStats or models.DeliveryStats()
        table.add_row(
            h.webhookId,
            h.webhookName,
            h.webhookUrl,
            h.status,
            str(st.totalDeliveries),
            str(st.successfulDeliveries),
            str(st.failedDeliveries),
            "" if st.averageResponseTime is None else f"{st.averageResponseTime:.0f}",
        )
    out.print(table)


@webhooks_app.command("rm")
def webhooks_rm(webhook_id: Annotated[str, typer.Argument()]) -> None:
    """Delete a webhook."""
    _call(lambda c: c.delete_webhook(webhook_id))
    err.print(f"deleted {webhook_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: Annotated[str, typer.Argument()],
    status_filter: Annotated[str | None, typer.Option("--status")] = None,
) -> None:
    """A webhook's delivery log: attempts, status codes, latency, next attempt."""
    found = _call(lambda c: c.webhook_deliveries(webhook_id, status_filter))
    table = Table("deliveryId", "event", "status", "attempts", "last code", "ms", "next attempt")
    for d in found.deliveries:
        last = d.attempts[-1] if d.attempts else {}
        table.add_row(
            d.deliveryId,
            d.eventType,
            d.status,
            str(d.attemptCount),
            str(last.get("statusCode") or last.get("error") or ""),
            str(last.get("responseTimeMs") or ""),
            d.nextAttemptAt or "",
        )
    out.print(table)
