"""Operation events: written to the outbox (`events`) in the transaction that changes the row.

Whoever changes an operation's status or progress (the flow run, the API's cancel, the
dispatcher's sweep) calls `emit` inside the same transaction, so an event exists exactly when
its change committed: nothing is lost when a process dies, and nothing is announced that did not
happen. `pmops/deliverer.py` turns each event into deliveries.

The body is what receivers get: `{id, type, timestamp, sequence, operationId, data}`; `data` is
the operation's status as GET /async/operation/{id} shows it at that moment, `sequence` numbers
an operation's events from 1 so receivers can order them (deliveries run concurrently).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from pmops.contract import enums as _enums
from pmops.service.bounds import bounded
from pmops.service.lineage import retry_links_of, schedule_automatic
from pmops.service.views import NO_CALLBACKS, iso, status_view
from pmops.settings import Settings, get_settings
from pmops.store.deliveries import count_callback_deliveries
from pmops.store.engine import utc_now
from pmops.store.events import insert_event, last_event_seq
from pmops.store.operations import read_operation_by_id

# the event types are listed once, in pmops/contract/enums.py
OPERATION_EVENTS = _enums.OPERATION_EVENTS
TERMINAL_EVENT = _enums.TERMINAL_EVENTS
# which of a start request's callbacks hears which event
CALLBACK_FOR = {
    "operation.started": "onProgress",
    "operation.progress": "onProgress",
    "operation.phase.completed": "onProgress",
    "operation.completed": "onCompletion",
    "operation.cancelled": "onCompletion",
    "operation.failed": "onError",
    "operation.timeout": "onError",
}
WEBHOOK_DISABLED = _enums.EventType.webhook_disabled


def timestamp(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def callback_stats(conn: Connection, operation_id: str) -> dict[str, Any]:
    """The status's `callbacks` block, counted from the operation's callback deliveries."""
    return callback_stats_of(conn, [operation_id])[operation_id]


def callback_stats_of(conn: Connection, operation_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = count_callback_deliveries(conn, operation_ids)
    stats: dict[str, dict[str, Any]] = {op: dict(NO_CALLBACKS) for op in operation_ids}
    for op, callback, status, n, last in rows:
        block = stats[op]
        block.setdefault("callbacksPending", 0)
        if status == "Delivered":
            block["callbacksSuccessful"] += n
        elif status == "Failed":
            block["callbacksFailed"] += n
        elif status in ("Pending", "Retrying"):
            block["callbacksPending"] += n
        if callback == "onProgress" and status != "Pending" and last is not None:
            block["progressCallbacksSent"] += n
            previous = block["lastProgressCallback"]
            shown = iso(last)
            if previous is None or (shown is not None and shown > previous):
                block["lastProgressCallback"] = shown
    return stats


def emit(
    conn: Connection,
    operation_id: str,
    event_type: str,
    settings: Settings | None = None,
    **extra: Any,
) -> str:
    """Append one event of this operation, as its row now stands; returns the event's id."""
    op = read_operation_by_id(conn, operation_id)
    if op is None:
        raise LookupError(operation_id)
    seq = last_event_seq(conn, operation_id)
    if event_type == "operation.failed":
        # every path to Failed comes here, in the transaction that wrote it
        schedule_automatic(conn, op)
    data = status_view(op, settings or get_settings(), callback_stats(conn, operation_id))
    data.update(retry_links_of(conn, [operation_id])[operation_id])
    if event_type == "operation.cancelled" and op.get("cancel_request"):
        request = op["cancel_request"]
        data["cancellation"] = {
            k: request.get(k) for k in ("reason", "cancelledBy", "requestedAt", "forceTermination")
        }
    data = bounded(data)  # with its links and cancellation, still within the answer's bound
    return append_event(
        conn,
        op["tenant_id"],
        op["project_id"],
        event_type,
        data,
        operation_id=operation_id,
        seq=seq + 1,
        percentage=float(op.get("percentage") or 0.0),
        extra=extra,
    )


def emit_project_event(
    conn: Connection, tenant_id: str, project_id: str, event_type: str, data: dict[str, Any]
) -> str:
    """An event about the project rather than an operation (a webhook was disabled)."""
    return append_event(conn, tenant_id, project_id, event_type, data)


def append_event(
    conn: Connection,
    tenant_id: str,
    project_id: str,
    event_type: str,
    data: dict[str, Any],
    operation_id: str | None = None,
    seq: int | None = None,
    percentage: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    now = utc_now()
    message_id = f"msg_{uuid.uuid4().hex}"
    body: dict[str, Any] = {"id": message_id, "type": event_type, "timestamp": timestamp(now)}
    if operation_id is not None:
        body.update(sequence=seq, operationId=operation_id)
    body.update(extra or {})
    body["data"] = data
    insert_event(
        conn,
        message_id=message_id,
        tenant_id=tenant_id,
        project_id=project_id,
        operation_id=operation_id,
        seq=seq,
        event_type=event_type,
        percentage=percentage,
        body=json.dumps(body, separators=(",", ":")),
        created_at=now,
    )
    return message_id
