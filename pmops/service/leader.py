"""Which API process runs the dispatcher: one leader per PostgreSQL store, every process on SQLite.

Each API process runs a `Leadership` thread. On PostgreSQL it tries for the leader lock
(pmops.store.locks.LeaderSession) every `retry_seconds` (1 s) until it gets it, then beats on its
session every `retry_seconds` while it leads:
- the leader's process dies: PostgreSQL ends its session and frees the lock; a follower takes it
  at its next try (within ~1-2 s of the session's end; a machine that vanished is noticed by TCP
  keepalives, a frozen process by the idle-session timeout: `dead_seconds`);
- the leader's connection fails (the store restarted): it stops leading at once and tries again;
- the leader is alive but its dispatcher is stuck (no round finished for `stuck_seconds`): it
  gives the lock up, so another process dispatches, and competes again once its rounds go on.
  Should the stuck round still create runs, the dispatch section (pmops.store.locks) keeps the two
  dispatchers from exceeding the worker limit together.

Leadership changes are logged (`pmops.leader`) and readable as `leading` (for /metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from pmops.store.locks import LeaderSession, elects

log = logging.getLogger("pmops.leader")


class Leadership:
    def __init__(
        self,
        engine: Engine,
        healthy: Callable[[], bool] = lambda: True,
        retry_seconds: float = 1.0,
        dead_seconds: int = 8,
    ) -> None:
        self.engine = engine
        self.healthy = healthy
        self.retry_seconds = retry_seconds
        self.elected = elects(engine)
        self.session = LeaderSession(engine, dead_seconds)
        self.changes = 0  # how often this process became leader
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.elected:
            self._leading.set()  # SQLite: one machine, this process dispatches

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def wait_leading(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def start(self) -> None:
        if self.elected:
            self._thread = threading.Thread(target=self._loop, name="pmops-leader", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.elected:
            self._step_down("stopping")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception as exc:  # the store away: not leading, try again
                self._step_down(f"its store connection failed ({type(exc).__name__}: {exc})")
            self._stop.wait(self.retry_seconds)

    def _round(self) -> None:
        if not self.leading:
            if self.healthy() and self.session.try_lead():
                self.changes += 1
                self._leading.set()
                log.warning("this process leads the dispatcher now")
            return
        if not self.healthy():
            self._step_down("its dispatcher made no progress")
            return
        self.session.beat()

    def _step_down(self, why: str) -> None:
        was = self.leading
        self._leading.clear()
        try:
            self.session.close()
        except Exception:
            log.debug("closing the leader session failed", exc_info=True)
        if was:
            log.warning("this process no longer leads the dispatcher: %s", why)


def progress_watch(stuck_seconds: float) -> tuple[Callable[[], None], Callable[[], bool]]:
    """(mark, healthy): `healthy` is False once `mark` was not called for `stuck_seconds`."""
    last = [time.monotonic()]

    def mark() -> None:
        last[0] = time.monotonic()

    def healthy() -> bool:
        return time.monotonic() - last[0] < stuck_seconds

    return mark, healthy
