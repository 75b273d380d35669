"""Operations: start, status, list, cancel, results. Route handlers call these functions."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from analysis.errors import AnalysisError
from analysis.eventlog import parse_time_window
from analysis.params import (
    parse_analysis_params,
    parse_enrichment_params,
    parse_report_params,
)
from analysis.phases import PHASES
from pmops.contract.requests import PRIORITY_RANK, CancelRequest, OperationCreate, Status
from pmops.service import events, fair
from pmops.service.errors import Problem, analysis_problem
from pmops.service.estimates import estimate_seconds, resources
from pmops.service.events import emit
from pmops.service.limits import check_priority, check_queue
from pmops.service.lineage import allocated_settings, retry_links_of
from pmops.service.orchestrator import Orchestrator
from pmops.service.scope import Scope
from pmops.service.views import (
    TERMINAL,
    duration_range,
    elapsed_seconds,
    iso,
    list_item,
    status_view,
)
from pmops.service.views import remaining_seconds as remaining_seconds  # api/routes: Retry-After
from pmops.settings import Settings
from pmops.store import operations as op_store
from pmops.store.datasets import read_dataset
from pmops.store.engine import transaction, utc_now
from pmops.store.idempotency import insert_idempotency, read_idempotency
from pmops.store.operations import OperationFilter
from pmops.store.webhooks import matching_webhooks

START_SCOPE = "POST /async/operation"


def base_path(scope: Scope) -> str:
    return f"/api/{scope.tenant_id}/{scope.project_id}"


def tracking_url(scope: Scope, operation_id: str) -> str:
    return f"{base_path(scope)}/async/operation/{operation_id}"


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# -- start ---------------------------------------------------------------------------------------
def _check_fault_injection(settings: Settings, body: OperationCreate) -> None:
    fault = body.parameters.get("faultInjection")
    if fault is None:
        return
    field = "parameters.faultInjection"
    if not settings.fault_injection:
        raise Problem(
            422,
            "parameters.faultInjection is accepted only where PMOPS_FAULT_INJECTION is on",
            errors=[{"field": field, "message": "not enabled on this server"}],
        )
    allowed = PHASES[body.operationType.value]
    if not isinstance(fault, dict) or fault.get("failPhase") not in allowed:
        raise Problem(
            422,
            f"parameters.faultInjection.failPhase must be one of: {', '.join(allowed)}",
            errors=[{"field": f"{field}.failPhase", "message": "not a phase of this type"}],
        )


def _parse_parameters(body: OperationCreate) -> None:
    """The engine's own parser: a 422 naming the field."""
    params = body.parameters
    op_type = body.operationType.value
    try:
        if op_type == "ProcessMiningAnalysis":
            parsed = parse_analysis_params(params)
            if parsed.time_window is not None:  # the dates are parsed only at load otherwise
                parse_time_window(*parsed.time_window)
        elif op_type == "DataEnrichment":
            parse_enrichment_params(params)
        else:
            parse_report_params(params)
    except AnalysisError as exc:
        raise analysis_problem(exc) from None


def _validate_parameters(conn: Connection, scope: Scope, body: OperationCreate) -> dict[str, Any]:
    """The engine's own parser names the offending field; the source must be this scope's."""
    params = body.parameters
    op_type = body.operationType.value
    _parse_parameters(body)
    dataset_id = params.get("datasetId")
    source_op = params.get("sourceOperationId")
    if dataset_id is None and source_op is None:
        field = "parameters.datasetId"
        raise Problem(
            422,
            "parameters.datasetId is required",
            errors=[{"field": field, "message": "required"}],
        )
    if dataset_id is not None:
        row = None
        if isinstance(dataset_id, str):
            try:
                dataset_id = str(uuid.UUID(dataset_id))
            except ValueError:
                dataset_id = None
            if dataset_id is not None:
                row = read_dataset(conn, scope.tenant_id, scope.project_id, dataset_id)
        if row is None:
            raise Problem(
                422,
                "parameters.datasetId does not name a dataset of this project",
                errors=[{"field": "parameters.datasetId", "message": "unknown dataset"}],
            )
        return {"datasetId": dataset_id, "events": int(row["summary"].get("events") or 0)}
    if op_type != "ReportGeneration":
        raise Problem(
            422,
            "parameters.datasetId is required",
            errors=[{"field": "parameters.datasetId", "message": "required"}],
        )
    src = op_store.read_operation(conn, scope.tenant_id, scope.project_id, str(source_op))
    if (
        src is None
        or src["status"] != "Completed"
        or src["operation_type"] != "ProcessMiningAnalysis"
    ):
        raise Problem(
            422,
            "parameters.sourceOperationId must name a completed ProcessMiningAnalysis",
            errors=[
                {"field": "parameters.sourceOperationId", "message": "not a completed analysis"}
            ],
        )
    events = int(((src["results"] or {}).get("summary") or {}).get("recordsAnalyzed") or 0)
    return {"datasetId": None, "events": events}


@dataclass
class Prepared:
    """A validated new operation: its row, its 202 answer and headers, not yet stored."""

    row: dict[str, Any]
    response: dict[str, Any]
    headers: dict[str, str]
    digest: str


def prepare_operation(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    body: OperationCreate,
    *,
    share: float = 1.0,
    status: str = "Initiated",
    input_from: str | None = None,
    events_hint: int = 0,
) -> Prepared:
    """Validate and estimate a new operation. `share`: the part of a full run still to do (a
    resume retry's). `input_from`: a batch operation whose dataset or source analysis comes from
    its dependency `input_from` once that completes (`events_hint`: the events it will see)."""
    payload = body.model_dump(mode="json", exclude_none=True)
    # everything read here is settled (datasets and completed analyses do not change) or an
    # estimate, so the write transaction holds SQLite's lock only for the inserts
    check_priority(scope, body.priority.value)
    with engine.connect() as conn:
        _check_fault_injection(settings, body)
        params = body.parameters
        if input_from and params.get("datasetId") is None and not params.get("sourceOperationId"):
            _parse_parameters(body)
            source: dict[str, Any] = {"datasetId": None, "events": events_hint}
        else:
            source = _validate_parameters(conn, scope, body)
        queued = _queue_wait_seconds(conn, settings, scope, body.priority.value)
        like = {"operation_type": body.operationType.value, "priority": body.priority.value}
        listening = matching_webhooks(
            conn, scope.tenant_id, scope.project_id, like, events.CALLBACK_FOR
        )
    seconds, method = estimate_seconds(engine, body.operationType.value, source["events"])
    seconds *= share
    now = utc_now()
    operation_id = f"op-{uuid.uuid4()}"
    timeout_at = now + timedelta(seconds=body.timeout)
    url = tracking_url(scope, operation_id)
    callbacks = payload.get("callbacks") or {}
    response = {
        "operationId": operation_id,
        "operationType": body.operationType.value,
        "operationName": body.operationName,
        "status": status,
        "estimatedDuration": duration_range(seconds),
        "estimatedDurationMethod": method,
        "estimatedCompletion": iso(now + timedelta(seconds=queued + seconds)),
        "trackingUrl": url,
        # the start request's callbacks plus the webhooks that will hear about it
        "webhooksRegistered": sum(1 for v in callbacks.values() if v) + listening,
        "priority": body.priority.value,
        "dateCreated": iso(now),
        "timeoutAt": iso(timeout_at),
        "resourcesAllocated": resources(seconds, settings),
    }
    headers = {
        "Location": url,
        "Operation-Location": url,
        "Retry-After": str(retry_after(seconds)),
    }
    row = {
        "operation_id": operation_id,
        "tenant_id": scope.tenant_id,
        "project_id": scope.project_id,
        "operation_type": body.operationType.value,
        "operation_name": body.operationName,
        "priority": body.priority.value,
        "priority_rank": PRIORITY_RANK[body.priority.value],
        "status": status,
        "request": payload,
        "dataset_id": source["datasetId"],
        "created_at": now,
        "timeout_at": timeout_at,
        "estimated_seconds": seconds,
        "percentage": 0.0,
        "processed_records": 0,
        "cancel_requested": False,
    }
    return Prepared(row, response, headers, request_hash(payload))


def start_operation(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    body: OperationCreate,
    idempotency_key: str | None,
    *,
    share: float = 1.0,
    within: Callable[[Connection, str], None] | None = None,
    annotations: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Record a new operation (202); `within(conn, operation_id)`: more writes in the same
    transaction."""
    digest = request_hash(body.model_dump(mode="json", exclude_none=True))
    if idempotency_key:
        replay = _idempotent_replay(engine, scope, START_SCOPE, idempotency_key, digest)
        if replay is not None:
            return replay
    new = prepare_operation(engine, settings, scope, body, share=share)
    new.row["request"].update(annotations or {})  # e.g. the batch a retried member belongs to
    try:
        with transaction(engine) as conn:
            check_queue(conn, settings, scope)
            op_store.insert_operation(conn, new.row)
            if within is not None:
                within(conn, new.row["operation_id"])
            if idempotency_key:
                _remember(
                    conn,
                    scope,
                    START_SCOPE,
                    idempotency_key,
                    digest,
                    202,
                    new.response,
                    new.headers,
                )
    except IntegrityError:
        # a concurrent request with the same Idempotency-Key committed first: its answer stands
        replay = idempotent_lookup(engine, scope, START_SCOPE, idempotency_key, digest)
        if replay is None:
            raise
        return replay
    return 202, new.response, new.headers


def _remember(
    conn: Connection,
    scope: Scope,
    where: str,
    key: str,
    digest: str,
    status: int,
    response: dict[str, Any],
    headers: dict[str, str],
) -> None:
    """The answer to replay for this Idempotency-Key (a second insert fails on the key)."""
    insert_idempotency(conn, scope.tenant_id, where, key, digest, status, response, headers)


def _idempotent_replay(
    engine: Engine, scope: Scope, where: str, key: str, digest: str
) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    with engine.connect() as conn:
        row = read_idempotency(conn, scope.tenant_id, where, key)
    if row is None:
        return None
    if row.request_hash != digest:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request body",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )
    return row.status_code, row.response, row.headers


def store_idempotent(
    engine: Engine,
    scope: Scope,
    where: str,
    key: str,
    digest: str,
    status: int,
    response: dict[str, Any],
    headers: dict[str, str],
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Record a response; a concurrent first writer wins and its response is returned."""
    try:
        with transaction(engine) as conn:
            _remember(conn, scope, where, key, digest, status, response, headers)
    except IntegrityError:
        replay = _idempotent_replay(engine, scope, where, key, digest)
        if replay is not None:
            return replay
    return status, response, headers


def idempotent_lookup(
    engine: Engine, scope: Scope, where: str, key: str | None, digest: str
) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    return _idempotent_replay(engine, scope, where, key, digest) if key else None


def retry_after(seconds_left: float) -> int:
    """A polling interval: about a tenth of what is left, between 1 and 30 seconds."""
    return int(min(30, max(1, round(seconds_left / 10))))


def _queue_wait_seconds(conn: Connection, settings: Settings, scope: Scope, priority: str) -> float:
    """Estimated seconds before a new operation of this project and priority gets a worker
    slot (fair dispatch: pmops/service/fair.py)."""
    rank = PRIORITY_RANK[priority]
    ahead = fair.seconds_ahead(conn, scope.tenant_id, scope.project_id, rank)
    # what holds the worker slots now (the dispatcher counts the same), and how long it still needs
    busy = op_store.list_busy_operations(conn)
    if len(busy) < settings.worker_limit and not ahead:
        return 0.0
    now = utc_now()
    left = sum(
        max(0.0, float(est or 0.0) - ((now - started).total_seconds() if started else 0.0))
        for est, started in busy
    )
    return (float(ahead) + left) / settings.worker_limit


# -- read ------------------------------------------------------------------------------------------
def callback_stats(engine: Engine, operation_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return events.callback_stats(conn, operation_id)


def get_operation_or_404(
    engine: Engine, scope: Scope, operation_id: str, *, status_only: bool = False
) -> dict[str, Any]:
    with engine.connect() as conn:
        row = op_store.read_operation(
            conn, scope.tenant_id, scope.project_id, operation_id, status_only=status_only
        )
    if row is None:
        raise Problem(404, f"operation {operation_id} not found")
    return row


# -- list --------------------------------------------------------------------------------------
STATUSES = tuple(s.value for s in Status)


def list_operations(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    *,
    status: str | None,
    operation_type: str | None,
    priority: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
    include_details: bool,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    which = OperationFilter(status, operation_type, priority, date_from, date_to)
    tenant_id, project_id = scope.tenant_id, scope.project_id
    with engine.connect() as conn:
        counts = op_store.count_operations(conn, tenant_id, project_id, which, STATUSES)
        rows = op_store.list_operations(
            conn,
            tenant_id,
            project_id,
            which,
            (page - 1) * page_size,
            page_size + 1,
            details=include_details,
        )
        ids = [r["operation_id"] for r in rows]
        stats = events.callback_stats_of(conn, ids) if include_details else {}
        links = retry_links_of(conn, ids) if include_details else {}
    items = []
    now = utc_now()
    for r in rows[:page_size]:
        row = dict(r)
        item = list_item(row, now)
        if include_details:
            item["details"] = status_view(row, settings, stats[row["operation_id"]])
            item["details"].update(links[row["operation_id"]])
        items.append(item)
    return {
        "operations": items,
        "summary": list_summary(counts),
        "page": page,
        "pageSize": page_size,
        "hasNextPage": len(rows) > page_size,
    }


def list_summary(counts: dict[str, int]) -> dict[str, int]:
    return {
        "totalOperations": sum(counts.values()),
        "initiated": counts.get("Initiated", 0),
        "running": counts.get("Running", 0),
        "completed": counts.get("Completed", 0),
        "failed": counts.get("Failed", 0),
        "cancelled": counts.get("Cancelled", 0),
        "timeout": counts.get("Timeout", 0),
    }


# -- cancel ------------------------------------------------------------------------------------
# how long a graceful cancel waits for the run to stop at a checkpoint before forcing it
GRACEFUL_WAIT_SECONDS = 15.0


def _terminal_conflict(operation_id: str, status: str) -> Problem:
    """The answer when the operation ended otherwise before the cancel could take effect: a 409
    naming its final status (`operationStatus`), which the store and the events show too."""
    return Problem(
        409,
        f"operation {operation_id} is already {status}: the cancel did not take effect",
        errors=[{"field": "operationId", "message": f"already {status}"}],
        extensions={"operationStatus": status},
    )


def request_cancel(
    engine: Engine, scope: Scope, operation_id: str, req: CancelRequest
) -> tuple[dict[str, Any], str]:
    """Record the request; returns (row, mode) with mode 'immediate' | 'graceful' | 'force'.
    The decision is one conditional UPDATE (only while the operation is still active), so it
    and the run's own outcome cannot both take."""
    with transaction(engine) as conn:
        # locked: no flow run can finish or claim it meanwhile
        row = op_store.read_operation(
            conn, scope.tenant_id, scope.project_id, operation_id, for_update=True
        )
        if row is None:
            raise Problem(404, f"operation {operation_id} not found")
        if row["status"] in TERMINAL:
            raise _terminal_conflict(operation_id, row["status"])
        request = {
            "reason": req.reason or "cancelled by request",
            "preservePartialResults": req.preservePartialResults,
            "forceTermination": req.forceTermination,
            "notifyCallbacks": req.notifyCallbacks,
            "cancelledBy": scope.principal.name,
            "requestedAt": iso(utc_now()),
        }
        values: dict[str, Any] = {"cancel_requested": True, "cancel_request": request}
        mode = "force" if req.forceTermination else "graceful"
        if row["status"] in ("Initiated", "Pending"):
            # not started: it never will (the flow's claim fails once the row is Cancelled)
            mode = "immediate"
            values.update(status="Cancelled", ended_at=utc_now())
        elif req.forceTermination:
            values.update(status="Cancelled", ended_at=utc_now())
        if not op_store.cancel_active_operation(conn, operation_id, values):
            now = op_store.read_operation_by_id(conn, operation_id) or row
            raise _terminal_conflict(operation_id, now["status"])
        if "status" in values:
            emit(conn, operation_id, "operation.cancelled")
    return row, mode


def wait_terminal(engine: Engine, operation_id: str, seconds: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while True:
        with engine.connect() as conn:
            row = op_store.read_operation_by_id(conn, operation_id)
        if row is not None and row["status"] in TERMINAL:
            return dict(row)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1 if seconds >= 1 else 0.01)


def force_cancelled(engine: Engine, operation_id: str) -> bool:
    """Cancelled now, unless it has ended meanwhile; whether the cancel took."""
    with transaction(engine) as conn:
        moved = op_store.cancel_active_operation(
            conn, operation_id, {"status": "Cancelled", "ended_at": utc_now()}
        )
        if moved:
            emit(conn, operation_id, "operation.cancelled")
    return moved


def cancel_operation(
    engine: Engine,
    scope: Scope,
    operation_id: str,
    req: CancelRequest,
    orchestrator: Orchestrator | None,
    graceful_wait: float = GRACEFUL_WAIT_SECONDS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cancel and settle: (the final row, the row before). The answer shows what the store
    holds: Cancelled when the cancel took, else a 409 naming the status the run ended with."""
    before, mode = request_cancel(engine, scope, operation_id, req)
    if mode == "graceful":
        row = wait_terminal(engine, operation_id, graceful_wait)
        if row is None:  # the phase did not reach a checkpoint in time: stop it
            mode = "force"
            if not force_cancelled(engine, operation_id):
                mode = "lost"  # the run ended (completed) between the wait and the force
    if mode in ("force", "immediate") and before.get("flow_run_id") and orchestrator is not None:
        orchestrator.cancel_run(before["flow_run_id"])
    row = get_operation_or_404(engine, scope, operation_id)
    if row["status"] != "Cancelled":
        raise _terminal_conflict(operation_id, row["status"])
    return row, before


PHASE_RECORD_KEYS = (
    "phaseName",
    "status",
    "startTime",
    "endTime",
    "duration",
    "resourceUsage",
    "recordsProcessed",
    "results",
)


def results_document(row: dict[str, Any]) -> dict[str, Any]:
    """The run's results document. A run stopped before it could write one (force-cancelled,
    killed) still completed phases: their records come from its last reported state."""
    doc = dict(row.get("results") or {})
    if doc:
        return doc
    stopped = "Failed" if row["status"] == "Failed" else "Cancelled"
    phases = []
    for p in (row.get("progress") or {}).get("phases") or []:
        record = {k: p[k] for k in PHASE_RECORD_KEYS if k in p}
        if record.get("status") == "Running":
            record["status"] = stopped
        phases.append(record)
    return {"phaseResults": phases, "artifacts": [], "summary": {}}


def cancellation_view(
    row: dict[str, Any], before: dict[str, Any], scope: Scope, settings: Settings
) -> dict[str, Any]:
    request = row.get("cancel_request") or {}
    doc = results_document(row)
    preserve = request.get("preservePartialResults", True)
    completed = [
        p["phaseName"] for p in (doc.get("phaseResults") or []) if p.get("status") == "Completed"
    ]
    urls = []
    if preserve:
        urls = [
            f"{tracking_url(scope, row['operation_id'])}/artifacts/{Path(a['path']).name}"
            for a in doc.get("artifacts") or []
        ]
    settings = allocated_settings(settings, row.get("request") or {})  # a retry's own
    estimated = float(before.get("estimated_seconds") or 0.0)
    elapsed = elapsed_seconds(row, utc_now())
    saved = max(0.0, estimated - elapsed)
    view = {
        "operationId": row["operation_id"],
        "status": row["status"],  # Cancelled: cancel_operation answers anything else with a 409
        "cancellationTime": iso(row.get("ended_at") or utc_now()),
        "reason": request.get("reason"),
        "progressAtCancellation": round(float(before.get("percentage") or 0.0)),
        "phaseAtCancellation": before.get("current_phase"),
        "partialResults": {
            "available": bool(preserve and (completed or urls)),
            # the seed counts the phases; their names are added beside it
            "completedPhases": len(completed),
            "completedPhaseNames": completed,
            "downloadUrls": urls,
        },
        "resourcesReleased": {
            **{k: v for k, v in resources(saved, settings).items() if k != "estimatedCost"},
            "costSaved": resources(saved, settings)["estimatedCost"],
        },
        "cancelledBy": request.get("cancelledBy"),
    }
    return view
