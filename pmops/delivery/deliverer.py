"""The deliverer process (`pmops deliver`; `pmops up` runs one): sends what the outbox holds.

One asyncio loop: fan out new events, lease due deliveries, send each as its own task, settle the
outcomes, in short store transactions made from a worker thread. Attempts run concurrently,
at most `PMOPS_DELIVERY_CONCURRENCY` in all and `PMOPS_DELIVERY_PER_ENDPOINT` per receiving
endpoint, so a slow or dead receiver holds only its own slots: it never delays deliveries to
others, and never the operation (which only wrote an event).

Fairness between tenants: due deliveries are leased round-robin across projects, and a project
holds at most its share of the slots, (concurrency - `PMOPS_DELIVERY_RESERVE`) / projects with
work, so the reserve is free for a project whose first delivery comes due while another floods
the slots (hundreds of webhooks to receivers that never answer). An endpoint whose attempts keep
timing out is put behind a circuit breaker (`pmops.delivery.breaker`): its deliveries wait,
unsent, instead of spending slots.

Webhooks and callbacks are POSTed by `pmops.delivery.httpsend` (connecting only to the address that
`pmops.delivery.netguard` checked), email goes through SMTP in a worker thread, Slack through the
project's
incoming webhook. A stop (SIGTERM) lets attempts in flight finish and hands back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from pmops import logs
from pmops.contract.signing import signature_headers
from pmops.delivery import notify, outbox
from pmops.delivery.breaker import Breakers
from pmops.delivery.httpsend import HttpSender, InvalidHeader, SendError, retry_after_seconds
from pmops.delivery.netguard import (
    BlockedAddress,
    NetGuard,
    ResolveFailed,
    UnsafeUrl,
    parse_networks,
)
from pmops.service.events import WEBHOOK_DISABLED
from pmops.settings import Settings, get_settings
from pmops.store.engine import engine_for, utc_now

log = logging.getLogger("pmops.delivery.deliverer")
HEARTBEAT_SECONDS = 1.0
# how often, at most, the projects with due deliveries are read again under a backlog
PROJECTS_REFRESH_SECONDS = 0.25
PURGE_SECONDS = 3600.0
# after a store error the loop pauses, doubling from MIN up to MAX while errors go on
STORE_PAUSE_MIN = 0.2
STORE_PAUSE_MAX = 5.0
USER_AGENT = "pmops-webhooks/0.1"
# signed bodies kept for the next receivers of the same event (Deliverer._signed), at most
SIGNATURES_KEPT = 4096


class Deliverer:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or engine_for(settings.resolved_database_url)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.guard = NetGuard(parse_networks(settings.webhook_allow_networks))
        self.sender = HttpSender(
            self.guard,
            timeout=settings.delivery_timeout_seconds,
            user_agent=USER_AGENT,
            # many webhooks may share one receiving host: keep a connection per attempt slot
            max_idle_per_origin=settings.delivery_concurrency,
            dns_timeout=settings.delivery_dns_timeout_seconds,
            dns_ttl=settings.delivery_dns_ttl_seconds,
        )
        self.breakers = Breakers(
            settings.delivery_breaker_timeouts, settings.delivery_breaker_seconds
        )
        self.in_flight: Counter[str] = Counter()  # per endpoint
        self.held: Counter[tuple[str, str]] = Counter()  # per project (tenant_id, project_id)
        self.projects = outbox.DueProjects(PROJECTS_REFRESH_SECONDS)
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcomes: list[outbox.Outcome] = []
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.live: set[str] = {self.owner}  # the live deliverers, as of the last heartbeat
        self.last_beat = self.last_purge = -math.inf  # monotonic clock
        # (message_id, timestamp, secrets) -> (body, signature headers): _signed
        self.signatures: dict[tuple[str, int, tuple[str, ...]], tuple[bytes, dict[str, str]]] = {}

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        settings = self.settings
        pause = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    busy = await self._turn(settings)
                except DBAPIError as error:
                    # the store is away or refused a transaction (a deadlock, a restart, a lost
                    # connection): nothing of that transaction was written and outcomes not yet
                    # settled are kept; try again after a pause that grows while this lasts
                    pause = min(STORE_PAUSE_MAX, max(STORE_PAUSE_MIN, pause * 2))
                    log.warning("store error, next try in %.1f s: %s", pause, error)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), pause)
                    continue
                pause = 0.0
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), settings.delivery_poll_seconds)
                self.wake.clear()
        finally:
            await self._drain()

    async def _turn(self, settings: Settings) -> bool:
        """One turn of the loop: heartbeat and purge when due, fan out new events, lease due
        deliveries into free slots, settle finished attempts. Whether there was work."""
        busy = False
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_SECONDS:
            self.live = await asyncio.to_thread(outbox.heartbeat, self.engine, self.owner)
            self.last_beat = now
        if now - self.last_purge >= PURGE_SECONDS:
            await asyncio.to_thread(outbox.purge, self.engine, settings)
            self.last_purge = now
        if await asyncio.to_thread(outbox.fan_out, self.engine, settings):
            busy = True
        free = settings.delivery_concurrency - len(self.tasks)
        if free > 0:
            slots = self._slots(free)
            due = await asyncio.to_thread(
                outbox.lease_due,
                self.engine,
                self.owner,
                self.live,
                slots.room,
                settings.delivery_per_endpoint,
                free,
                slots,
            )
            for item in due:
                self._start(item)
            busy = busy or bool(due)
        if self.outcomes:
            await self._settle()
            busy = True
        return busy

    def _slots(self, free: int) -> outbox.Slots:
        """What may be leased now: per endpoint what its in-flight attempts and its breaker
        leave, per project its share."""
        per_endpoint = self.settings.delivery_per_endpoint
        room = {key: per_endpoint - n for key, n in self.in_flight.items() if n}
        for key, cap in self.breakers.limits().items():
            room[key] = min(room.get(key, per_endpoint), cap - self.in_flight[key])
        return outbox.Slots(
            free=free,
            per_endpoint=per_endpoint,
            room=room,
            held=dict(self.held),
            capacity=self.settings.delivery_concurrency,
            reserve=self.settings.delivery_reserve,
            projects=self.projects,
        )

    async def _drain(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.settings.delivery_timeout_seconds + 1)
        await self._settle()
        await asyncio.to_thread(outbox.release, self.engine, self.owner)
        await self.sender.close()

    async def _settle(self) -> None:
        batch, self.outcomes = self.outcomes, []
        if batch:
            try:
                await asyncio.to_thread(
                    outbox.settle, self.engine, self.settings, self.owner, batch
                )
            except BaseException:
                self.outcomes[:0] = batch  # not written: settled on the next turn
                raise

    def _start(self, due: outbox.Due) -> None:
        self.in_flight[due.endpoint_key] += 1
        self.held[(due.tenant_id, due.project_id)] += 1
        context = logs.context_with(
            tenantId=due.tenant_id,
            projectId=due.project_id,
            operationId=due.operation_id,
            deliveryId=due.delivery_id,
        )
        # the task's lines carry the ids
        task = asyncio.create_task(self._attempt(due), context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _attempt(self, due: outbox.Due) -> None:
        try:
            if due.kind in ("webhook", "callback"):
                outcome = await self._post_signed(due)
            elif due.kind == "slack":
                outcome = await self._post_slack(due)
            else:
                outcome = await self._send_email(due)
        except Exception:  # a bug of ours must still leave an attempt on record
            log.exception("delivery %s failed unexpectedly", due.delivery_id)
            outcome = outbox.Outcome(due, utc_now(), False, error=UNEXPECTED)
        finally:
            self.in_flight[due.endpoint_key] -= 1
            if self.in_flight[due.endpoint_key] <= 0:
                del self.in_flight[due.endpoint_key]
            scope = (due.tenant_id, due.project_id)
            self.held[scope] -= 1
            if self.held[scope] <= 0:
                del self.held[scope]
        if due.kind != "email" and self.breakers.record(due.endpoint_key, outcome.timed_out):
            log.warning(
                "endpoint %s timed out %d times in a row: its deliveries wait (circuit breaker)",
                due.endpoint_key,
                self.settings.delivery_breaker_timeouts,
            )
        if not outcome.success:  # one line per failed attempt; its reason, no traceback
            log.warning(
                "delivery %s (%s, attempt %d) failed: %s",
                due.delivery_id,
                due.kind,
                due.attempt_count + 1,
                outcome.error or f"HTTP {outcome.status_code}",
            )
        self.outcomes.append(outcome)
        self.wake.set()

    async def _post(self, due: outbox.Due, headers: dict[str, str], body: bytes) -> outbox.Outcome:
        started = utc_now()
        try:
            response = await self.sender.post(due.target, headers, body)
        except ResolveFailed as exc:
            return outbox.Outcome(due, started, False, error=exc.message, timed_out=exc.timed_out)
        except (BlockedAddress, UnsafeUrl, InvalidHeader) as exc:
            return outbox.Outcome(due, started, False, error=exc.message)
        except SendError as exc:
            return outbox.Outcome(due, started, False, error=str(exc), timed_out=exc.timed_out)
        ok = 200 <= response.status < 300
        return outbox.Outcome(
            due,
            started,
            ok,
            status_code=response.status,
            response_ms=response.elapsed_ms,
            error=None if ok else _http_error(response.status),
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            address=response.address,
        )

    async def _post_signed(self, due: outbox.Due) -> outbox.Outcome:
        body, signature = self._signed(due, int(time.time()))
        headers = {
            **due.headers,
            "Content-Type": "application/json",
            "X-Pmops-Event": due.event_type,
            "X-Pmops-Delivery": due.delivery_id,
            "X-Pmops-Attempt": str(due.attempt_count + 1),
            **signature,
        }
        return await self._post(due, headers, body)

    def _signed(self, due: outbox.Due, timestamp: int) -> tuple[bytes, dict[str, str]]:
        """The event's body as sent and its signature headers at `timestamp`: the same for every
        receiver of the event signed with the same secrets in the same second (an event's body
        never changes), so made once for them all."""
        key = (due.message_id, timestamp, tuple(due.secrets))
        found = self.signatures.get(key)
        if found is None:
            if len(self.signatures) >= SIGNATURES_KEPT:
                self.signatures.clear()
            body = due.body.encode()
            found = (body, signature_headers(due.message_id, timestamp, body, due.secrets))
            self.signatures[key] = found
        return found

    def _message(self, due: outbox.Due) -> notify.Message:
        event = due.event()
        base = f"{self.settings.resolved_public_url}/api/{due.tenant_id}/{due.project_id}/async"
        if due.event_type == WEBHOOK_DISABLED:
            data = event["data"]
            hook = {k: data.get(k) for k in ("webhookId", "webhookName", "webhookUrl")}
            return notify.webhook_disabled_message(
                hook, data.get("reason", ""), f"{base}/webhooks/{data.get('webhookId')}"
            )
        results = f"{base}/operation/{due.operation_id}/results"
        return notify.operation_message(due.event_type, event.get("data") or {}, results)

    async def _post_slack(self, due: outbox.Due) -> outbox.Outcome:
        payload = notify.slack_payload(
            self._message(due), due.slack.get("channel"), due.slack.get("mentionUsers") or []
        )
        body = json.dumps(payload).encode()
        return await self._post(due, {"Content-Type": "application/json"}, body)

    async def _send_email(self, due: outbox.Due) -> outbox.Outcome:
        started = utc_now()
        clock = time.perf_counter()
        recipients = [a for a in due.target.split(",") if a]
        try:
            answer = await asyncio.to_thread(
                notify.send_email, self.settings, recipients, self._message(due)
            )
        except notify.NotificationError as exc:
            return outbox.Outcome(due, started, False, error=str(exc))
        ms = (time.perf_counter() - clock) * 1000
        return outbox.Outcome(due, started, True, response_ms=ms, detail=answer)


# the attempt's error when a bug of ours stopped it (the log has the traceback)
UNEXPECTED = "internal error of the deliverer (logged)"


def _http_error(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed; only 2xx is success"
    if status == 410:
        return "HTTP 410 Gone: the receiver asked for no more deliveries"
    return f"HTTP {status}"


def serve(settings: Settings | None = None) -> None:
    """Run a deliverer until SIGTERM or SIGINT."""
    settings = settings or get_settings()
    logs.configure(settings.log_format, settings.log_level)

    async def main() -> None:
        deliverer = Deliverer(settings)
        loop = asyncio.get_running_loop()
        # the store calls run in the default executor (DNS lookups have the NetGuard's threads):
        # 6 threads on 2 CPUs would cap the leases and settles
        loop.set_default_executor(ThreadPoolExecutor(64, thread_name_prefix="pmops-deliver"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, deliverer.stop)
        log.info("deliverer %s started", deliverer.owner)
        await deliverer.run()
        log.info("deliverer %s stopped", deliverer.owner)

    try:  # uvloop (installed with uvicorn[standard]) sends ~20 % more per CPU second
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


if __name__ == "__main__":
    serve()
