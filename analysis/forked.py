"""One call computed in a forked child process, beside the caller's own work (the second core).

`Forked(fn, *args)` forks at once (POSIX `os.fork`, not `multiprocessing`, so it also works
inside a daemonic process such as a Prefect flow run's); the child runs `fn(*args)`, sends the
return value (or the exception) back pickled through a pipe and exits with `os._exit`, running no
inherited atexit handler, thread or flush. The child inherits the caller's memory copy-on-write:
nothing is serialised on the way in, only the result on the way out.

`result(progress)` waits for it, honouring `progress`'s cancel token while waiting; leaving the
`with` block without having collected the result (an exception, a cancellation) kills the child
(SIGKILL) and reaps it, and the child is also killed by the kernel if the caller's process dies
(PR_SET_PDEATHSIG on Linux), so no child outlives its phase. The child's CPU seconds and the
memory it added (its RSS growth or its private pages, whichever is larger) are charged to the
phase being measured (analysis.measure.add_child_usage).

Where fork is unavailable (or fails), or the process may use one CPU only (its affinity: a flow
run held to cpuUnits 1), the call runs inline in `result()`: same value, no overlap.
The child must not report progress or log through the caller's sinks (they belong to threads
that do not exist in the child): with `progress=True`, `fn` gets a Progress of its own whose
updates travel back through the pipe, and a reader thread here passes them on (`forward`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from analysis.measure import add_child_usage, current_rss
from analysis.progress import OperationCancelled, Progress

T = TypeVar("T")

_HEADER = struct.Struct("<cQ")  # frame: kind, payload length
_PROGRESS, _RESULT = b"p", b"r"
_SMAPS = Path("/proc/self/smaps_rollup")
POLL_SECONDS = 0.2  # how often the wait checks the cancel token


class ChildFailed(RuntimeError):
    """The child died without a result (killed, out of memory) or its exception did not pickle."""


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when the parent dies (Linux); exit if it already has."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _private_bytes() -> int:
    """The memory only this process holds (its private pages, copies of inherited pages it
    wrote included): Private_Clean + Private_Dirty + Swap of /proc/self/smaps_rollup; 0 where
    there is none."""
    try:
        text = _SMAPS.read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty", "Swap"):
            total += int(rest.split()[0]) * 1024
    return total


def _write_frame(fd: int, kind: bytes, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def _child(
    write_fd: int,
    parent: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    with_progress: bool,
) -> None:
    code = 0
    try:
        _die_with_parent(parent)

        def sink(done: int, total: int, activity: str) -> None:
            _write_frame(write_fd, _PROGRESS, pickle.dumps((done, total, activity)))

        try:
            kwargs = {"progress": Progress(sink=sink)} if with_progress else {}
            value = fn(*args, **kwargs)
            payload = pickle.dumps((True, value, _private_bytes()), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            try:
                payload = pickle.dumps((False, exc, _private_bytes()), pickle.HIGHEST_PROTOCOL)
            except Exception:
                text = "".join(traceback.format_exception(exc))
                failed = (False, ChildFailed(text), 0)
                payload = pickle.dumps(failed, pickle.HIGHEST_PROTOCOL)
        _write_frame(write_fd, _RESULT, payload)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


READER_THREAD = "pmops-forked"
_ALLOWED = [False]


def allow_second_core(allowed: bool = True) -> None:
    """Let this process fork children (`pmops analyze` does, at its start). Off by default: a
    fork also copies native thread pools as they are (r4pm's Rust reader, OpenMP in
    scikit-learn): a child that uses one the parent had already started waits for ever. A fresh
    CLI process forks before its own first use of them; a long-lived process (a test worker, an
    API) may not."""
    _ALLOWED[0] = allowed


def second_core() -> bool:
    """Whether a child may compute beside this process. Only when this thread is the process's
    only one (besides other children's pipe readers, which hold no lock): a fork copies every
    lock as it is, and a lock another thread held at that moment (logging, an HTTP client's
    pool, a library's own) stays held in the child forever: it hung in the test suite's
    in-process API and would hang in a Prefect flow run (its API log and event threads). So a
    flow run computes inline; `pmops analyze` uses the second core. Not either when the process
    may run on one CPU only (a flow run held to cpuUnits 1: a child would only share that CPU),
    nor when its address space is capped (memoryGB as RLIMIT_AS: a child would get a cap of its
    own, so the run could take twice its limit)."""
    if not _ALLOWED[0]:
        return False
    me = threading.current_thread()
    if any(t is not me and t.name != READER_THREAD for t in threading.enumerate()):
        return False
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


class Forked(Generic[T]):
    """`with Forked(fn, *args) as child: ...own work...; value = child.result(progress)`.

    With `progress=True`, `fn` is called with a `progress=` keyword: a Progress whose updates
    come back through the pipe and are passed on to the Progress given to `forward()` (from a
    reader thread, while this process does its own work)."""

    def __init__(self, fn: Callable[..., T], *args: Any, progress: bool = False) -> None:
        self._fn, self._args, self._with_progress = fn, args, progress
        self.pid: int | None = None
        self._read: int | None = None
        self._done = False
        self._rss_at_fork = 0
        self._payload: bytes | None = None
        self._ended = threading.Event()
        self._forward: Progress | None = None
        self._reader: threading.Thread | None = None
        if not hasattr(os, "fork") or not second_core():
            return
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        self._rss_at_fork = current_rss()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:  # the child never returns from here
            os.close(read_fd)
            _child(write_fd, parent, fn, args, progress)
        os.close(write_fd)
        self.pid, self._read = pid, read_fd
        self._reader = threading.Thread(target=self._read_frames, name=READER_THREAD, daemon=True)
        self._reader.start()

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forward(self, progress: Progress) -> None:
        """Pass the child's progress updates on to `progress` from now on."""
        self._forward = progress

    def close(self) -> None:
        """Kill and reap the child if its result was not collected; idempotent."""
        if self.pid is not None and not self._done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._reader is not None:
            self._reader.join()  # it ends at the pipe's end: the child exited
            self._reader = None
        if self._read is not None:
            os.close(self._read)
            self._read = None

    def _reap(self, private: int = 0) -> int:
        assert self.pid is not None
        _, status, usage = os.wait4(self.pid, 0)
        self._done = True
        # the child's memory beyond what it shares with this process: its RSS growth over the
        # RSS it inherited, or its private pages at the end (inherited pages it wrote are
        # copies, not RSS growth), whichever is larger
        grown = int(usage.ru_maxrss) * 1024 - self._rss_at_fork  # ru_maxrss: KiB on Linux
        add_child_usage(usage.ru_utime + usage.ru_stime, max(0, grown, private))
        return status

    def _read_exactly(self, n: int) -> bytes | None:
        assert self._read is not None
        chunks, left = [], n
        while left:
            chunk = os.read(self._read, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read_frames(self) -> None:
        """The reader thread: progress frames passed on, the result frame kept."""
        try:
            while True:
                header = self._read_exactly(_HEADER.size)
                if header is None:
                    return
                kind, size = _HEADER.unpack(header)
                payload = self._read_exactly(size)
                if payload is None:
                    return
                if kind == _RESULT:
                    self._payload = payload
                    return
                forward = self._forward
                if forward is not None:
                    done, total, activity = pickle.loads(payload)
                    with contextlib.suppress(OperationCancelled):  # the waiter raises it
                        forward.update(done, total, activity)
        except OSError:
            return
        finally:
            self._ended.set()

    def result(self, progress: Progress | None = None) -> T:
        """The child's return value (its exception re-raised); runs `fn` inline without a child."""
        if self.pid is None:
            if progress is not None:
                progress.checkpoint()
            kwargs: dict[str, Any] = {}
            if self._with_progress:
                kwargs["progress"] = self._forward or Progress()
            return self._fn(*self._args, **kwargs)
        if self._done:
            raise ChildFailed("the result was already collected")
        while not self._ended.wait(POLL_SECONDS):
            if progress is not None:
                progress.checkpoint()
        payload = self._payload
        if payload is None:
            self._close_pipe()
            status = self._reap()
            raise ChildFailed(f"the worker process ended without a result (wait status {status})")
        ok, value, private = pickle.loads(payload)
        self._reap(private)
        self._close_pipe()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
