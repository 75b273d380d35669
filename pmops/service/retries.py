"""Retry (endpoint 7) and automatic retries: a new operation in the original's chain.

The original is never changed: the retry is a new operation with the original's request, the
`updatedParameters` merged in, and a row in `retries` linking it to the original and to the
chain's first operation (its lineage). `resume` lets the flow restore the leading phases the
original completed whose inputs did not change (analysis.pipeline.ResumePlan); `restart` runs
everything. Automatic retries (the start request's `retryPolicy`) are resume retries the API's
dispatcher creates when `retry_schedule` says they are due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from analysis.phases import PHASE_WEIGHTS, PHASES
from analysis.pipeline import STATE_DIR, OperationRun
from analysis.runs import DataEnrichmentRun, ProcessMiningRun, ReportGenerationRun
from pmops.contract.requests import OperationCreate, ResourceAllocation, RetryCreate
from pmops.service.errors import Problem
from pmops.service.limits import check_priority
from pmops.service.lineage import allocated_settings, integral, retry_links_of
from pmops.service.operations import (
    _idempotent_replay,
    get_operation_or_404,
    request_hash,
    start_operation,
    store_idempotent,
)
from pmops.service.scope import Principal, Scope
from pmops.service.storage import Storage, join, storage_for
from pmops.service.views import TERMINAL
from pmops.settings import Settings
from pmops.store import retries as store
from pmops.store.tables import transaction, utc_now

RETRYABLE = ("Failed", "Cancelled", "Timeout")
RUNS: dict[str, type[OperationRun]] = {
    "ProcessMiningAnalysis": ProcessMiningRun,
    "DataEnrichment": DataEnrichmentRun,
    "ReportGeneration": ReportGenerationRun,
}


class NotRetried(Exception):
    """The automatic retry was taken by someone else meanwhile (rolls the transaction back)."""


def merge(original: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """updates merged into original: objects key by key, null removes the key."""
    merged = dict(original)
    for key, value in updates.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def completed_phases(row: dict[str, Any]) -> list[str]:
    phases = (row.get("progress") or {}).get("phases") or []
    return [p["phaseName"] for p in phases if p.get("status") == "Completed"]


def _preservable(row: dict[str, Any], params: dict[str, Any], storage: Storage) -> tuple[str, ...]:
    """Leading phases of the original a resume can restore: completed, same inputs, and their
    checkpoint still in the storage."""
    op_type = row["operation_type"]
    before = (row["request"] or {}).get("parameters") or {}
    reusable = RUNS[op_type].reusable_phases(completed_phases(row), before, params)
    out_dir: str | None = row.get("result_dir")
    kept = []
    for number, name in enumerate(PHASES[op_type], start=1):
        if name not in reusable or out_dir is None:
            break
        if not storage.exists(join(out_dir, STATE_DIR, f"{number}.pkl")):
            break
        kept.append(name)
    return tuple(kept)


def _retry_request(
    original: dict[str, Any], body: RetryCreate
) -> tuple[OperationCreate, dict[str, Any]]:
    """The retry's start request (validated; 422 naming updatedParameters fields) and what is
    kept beside it: the batch it belongs to, its resourceAllocation (cpuUnits, memoryGB)."""
    request = dict(original["request"] or {})
    annotations = {k: request.pop(k) for k in ("batch", "resourceAllocation") if k in request}
    updates = dict(body.updatedParameters)
    allocation = _allocation(updates.pop("resourceAllocation", None))
    new_request = {
        **request,
        "parameters": merge(request.get("parameters") or {}, updates),
        "timeout": body.newTimeout or request.get("timeout") or 3600,
    }
    if body.retryPolicy is not None:
        new_request["retryPolicy"] = body.retryPolicy.model_dump()
    if allocation.priority is not None:
        new_request["priority"] = allocation.priority.value
    # a retry of a retry keeps the allocation it had, but for what this one changes
    resources = {
        **(annotations.get("resourceAllocation") or {}),
        **allocation.model_dump(exclude_none=True, exclude={"priority"}),
    }
    if resources:
        annotations["resourceAllocation"] = {k: integral(v) for k, v in resources.items()}
    try:
        create = OperationCreate.model_validate(new_request)
    except ValidationError as exc:
        raise _invalid(exc, "updatedParameters.") from None
    return create, annotations


def _allocation(value: Any) -> ResourceAllocation:
    """updatedParameters.resourceAllocation, validated (cpuUnits, memoryGB, priority)."""
    try:
        return ResourceAllocation.model_validate(value or {})
    except ValidationError as exc:
        raise _invalid(exc, "updatedParameters.resourceAllocation.") from None


def _invalid(exc: ValidationError, prefix: str) -> Problem:
    errors = [
        {"field": prefix + ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
        for e in exc.errors()
    ]
    return Problem(422, "the retried request is not valid", errors=errors)


def _linker(
    original_id: str, body: RetryCreate, preserved: tuple[str, ...], automatic: bool
) -> tuple[Callable[[Connection, str], None], list[int]]:
    """The writes that make the new operation a retry (in its insert transaction), and where
    its number in the lineage is left."""
    number: list[int] = []

    def link(conn: Connection, operation_id: str) -> None:
        gone = store.delete_retry_schedule(conn, original_id)
        if automatic and not gone:
            raise NotRetried(original_id)  # retried by hand (or by another API) meanwhile
        lineage = store.read_lineage(conn, original_id)
        number.append(store.next_retry_number(conn, lineage))  # locks the lineage
        active = store.read_active_retry(conn, original_id)
        if active is not None:
            raise _already_retried(original_id, *active)
        store.insert_retry(
            conn,
            {
                "operation_id": operation_id,
                "original_id": original_id,
                "lineage": lineage,
                "retry_number": number[-1],
                "retry_mode": body.retryMode,
                "preserved_phases": list(preserved),
                "reason": body.retryReason,
                "automatic": automatic,
                "created_at": utc_now(),
            },
        )

    return link, number


def _already_retried(original_id: str, retry_id: str, status: str) -> Problem:
    return Problem(
        409,
        f"operation {original_id} already has an active retry, {retry_id} ({status}): "
        "wait for it to end or cancel it",
        errors=[{"field": "operationId", "message": f"active retry {retry_id}"}],
        extensions={"activeRetryId": retry_id},
    )


def create_retry(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    original_id: str,
    body: RetryCreate,
    idempotency_key: str | None = None,
    automatic: bool = False,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    where = f"POST /async/operation/{original_id}/retry"
    digest = request_hash(body.model_dump(mode="json"))
    if idempotency_key:
        replay = _idempotent_replay(engine, scope, where, idempotency_key, digest)
        if replay is not None:
            return replay
    original = get_operation_or_404(engine, scope, original_id)
    if original["status"] not in RETRYABLE:
        raise Problem(
            409,
            f"operation {original_id} is {original['status']}: only a Failed, Cancelled or "
            "Timeout operation can be retried",
        )
    create, annotations = _retry_request(original, body)
    allocation = body.updatedParameters.get("resourceAllocation")
    if isinstance(allocation, dict) and allocation.get("priority") is not None:
        field = "updatedParameters.resourceAllocation.priority"
        check_priority(scope, create.priority.value, field)
    storage = storage_for(settings)
    preserved = (
        _preservable(original, create.parameters, storage) if body.retryMode == "resume" else ()
    )
    weights = PHASE_WEIGHTS[original["operation_type"]]
    saved = sum(weights.get(p, 1.0) for p in preserved) / (sum(weights.values()) or 1.0)
    link, number = _linker(original_id, body, preserved, automatic)
    _, started, headers = start_operation(
        engine,
        allocated_settings(settings, annotations),  # its resourcesAllocated and their cost
        scope,
        create,
        None,
        share=max(0.05, 1.0 - saved),
        within=link,
        annotations=annotations,
    )
    answer = _answer(original, body, started, number[0], preserved, saved, automatic)
    if idempotency_key:
        return store_idempotent(engine, scope, where, idempotency_key, digest, 202, answer, headers)
    return 202, answer, headers


def _answer(
    original: dict[str, Any],
    body: RetryCreate,
    started: dict[str, Any],
    number: int,
    preserved: tuple[str, ...],
    saved: float,
    automatic: bool,
) -> dict[str, Any]:
    order = PHASES[original["operation_type"]]
    return {
        "originalOperationId": original["operation_id"],
        "newOperationId": started["operationId"],
        "retryMode": body.retryMode,
        "retryNumber": number,
        "resumeFromPhase": next((p for p in order if p not in preserved), None),
        "status": "Initiated",
        "estimatedDuration": started["estimatedDuration"],
        "estimatedCompletion": started["estimatedCompletion"],
        "preservedResults": {
            "phasesPreserved": len(preserved),
            "preservedPhaseNames": list(preserved),
            "recordsProcessed": _records(original, preserved),
            # the seed's number: percent of the phase weights the retry need not run again
            "progressSaved": round(100 * saved),
        },
        "resourcesAllocated": started["resourcesAllocated"],
        "retryAttemptDate": started["dateCreated"],
        "trackingUrl": started["trackingUrl"],
        "automatic": automatic,
    }


def _records(original: dict[str, Any], preserved: tuple[str, ...]) -> int:
    phases = (original.get("progress") or {}).get("phases") or []
    return max(
        (int(p.get("recordsProcessed") or 0) for p in phases if p["phaseName"] in preserved),
        default=0,
    )


def retry_links(engine: Engine, operation_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return retry_links_of(conn, [operation_id])[operation_id]


def run_due_retries(engine: Engine, settings: Settings) -> int:
    """Create the automatic retries that are due; returns how many."""
    with engine.connect() as conn:
        due = store.list_due_retries(conn, utc_now(), 50)
    made = 0
    for op_id, tenant, project, status in due:
        scope = Scope(tenant, project, Principal(tenant, project, "automatic retry", "Critical"))
        if status not in TERMINAL:
            continue
        try:
            create_retry(
                engine,
                settings,
                scope,
                op_id,
                RetryCreate(retryReason="automatic retry (retryPolicy)"),  # retryMode resume
                automatic=True,
            )
            made += 1
        except Problem as exc:
            if exc.status == 429:  # the project's queue is full: the retry waits its turn
                wait = float(exc.headers.get("Retry-After") or 1)
                with transaction(engine) as conn:
                    store.postpone_retry_schedule(conn, op_id, utc_now() + timedelta(seconds=wait))
                continue
            with transaction(engine) as conn:  # nothing to retry any more: forget the schedule
                store.delete_retry_schedule(conn, op_id)
        except NotRetried:
            with transaction(engine) as conn:  # nothing to retry any more: forget the schedule
                store.delete_retry_schedule(conn, op_id)
    return made
