"""Automatic retries: a failed operation whose start request has a `retryPolicy` is retried.

The schedule row is written in the transaction that records the failure (from
`pmops.service.events.emit`, which every path to Failed goes through), so a failure is never left
without its retry when a process dies. The API's dispatcher creates the retry when it is due
(api/retries.py): a resume retry, the next in the chain, `retryDelay x backoffMultiplier^n`
seconds after failure n (n from 0), up to `maxRetries` in the chain.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pmops.service.views import iso
from pmops.store.tables import retries, retry_schedule, utc_now


def retries_so_far(conn: Connection, operation_id: str) -> int:
    """How many retries the chain holds up to and including this operation."""
    number = conn.execute(
        select(retries.c.retry_number).where(retries.c.operation_id == operation_id)
    ).scalar()
    return int(number or 0)


def schedule_automatic(conn: Connection, op: dict[str, Any]) -> None:
    policy = (op.get("request") or {}).get("retryPolicy") or {}
    allowed = int(policy.get("maxRetries") or 0)
    done = retries_so_far(conn, op["operation_id"])
    if done >= allowed:
        return
    delay = (
        float(policy.get("retryDelay") or 0) * float(policy.get("backoffMultiplier") or 1) ** done
    )
    exists = conn.execute(
        select(retry_schedule.c.operation_id).where(
            retry_schedule.c.operation_id == op["operation_id"]
        )
    ).first()
    if exists is None:
        conn.execute(
            retry_schedule.insert().values(
                operation_id=op["operation_id"], due_at=utc_now() + timedelta(seconds=delay)
            )
        )


def retry_links_of(conn: Connection, operation_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What a status shows of each operation's chain: the operation it retries (`retryOf`) and
    its own retries (`retries`)."""
    links: dict[str, dict[str, Any]] = {op: {"retries": []} for op in operation_ids}
    later = conn.execute(
        select(retries.c.original_id, retries.c.operation_id)
        .where(retries.c.original_id.in_(operation_ids))
        .order_by(retries.c.created_at)
    )
    for original, retry in later:
        links[original]["retries"].append(retry)
    for own in conn.execute(select(retries).where(retries.c.operation_id.in_(operation_ids))):
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
    return links
