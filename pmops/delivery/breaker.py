"""Circuit breakers per receiving endpoint: an endpoint that keeps timing out stops taking slots.

A delivery attempt to a receiver that never answers holds one of the deliverer's slots for the
whole `PMOPS_DELIVERY_TIMEOUT_SECONDS`. After `threshold` timeouts in a row the endpoint's breaker
opens: for `seconds` none of its deliveries is leased (they stay due, no attempt is spent or
counted), then it is half-open: one attempt at a time goes as a probe. A probe that gets any
answer (even an error status) or fails quickly closes the breaker; one that times out opens it
again for twice as long, up to `max_seconds`. Timeouts of attempts that started before the
breaker opened are not counted again while it is open.

State is per deliverer process (each learns on its own) and in memory only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_OPEN_SECONDS = 600.0
MAX_TRACKED = 10_000


@dataclass
class _State:
    timeouts: int = 0  # in a row
    open_until: float = 0.0  # clock time; 0: closed
    backoff: float = 0.0  # the last open period


class Breakers:
    def __init__(
        self,
        threshold: int,
        seconds: float,
        max_seconds: float = MAX_OPEN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.seconds = seconds
        self.max_seconds = max(max_seconds, seconds)
        self.clock = clock
        self._states: dict[str, _State] = {}

    def limits(self) -> dict[str, int]:
        """Attempts in flight each tripped endpoint may have now: 0 while open, 1 (the probe)
        once half-open. Endpoints not listed are not limited by a breaker."""
        now = self.clock()
        return {
            key: 0 if now < s.open_until else 1 for key, s in self._states.items() if s.open_until
        }

    def is_open(self, key: str) -> bool:
        state = self._states.get(key)
        return state is not None and self.clock() < state.open_until

    def record(self, key: str, timed_out: bool) -> bool:
        """Count an attempt's outcome; True when it (re)opened the endpoint's breaker."""
        if self.threshold <= 0:
            return False
        if not timed_out:
            self._states.pop(key, None)
            return False
        now = self.clock()
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= MAX_TRACKED:
                self._forget_closed()
            state = self._states[key] = _State()
        if now < state.open_until:
            return False  # started before the breaker opened: already accounted for
        state.timeouts += 1
        if state.open_until:  # half-open: the probe timed out too
            state.backoff = min(state.backoff * 2, self.max_seconds)
        elif state.timeouts >= self.threshold:
            state.backoff = self.seconds
        else:
            return False
        state.open_until = now + state.backoff
        return True

    def _forget_closed(self) -> None:
        for key in [k for k, s in self._states.items() if not s.open_until]:
            del self._states[key]
