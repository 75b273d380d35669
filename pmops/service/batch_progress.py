"""Batches: operations that wait for their dependencies, moved on by `advance`.

A batch's operations are ordinary operations that start `Pending`. `advance` (one transaction,
idempotent) does the rest:
- It promotes a Pending operation to `Initiated` once every dependency has completed. An operation
  without its own `datasetId` gets its input there: the enriched dataset of a DataEnrichment
  dependency, or for a report, the analysis of a ProcessMiningAnalysis dependency. From then on
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

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from pmops.service.events import append_event, emit
from pmops.service.views import TERMINAL, iso
from pmops.store.tables import (
    batch_members,
    batches,
    datasets,
    operations,
    retries,
    retry_schedule,
    transaction,
    utc_now,
)

BATCH_TERMINAL = ("Completed", "Failed", "Cancelled")
BROKEN = ("Failed", "Cancelled", "Timeout")


def latest_attempt(conn: Connection, operation_id: str) -> str:
    """The newest operation of the retry chain that starts at `operation_id`."""
    while True:
        later = conn.execute(
            select(retries.c.operation_id)
            .where(retries.c.original_id == operation_id)
            .order_by(retries.c.created_at.desc())
            .limit(1)
        ).scalar()
        if later is None:
            return operation_id
        operation_id = later


class _Members:
    """The batch's members with their latest attempts, as one transaction sees them."""

    def __init__(self, conn: Connection, batch_id: str) -> None:
        self.rows = [
            dict(m)
            for m in conn.execute(
                select(batch_members)
                .where(batch_members.c.batch_id == batch_id)
                .order_by(batch_members.c.position)
            ).mappings()
        ]
        self.latest = {
            m["operation_key"]: latest_attempt(conn, m["operation_id"]) for m in self.rows
        }
        ids = list(self.latest.values())
        self.ops = {
            r["operation_id"]: dict(r)
            for r in conn.execute(select(operations).where(operations.c.operation_id.in_(ids)))
            .mappings()
            .all()
        }
        self.retrying = set(
            conn.execute(
                select(retry_schedule.c.operation_id).where(retry_schedule.c.operation_id.in_(ids))
            ).scalars()
        )

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
        found = (
            conn.execute(select(batches).where(batches.c.batch_id == batch_id).with_for_update())
            .mappings()
            .first()
        )
        if found is None:
            return "Cancelled"
        batch = dict(found)
        if batch["status"] in BATCH_TERMINAL:
            return str(batch["status"])
        now = utc_now()
        if batch["status"] == "Initiated":
            batch.update(status="Running", started_at=now)
            conn.execute(
                update(batches)
                .where(batches.c.batch_id == batch_id)
                .values(status="Running", started_at=now)
            )
            emit_batch_event(conn, batch, "batch.started")
        members = _Members(conn, batch_id)
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
            key = member["operation_key"]
            op = members.op(key)
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
        for member in members.rows:
            key = member["operation_key"]
            state = members.state(key)
            if state in TERMINAL and not member["announced"]:
                conn.execute(
                    update(batch_members)
                    .where(batch_members.c.operation_id == member["operation_id"])
                    .values(announced=True)
                )
                op = members.op(key)
                emit_batch_event(
                    conn,
                    batch,
                    "batch.operation.completed",
                    operationKey=key,
                    operationId=op["operation_id"],
                    operationStatus=state,
                )
        states = [members.state(m["operation_key"]) for m in members.rows]
        if all(s in TERMINAL for s in states):
            if all(s == "Completed" for s in states):
                final = "Completed"
            elif batch["cancel_requested"] or all(s in ("Completed", "Cancelled") for s in states):
                final = "Cancelled"
            else:
                final = "Failed"
            batch.update(status=final, ended_at=now)
            conn.execute(
                update(batches)
                .where(batches.c.batch_id == batch_id)
                .values(status=final, ended_at=now)
            )
            emit_batch_event(conn, batch, "batch.completed")
            return final
        return str(batch["status"])


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
    done = conn.execute(
        update(operations)
        .where(
            operations.c.operation_id == op["operation_id"],
            operations.c.status.in_(("Pending", "Initiated")),
        )
        .values(
            status="Cancelled",
            ended_at=utc_now(),
            cancel_requested=True,
            cancel_request=request,
        )
    )
    if done.rowcount:
        emit(conn, op["operation_id"], "operation.cancelled")


def _stop(conn: Connection, op: dict[str, Any], reason: str) -> None:
    """Stop a started member: one waiting for its flow run is cancelled outright (the flow's
    claim then refuses it); a running one is asked to stop at its next checkpoint."""
    if op["status"] == "Initiated":
        _cancel(conn, op, reason)
    elif not op["cancel_requested"]:
        request = {"reason": reason, "cancelledBy": "batch", "requestedAt": iso(utc_now())}
        conn.execute(
            update(operations)
            .where(operations.c.operation_id == op["operation_id"])
            .values(cancel_requested=True, cancel_request=request)
        )


def _promote(
    conn: Connection, op: dict[str, Any], deps: list[dict[str, Any]], now: datetime
) -> None:
    """Pending -> Initiated, with its input taken from a dependency when it has none."""
    request = dict(op["request"] or {})
    params = dict(request.get("parameters") or {})
    dataset_id = op.get("dataset_id")
    if not params.get("datasetId") and not params.get("sourceOperationId"):
        analysis = next((d for d in deps if d["operation_type"] == "ProcessMiningAnalysis"), None)
        enriched = [d for d in deps if d["operation_type"] == "DataEnrichment"]
        if op["operation_type"] == "ReportGeneration" and analysis is not None:
            params["sourceOperationId"] = analysis["operation_id"]
        elif enriched:
            dataset_id = conn.execute(
                select(datasets.c.dataset_id)
                .where(datasets.c.source_operation_id == enriched[0]["operation_id"])
                .order_by(datasets.c.created_at.desc())
                .limit(1)
            ).scalar()
            params["datasetId"] = dataset_id
    request["parameters"] = params
    timeout = float(request.get("timeout") or 3600)
    conn.execute(
        update(operations)
        .where(operations.c.operation_id == op["operation_id"], operations.c.status == "Pending")
        .values(
            status="Initiated",
            request=request,
            dataset_id=dataset_id,
            # the timeout counts from when it may start, not from when the batch was sent
            timeout_at=now + timedelta(seconds=timeout),
        )
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
