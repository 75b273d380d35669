"""Server-Sent Events of an operation's status changes, from one shared feed of the outbox.

The API process reads new rows of `events` once per `PMOPS_STREAM_POLL_SECONDS` for all its
streams together (`EventFeed`), and hands each to the streams of that operation, so a thousand
clients watching cost the store what one does. A stream first replays the operation's stored
events after `Last-Event-ID` (the per-operation sequence number), then follows the feed, sends a
comment every `PMOPS_STREAM_KEEPALIVE_SECONDS` to keep proxies from closing it, and ends after
the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine

from pmops.service.errors import Problem
from pmops.service.events import TERMINAL_EVENT
from pmops.service.limits import Limits
from pmops.service.views import TERMINAL as TERMINAL_STATUSES
from pmops.store.events import list_events_after, list_operation_events, newest_event_id

TERMINAL_TYPES = frozenset(TERMINAL_EVENT.values())
# PostgreSQL may commit a lower event_id after a higher one: each poll looks this far back and
# skips what it has already seen
LOOKBACK = 200
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class StreamEvent:
    event_id: int
    operation_id: str
    seq: int
    event_type: str
    body: str

    def sse(self) -> str:
        return f"id: {self.seq}\nevent: {self.event_type}\ndata: {self.body}\n\n"

    @property
    def terminal(self) -> bool:
        return self.event_type in TERMINAL_TYPES


def _read(engine: Engine, after: int, limit: int = 1000) -> list[StreamEvent]:
    with engine.connect() as conn:
        rows = list_events_after(conn, after, limit)
    return [StreamEvent(*row) for row in rows]


def replay(engine: Engine, operation_id: str, after_seq: int) -> list[StreamEvent]:
    """The operation's stored events after sequence number `after_seq`."""
    with engine.connect() as conn:
        rows = list_operation_events(conn, operation_id, after_seq)
    return [StreamEvent(*row) for row in rows]


def _newest(engine: Engine) -> int:
    with engine.connect() as conn:
        return newest_event_id(conn)


class EventFeed:
    def __init__(self, engine: Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self.subscribers: dict[str, set[asyncio.Queue[StreamEvent]]] = {}
        self.polls = 0
        self.delivered = 0
        self._cursor = 0
        self._seen: deque[int] = deque(maxlen=5 * LOOKBACK)
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self.subscribers.values())

    async def start(self) -> None:
        self._cursor = await asyncio.to_thread(_newest, self.engine)
        self._task = asyncio.create_task(self._run(), name="pmops-event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, operation_id: str) -> asyncio.Queue[StreamEvent]:
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.setdefault(operation_id, set()).add(queue)
        return queue

    def unsubscribe(self, operation_id: str, queue: asyncio.Queue[StreamEvent]) -> None:
        queues = self.subscribers.get(operation_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.subscribers[operation_id]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the store restarting: the next poll tries again
                await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        self.polls += 1
        seen = set(self._seen)
        found = await asyncio.to_thread(_read, self.engine, max(0, self._cursor - LOOKBACK))
        for event in found:
            if event.event_id in seen:
                continue
            self._seen.append(event.event_id)
            self._cursor = max(self._cursor, event.event_id)
            for queue in self.subscribers.get(event.operation_id, ()):
                with contextlib.suppress(asyncio.QueueFull):  # a stuck client loses live events
                    queue.put_nowait(event)
                    self.delivered += 1

    def stats(self) -> dict[str, int]:
        return {"streams": self.streams, "polls": self.polls, "eventsSent": self.delivered}


async def stream(
    feed: EventFeed,
    operation_id: str,
    last_seq: int,
    finished: bool,
    keepalive: float,
    disconnected: object,
    on_close: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """The SSE text of one client's stream (subscribed before the replay: nothing falls between).
    `on_close`: called when it ends (the stream's slot given back)."""
    queue = feed.subscribe(operation_id)
    try:
        for event in await asyncio.to_thread(replay, feed.engine, operation_id, last_seq):
            yield event.sse()
            last_seq = event.seq
            if event.terminal:
                return
        if finished:  # terminal, and its terminal event is before Last-Event-ID or purged
            return
        yield "retry: 1000\n\n"  # reconnect after a second, with Last-Event-ID
        beat = time.monotonic()
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                if await disconnected():  # type: ignore[operator]
                    return
                if time.monotonic() - beat >= keepalive:
                    beat = time.monotonic()
                    yield f": keep-alive {json.dumps(time.time())}\n\n"
                continue
            if event.seq <= last_seq:
                continue
            yield event.sse()
            last_seq = event.seq
            if event.terminal:
                return
    finally:
        feed.unsubscribe(operation_id, queue)
        if on_close is not None:
            on_close()


def last_seq(last_event_id: str | None, default: int = 0) -> int:
    """The Last-Event-ID header as a sequence number; a 400 naming it otherwise."""
    try:
        return int(last_event_id) if last_event_id else default
    except ValueError:
        raise Problem(
            400,
            "Last-Event-ID must be the sequence number of an event of this operation",
            errors=[{"field": "Last-Event-ID", "message": "not an integer"}],
        ) from None


def event_response(
    request: Request, row: dict[str, Any], after: int, keepalive: float, token_key: str = ""
) -> StreamingResponse:
    """The text/event-stream answer for an operation already found in the caller's scope; 429
    when the token (`token_key`) holds all its streams (PMOPS_STREAMS_PER_TOKEN, counted in this
    process)."""
    limits: Limits | None = getattr(request.app.state, "limits", None)
    release = limits.hold_stream(token_key) if limits is not None and token_key else None
    body = stream(
        request.app.state.feed,
        row["operation_id"],
        after,
        row["status"] in TERMINAL_STATUSES,
        keepalive,
        request.is_disconnected,
        release,
    )
    if release is not None:  # a stream dropped before its first byte never runs its `finally`
        weakref.finalize(body, release)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
