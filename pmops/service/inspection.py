"""Reading an uploaded event log (cases, events, activities, time range) outside the API process.

An upload is parsed in full to check it and summarise it: pandas and pm4py's readers take
seconds of CPU and hundreds of MB for a large log (bpic2012: 1.5 s, RSS 140 -> 520 MB, never given
back to the system). Done in the API process, that memory stayed for good and the parse held
the interpreter, slowing every other tenant's requests. Here each file is read in a worker
process forked from a server that has the readers imported already (multiprocessing's
forkserver with `analysis.eventlog` preloaded: a fork costs milliseconds) and that ends after one
file, so its memory goes back to the system at once. At most `workers` files are read at a time
in all; what a worker raises (an EventLogError naming the field) comes back as it was raised.
A worker that dies (killed, out of memory) is an EventLogError naming `file`, never a 500.

The workers end with the process that started them. A killed API (SIGKILL: no shutdown runs)
otherwise left its fork server and idle workers behind for good: each worker holds both ends of
its task queue's pipe, so it never reads an end of file there, and the fork server stays while a
worker holds its "alive" pipe. Each worker watches its parent's sentinel instead.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from analysis.errors import EventLogError
from analysis.eventlog import ColumnMapping
from pmops.service.registration import inspect_here

PRELOAD = ["analysis.eventlog"]


def _inspect(path: str, mapping: ColumnMapping | None) -> dict[str, Any]:
    return inspect_here(Path(path), mapping)  # in the worker: the same reading as in process


def _end_with_parent() -> None:
    """A worker's initializer: a thread that ends the worker once the process that started
    it is gone (its sentinel, a pipe the parent holds, reads end of file)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="pmops-parent-watch", daemon=True).start()


class Inspector:
    """`inspect(path, mapping)` in a worker process; `close()` at shutdown."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=ctx,
                    max_tasks_per_child=1,
                    initializer=_end_with_parent,
                )
            return self._pool

    def inspect(self, path: Path, mapping: ColumnMapping | None) -> dict[str, Any]:
        pool = self._executor()
        try:
            return pool.submit(_inspect, str(path), mapping).result()
        except BrokenProcessPool:
            with self._lock:  # the next upload gets a new pool
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise EventLogError(
                "the file could not be read: the process reading it ended (out of memory?)",
                field="file",
            ) from None

    def warm(self) -> None:
        """Start the fork server (and its imports) now rather than at the first upload."""
        self._executor().submit(int, 0).result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
