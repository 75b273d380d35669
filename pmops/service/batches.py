"""Batches (endpoints 8 and 8b): validate the graph, record every operation at once, show, cancel.

All of a batch's operations are recorded in one transaction, `Pending`, together with the batch.
pmops.service.batch_progress.advance then starts each when its dependencies have completed. A
duplicate key, an
unknown dependency or a cycle is a 422 naming it. An operation without its own input must depend
on one that makes it or hands it on (batch_progress.INPUT_FROM).
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from pmops.contract.requests import BatchCreate, BatchOperation, OperationCreate
from pmops.service.batch_progress import BATCH_TERMINAL, INPUT_FROM, advance, batch_view
from pmops.service.errors import Problem
from pmops.service.limits import check_queue
from pmops.service.operations import (
    Prepared,
    _idempotent_replay,
    _remember,
    base_path,
    prepare_operation,
    request_hash,
)
from pmops.service.scope import Principal, Scope
from pmops.service.views import duration_range, iso
from pmops.settings import Settings
from pmops.store import batches as store
from pmops.store.tables import transaction, utc_now

CREATE_SCOPE = "POST /async/batch"
# what a member of `retryFailedOperations` batch gets when it has no retryPolicy of its own
BATCH_RETRY_POLICY = {"maxRetries": 1, "retryDelay": 0, "backoffMultiplier": 1.0}


def _err(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def check_graph(ops: list[BatchOperation]) -> list[int]:
    """The operations' indexes in an order where dependencies come first; 422 on bad graphs."""
    index: dict[str, int] = {}
    for i, op in enumerate(ops):
        if op.operationKey in index:
            field = f"operations[{i}].operationKey"
            raise Problem(
                422,
                f"operationKey {op.operationKey!r} is used twice",
                errors=[_err(field, "duplicate key")],
            )
        index[op.operationKey] = i
    for i, op in enumerate(ops):
        for j, dep in enumerate(op.dependencies):
            if dep not in index:
                field = f"operations[{i}].dependencies[{j}]"
                raise Problem(
                    422,
                    f"{op.operationKey!r} depends on {dep!r}, which is not in the batch",
                    errors=[_err(field, "unknown operationKey")],
                )
    waiting = {i: len(set(op.dependencies)) for i, op in enumerate(ops)}
    after: dict[int, list[int]] = {i: [] for i in range(len(ops))}
    for i, op in enumerate(ops):
        for dep in set(op.dependencies):
            after[index[dep]].append(i)
    ready = deque(i for i, n in waiting.items() if n == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for j in after[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) < len(ops):
        cycle = _a_cycle(ops, index, set(range(len(ops))) - set(order))
        raise Problem(
            422,
            f"the dependencies form a cycle: {' -> '.join(cycle)}",
            errors=[_err("operations", f"cycle {' -> '.join(cycle)}")],
        )
    return order


def _a_cycle(ops: list[BatchOperation], index: dict[str, int], stuck: set[int]) -> list[str]:
    """One cycle among the operations that could not be ordered, as keys (first repeated)."""
    start = min(stuck)
    path, seen = [start], {start: 0}
    while True:
        nxt = next(index[d] for d in ops[path[-1]].dependencies if index[d] in stuck)
        if nxt in seen:
            loop = [*path[seen[nxt] :], nxt]
            return [ops[i].operationKey for i in loop]
        seen[nxt] = len(path)
        path.append(nxt)


def input_dependency(op: BatchOperation, kinds: dict[str, str]) -> str | None:
    """The dependency an operation without its own datasetId/sourceOperationId reads from."""
    for kind in INPUT_FROM.get(op.operationType.value, ("DataEnrichment",)):
        for dep in op.dependencies:
            if kinds[dep] == kind:
                return dep
    return None


def _source_of(i: int, op: BatchOperation, kinds: dict[str, str]) -> str | None:
    """The dependency `op` takes its input from (None: it has its own); 422 if it has none."""
    params = op.parameters
    if params.get("datasetId") is not None or params.get("sourceOperationId"):
        return None
    source = input_dependency(op, kinds)
    if source is None:
        field = f"operations[{i}].parameters.datasetId"
        raise Problem(
            422,
            f"{op.operationKey!r} has no datasetId and depends on no operation that makes its "
            "input (a DataEnrichment, an analysis, or for a report an analysis or a report)",
            errors=[_err(field, "required, or a dependency that provides it")],
        )
    return source


def _member_request(op: BatchOperation, retry_failed: bool) -> OperationCreate:
    """The member as a start request; members are retried (per their own policy, else once)
    only if the batch says so."""
    policy = None
    if retry_failed:
        policy = op.retryPolicy.model_dump() if op.retryPolicy else BATCH_RETRY_POLICY
    return OperationCreate.model_validate(
        {
            **op.model_dump(
                mode="json",
                exclude_none=True,
                exclude={"operationKey", "dependencies", "retryPolicy"},
            ),
            **({"retryPolicy": policy} if policy else {}),
        }
    )


def _prepare_members(
    engine: Engine, settings: Settings, scope: Scope, body: BatchCreate, order: list[int]
) -> dict[str, Prepared]:
    """Every member validated and estimated, dependencies first."""
    kinds = {op.operationKey: op.operationType.value for op in body.operations}
    prepared: dict[str, Prepared] = {}
    hints: dict[str, int] = {}
    for i in order:
        op = body.operations[i]
        source = _source_of(i, op, kinds)
        create = _member_request(op, body.failurePolicy.retryFailedOperations)
        hint = hints.get(source or "", 0) or _dataset_events(
            engine, scope, op.parameters.get("datasetId")
        )
        hints[op.operationKey] = hint
        try:
            prepared[op.operationKey] = prepare_operation(
                engine,
                settings,
                scope,
                create,
                status="Pending",
                input_from=source,
                events_hint=hint,
            )
        except Problem as exc:
            for e in exc.errors or []:
                e["field"] = f"operations[{i}].{e['field']}"
            raise
    return prepared


def _answer(
    scope: Scope, batch_id: str, body: BatchCreate, prepared: dict[str, Prepared], now: datetime
) -> dict[str, Any]:
    """The 202 answer: each member with its estimated start and duration."""
    finish = _finish_times(body.operations, prepared, now)
    return {
        "batchId": batch_id,
        "batchName": body.batchName,
        "status": "Initiated",
        "operations": [
            {
                "operationKey": op.operationKey,
                "operationId": prepared[op.operationKey].row["operation_id"],
                "status": "Pending",
                "dependencies": op.dependencies,
                **(
                    {"estimatedStartTime": iso(finish[op.operationKey][0])}
                    if op.dependencies
                    else {}
                ),
                "estimatedDuration": prepared[op.operationKey].response["estimatedDuration"],
            }
            for op in body.operations
        ],
        "totalOperations": len(body.operations),
        "estimatedBatchDuration": duration_range(
            max((end - now).total_seconds() for _, end in finish.values())
        ),
        "estimatedBatchCompletion": iso(max(end for _, end in finish.values())),
        "batchStartTime": iso(now),
        "trackingUrl": f"{base_path(scope)}/async/batch/{batch_id}",
    }


def _record(
    conn: Connection,
    body: BatchCreate,
    batch: dict[str, Any],
    order: list[int],
    prepared: dict[str, Prepared],
) -> None:
    """The batch and all its operations, in the caller's transaction."""
    store.insert_batch(conn, batch)
    for position, i in enumerate(order):
        op = body.operations[i]
        row = dict(prepared[op.operationKey].row)
        row["request"] = {
            **row["request"],
            "batch": {"batchId": batch["batch_id"], "operationKey": op.operationKey},
        }
        store.insert_member_operation(conn, row)
        store.insert_batch_member(
            conn,
            row["operation_id"],
            batch["batch_id"],
            op.operationKey,
            position,
            list(dict.fromkeys(op.dependencies)),
        )


def create_batch(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    body: BatchCreate,
    idempotency_key: str | None,
    parent_flow_run_id: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Record the batch (202). `parent_flow_run_id`: a flow run that follows it already (the
    monthly pipeline), so no Batch parent run is created for it."""
    payload = body.model_dump(mode="json", exclude_none=True)
    digest = request_hash(payload)
    if idempotency_key:
        replay = _idempotent_replay(engine, scope, CREATE_SCOPE, idempotency_key, digest)
        if replay is not None:
            return replay
    order = check_graph(body.operations)
    prepared = _prepare_members(engine, settings, scope, body, order)
    batch_id = f"batch-{uuid.uuid4()}"
    now = utc_now()
    answer = _answer(scope, batch_id, body, prepared, now)
    url = str(answer["trackingUrl"])
    headers = {"Location": url, "Operation-Location": url}
    batch = {
        "batch_id": batch_id,
        "tenant_id": scope.tenant_id,
        "project_id": scope.project_id,
        "batch_name": body.batchName,
        "request": payload,
        "status": "Initiated",
        "created_at": now,
        "cancel_requested": False,
        "flow_run_id": parent_flow_run_id,
    }
    with transaction(engine) as conn:
        check_queue(conn, settings, scope, adding=len(body.operations))  # every member waits
        _record(conn, body, batch, order, prepared)
        if idempotency_key:
            _remember(conn, scope, CREATE_SCOPE, idempotency_key, digest, 202, answer, headers)
    advance(engine, batch_id)  # operations without dependencies are queued at once
    return 202, answer, headers


def _dataset_events(engine: Engine, scope: Scope, dataset_id: Any) -> int:
    if not isinstance(dataset_id, str):
        return 0
    with engine.connect() as conn:
        return store.read_dataset_events(conn, scope.tenant_id, dataset_id)


def _finish_times(
    ops: list[BatchOperation], prepared: dict[str, Prepared], now: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """(estimated start, estimated end) per key: after the latest of its dependencies."""
    times: dict[str, tuple[datetime, datetime]] = {}
    pending = list(ops)
    while pending:
        for op in list(pending):
            if all(d in times for d in op.dependencies):
                start = max((times[d][1] for d in op.dependencies), default=now)
                seconds = float(prepared[op.operationKey].row["estimated_seconds"] or 0.0)
                times[op.operationKey] = (start, start + timedelta(seconds=seconds))
                pending.remove(op)
    return times


def get_batch_or_404(engine: Engine, scope: Scope, batch_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = store.read_batch(conn, scope.tenant_id, scope.project_id, batch_id)
        if row is None:
            raise Problem(404, f"batch {batch_id} not found")
        return batch_view(conn, row, base_path(scope))


def cancel_batch(engine: Engine, scope: Scope, batch_id: str) -> dict[str, Any]:
    """Cancel every unfinished operation: waiting ones at once, running ones at their next
    checkpoint; finished ones keep their results."""
    view = get_batch_or_404(engine, scope, batch_id)
    if view["status"] in BATCH_TERMINAL:
        raise Problem(409, f"batch {batch_id} is already {view['status']}")
    with transaction(engine) as conn:
        store.set_batch_cancel_requested(conn, batch_id)
    advance(engine, batch_id)
    return get_batch_or_404(engine, scope, batch_id)


def take_submissions(engine: Engine, settings: Settings) -> int:
    """Create the batches flows asked for (batch_submissions), as POST /async/batch would.

    Each submission is claimed first (store.claim_open_submissions), so two callers at once
    (two API processes) never both make its batch; and the batch is made with the submission's
    id as its Idempotency-Key, so a caller that stopped between making the batch and recording
    it hands the same batch to the next one."""
    with store.claim_open_submissions(engine) as (rows, claim):
        for row in rows:
            values = _submit(engine, settings, row)
            if claim is not None:
                store.set_submission_outcome(claim, row.submission_id, values)
                continue
            with transaction(engine) as conn:
                store.set_submission_outcome(conn, row.submission_id, values)
    return len(rows)


def _submit(engine: Engine, settings: Settings, row: Any) -> dict[str, Any]:
    """The submission's outcome: its batch's id, or the reason it was refused."""
    principal = Principal(row.tenant_id, row.project_id, "monthly pipeline", "Critical")
    scope = Scope(row.tenant_id, row.project_id, principal)
    key = f"submission:{row.submission_id}"
    try:
        body = BatchCreate.model_validate(row.body)
        _, answer, _ = create_batch(engine, settings, scope, body, key, row.parent_flow_run_id)
    except ValidationError as exc:
        return {"error": {"detail": str(exc)}}
    except Problem as exc:
        return {"error": {"detail": exc.detail, "errors": exc.errors}}
    return {"batch_id": answer["batchId"]}


def list_batches(engine: Engine, scope: Scope, page: int, page_size: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = store.list_batches(
            conn, scope.tenant_id, scope.project_id, (page - 1) * page_size, page_size + 1
        )
        items = [
            {
                "batchId": r["batch_id"],
                "batchName": r["batch_name"],
                "status": r["status"],
                "createdAt": iso(r["created_at"]),
                "batchEndTime": iso(r["ended_at"]),
                "trackingUrl": f"{base_path(scope)}/async/batch/{r['batch_id']}",
            }
            for r in rows[:page_size]
        ]
    return {
        "batches": items,
        "page": page,
        "pageSize": page_size,
        "hasNextPage": len(rows) > page_size,
    }
