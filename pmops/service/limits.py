"""Limits one tenant meets so that it cannot hurt another (docs/limits.md): the priority a token
may ask for, requests per token per second, failed authentications per client address, queued
operations per project, webhooks per project, event streams per token.

Each refusal is a `Problem` naming the field or limit at fault (429 with Retry-After, or 403).
The counters of requests, failed authentications and streams live in the API process's memory:
each API process counts for itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from pmops.contract.requests import PRIORITY_RANK
from pmops.service.errors import Problem
from pmops.service.scope import Scope
from pmops.settings import Settings
from pmops.store import operations as op_store
from pmops.store import webhooks as hook_store
from pmops.store.engine import utc_now


def check_priority(scope: Scope, priority: str, field: str = "priority") -> None:
    """403 naming `field` when `priority` is above what the token may ask for."""
    allowed = scope.principal.max_priority
    if PRIORITY_RANK[priority] > PRIORITY_RANK.get(allowed, PRIORITY_RANK["High"]):
        raise Problem(
            403,
            f"{field} {priority} is above this token's max priority {allowed}: the operator "
            "grants more with `pmops tokens create --max-priority`",
            errors=[{"field": field, "message": f"at most {allowed} for this token"}],
        )


def check_queue(conn: Connection, settings: Settings, scope: Scope, adding: int = 1) -> None:
    """429 naming `operations` when `adding` more would pass the project's queued operations
    (PMOPS_QUEUED_OPERATIONS_PER_PROJECT). Call it in the transaction that inserts them."""
    limit = settings.queued_operations_per_project
    queued = op_store.count_queued_operations(conn, scope.tenant_id, scope.project_id)
    if queued + adding <= limit:
        return
    problem = too_many(
        f"this project has {queued} operations waiting to run, at most {limit} may wait: "
        "start more once some have started",
        "operations",
        "PMOPS_QUEUED_OPERATIONS_PER_PROJECT",
        _next_slot_seconds(conn, settings),
    )
    problem.extensions.update(queuedOperations=queued, maxQueuedOperations=limit)
    raise problem


def check_webhooks(conn: Connection, settings: Settings, scope: Scope) -> None:
    """422 naming `webhooks` when the project has as many webhooks as it may
    (PMOPS_WEBHOOKS_PER_PROJECT): waiting does not help, deleting one does. Call it in the
    transaction that registers one more."""
    limit = settings.webhooks_per_project
    registered = hook_store.count_webhooks(conn, scope.tenant_id, scope.project_id)
    if registered < limit:
        return
    raise Problem(
        422,
        f"this project has {registered} webhooks, at most {limit} may be registered: delete one "
        "first (DELETE .../async/webhooks/{webhookId})",
        errors=[{"field": "webhooks", "message": "limited by PMOPS_WEBHOOKS_PER_PROJECT"}],
        extensions={
            "limit": "PMOPS_WEBHOOKS_PER_PROJECT",
            "registeredWebhooks": registered,
            "maxWebhooks": limit,
        },
    )


def _next_slot_seconds(conn: Connection, settings: Settings) -> float:
    """When a worker slot should free (by the running operations' estimates): 1 s when one is
    free now, at most 5 minutes."""
    busy = op_store.list_busy_operations(conn)
    if len(busy) < settings.worker_limit:
        return 1.0
    now = utc_now()
    left = [
        float(est or 0.0) - ((now - started).total_seconds() if started else 0.0)
        for est, started in busy
    ]
    return min(300.0, max(1.0, min(left)))


# -- counters in the API process's memory ----------------------------------------------------
Clock = Callable[[], float]
MAX_KEYS = 100_000  # tokens or addresses remembered at once; idle ones are forgotten first
STREAM_RETRY_SECONDS = 5.0  # a slot frees when one of the token's streams closes: a guess
UPLOAD_RETRY_SECONDS = 2.0  # a slot frees when one of the project's uploads has been read


def too_many(detail: str, field: str, limit: str, wait: float) -> Problem:
    """429 naming the field at fault and the setting that limits it, with Retry-After in whole
    seconds (rounded up, at least 1)."""
    seconds = max(1, math.ceil(wait))
    return Problem(
        429,
        detail,
        errors=[{"field": field, "message": f"limited by {limit}"}],
        headers={"Retry-After": str(seconds)},
        extensions={"limit": limit, "retryAfterSeconds": seconds},
    )


class TokenBuckets:
    """A token bucket per key: `rate` requests a second, `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go (and it is counted), else the seconds until it may."""
        with self._lock:
            now = self.clock()
            left, at = self._buckets.get(key, (float(self.burst), now))
            left = min(float(self.burst), left + (now - at) * self.rate)
            if left >= 1.0 - 1e-9:  # clocks' float sums: 0.999999... is a whole request
                self._buckets[key] = (left - 1.0, now)
                if len(self._buckets) > MAX_KEYS:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (left, now)
            return (1.0 - left) / self.rate

    def _forget_full(self, now: float) -> None:
        """Buckets that have filled up again are as good as new ones: forget them."""
        full = [
            k
            for k, (left, at) in self._buckets.items()
            if left + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > MAX_KEYS:  # all busy: forget the oldest
            del self._buckets[next(iter(self._buckets))]


class FailureWindows:
    """Failures per key within a sliding window: after `limit` of them within `window` seconds
    the key is refused until the oldest of them has left the window."""

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: str) -> float:
        """0 when the key may try, else the seconds until it may."""
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return 0.0
            now = self.clock()
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
                return 0.0
            return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def failed(self, key: str) -> None:
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                if len(self._failures) >= MAX_KEYS:
                    self._forget_old()
                times = self._failures[key] = deque(maxlen=self.limit)
            times.append(self.clock())

    def _forget_old(self) -> None:
        cutoff = self.clock() - self.window
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= cutoff]:
            del self._failures[key]
        while len(self._failures) >= MAX_KEYS:
            del self._failures[next(iter(self._failures))]


class Slots:
    """At most `limit` things held at once per key (event streams per token)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> bool:
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self.limit:
                return False
            self._held[key] = held + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            held = self._held.get(key, 0) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)

    def hold(self, key: str) -> Callable[[], None] | None:
        """A slot for `key` and the function that gives it back (once, however often it is
        called), or None when all of the key's slots are held."""
        if not self.acquire(key):
            return None
        given_back = threading.Event()

        def release() -> None:
            if not given_back.is_set():
                given_back.set()
                self.release(key)

        return release

    def held(self, key: str) -> int:
        with self._lock:
            return self._held.get(key, 0)


@dataclass
class Limits:
    """The API process's counters, made from the settings at start-up."""

    requests: TokenBuckets
    auth_failures: FailureWindows
    streams: Slots
    uploads: Slots

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> Limits:
        return cls(
            TokenBuckets(settings.token_requests_per_second, settings.token_request_burst, clock),
            FailureWindows(
                settings.auth_failures_per_address, settings.auth_failure_window_seconds, clock
            ),
            Slots(settings.streams_per_token),
            Slots(settings.uploads_per_project),
        )

    def check_address(self, address: str) -> None:
        """429 while this client address has failed to authenticate too often."""
        wait = self.auth_failures.blocked(address)
        if wait > 0:
            raise too_many(
                "too many failed authentications from this address: try again later",
                "Authorization",
                "PMOPS_AUTH_FAILURES_PER_ADDRESS",
                wait,
            )

    def check_request(self, token_key: str) -> None:
        """429 when this token has used up its requests (its bucket is empty)."""
        wait = self.requests.take(token_key)
        if wait > 0:
            raise too_many(
                "too many requests with this token: slow down",
                "Authorization",
                "PMOPS_TOKEN_REQUESTS_PER_SECOND",
                wait,
            )

    def hold_stream(self, token_key: str) -> Callable[[], None]:
        """One of the token's event-stream slots and its release; 429 when all are held."""
        release = self.streams.hold(token_key)
        if release is None:
            raise too_many(
                f"this token has {self.streams.limit} event streams open, the most it may: close "
                "one first",
                "Authorization",
                "PMOPS_STREAMS_PER_TOKEN",
                STREAM_RETRY_SECONDS,
            )
        return release


def hold_upload(limits: Limits | None, project_key: str) -> Callable[[], None]:
    """One of the project's upload-reading slots and its release (a no-op without limits); 429
    naming `file` when the project has `uploads_per_project` uploads being read."""
    if limits is None:
        return lambda: None
    release = limits.uploads.hold(project_key)
    if release is None:
        raise too_many(
            f"this project has {limits.uploads.limit} uploads being read, the most it may at "
            "once: send the next when one is done",
            "file",
            "PMOPS_UPLOADS_PER_PROJECT",
            UPLOAD_RETRY_SECONDS,
        )
    return release
