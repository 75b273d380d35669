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

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from analysis.errors import AnalysisError
from analysis.eventlog import parse_time_window
from analysis.formatting import seconds_text
from analysis.params import (
    parse_analysis_params,
    parse_enrichment_params,
    parse_report_params,
)
from analysis.phases import PHASES
from pmops.contract.requests import PRIORITY_RANK, CancelRequest, OperationCreate, Status
from pmops.delivery import outbox
from pmops.service import events
from pmops.service.errors import Problem, analysis_problem
from pmops.service.estimates import estimate_seconds, resources
from pmops.service.events import emit
from pmops.service.lineage import allocated_settings, retry_links_of
from pmops.service.scope import Scope
from pmops.service.views import (
    TERMINAL,
    duration_range,
    elapsed_seconds,
    iso,
    remaining_seconds,
    status_view,
)
from pmops.settings import Settings
from pmops.store.tables import (
    datasets,
    idempotency,
    operation_counts,
    operations,
    transaction,
    utc_now,
)

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
                row = (
                    conn.execute(
                        select(datasets).where(
                            datasets.c.dataset_id == dataset_id,
                            datasets.c.tenant_id == scope.tenant_id,
                            datasets.c.project_id == scope.project_id,
                        )
                    )
                    .mappings()
                    .first()
                )
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
    src = (
        conn.execute(
            select(operations).where(
                operations.c.operation_id == str(source_op),
                operations.c.tenant_id == scope.tenant_id,
                operations.c.project_id == scope.project_id,
            )
        )
        .mappings()
        .first()
    )
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
    with engine.connect() as conn:
        _check_fault_injection(settings, body)
        params = body.parameters
        if input_from and params.get("datasetId") is None and not params.get("sourceOperationId"):
            _parse_parameters(body)
            source: dict[str, Any] = {"datasetId": None, "events": events_hint}
        else:
            source = _validate_parameters(conn, scope, body)
        queued = _queue_wait_seconds(conn, settings, body.priority.value)
        like = {"operation_type": body.operationType.value, "priority": body.priority.value}
        listening = outbox.matching_webhooks(conn, scope.tenant_id, scope.project_id, like)
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
            conn.execute(operations.insert().values(**new.row))
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
    conn.execute(
        idempotency.insert().values(
            tenant_id=scope.tenant_id,
            scope=where,
            key=key,
            request_hash=digest,
            status_code=status,
            response=response,
            headers=headers,
            created_at=utc_now(),
        )
    )


def _idempotent_replay(
    engine: Engine, scope: Scope, where: str, key: str, digest: str
) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(idempotency).where(
                idempotency.c.tenant_id == scope.tenant_id,
                idempotency.c.scope == where,
                idempotency.c.key == key,
            )
        ).first()
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


def _queue_wait_seconds(conn: Connection, settings: Settings, priority: str) -> float:
    """Estimated seconds before a new operation of this priority gets a worker slot."""
    ahead = conn.execute(
        select(func.coalesce(func.sum(operations.c.estimated_seconds), 0.0)).where(
            operations.c.status == "Initiated",
            operations.c.flow_run_id.is_(None),
            operations.c.priority_rank >= PRIORITY_RANK[priority],
        )
    ).scalar_one()
    # what holds the worker slots now (the dispatcher counts the same), and how long it still needs
    busy = conn.execute(
        select(operations.c.estimated_seconds, operations.c.started_at).where(
            operations.c.status.in_(("Initiated", "Running")),
            operations.c.flow_run_id.is_not(None),
        )
    ).all()
    if len(busy) < settings.worker_limit and not ahead:
        return 0.0
    now = utc_now()
    left = sum(
        max(0.0, float(est or 0.0) - ((now - started).total_seconds() if started else 0.0))
        for est, started in busy
    )
    return (float(ahead) + left) / settings.worker_limit


# -- read ------------------------------------------------------------------------------------------
# what a status answer shows: not the request nor the (large) results document
STATUS_COLUMNS = tuple(
    c for c in operations.c if c.name not in ("request", "results", "cancel_request")
)


def callback_stats(engine: Engine, operation_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return events.callback_stats(conn, operation_id)


def get_operation_or_404(
    engine: Engine, scope: Scope, operation_id: str, *, status_only: bool = False
) -> dict[str, Any]:
    columns = STATUS_COLUMNS if status_only else (operations,)
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(*columns).where(
                    operations.c.operation_id == operation_id,
                    operations.c.tenant_id == scope.tenant_id,
                    operations.c.project_id == scope.project_id,
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise Problem(404, f"operation {operation_id} not found")
    return dict(row)


# -- list --------------------------------------------------------------------------------------
def _summary_counts(
    conn: Connection,
    scope: Scope,
    where: Any,
    status: str | None,
    operation_type: str | None,
    priority: str | None,
    dated: bool,
) -> dict[str, int]:
    """Operations per status of the filtered set: from the trigger-kept counters, or with a date
    filter by one pass over the scope's index (no GROUP BY: SQLite would pick the index that
    orders by status over the one that matches the filters, and read every row)."""
    if not dated:
        c = operation_counts.c
        conds = [c.tenant_id == scope.tenant_id, c.project_id == scope.project_id]
        filters = ((c.status, status), (c.operation_type, operation_type), (c.priority, priority))
        conds += [column == value for column, value in filters if value]
        rows = conn.execute(select(c.status, func.sum(c.n)).where(*conds).group_by(c.status))
        return {s: int(n or 0) for s, n in rows}
    sums = conn.execute(
        select(*(func.sum(case((operations.c.status == s, 1), else_=0)) for s in STATUSES)).where(
            where
        )
    ).one()
    return {s: int(n or 0) for s, n in zip(STATUSES, sums, strict=True)}


STATUSES = tuple(s.value for s in Status)
LIST_COLUMNS = (
    operations.c.operation_id,
    operations.c.operation_type,
    operations.c.operation_name,
    operations.c.status,
    operations.c.percentage,
    operations.c.priority,
    operations.c.created_at,
    operations.c.started_at,
    operations.c.ended_at,
    operations.c.estimated_seconds,
    operations.c.current_phase,
    operations.c.processed_records,
    operations.c.progress["resourceUsage"].label("resource_usage"),
)


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
    conds = [operations.c.tenant_id == scope.tenant_id, operations.c.project_id == scope.project_id]
    if status:
        conds.append(operations.c.status == status)
    if operation_type:
        conds.append(operations.c.operation_type == operation_type)
    if priority:
        conds.append(operations.c.priority == priority)
    if date_from:
        conds.append(operations.c.created_at >= date_from)
    if date_to:
        conds.append(operations.c.created_at <= date_to)
    where = and_(*conds)
    dated = date_from is not None or date_to is not None
    with engine.connect() as conn:
        counts = _summary_counts(conn, scope, where, status, operation_type, priority, dated)
        # the page's ids from an index alone (OFFSET walks index entries, not rows), then only
        # those rows, and only the columns a list item shows unless details are asked for
        ids = (
            conn.execute(
                select(operations.c.operation_id)
                .where(where)
                .order_by(operations.c.created_at.desc(), operations.c.operation_id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size + 1)
            )
            .scalars()
            .all()
        )
        columns = [operations] if include_details else LIST_COLUMNS
        found = {
            r["operation_id"]: r
            for r in conn.execute(select(*columns).where(operations.c.operation_id.in_(ids)))
            .mappings()
            .all()
        }
        stats = events.callback_stats_of(conn, list(found)) if include_details else {}
        links = retry_links_of(conn, list(found)) if include_details else {}
    rows = [found[i] for i in ids if i in found]
    has_next = len(rows) > page_size
    items = []
    for r in rows[:page_size]:
        row = dict(r)
        elapsed = elapsed_seconds(row, utc_now())
        remaining = remaining_seconds(row, elapsed)
        item: dict[str, Any] = {
            "operationId": row["operation_id"],
            "operationType": row["operation_type"],
            "operationName": row["operation_name"],
            "status": row["status"],
            "progress": round(float(row.get("percentage") or 0.0)),
            "priority": row["priority"],
            "startTime": iso(row.get("started_at")),
            "endTime": iso(row.get("ended_at")),
            "duration": seconds_text(elapsed) if row.get("started_at") else None,
            "estimatedCompletion": iso(
                row.get("ended_at") or utc_now() + timedelta(seconds=remaining or 0)
            ),
            "currentPhase": row.get("current_phase"),
            "resourceUsage": (
                row["resource_usage"]
                if "resource_usage" in row
                else (row.get("progress") or {}).get("resourceUsage")
            ),
            "recordsProcessed": int(row.get("processed_records") or 0),
            "dateCreated": iso(row["created_at"]),
        }
        if include_details:
            item["details"] = status_view(row, settings, stats[row["operation_id"]])
            item["details"].update(links[row["operation_id"]])
        items.append(item)
    return {
        "operations": items,
        "summary": {
            "totalOperations": sum(counts.values()),
            "initiated": counts.get("Initiated", 0),
            "running": counts.get("Running", 0),
            "completed": counts.get("Completed", 0),
            "failed": counts.get("Failed", 0),
            "cancelled": counts.get("Cancelled", 0),
            "timeout": counts.get("Timeout", 0),
        },
        "page": page,
        "pageSize": page_size,
        "hasNextPage": has_next,
    }


# -- cancel ------------------------------------------------------------------------------------
def request_cancel(
    engine: Engine, scope: Scope, operation_id: str, req: CancelRequest
) -> tuple[dict[str, Any], str]:
    """Record the request; returns (row, mode) with mode 'immediate' | 'graceful' | 'force'."""
    with transaction(engine) as conn:
        row = (
            conn.execute(
                select(operations)
                .where(
                    operations.c.operation_id == operation_id,
                    operations.c.tenant_id == scope.tenant_id,
                    operations.c.project_id == scope.project_id,
                )
                .with_for_update()  # no flow run can finish or claim it meanwhile
            )
            .mappings()
            .first()
        )
        if row is None:
            raise Problem(404, f"operation {operation_id} not found")
        if row["status"] in TERMINAL:
            raise Problem(409, f"operation {operation_id} is already {row['status']}")
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
        conn.execute(
            update(operations).where(operations.c.operation_id == operation_id).values(**values)
        )
        if "status" in values:
            emit(conn, operation_id, "operation.cancelled")
    return dict(row), mode


def wait_terminal(engine: Engine, operation_id: str, seconds: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = (
                conn.execute(select(operations).where(operations.c.operation_id == operation_id))
                .mappings()
                .first()
            )
        if row is not None and row["status"] in TERMINAL:
            return dict(row)
        time.sleep(0.1)
    return None


def force_cancelled(engine: Engine, operation_id: str) -> None:
    with transaction(engine) as conn:
        done = conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .where(operations.c.status.in_(("Initiated", "Running")))
            .values(status="Cancelled", ended_at=utc_now())
        )
        if done.rowcount:
            emit(conn, operation_id, "operation.cancelled")


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
        "status": "Cancelled",
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
