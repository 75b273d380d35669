"""Ask Prefect for scheduled runs only when there may be one (the runner of deployments/serve.py).

Prefect's Runner asks its server for scheduled runs every `query_seconds` (0.2 s here, for a
quick start): five requests a second, each a query over Prefect's flow runs, whether or not
anything was submitted. On an idle service that was 7.5 % of a core in the Prefect server
(bench/notes/load.md), and under a queue of quick analyses about a tenth of the server's CPU.

The pmops store knows the runs that may need a runner: the dispatcher records each run it creates
on its operation (or batch) before the run can start. So at each of Prefect's polls the runner
first reads those run ids from the store (an index-only read) and asks Prefect only when one of
them is new to it, or when `full_every` seconds have passed since it last asked: runs pmops did
not make (a monthly pipeline's schedule, a run started from the Prefect UI) still start within
that. A store that cannot be read means asking Prefect, as before.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
from prefect.runner import Runner

log = logging.getLogger("pmops.runner")
FULL_POLL_SECONDS = 2.0


class RunGate:
    """Whether to ask Prefect now: a run id the store shows that this gate has not seen, or
    `full_every` seconds since the last ask."""

    def __init__(
        self,
        waiting: Callable[[], set[str]],
        full_every: float = FULL_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.waiting, self.full_every, self.clock = waiting, full_every, clock
        self.seen: set[str] = set()
        self.last_ask = -math.inf
        self.asked = self.skipped = 0

    def should_ask(self) -> bool:
        now = self.clock()
        try:
            current = self.waiting()
        except Exception as exc:  # the store is away: Prefect knows what to start
            log.warning("store not readable, asking Prefect: %s", exc)
            current = None
        new = current is None or bool(current - self.seen)
        if current is not None:
            self.seen = current
        if new or now - self.last_ask >= self.full_every:
            self.last_ask = now
            self.asked += 1
            return True
        self.skipped += 1
        return False


class GatedRunner(Runner):
    """Prefect's Runner whose scheduled-run poll goes through a RunGate."""

    def __init__(self, *args: Any, gate: RunGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    async def __aenter__(self) -> GatedRunner:
        await super().__aenter__()
        poller = self._scheduled_run_poller
        ask = poller._get_scheduled_flow_runs
        gate = self.gate

        async def gated() -> list[Any]:
            if await anyio.to_thread.run_sync(gate.should_ask):
                return await ask()
            return []

        poller._get_scheduled_flow_runs = gated  # type: ignore[method-assign]
        return self
