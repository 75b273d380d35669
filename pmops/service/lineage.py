"""Automatic retries: a failed operation whose start request has a `retryPolicy` is retried.

The schedule row is written in the transaction that records the failure (from
`pmops.service.events.emit`, which every path to Failed goes through), so a failure is never left
without its retry when a process dies. The API's dispatcher creates the retry when it is due
(pmops.service.retries): a resume retry, the next in the lineage, `retryDelay x backoffMultiplier^n`
seconds after failure n (n from 0), up to `maxRetries` in the chain.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Connection

from pmops.service.views import iso
from pmops.settings import Settings
from pmops.store import retries as store
from pmops.store.tables import utc_now


def retries_so_far(conn: Connection, operation_id: str) -> int:
    """How many retries its lineage held when this operation was made (0: the first)."""
    return store.read_retry_number(conn, operation_id)


def schedule_automatic(conn: Connection, op: dict[str, Any]) -> None:
    policy = (op.get("request") or {}).get("retryPolicy") or {}
    allowed = int(policy.get("maxRetries") or 0)
    done = retries_so_far(conn, op["operation_id"])
    if done >= allowed:
        return
    delay = (
        float(policy.get("retryDelay") or 0) * float(policy.get("backoffMultiplier") or 1) ** done
    )
    if not store.has_retry_schedule(conn, op["operation_id"]):
        store.insert_retry_schedule(conn, op["operation_id"], utc_now() + timedelta(seconds=delay))


def retry_links_of(conn: Connection, operation_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What a status shows of each operation's chain: the operation it retries (`retryOf`) and
    its own retries (`retries`)."""
    links: dict[str, dict[str, Any]] = {op: {"retries": []} for op in operation_ids}
    for original, retry in store.list_retry_pairs(conn, operation_ids):
        links[original]["retries"].append(retry)
    own_rows = store.list_retry_rows(conn, operation_ids)
    allocations = (
        store.list_resource_allocations(conn, [r.operation_id for r in own_rows])
        if own_rows
        else {}
    )
    for own in own_rows:
        links[own.operation_id]["retryOf"] = {
            "originalOperationId": own.original_id,
            "lineage": own.lineage,
            "retryNumber": own.retry_number,
            "retryMode": own.retry_mode,
            "preservedPhases": own.preserved_phases,
            "reason": own.reason,
            "automatic": own.automatic,
            "retriedAt": iso(own.created_at),
        }
        if own.operation_id in allocations:  # updatedParameters.resourceAllocation
            links[own.operation_id]["retryOf"]["resourceAllocation"] = allocations[own.operation_id]
    return links


def integral(value: float) -> float | int:
    """6.0 -> 6: integral amounts stay integers in answers."""
    return int(value) if float(value).is_integer() else value


def allocated_settings(settings: Settings, request: dict[str, Any]) -> Settings:
    """The settings with the operation's own `resourceAllocation` (a retry's) for the resources
    it is allowed: what its resourcesAllocated, resourcesReleased and costs show."""
    allocation = request.get("resourceAllocation") or {}
    update = {
        name: integral(allocation[key])
        for key, name in (("cpuUnits", "cpu_units"), ("memoryGB", "memory_gb"))
        if allocation.get(key) is not None
    }
    return settings.model_copy(update=update) if update else settings
