"""Progress reporting and cooperative cancellation for analysis phases.

Phases call `Progress.update(done, total, activity)` between chunks of work. The update is
forwarded to a sink (the CLI progress bar, or the Prefect flow's reporter) and is also the
cancellation checkpoint: if the token is set, `OperationCancelled` is raised there, so a phase
stops only between chunks and never leaves half-written output behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ProgressSink = Callable[[int, int, str], None]
PART_SCALE = 10_000  # resolution of a phase made of parts (Progress.part)


class OperationCancelled(Exception):
    """Raised at a checkpoint when the operation's cancel token is set."""


class CancelToken:
    """Thread-safe flag that a supervisor sets to ask the running phase to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str | None = None) -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Progress:
    """What a phase holds to report progress and honour cancellation.

    `sink(done, total, activity)` is called at most every `min_interval` seconds unless the
    activity changes or progress moved by at least `min_fraction` of the total; the first and
    last updates always go through.
    """

    sink: ProgressSink | None = None
    token: CancelToken | None = None
    min_interval: float = 0.25
    min_fraction: float = 0.05
    _last_time: float = field(default=0.0, init=False)
    _last_done: int = field(default=-1, init=False)
    _last_activity: str = field(default="", init=False)

    def checkpoint(self) -> None:
        if self.token is not None and self.token.cancelled:
            raise OperationCancelled(self.token.reason or "cancelled")

    def update(self, done: int, total: int, activity: str) -> None:
        self.checkpoint()
        if self.sink is None:
            return
        now = time.monotonic()
        moved = total > 0 and (done - self._last_done) >= self.min_fraction * total
        if (
            self._last_done < 0
            or done >= total
            or activity != self._last_activity
            or moved
            or now - self._last_time >= self.min_interval
        ):
            self._last_time, self._last_done, self._last_activity = now, done, activity
            self.sink(done, total, activity)

    def part(self, start: float, end: float) -> Progress:
        """The Progress of one step that makes up [start, end] (fractions) of this one.

        A phase made of steps with their own units (bytes decompressed, then events parsed;
        anomalies, then predictions) reports through parts, so its progress never restarts.
        """
        parent = self

        def sink(done: int, total: int, activity: str) -> None:
            fraction = min(1.0, done / total) if total > 0 else 0.0
            at = start + (end - start) * fraction
            parent.update(round(at * PART_SCALE), PART_SCALE, activity)

        return Progress(sink=sink, token=self.token, min_interval=0.0, min_fraction=0.0)

    def heartbeat(self, done: int, total: int, activity: str, every: float = 0.5) -> Heartbeat:
        """Context manager that keeps reporting while an opaque library call runs."""
        return Heartbeat(self, done, total, activity, every)


class Heartbeat:
    """Re-sends the last progress every `every` seconds during a call we cannot chunk.

    pm4py's miners are single calls; the heartbeat shows the phase is alive (with elapsed
    seconds in the activity text) but never invents record counts. Cancellation requested
    meanwhile is honoured at the end of the call.
    """

    def __init__(self, progress: Progress, done: int, total: int, activity: str, every: float):
        self._progress, self._done, self._total = progress, done, total
        self._activity, self._every = activity, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(self._every):
            sink = self._progress.sink
            if sink is not None:
                elapsed = time.monotonic() - start
                sink(self._done, self._total, f"{self._activity} ({elapsed:.0f} s)")

    def __enter__(self) -> Heartbeat:
        self._progress.update(self._done, self._total, self._activity)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc[0] is None:
            self._progress.checkpoint()


def null_progress() -> Progress:
    return Progress()
