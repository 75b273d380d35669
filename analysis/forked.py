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

Where fork is unavailable (or fails), the call runs inline in `result()`: same value, no overlap.
The child must not report progress or log through the caller's sinks (they belong to threads
that do not exist in the child): `fn` gets no Progress.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from analysis.measure import add_child_usage, current_rss
from analysis.progress import Progress

T = TypeVar("T")

_HEADER = struct.Struct("<Q")
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


def _child(write_fd: int, parent: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    code = 0
    try:
        _die_with_parent(parent)
        try:
            value = fn(*args)
            payload = pickle.dumps((True, value, _private_bytes()), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            try:
                payload = pickle.dumps((False, exc, _private_bytes()), pickle.HIGHEST_PROTOCOL)
            except Exception:
                text = "".join(traceback.format_exception(exc))
                failed = (False, ChildFailed(text), 0)
                payload = pickle.dumps(failed, pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as out:
            out.write(_HEADER.pack(len(payload)))
            out.write(payload)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class Forked(Generic[T]):
    """`with Forked(fn, *args) as child: ...own work...; value = child.result(progress)`."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._fn, self._args = fn, args
        self.pid: int | None = None
        self._read: int | None = None
        self._done = False
        self._rss_at_fork = 0
        if not hasattr(os, "fork"):
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
            _child(write_fd, parent, fn, args)
        os.close(write_fd)
        self.pid, self._read = pid, read_fd

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill and reap the child if its result was not collected; idempotent."""
        if self.pid is not None and not self._done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()
        self._close_pipe()

    def _close_pipe(self) -> None:
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

    def _read_all(self, progress: Progress | None) -> bytes:
        assert self._read is not None
        chunks: list[bytes] = []
        while True:
            if progress is not None:
                progress.checkpoint()
            ready, _, _ = select.select([self._read], [], [], POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def result(self, progress: Progress | None = None) -> T:
        """The child's return value (its exception re-raised); runs `fn` inline without a child."""
        if self.pid is None:
            if progress is not None:
                progress.checkpoint()
            return self._fn(*self._args)
        if self._done:
            raise ChildFailed("the result was already collected")
        data = self._read_all(progress)
        self._close_pipe()
        if len(data) < _HEADER.size or len(data) != _HEADER.size + _HEADER.unpack_from(data)[0]:
            status = self._reap()
            raise ChildFailed(f"the worker process ended without a result (wait status {status})")
        ok, value, private = pickle.loads(data[_HEADER.size :])
        self._reap(private)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
