"""Batches: operations that wait for their dependencies, moved on by `advance`.

A batch's operations are ordinary operations that start `Pending`. `advance` (one transaction,
idempotent) does the rest:
- It promotes a Pending operation to `Initiated` once every dependency has completed. An operation
  without its own `datasetId` gets its input there: the enriched dataset of a DataEnrichment
  dependency, for a report the analysis of a ProcessMiningAnalysis dependency, and from a
  dependency of its own type that dependency's input (`taken_input`). From then on
  the API's dispatcher starts it as its own flow run, like any other.
- It cancels dependents of a failed operation ("dependency failed").
- It applies the batch's failurePolicy.
- It announces `batch.started`, `batch.operation.completed` and `batch.completed`.

A member that was retried (automatically, or by hand) counts by its latest attempt. A failure
whose automatic retry is still to come is not final yet.

The batch's parent flow run (flows/run_batch.py) calls `advance` in a loop. The API's dispatcher
calls it too for unfinished batches, so a batch goes on even when its parent run is gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from pmops.service.events import append_event, emit
from pmops.service.views import TERMINAL, iso
from pmops.store import batches as store
from pmops.store.tables import transaction, utc_now

BATCH_TERMINAL = ("Completed", "Failed", "Cancelled")
BROKEN = ("Failed", "Cancelled", "Timeout")

# where an operation without its own datasetId/sourceOperationId takes its input, by its type:
# the dependency types it reads from, in order of preference. A dependency of its own type hands
# on its input: an analysis after an analysis reads the same dataset, a report after a report
# reports on the same analysis (the seed's pipeline: discovery, then performance).
INPUT_FROM: dict[str, tuple[str, ...]] = {
    "ProcessMiningAnalysis": ("DataEnrichment", "ProcessMiningAnalysis"),
    "ReportGeneration": ("ProcessMiningAnalysis", "DataEnrichment", "ReportGeneration"),
    "DataEnrichment": ("DataEnrichment",),
}


def latest_attempt(conn: Connection, operation_id: str) -> str:
    """The newest operation of the retry chain that starts at `operation_id`."""
    while True:
        later = store.read_latest_retry(conn, operation_id)
        if later is None:
            return operation_id
        operation_id = later


class _Members:
    """The batch's members with their latest attempts, as one transaction sees them."""

    def __init__(self, conn: Connection, batch_id: str) -> None:
        self.rows = store.list_batch_members(conn, batch_id)
        self.latest = {
            m["operation_key"]: latest_attempt(conn, m["operation_id"]) for m in self.rows
        }
        ids = list(self.latest.values())
        self.ops = store.read_operations_by_id(conn, ids)
        self.retrying = store.list_scheduled_retries(conn, ids)

    def op(self, key: str) -> dict[str, Any]:
        return self.ops[self.latest[key]]

    def state(self, key: str) -> str:
        """The member's status, `Retrying` while a failed attempt's automatic retry is due."""
        status = str(self.op(key)["status"])
        if status in BROKEN and self.latest[key] in self.retrying:
            return "Retrying"
        return status


def advance(engine: Engine, batch_id: str) -> str:
    """Move the batch on as far as it can go now; returns its status."""
    with transaction(engine) as conn:
        batch = store.lock_batch(conn, batch_id)
        if batch is None:
            return "Cancelled"
        if batch["status"] in BATCH_TERMINAL:
            return str(batch["status"])
        now = utc_now()
        if batch["status"] == "Initiated":
            batch.update(status="Running", started_at=now)
            store.set_batch_status(conn, batch_id, status="Running", started_at=now)
            emit_batch_event(conn, batch, "batch.started")
        members = _Members(conn, batch_id)
        _move_members(conn, batch, members, now)
        _announce(conn, batch, members)
        return _settle(conn, batch, members, now)


def _move_members(
    conn: Connection, batch: dict[str, Any], members: _Members, now: datetime
) -> None:
    """Start the members whose dependencies completed; cancel or stop the rest as the
    failurePolicy (or a cancel of the batch) says."""
    policy = (batch["request"] or {}).get("failurePolicy") or {}
    failed = [
        m["operation_key"]
        for m in members.rows
        if members.state(m["operation_key"]) in ("Failed", "Timeout")
    ]
    stop = bool(failed) and bool(policy.get("stopOnFirstFailure"))
    hold = bool(failed) and not policy.get("continueIndependentOperations", True)
    if batch["cancel_requested"]:
        stop = True
    for member in members.rows:
        op = members.op(member["operation_key"])
        if op["status"] == "Pending":
            deps = list(member["dependencies"])
            broken = [d for d in deps if members.state(d) in BROKEN]
            if broken or stop or hold:
                _cancel(conn, op, _why(broken, stop, hold, batch["cancel_requested"]))
                op["status"] = "Cancelled"
            elif all(members.state(d) == "Completed" for d in deps):
                _promote(conn, op, [members.op(d) for d in deps], now)
                op["status"] = "Initiated"
        elif stop and op["status"] in ("Initiated", "Running"):
            _stop(conn, op, _why([], stop, hold, batch["cancel_requested"]))


def _announce(conn: Connection, batch: dict[str, Any], members: _Members) -> None:
    """`batch.operation.completed` once for each member that has ended."""
    for member in members.rows:
        key = member["operation_key"]
        state = members.state(key)
        if state in TERMINAL and not member["announced"]:
            store.set_member_announced(conn, member["operation_id"])
            op = members.op(key)
            emit_batch_event(
                conn,
                batch,
                "batch.operation.completed",
                operationKey=key,
                operationId=op["operation_id"],
                operationStatus=state,
            )


def _settle(conn: Connection, batch: dict[str, Any], members: _Members, now: datetime) -> str:
    """The batch's end once every member has ended; its status."""
    states = [members.state(m["operation_key"]) for m in members.rows]
    if not all(s in TERMINAL for s in states):
        return str(batch["status"])
    if all(s == "Completed" for s in states):
        final = "Completed"
    elif batch["cancel_requested"] or all(s in ("Completed", "Cancelled") for s in states):
        final = "Cancelled"
    else:
        final = "Failed"
    batch.update(status=final, ended_at=now)
    store.set_batch_status(conn, batch["batch_id"], status=final, ended_at=now)
    emit_batch_event(conn, batch, "batch.completed")
    return final


def _why(broken: list[str], stop: bool, hold: bool, cancelled: bool) -> str:
    if cancelled:
        return "the batch was cancelled"
    if broken:
        return f"dependency failed: {', '.join(broken)}"
    if stop:
        return "the batch stops on its first failure (failurePolicy.stopOnFirstFailure)"
    return (
        "the batch starts nothing more after a failure "
        "(failurePolicy.continueIndependentOperations is false)"
    )


def _cancel(conn: Connection, op: dict[str, Any], reason: str) -> None:
    """A member that never started ends Cancelled, saying why."""
    request = {"reason": reason, "cancelledBy": "batch", "requestedAt": iso(utc_now())}
    if store.cancel_waiting_operation(conn, op["operation_id"], request):
        emit(conn, op["operation_id"], "operation.cancelled")


def _stop(conn: Connection, op: dict[str, Any], reason: str) -> None:
    """Stop a started member: one waiting for its flow run is cancelled outright (the flow's
    claim then refuses it); a running one is asked to stop at its next checkpoint."""
    if op["status"] == "Initiated":
        _cancel(conn, op, reason)
    elif not op["cancel_requested"]:
        request = {"reason": reason, "cancelledBy": "batch", "requestedAt": iso(utc_now())}
        store.request_operation_stop(conn, op["operation_id"], request)


def taken_input(conn: Connection, op: dict[str, Any], deps: list[dict[str, Any]]) -> dict[str, Any]:
    """The input parameters a member without its own takes from its completed dependencies
    (INPUT_FROM): the dataset a DataEnrichment made; for a report, the
    analysis; from a dependency of its own type, that dependency's input. {} if none fits."""
    by_type: dict[str, dict[str, Any]] = {}
    for each in deps:
        by_type.setdefault(str(each["operation_type"]), each)
    for kind in INPUT_FROM.get(str(op["operation_type"]), ("DataEnrichment",)):
        if kind not in by_type:
            continue
        dep = by_type[kind]
        if kind == "DataEnrichment":
            return {"datasetId": store.read_made_dataset(conn, dep["operation_id"])}
        if kind == "ProcessMiningAnalysis" and op["operation_type"] == "ReportGeneration":
            return {"sourceOperationId": dep["operation_id"]}
        # the same type: it hands on what it read
        params = (dep.get("request") or {}).get("parameters") or {}
        if params.get("sourceOperationId"):
            return {"sourceOperationId": params["sourceOperationId"]}
        return {"datasetId": dep.get("dataset_id") or params.get("datasetId")}
    return {}


def _promote(
    conn: Connection, op: dict[str, Any], deps: list[dict[str, Any]], now: datetime
) -> None:
    """Pending -> Initiated, with its input taken from a dependency when it has none."""
    request = dict(op["request"] or {})
    params = dict(request.get("parameters") or {})
    dataset_id = op.get("dataset_id")
    if not params.get("datasetId") and not params.get("sourceOperationId"):
        taken = taken_input(conn, op, deps)
        params.update(taken)
        if "datasetId" in taken:
            dataset_id = taken["datasetId"]
    request["parameters"] = params
    timeout = float(request.get("timeout") or 3600)
    # the timeout counts from when it may start, not from when the batch was sent
    store.promote_operation(
        conn, op["operation_id"], request, dataset_id, now + timedelta(seconds=timeout)
    )


def batch_view(conn: Connection, batch: dict[str, Any], base_path: str) -> dict[str, Any]:
    """What GET /async/batch/{id} answers, and what batch events carry as `data`."""
    members = _Members(conn, batch["batch_id"])
    items = []
    counts: dict[str, int] = {}
    for member in members.rows:
        key = member["operation_key"]
        op = members.op(key)
        state = members.state(key)
        counts[state] = counts.get(state, 0) + 1
        item = {
            "operationKey": key,
            "operationId": op["operation_id"],
            "operationType": op["operation_type"],
            "operationName": op["operation_name"],
            "status": state,
            "dependencies": member["dependencies"],
            "progress": round(float(op.get("percentage") or 0.0)),
            "trackingUrl": f"{base_path}/async/operation/{op['operation_id']}",
        }
        if op["operation_id"] != member["operation_id"]:
            item["originalOperationId"] = member["operation_id"]
        reason = (op.get("cancel_request") or {}).get("reason")
        if state == "Cancelled" and reason:
            item["reason"] = reason
        if op.get("error"):
            item["error"] = op["error"]
        items.append(item)
    request = batch["request"] or {}
    return {
        "batchId": batch["batch_id"],
        "batchName": batch["batch_name"],
        "batchDescription": request.get("batchDescription"),
        "status": batch["status"],
        "operations": items,
        "totalOperations": len(items),
        "operationCounts": counts,
        "failurePolicy": request.get("failurePolicy") or {},
        "createdAt": iso(batch["created_at"]),
        "batchStartTime": iso(batch.get("started_at")),
        "batchEndTime": iso(batch.get("ended_at")),
        "trackingUrl": f"{base_path}/async/batch/{batch['batch_id']}",
        **({"prefect": {"flowRunId": batch["flow_run_id"]}} if batch.get("flow_run_id") else {}),
    }


def emit_batch_event(conn: Connection, batch: dict[str, Any], event_type: str, **extra: Any) -> str:
    base = f"/api/{batch['tenant_id']}/{batch['project_id']}"
    return append_event(
        conn,
        batch["tenant_id"],
        batch["project_id"],
        event_type,
        batch_view(conn, batch, base),
        extra={"batchId": batch["batch_id"], **extra},
    )
