"""Deliveries in the store: made from events, leased by a deliverer, settled after each attempt.

Every step is one short write transaction, so a deliverer killed at any point loses nothing:
- `fan_out` turns new events into one delivery per receiver (matching webhooks, the operation's
  callbacks, its email and Slack notifications) and marks the events done, atomically.
- `lease_due` hands due deliveries to one deliverer (`lease_owner`). A lease is honoured while its
  owner's heartbeat in `deliverers` is fresh; a deliverer that died leaves leases that the next one
  takes over. So a delivery is sent at least once, always with its event's `webhook-id`.
- `settle` records the attempts: Delivered, a retry time, or the dead letter (Failed), and the
  webhook's statistics; a 410 or too many failures in a row disable the webhook.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from pmops.contract.enums import EventType
from pmops.contract.signing import new_secret
from pmops.service.events import CALLBACK_FOR, WEBHOOK_DISABLED, emit_project_event, timestamp
from pmops.service.views import TERMINAL
from pmops.settings import Settings
from pmops.store.tables import (
    batches,
    deliverers,
    deliveries,
    events,
    operations,
    progress_marks,
    projects,
    transaction,
    utc_now,
    webhooks,
)

DEFAULT_WEBHOOK_POLICY = {
    "maxRetries": 5,
    "retryDelay": 60.0,
    "backoffMultiplier": 2.0,
    "maxDelay": 3600.0,
}
OPEN = ("Pending", "Retrying")
NOTIFY_EVENTS = (EventType.completed, EventType.failed, EventType.timeout)
NOTIFY_CANCELLED = EventType.cancelled
# a deliverer whose heartbeat is older than this has died: its leases are free
OWNER_STALE_SECONDS = 10.0
# a Retry-After longer than this is taken as this (a day)
MAX_RETRY_AFTER_SECONDS = 86_400.0
KEEP_ATTEMPTS = 50
NO_SLACK = (
    "no Slack incoming webhook is configured for this project "
    "(PUT /api/{tenantId}/{projectId}/async/notification-settings)"
)
NO_SMTP = "email is not configured on this server: set PMOPS_SMTP_HOST"


def callback_policy(settings: Settings) -> dict[str, float]:
    return {
        "maxRetries": settings.callback_max_retries,
        "retryDelay": settings.callback_retry_delay,
        "backoffMultiplier": settings.callback_backoff_multiplier,
        "maxDelay": settings.callback_max_delay,
    }


def backoff_seconds(policy: dict[str, Any], retry: int, rng: random.Random | None = None) -> float:
    """Delay before retry number `retry` (0 = the first): retryDelay x backoffMultiplier^retry,
    capped at maxDelay, times a jitter of +-10 % (still capped) so a receiver that comes back
    is not hit by every delayed delivery in the same instant."""
    base = float(policy["retryDelay"]) * float(policy["backoffMultiplier"]) ** retry
    capped = min(base, float(policy.get("maxDelay") or base))
    jitter = (rng or random).uniform(0.9, 1.1)
    return min(capped * jitter, float(policy.get("maxDelay") or capped * jitter))


# -- projects ---------------------------------------------------------------------------------
def ensure_project(conn: Connection, tenant_id: str, project_id: str) -> dict[str, Any]:
    """The project's row, made with a new signing secret the first time it is needed."""
    key = and_(projects.c.tenant_id == tenant_id, projects.c.project_id == project_id)
    row = conn.execute(select(projects).where(key)).mappings().first()
    if row is None:
        now = utc_now()
        conn.execute(
            insert(projects).values(
                tenant_id=tenant_id,
                project_id=project_id,
                signing_secret=new_secret(),
                secret_created_at=now,
                secret_revealed=False,
                owner_emails=[],
                updated_at=now,
            )
        )
        row = conn.execute(select(projects).where(key)).mappings().one()
    return dict(row)


def project_secrets(project: dict[str, Any], now: datetime) -> list[str]:
    """The secrets that sign: the current one, and the previous one during its grace period."""
    valid = [project["signing_secret"]]
    until = project.get("previous_valid_until")
    if project.get("previous_secret") and until is not None and until > now:
        valid.append(project["previous_secret"])
    return valid


# -- fan-out ----------------------------------------------------------------------------------
def _delivery(event: Any, now: datetime, **values: Any) -> dict[str, Any]:
    row = {
        "delivery_id": f"dlv-{uuid.uuid4()}",
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "project_id": event.project_id,
        "operation_id": event.operation_id,
        "event_type": event.event_type,
        "webhook_id": None,
        "callback": None,
        "status": "Pending",
        "attempt_count": 0,
        "retry_base": 0,
        "attempts": [],
        "next_attempt_at": now,
        "last_attempt_at": None,
        "lease_owner": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }
    row.update(values)
    if row["status"] == "Failed":  # known undeliverable: logged, never attempted
        row["next_attempt_at"] = None
        row["finished_at"] = now
    return row


def _to_webhook(event: Any, now: datetime, hook: dict[str, Any]) -> dict[str, Any]:
    return _delivery(
        event,
        now,
        kind="webhook",
        webhook_id=hook["webhook_id"],
        target=hook["url"],
        endpoint_key=hook["webhook_id"],
        policy={**DEFAULT_WEBHOOK_POLICY, **(hook["retry_policy"] or {})},
    )


def _callback(
    event: Any, now: datetime, callback: str, url: str, settings: Settings
) -> dict[str, Any]:
    return _delivery(
        event,
        now,
        kind="callback",
        callback=callback,
        target=url,
        endpoint_key=f"cb:{_origin(url)}"[:200],
        policy=callback_policy(settings),
    )


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _matches(hook: dict[str, Any], event_type: str, op: dict[str, Any]) -> bool:
    if event_type not in hook["events"]:
        return False
    filters = hook["filters"] or {}
    types, priorities = filters.get("operationTypes"), filters.get("priorities")
    if types and op["operation_type"] not in types:
        return False
    return not (priorities and op["priority"] not in priorities)


def matching_webhooks(conn: Connection, tenant_id: str, project_id: str, op: dict[str, Any]) -> int:
    """Active webhooks of the scope that will hear about an operation like `op`."""
    hooks = _active_webhooks(conn, [(tenant_id, project_id)]).get((tenant_id, project_id), [])
    return sum(1 for h in hooks if any(_matches(h, e, op) for e in CALLBACK_FOR))


def _active_webhooks(
    conn: Connection, scopes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for tenant_id, project_id in scopes:
        rows = conn.execute(
            select(webhooks).where(
                webhooks.c.tenant_id == tenant_id,
                webhooks.c.project_id == project_id,
                webhooks.c.status == "Active",
            )
        ).mappings()
        found[(tenant_id, project_id)] = [dict(r) for r in rows]
    return found


# deliveries made per fan-out transaction, at most (plus one event's worth): the transaction holds
# SQLite's write lock, which flow runs need for their progress writes
FAN_OUT_ROWS = 2000


def fan_out(engine: Engine, settings: Settings, limit: int = 500) -> int:
    """Deliveries for up to `limit` new events; returns how many events were handled."""
    with transaction(engine) as conn:
        query = (
            select(
                events.c.event_id,
                events.c.tenant_id,
                events.c.project_id,
                events.c.operation_id,
                events.c.event_type,
                events.c.percentage,
            )
            .where(events.c.fanned_out == False)  # noqa: E712 (matches the partial index)
            .order_by(events.c.event_id)
            .limit(limit)
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        new = conn.execute(query).all()
        if not new:
            return 0
        now = utc_now()
        scopes = {(e.tenant_id, e.project_id) for e in new}
        hooks = _active_webhooks(conn, scopes)
        op_ids = list({e.operation_id for e in new if e.operation_id})
        ops = {
            r["operation_id"]: dict(r)
            for r in conn.execute(
                select(
                    operations.c.operation_id,
                    operations.c.operation_type,
                    operations.c.priority,
                    operations.c.request,
                    operations.c.cancel_request,
                ).where(operations.c.operation_id.in_(op_ids))
            ).mappings()
        }
        project_rows = {
            (r["tenant_id"], r["project_id"]): dict(r)
            for r in conn.execute(
                select(projects).where(
                    tuple_(projects.c.tenant_id, projects.c.project_id).in_(list(scopes))
                )
            ).mappings()
        }
        marks = {
            (r.endpoint_key, r.operation_id): r.percentage
            for r in conn.execute(
                select(progress_marks).where(progress_marks.c.operation_id.in_(op_ids))
            )
        }
        moved: dict[tuple[str, str], float] = {}
        rows: list[dict[str, Any]] = []
        handled = []
        for event in new:
            if len(rows) >= FAN_OUT_ROWS:
                break
            handled.append(event.event_id)
            project = project_rows.get((event.tenant_id, event.project_id)) or {}
            if event.operation_id is None:
                if event.event_type.startswith("batch."):
                    scope_hooks = hooks.get((event.tenant_id, event.project_id), [])
                    rows += _batch_receivers(conn, event, scope_hooks, settings, now)
                else:
                    rows += _owner_notifications(event, project, settings, now)
                continue
            op = ops.get(event.operation_id)
            if op is None:
                continue
            for hook in hooks.get((event.tenant_id, event.project_id), []):
                if not _matches(hook, event.event_type, op):
                    continue
                if event.event_type == "operation.progress":
                    step = float((hook["filters"] or {}).get("minProgressIncrement") or 0)
                    key = (hook["webhook_id"], event.operation_id)
                    last = moved.get(key, marks.get(key, 0.0))
                    if step > 0 and float(event.percentage or 0.0) - last < step:
                        continue
                    moved[key] = float(event.percentage or 0.0)
                rows.append(_to_webhook(event, now, hook))
            rows += _operation_receivers(event, op, project, settings, now)
        if rows:
            conn.execute(insert(deliveries), rows)
        for (endpoint, op_id), pct in moved.items():
            conn.execute(
                delete(progress_marks).where(
                    progress_marks.c.endpoint_key == endpoint,
                    progress_marks.c.operation_id == op_id,
                )
            )
            conn.execute(
                insert(progress_marks).values(
                    endpoint_key=endpoint, operation_id=op_id, percentage=pct
                )
            )
        conn.execute(update(events).where(events.c.event_id.in_(handled)).values(fanned_out=True))
        return len(handled)


def _operation_receivers(
    event: Any, op: dict[str, Any], project: dict[str, Any], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """The start request's callbacks, email and Slack for this event."""
    request = op["request"] or {}
    if event.event_type == NOTIFY_CANCELLED and not (op["cancel_request"] or {}).get(
        "notifyCallbacks", True
    ):
        return []  # the cancel request asked not to tell anyone
    rows = []
    callback = CALLBACK_FOR.get(event.event_type)
    url = (request.get("callbacks") or {}).get(callback) if callback else None
    policy = callback_policy(settings)
    if url:
        rows.append(_callback(event, now, str(callback), url, settings))
    if event.event_type not in (*NOTIFY_EVENTS, NOTIFY_CANCELLED):
        return rows
    notifications = request.get("notifications") or {}
    if notifications.get("email"):
        rows.append(
            _delivery(
                event,
                now,
                kind="email",
                target=",".join(notifications["email"]),
                endpoint_key="smtp",
                policy=policy,
                **({} if settings.smtp_host else {"status": "Failed", "last_error": NO_SMTP}),
            )
        )
    slack = notifications.get("slack")
    if slack:
        hook_url = project.get("slack_webhook_url")
        rows.append(
            _delivery(
                event,
                now,
                kind="slack",
                target=hook_url or "",
                endpoint_key=f"slack:{_origin(hook_url)}"[:200] if hook_url else "slack",
                policy=policy,
                **({} if hook_url else {"status": "Failed", "last_error": NO_SLACK}),
            )
        )
    return rows


BATCH_CALLBACK_FOR = {
    "batch.started": "onBatchStart",
    "batch.operation.completed": "onOperationComplete",
    "batch.completed": "onBatchComplete",
}


def _batch_receivers(
    conn: Connection, event: Any, hooks: list[dict[str, Any]], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """A batch event goes to the webhooks subscribed to it and to the batch's batchCallbacks."""
    rows = [_to_webhook(event, now, hook) for hook in hooks if event.event_type in hook["events"]]
    body = conn.execute(select(events.c.body).where(events.c.event_id == event.event_id)).scalar()
    batch_id = json.loads(body or "{}").get("batchId")
    request = conn.execute(select(batches.c.request).where(batches.c.batch_id == batch_id)).scalar()
    callback = BATCH_CALLBACK_FOR.get(event.event_type)
    url = ((request or {}).get("batchCallbacks") or {}).get(callback) if callback else None
    if url:
        rows.append(_callback(event, now, str(callback), url, settings))
    return rows


def _owner_notifications(
    event: Any, project: dict[str, Any], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """A project event (a webhook disabled) goes to the project's owners by email and Slack."""
    rows = []
    policy = callback_policy(settings)
    owners = project.get("owner_emails") or []
    if owners:
        rows.append(
            _delivery(
                event,
                now,
                kind="email",
                target=",".join(owners),
                endpoint_key="smtp",
                policy=policy,
                **({} if settings.smtp_host else {"status": "Failed", "last_error": NO_SMTP}),
            )
        )
    if project.get("slack_webhook_url"):
        url = project["slack_webhook_url"]
        rows.append(
            _delivery(
                event,
                now,
                kind="slack",
                target=url,
                endpoint_key=f"slack:{_origin(url)}"[:200],
                policy=policy,
            )
        )
    return rows


# -- leases -----------------------------------------------------------------------------------
@dataclass
class Due:
    """A leased delivery with what sending it needs."""

    delivery_id: str
    kind: str
    target: str
    endpoint_key: str
    policy: dict[str, Any]
    attempt_count: int
    retry_base: int
    attempts: list[dict[str, Any]]
    webhook_id: str | None
    tenant_id: str
    project_id: str
    operation_id: str | None
    event_type: str
    message_id: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    slack: dict[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def heartbeat(engine: Engine, owner: str) -> set[str]:
    """Record this deliverer as alive; returns the owners alive now (this one included)."""
    now = utc_now()
    with transaction(engine) as conn:
        done = conn.execute(
            update(deliverers).where(deliverers.c.owner == owner).values(heartbeat_at=now)
        )
        if not done.rowcount:
            conn.execute(insert(deliverers).values(owner=owner, heartbeat_at=now))
        stale = now - timedelta(seconds=OWNER_STALE_SECONDS)
        conn.execute(delete(deliverers).where(deliverers.c.heartbeat_at < stale))
        return {r.owner for r in conn.execute(select(deliverers.c.owner))}


def lease_due(
    engine: Engine,
    owner: str,
    live: set[str],
    room: dict[str, int],
    default_room: int,
    limit: int,
) -> list[Due]:
    """Lease up to `limit` due deliveries, at most room[endpoint] (else default_room) per
    endpoint; endpoints with no room are skipped in the query itself."""
    now = utc_now()
    d = deliveries.c
    full = [key for key, n in room.items() if n <= 0]
    with transaction(engine) as conn:
        query = (
            select(
                d.delivery_id,
                d.kind,
                d.target,
                d.endpoint_key,
                d.policy,
                d.attempt_count,
                d.retry_base,
                d.attempts,
                d.webhook_id,
                d.tenant_id,
                d.project_id,
                d.operation_id,
                d.event_type,
                d.event_id,
            )
            .where(
                d.next_attempt_at <= now,
                d.status.in_(OPEN),
                or_(d.lease_owner.is_(None), d.lease_owner.not_in(list(live))),
            )
            .order_by(d.next_attempt_at)
            .limit(limit * 4)
        )
        if full:
            query = query.where(d.endpoint_key.not_in(full))
        taken: Counter[str] = Counter()
        chosen = []
        for row in conn.execute(query).mappings():
            key = row["endpoint_key"]
            if taken[key] >= room.get(key, default_room):
                continue
            taken[key] += 1
            chosen.append(dict(row))
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        conn.execute(
            update(deliveries)
            .where(d.delivery_id.in_([r["delivery_id"] for r in chosen]))
            .values(lease_owner=owner)
        )
        bodies = {
            r.event_id: (r.message_id, r.body)
            for r in conn.execute(
                select(events.c.event_id, events.c.message_id, events.c.body).where(
                    events.c.event_id.in_({r["event_id"] for r in chosen})
                )
            )
        }
        hook_ids = {r["webhook_id"] for r in chosen if r["webhook_id"]}
        hooks = {
            r["webhook_id"]: dict(r)
            for r in conn.execute(
                select(webhooks.c.webhook_id, webhooks.c.secret, webhooks.c.headers).where(
                    webhooks.c.webhook_id.in_(hook_ids)
                )
            ).mappings()
        }
        signing: dict[tuple[str, str], list[str]] = {}
        for r in chosen:
            scope = (r["tenant_id"], r["project_id"])
            if r["kind"] in ("webhook", "callback") and scope not in signing:
                signing[scope] = project_secrets(ensure_project(conn, *scope), now)
        requests = _slack_requests(conn, [r for r in chosen if r["kind"] == "slack"])
    due = []
    for r in chosen:
        message_id, body = bodies[r.pop("event_id")]
        hook = hooks.get(r["webhook_id"] or "", {})
        scope = (r["tenant_id"], r["project_id"])
        secrets = [hook["secret"]] if hook.get("secret") else signing.get(scope, [])
        due.append(
            Due(
                **r,
                message_id=message_id,
                body=body,
                headers=hook.get("headers") or {},
                secrets=secrets,
                slack=requests.get(r["operation_id"] or "", {}),
            )
        )
    return due


def _slack_requests(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The start requests' `notifications.slack` ({channel, mentionUsers}) by operation."""
    op_ids = {r["operation_id"] for r in rows if r["operation_id"]}
    if not op_ids:
        return {}
    found = conn.execute(
        select(operations.c.operation_id, operations.c.request).where(
            operations.c.operation_id.in_(op_ids)
        )
    )
    return {
        op_id: ((request or {}).get("notifications") or {}).get("slack") or {}
        for op_id, request in found
    }


def release(engine: Engine, owner: str) -> None:
    """A deliverer stopping cleanly hands its unfinished leases back at once."""
    with transaction(engine) as conn:
        conn.execute(
            update(deliveries).where(deliveries.c.lease_owner == owner).values(lease_owner=None)
        )
        conn.execute(delete(deliverers).where(deliverers.c.owner == owner))


# -- outcomes ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    due: Due
    at: datetime
    success: bool
    status_code: int | None = None
    response_ms: float | None = None
    error: str | None = None
    retry_after: float | None = None
    address: str | None = None
    detail: str | None = None  # e.g. the SMTP server's answer

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def settle(engine: Engine, settings: Settings, owner: str, outcomes: list[Outcome]) -> None:
    """Record attempts: next attempt, Delivered or dead letter; webhook stats; disabling."""
    if not outcomes:
        return
    outcomes = sorted(outcomes, key=lambda o: o.at)
    updates = []
    for o in outcomes:
        due = o.due
        number = due.attempt_count + 1
        attempt = {
            "attempt": number,
            "at": timestamp(o.at),
            "success": o.success,
            "statusCode": o.status_code,
            "responseTimeMs": None if o.response_ms is None else round(o.response_ms, 1),
            "error": o.error,
            "address": o.address,
        }
        if o.detail:
            attempt["detail"] = o.detail
        retries_done = number - due.retry_base  # attempts made since the last (re)delivery
        next_at: datetime | None = None
        if o.success:
            status = "Delivered"
        elif o.gone or retries_done > int(due.policy.get("maxRetries", 0)):
            status = "Failed"
        else:
            status = "Retrying"
            wait = backoff_seconds(due.policy, retries_done - 1)
            if o.retry_after is not None:  # the receiver said when: not sooner than that
                wait = max(wait, min(o.retry_after, MAX_RETRY_AFTER_SECONDS))
            next_at = o.at + timedelta(seconds=wait)
            attempt["nextAttemptAt"] = timestamp(next_at)
        due.attempts = [*due.attempts, attempt][-KEEP_ATTEMPTS:]
        due.attempt_count = number
        updates.append(
            {
                "b_id": due.delivery_id,
                "status": status,
                "attempt_count": number,
                "attempts": due.attempts,
                "next_attempt_at": next_at,
                "last_attempt_at": o.at,
                "last_error": None if o.success else o.error or f"HTTP {o.status_code}",
                "finished_at": None if status == "Retrying" else o.at,
            }
        )
    d = deliveries.c
    with transaction(engine) as conn:
        conn.execute(
            update(deliveries)
            .where(d.delivery_id == bindparam("b_id"))
            .values(
                status=bindparam("status"),
                attempt_count=bindparam("attempt_count"),
                attempts=bindparam("attempts"),
                next_attempt_at=bindparam("next_attempt_at"),
                last_attempt_at=bindparam("last_attempt_at"),
                last_error=bindparam("last_error"),
                finished_at=bindparam("finished_at"),
                lease_owner=None,
            ),
            updates,
        )
        _webhook_stats(conn, settings, [o for o in outcomes if o.due.webhook_id])
        for o in outcomes:
            if o.gone and o.due.kind == "callback":
                _close_receiver(
                    conn,
                    and_(
                        d.operation_id == o.due.operation_id,
                        d.kind == "callback",
                        d.target == o.due.target,
                    ),
                    "the receiver answered 410 Gone: no more deliveries to this URL",
                )


def _close_receiver(conn: Connection, which: Any, reason: str) -> None:
    conn.execute(
        update(deliveries)
        .where(which, deliveries.c.status.in_(OPEN))
        .values(
            status="Failed",
            last_error=reason,
            next_attempt_at=None,
            finished_at=utc_now(),
            lease_owner=None,
        )
    )


def _webhook_stats(conn: Connection, settings: Settings, outcomes: list[Outcome]) -> None:
    """Each webhook's counters and last delivery, in one statement for the whole batch."""
    by_hook: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_hook[o.due.webhook_id or ""].append(o)
    if not by_hook:
        return
    rows = conn.execute(select(webhooks).where(webhooks.c.webhook_id.in_(list(by_hook))))
    changes, to_disable = [], []
    for hook in rows.mappings():
        hook_outcomes = by_hook[hook["webhook_id"]]
        consecutive, since = hook["consecutive_failures"], hook["failing_since"]
        gone = False
        for o in hook_outcomes:
            if o.success:
                consecutive, since = 0, None
            else:
                consecutive += 1
                since = since or o.at
                gone = gone or o.gone
        answered = [o.response_ms or 0.0 for o in hook_outcomes if o.status_code is not None]
        last = hook_outcomes[-1]
        changes.append(
            {
                "b_id": hook["webhook_id"],
                "b_total": len(hook_outcomes),
                "b_ok": sum(1 for o in hook_outcomes if o.success),
                "b_failed": sum(1 for o in hook_outcomes if not o.success),
                "b_ms": sum(answered),
                "b_answered": len(answered),
                "b_last": {
                    "deliveryId": last.due.delivery_id,
                    "eventType": last.due.event_type,
                    "attemptedAt": timestamp(last.at),
                    "success": last.success,
                    "statusCode": last.status_code,
                    "responseTimeMs": None
                    if last.response_ms is None
                    else round(last.response_ms, 1),
                    "error": last.error,
                },
                "b_consecutive": consecutive,
                "b_since": since,
            }
        )
        if hook["status"] != "Active":
            continue
        if gone:
            to_disable.append((dict(hook), "the receiver answered 410 Gone"))
        elif (
            consecutive >= settings.webhook_disable_after_failures
            and since is not None
            and (last.at - since).total_seconds() >= settings.webhook_disable_after_seconds
        ):
            span = (last.at - since).total_seconds()
            to_disable.append(
                (
                    dict(hook),
                    f"{consecutive} delivery attempts in a row failed over {span:.0f} s "
                    f"(last: {last.error or last.status_code})",
                )
            )
    if not changes:  # every webhook of the batch was deleted while its attempt was in flight
        # (an empty executemany is an error, and the deliverer died on it again at every restart)
        return
    w = webhooks.c
    conn.execute(
        update(webhooks)
        .where(w.webhook_id == bindparam("b_id"))
        .values(
            total_deliveries=w.total_deliveries + bindparam("b_total"),
            successful_deliveries=w.successful_deliveries + bindparam("b_ok"),
            failed_deliveries=w.failed_deliveries + bindparam("b_failed"),
            response_ms_total=w.response_ms_total + bindparam("b_ms"),
            responses=w.responses + bindparam("b_answered"),
            last_delivery=bindparam("b_last", type_=webhooks.c.last_delivery.type),
            consecutive_failures=bindparam("b_consecutive"),
            failing_since=bindparam("b_since", type_=webhooks.c.failing_since.type),
        ),
        changes,
    )
    for disabled, reason in to_disable:
        disable_webhook(conn, disabled, reason)


def disable_webhook(conn: Connection, hook: dict[str, Any], reason: str) -> None:
    """Disable it, dead-letter what was waiting for it, and tell the project's owners."""
    conn.execute(
        update(webhooks)
        .where(webhooks.c.webhook_id == hook["webhook_id"])
        .values(status="Disabled", disabled_reason=reason)
    )
    _close_receiver(
        conn,
        deliveries.c.webhook_id == hook["webhook_id"],
        f"the webhook was disabled: {reason}",
    )
    emit_project_event(
        conn,
        hook["tenant_id"],
        hook["project_id"],
        WEBHOOK_DISABLED,
        {
            "webhookId": hook["webhook_id"],
            "webhookName": hook["name"],
            "webhookUrl": hook["url"],
            "reason": reason,
        },
    )


def redeliver(conn: Connection, delivery_id: str) -> None:
    """Send a delivery again, with a fresh round of retries (its attempts so far are kept)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.delivery_id == delivery_id)
        .values(
            status="Pending",
            retry_base=deliveries.c.attempt_count,
            next_attempt_at=utc_now(),
            finished_at=None,
            lease_owner=None,
        )
    )


def purge(engine: Engine, settings: Settings) -> int:
    """Delete events and finished deliveries past the retention; open ones are kept."""
    cutoff = utc_now() - timedelta(days=settings.event_retention_days)
    with transaction(engine) as conn:
        old = select(events.c.event_id).where(events.c.created_at < cutoff)
        still_open = select(deliveries.c.event_id).where(deliveries.c.status.in_(OPEN))
        conn.execute(
            delete(deliveries).where(
                deliveries.c.created_at < cutoff, deliveries.c.status.not_in(OPEN)
            )
        )
        gone = conn.execute(
            delete(events).where(events.c.event_id.in_(old), events.c.event_id.not_in(still_open))
        ).rowcount
        terminal = select(operations.c.operation_id).where(operations.c.status.in_(TERMINAL))
        conn.execute(
            delete(progress_marks).where(
                progress_marks.c.operation_id.in_(terminal),
                progress_marks.c.operation_id.not_in(
                    select(func.distinct(events.c.operation_id)).where(
                        events.c.fanned_out == False,  # noqa: E712
                        events.c.operation_id.is_not(None),  # NOT IN a set with NULL: nothing
                    )
                ),
            )
        )
    return int(gone or 0)
