"""Deliveries in the store: made from events, leased by a deliverer, settled after each attempt.

Every step is one short write transaction, so a deliverer killed at any point loses nothing:
- `fan_out` turns new events into one delivery per receiver (matching webhooks, the operation's
  callbacks, its email and Slack notifications) and marks the events done, atomically.
- `lease_due` hands due deliveries to one deliverer (`lease_owner`). A lease is honoured while its
  owner's heartbeat in `deliverers` is fresh; a deliverer that died leaves leases that the next one
  takes over. So a delivery is sent at least once, always with its event's `webhook-id`.
  Several deliverers may lease at once: on PostgreSQL the candidates are locked FOR UPDATE SKIP
  LOCKED (one deliverer skips what another is leasing), and an owner counts as alive by the
  `deliverers` table too, not only by the caller's `live` (read at its last heartbeat).
- `settle` records the attempts: Delivered, a retry time, or the dead letter (Failed), and the
  webhook's statistics; a 410 or too many failures in a row disable the webhook.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine, Row

from pmops.contract.enums import EventType
from pmops.service.events import CALLBACK_FOR, WEBHOOK_DISABLED, emit_project_event, timestamp
from pmops.service.views import TERMINAL
from pmops.settings import Settings
from pmops.store import deliveries as store
from pmops.store import events as event_store
from pmops.store import webhooks as hook_store
from pmops.store.deliveries import NO_SLACK, NO_SMTP, OPEN
from pmops.store.engine import transaction, utc_now
from pmops.store.operations import ROUTING_COLUMNS, SLACK_COLUMNS, read_operations
from pmops.store.projects import ensure_project, project_secrets, read_projects
from pmops.store.webhooks import DEFAULT_WEBHOOK_POLICY, list_active_webhooks, webhook_matches

__all__ = ["DEFAULT_WEBHOOK_POLICY", "NO_SLACK", "NO_SMTP", "OPEN", "ensure_project"]
NOTIFY_EVENTS = (EventType.completed, EventType.failed, EventType.timeout)
NOTIFY_CANCELLED = EventType.cancelled
# a deliverer whose heartbeat is older than this has died: its leases are free
OWNER_STALE_SECONDS = 10.0
# a Retry-After longer than this is taken as this (a day)
MAX_RETRY_AFTER_SECONDS = 86_400.0
KEEP_ATTEMPTS = 50
# a lease also reads the oldest due deliveries of at most this many projects that have none
# among the oldest due overall (the longest waiting first)
MISSING_PROJECTS = 64


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


# -- fan-out ----------------------------------------------------------------------------------
def _delivery(event: Any, now: datetime, **values: Any) -> dict[str, Any]:
    row = {
        "delivery_id": _delivery_id(),
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


def _delivery_id() -> str:
    """dlv- and a random (version 4) UUID, as f"dlv-{uuid.uuid4()}" but without uuid.UUID's
    checks (a fan-out makes one per receiver of each event)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"dlv-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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


def matching_webhooks(conn: Connection, tenant_id: str, project_id: str, op: dict[str, Any]) -> int:
    """Active webhooks of the scope that will hear about an operation like `op`."""
    return hook_store.matching_webhooks(conn, tenant_id, project_id, op, CALLBACK_FOR)


# deliveries made per fan-out transaction, at most (plus one event's worth): the transaction holds
# SQLite's write lock, which flow runs need for their progress writes
FAN_OUT_ROWS = 2000


def fan_out(engine: Engine, settings: Settings, limit: int = 500) -> int:
    """Deliveries for up to `limit` new events; returns how many events were handled."""
    with transaction(engine) as conn:
        new = event_store.take_unfanned_events(conn, limit)
        if not new:
            return 0
        plan = _FanOut(conn, settings, new)
        handled = []
        for event in new:
            if len(plan.rows) >= FAN_OUT_ROWS:
                break
            handled.append(event.event_id)
            plan.add(event)
        store.insert_deliveries(conn, plan.rows)
        store.set_progress_marks(conn, plan.moved)
        event_store.mark_events_fanned_out(conn, handled)
        return len(handled)


class _FanOut:
    """The deliveries of a run of events, with what deciding them needs read up front."""

    def __init__(self, conn: Connection, settings: Settings, new: list[Row[Any]]) -> None:
        self.conn, self.settings, self.now = conn, settings, utc_now()
        scopes = {(e.tenant_id, e.project_id) for e in new}
        self.hooks = list_active_webhooks(conn, scopes)
        op_ids = list({e.operation_id for e in new if e.operation_id})
        self.ops = read_operations(conn, op_ids, ROUTING_COLUMNS)
        self.projects = read_projects(conn, scopes)
        self.marks = store.read_progress_marks(conn, op_ids)
        self.moved: dict[tuple[str, str], float] = {}
        self.rows: list[dict[str, Any]] = []

    def add(self, event: Any) -> None:
        scope = (event.tenant_id, event.project_id)
        project = self.projects.get(scope) or {}
        if event.operation_id is None:
            if event.event_type.startswith("batch."):
                self.rows += _batch_receivers(
                    self.conn, event, self.hooks.get(scope, []), self.settings, self.now
                )
            else:
                self.rows += _owner_notifications(event, project, self.settings, self.now)
            return
        op = self.ops.get(event.operation_id)
        if op is None:
            return
        for hook in self.hooks.get(scope, []):
            if webhook_matches(hook, event.event_type, op) and self._progress_step(hook, event):
                self.rows.append(_to_webhook(event, self.now, hook))
        self.rows += _operation_receivers(event, op, project, self.settings, self.now)

    def _progress_step(self, hook: dict[str, Any], event: Any) -> bool:
        """A progress event goes to a webhook only once the percentage moved by its
        filters.minProgressIncrement since the last one it was sent."""
        if event.event_type != "operation.progress":
            return True
        step = float((hook["filters"] or {}).get("minProgressIncrement") or 0)
        if step <= 0:
            return True  # every progress event goes; no mark to keep
        key = (hook["webhook_id"], event.operation_id)
        last = self.moved.get(key, self.marks.get(key, 0.0))
        if float(event.percentage or 0.0) - last < step:
            return False
        self.moved[key] = float(event.percentage or 0.0)
        return True


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
    request = event_store.read_batch_request_of(conn, event.event_id)
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
        return store.beat_deliverer(conn, owner, now, now - timedelta(seconds=OWNER_STALE_SECONDS))


@dataclass
class Slots:
    """What the deliverer can still start: `free` attempts in all, `room` per endpoint in flight
    (others: `per_endpoint`), `held` per project (tenant_id, project_id) in flight.

    Fair shares: of the `capacity` slots, `reserve` (at most a quarter) are kept for quiet
    tenants, those holding fewer than `reserve_per_tenant()` slots, so a tenant whose first
    deliveries come due while another tenant's attempts hang in every other slot starts at once.
    The rest are shared by the projects with work: each holds at most `share()` of them."""

    free: int
    per_endpoint: int
    room: dict[str, int] = field(default_factory=dict)
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    capacity: int = 0
    reserve: int = 0
    # the projects with due deliveries, read at most so often; None: read in each lease
    projects: DueProjects | None = None

    @property
    def total(self) -> int:
        return self.capacity or self.free

    @property
    def kept(self) -> int:
        return min(self.reserve, self.total // 4)

    def share(self, projects: int) -> int:
        """Slots one of `projects` projects with work may hold: the shared slots split evenly,
        at least 1."""
        return max(1, (self.total - self.kept) // max(1, projects))

    def reserve_per_tenant(self) -> int:
        """A tenant holding fewer than this many slots may be given reserved ones."""
        return max(1, self.kept // 4)


class DueProjects:
    """The projects with due deliveries (tenant_id, project_id), the longest waiting first, read
    again at most every `every` seconds and at least 5 x as long as reading them took (a few
    index seeks per project with open deliveries: store.list_due_projects)."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.wait = every
        self.at = -math.inf
        self.value: list[tuple[str, str]] = []

    def read(self, conn: Connection, now: datetime) -> list[tuple[str, str]]:
        clock = time.monotonic()
        if clock - self.at >= self.wait:
            self.value = store.list_due_projects(conn, now)
            self.at = time.monotonic()
            self.wait = max(self.every, 5 * (self.at - clock))
        return self.value


def lease_due(
    engine: Engine,
    owner: str,
    live: set[str],
    room: dict[str, int],
    default_room: int,
    limit: int,
    slots: Slots | None = None,
) -> list[Due]:
    """Lease up to `limit` due deliveries, at most room[endpoint] (else default_room) per
    endpoint, and, with `slots`, at most each project's share of the slots.

    The candidates: the oldest due (4 x limit) and, when there are more due than those, the
    oldest of each project with due deliveries that has none among them (up to
    MISSING_PROJECTS of them), taken round-robin across projects, so one project's backlog,
    however old, cannot hide another's deliveries.
    Reserved slots go to quiet tenants only (Slots). Endpoints with no room (full, or their
    circuit breaker open) are skipped in the queries themselves."""
    slots = slots or Slots(free=limit, per_endpoint=default_room, room=room)
    now = utc_now()
    full = sorted(key for key, n in slots.room.items() if n <= 0)
    alive = now - timedelta(seconds=OWNER_STALE_SECONDS)
    with transaction(engine) as conn:
        candidates = store.list_due_deliveries(conn, now, live, full, limit * 4, None, alive)
        projects: list[tuple[str, str]] = []
        if len(candidates) >= limit * 4:  # a backlog: other projects' may be behind it
            projects = (slots.projects or DueProjects(0.0)).read(conn, now)
        seen = {(r["tenant_id"], r["project_id"]) for r in candidates}
        missing = [scope for scope in projects if scope not in seen][:MISSING_PROJECTS]
        for scope in missing:
            candidates += store.list_due_deliveries(conn, now, live, full, limit, scope, alive)
        chosen = _within_room(_round_robin(candidates), slots, limit, projects)
        if not chosen:
            return []
        leased = store.lease_deliveries(conn, [r["delivery_id"] for r in chosen], owner)
        rows = [leased[r["delivery_id"]] for r in chosen]
        bodies = event_store.read_event_messages(conn, {r["event_id"] for r in rows})
        hooks = hook_store.read_webhook_signing(
            conn, {r["webhook_id"] for r in rows if r["webhook_id"]}
        )
        # the project's signing secrets, for what has no secret of its own: callbacks, and
        # webhooks registered without one
        signing: dict[tuple[str, str], list[str]] = {}
        for r in rows:
            scope = (r["tenant_id"], r["project_id"])
            if scope in signing or r["kind"] not in ("webhook", "callback"):
                continue
            if r["kind"] == "callback" or not hooks.get(r["webhook_id"] or "", ({}, None))[1]:
                signing[scope] = project_secrets(ensure_project(conn, *scope), now)
        requests = _slack_requests(conn, [r for r in rows if r["kind"] == "slack"])
    due = []
    for r in rows:
        message_id, body = bodies[r.pop("event_id")]
        headers, secret = hooks.get(r["webhook_id"] or "", ({}, None))
        scope = (r["tenant_id"], r["project_id"])
        due.append(
            Due(
                **r,
                message_id=message_id,
                body=body,
                headers=headers,
                secrets=[secret] if secret else signing.get(scope, []),
                slack=requests.get(r["operation_id"] or "", {}),
            )
        )
    return due


def _round_robin(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every project's first due, then every project's second, ...; each round in due order.
    One project (the common case): as they are, already in due order."""
    if len({(r["tenant_id"], r["project_id"]) for r in candidates}) <= 1:
        return candidates
    nth: Counter[tuple[str, str]] = Counter()
    ranked: list[tuple[int, tuple[datetime, int, str], dict[str, Any]]] = []
    for row in sorted(candidates, key=_due_order):
        scope = (row["tenant_id"], row["project_id"])
        ranked.append((nth[scope], _due_order(row), row))
        nth[scope] += 1
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in ranked]


def _due_order(row: dict[str, Any]) -> tuple[datetime, int, str]:
    return (row["next_attempt_at"], row["event_id"], row["delivery_id"])


def _within_room(
    candidates: list[dict[str, Any]],
    slots: Slots,
    limit: int,
    due_projects: list[tuple[str, str]],
) -> list[dict[str, Any]]:
    """The candidates (round-robin across projects already) that fit each endpoint's room and
    each project's share, the first `limit` of them; reserved slots only for quiet tenants."""
    projects = {(r["tenant_id"], r["project_id"]) for r in candidates}
    projects.update(due_projects)
    projects.update(scope for scope, n in slots.held.items() if n > 0)
    share = slots.share(len(projects))
    held: Counter[tuple[str, str]] = Counter(slots.held)
    by_tenant: Counter[str] = Counter()
    for (tenant, _), n in slots.held.items():
        by_tenant[tenant] += n
    in_flight = slots.total - slots.free
    shared = max(0, slots.total - slots.kept - in_flight)  # free slots outside the reserve
    reserved = min(slots.free, slots.kept)
    quiet = slots.reserve_per_tenant()
    taken: Counter[str] = Counter()
    chosen = []
    for row in candidates:
        key = row["endpoint_key"]
        scope = (row["tenant_id"], row["project_id"])
        if taken[key] >= slots.room.get(key, slots.per_endpoint) or held[scope] >= share:
            continue
        if shared > 0:
            shared -= 1
        elif reserved > 0 and by_tenant[scope[0]] < quiet:
            reserved -= 1
        else:
            continue
        taken[key] += 1
        held[scope] += 1
        by_tenant[scope[0]] += 1
        chosen.append(row)
        if len(chosen) >= limit:
            break
    return chosen


def _slack_requests(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The start requests' `notifications.slack` ({channel, mentionUsers}) by operation."""
    op_ids = {r["operation_id"] for r in rows if r["operation_id"]}
    if not op_ids:
        return {}
    found = read_operations(conn, op_ids, SLACK_COLUMNS)
    return {
        op_id: ((row["request"] or {}).get("notifications") or {}).get("slack") or {}
        for op_id, row in found.items()
    }


def release(engine: Engine, owner: str) -> None:
    """A deliverer stopping cleanly hands its unfinished leases back at once."""
    with transaction(engine) as conn:
        store.release_leases(conn, owner)


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
    timed_out: bool = False  # no answer within the attempt's time (the breaker counts these)

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def settle(engine: Engine, settings: Settings, owner: str, outcomes: list[Outcome]) -> None:
    """Record attempts: next attempt, Delivered or dead letter; webhook stats; disabling."""
    if not outcomes:
        return
    outcomes = sorted(outcomes, key=lambda o: o.at)
    updates = [_settled(o) for o in outcomes]
    with transaction(engine) as conn:
        store.settle_deliveries(conn, updates)
        _webhook_stats(conn, settings, [o for o in outcomes if o.due.webhook_id])
        for o in outcomes:
            if o.gone and o.due.kind == "callback":
                store.close_open_deliveries(
                    conn,
                    "Failed",
                    "the receiver answered 410 Gone: no more deliveries to this URL",
                    operation_id=o.due.operation_id,
                    kind="callback",
                    target=o.due.target,
                    release_lease=True,
                )


def _settled(o: Outcome) -> dict[str, Any]:
    """The delivery's row after this attempt (settle_deliveries' parameters); o.due follows."""
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
    return {
        "b_id": due.delivery_id,
        "status": status,
        "attempt_count": number,
        "attempts": due.attempts,
        "next_attempt_at": next_at,
        "last_attempt_at": o.at,
        "last_error": None if o.success else o.error or f"HTTP {o.status_code}",
        "finished_at": None if status == "Retrying" else o.at,
    }


def _webhook_stats(conn: Connection, settings: Settings, outcomes: list[Outcome]) -> None:
    """Each webhook's counters and last delivery, in one statement for the whole batch; the
    webhooks with a failed attempt among them are read after, to see whether to disable them."""
    by_hook: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_hook[o.due.webhook_id or ""].append(o)
    if not by_hook:
        return
    hook_store.add_webhook_stats(
        conn, [_hook_change(webhook_id, found) for webhook_id, found in by_hook.items()]
    )
    failed = [
        webhook_id
        for webhook_id, found in by_hook.items()
        if not found[-1].success or any(o.gone for o in found)
    ]
    # a webhook deleted while its attempt was in flight is not found: nothing to disable
    for hook in hook_store.read_webhooks(conn, failed).values():
        found = by_hook[hook["webhook_id"]]
        reason = _disable_reason(settings, hook, found[-1], any(o.gone for o in found))
        if reason is not None:
            disable_webhook(conn, hook, reason)


def _hook_change(webhook_id: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """add_webhook_stats' row for these attempts of one webhook."""
    reset, consecutive, since = False, 0, None
    for o in outcomes:
        if o.success:
            reset, consecutive, since = True, 0, None
        else:
            consecutive += 1
            since = since or o.at
    answered = [o.response_ms or 0.0 for o in outcomes if o.status_code is not None]
    last = outcomes[-1]
    return {
        "b_id": webhook_id,
        "b_total": len(outcomes),
        "b_ok": sum(1 for o in outcomes if o.success),
        "b_failed": sum(1 for o in outcomes if not o.success),
        "b_ms": sum(answered),
        "b_answered": len(answered),
        "b_last": {
            "deliveryId": last.due.delivery_id,
            "eventType": last.due.event_type,
            "attemptedAt": timestamp(last.at),
            "success": last.success,
            "statusCode": last.status_code,
            "responseTimeMs": None if last.response_ms is None else round(last.response_ms, 1),
            "error": last.error,
        },
        "b_reset": reset,
        "b_consecutive": consecutive,
        "b_since": since,
    }


def _disable_reason(
    settings: Settings, hook: dict[str, Any], last: Outcome, gone: bool
) -> str | None:
    """Why an Active webhook (its row after these attempts were counted) is disabled after
    them, or None."""
    if hook["status"] != "Active":
        return None
    if gone:
        return "the receiver answered 410 Gone"
    consecutive, since = hook["consecutive_failures"], hook["failing_since"]
    if (
        consecutive >= settings.webhook_disable_after_failures
        and since is not None
        and (last.at - since).total_seconds() >= settings.webhook_disable_after_seconds
    ):
        span = (last.at - since).total_seconds()
        return (
            f"{consecutive} delivery attempts in a row failed over {span:.0f} s "
            f"(last: {last.error or last.status_code})"
        )
    return None


def disable_webhook(conn: Connection, hook: dict[str, Any], reason: str) -> None:
    """Disable it, dead-letter what was waiting for it, and tell the project's owners."""
    hook_store.update_webhook(conn, hook["webhook_id"], status="Disabled", disabled_reason=reason)
    store.close_open_deliveries(
        conn,
        "Failed",
        f"the webhook was disabled: {reason}",
        webhook_id=hook["webhook_id"],
        release_lease=True,
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
    store.redeliver_delivery(conn, delivery_id, utc_now())


def purge(engine: Engine, settings: Settings) -> int:
    """Delete events and finished deliveries past the retention; open ones are kept."""
    cutoff = utc_now() - timedelta(days=settings.event_retention_days)
    with transaction(engine) as conn:
        return store.purge_outbox(conn, cutoff, TERMINAL)
