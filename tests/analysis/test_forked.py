"""analysis.forked: a call computed in a forked child, its result, errors, cancellation, no leak."""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from analysis.forked import ChildFailed, Forked, allow_second_core
from analysis.measure import PhaseMeter
from analysis.progress import CancelToken, OperationCancelled, Progress
from tests.analysis.conftest import other_threads

pytestmark = pytest.mark.alone  # tests/analysis/conftest.py


@pytest.fixture(autouse=True)
def _alone() -> Iterator[None]:
    """Forking needs this thread to be the process's only one (analysis.forked.second_core). If
    an earlier test in this worker left threads behind, tests/analysis/conftest.py runs these
    tests in a fresh process instead, and this setup does nothing here."""
    if other_threads():
        yield
        return
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))
    allow_second_core()  # as `pmops analyze` does
    yield
    allow_second_core(False)


def _busy(seconds: float, value: int) -> dict[str, int]:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return {"value": value, "pid": os.getpid()}


def _fails() -> None:
    raise ValueError("bad input in the child")


def _dies() -> None:
    os._exit(3)


def _sleeps() -> None:
    time.sleep(60)


def _big() -> bytes:
    return os.urandom(3 << 20)  # more than a pipe buffer


_BEFORE: set[int] = set()


def _children() -> list[psutil.Process]:
    """The processes this test started (an earlier test in this worker may have left servers)."""
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in _BEFORE]


def test_the_result_comes_back_from_another_process() -> None:
    with Forked(_busy, 0.01, 7) as child:
        assert child.pid is not None and child.pid != os.getpid()
        got = child.result()
    assert got["value"] == 7 and got["pid"] == child.pid
    assert _children() == []


def test_a_result_larger_than_the_pipe_buffer() -> None:
    with Forked(_big) as child:
        assert len(child.result()) == 3 << 20


def test_the_child_cpu_and_memory_are_charged_to_the_phase() -> None:
    with PhaseMeter() as meter, Forked(_busy, 0.3, 1) as child:
        child.result()
    assert meter.usage is not None
    # the parent only waited: the child's ~0.3 CPU-s are in the phase's figure
    assert meter.usage.cpu_seconds >= 0.25
    assert meter.usage.peak_memory_bytes > 0


def test_the_child_exception_is_raised_in_the_caller() -> None:
    with Forked(_fails) as child, pytest.raises(ValueError, match="bad input in the child"):
        child.result()
    assert _children() == []


def test_a_child_dying_without_result_is_an_error() -> None:
    with Forked(_dies) as child, pytest.raises(ChildFailed):
        child.result()


def test_cancel_while_waiting_kills_the_child() -> None:
    token = CancelToken()
    progress = Progress(token=token)
    with Forked(_sleeps) as child:
        pid = child.pid
        token.cancel("user asked")
        with pytest.raises(OperationCancelled):
            child.result(progress)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _children() == []


def test_leaving_the_block_on_an_error_kills_the_child() -> None:
    with pytest.raises(RuntimeError), Forked(_sleeps) as child:
        pid = child.pid
        raise RuntimeError("the caller's own work failed")
    assert pid is not None and not psutil.pid_exists(pid)
    assert _children() == []


def _in_daemon(out: str) -> None:
    with Forked(_busy, 0.01, 42) as child:
        Path(out).write_text(str(child.result()["value"]))


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_works_inside_a_daemonic_process(tmp_path: Path, method: str) -> None:
    """Prefect's flow-run process is a multiprocessing child (deployments.warmstart: from a
    forkserver); multiprocessing refuses children of daemonic processes, os.fork does not."""
    out = tmp_path / "out.txt"
    proc = multiprocessing.get_context(method).Process(
        target=_in_daemon, args=(str(out),), daemon=True
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert out.read_text() == "42"


def _counts(n: int, progress: Progress) -> int:
    time.sleep(0.3)  # the caller sets forward() first
    for i in range(n + 1):
        progress.update(i, n, f"step {i}")
    return n


def test_the_child_progress_is_passed_on() -> None:
    seen: list[tuple[int, int, str]] = []
    with Forked(_counts, 5, progress=True) as child:
        child.forward(Progress(sink=lambda d, t, a: seen.append((d, t, a)), min_interval=0))
        assert child.result() == 5
    assert seen[-1] == (5, 5, "step 5")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


def test_one_cpu_computes_inline() -> None:
    """A process held to one CPU (a flow run's cpuUnits 1) does not fork: same value, no child."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        child = Forked(pow, 2, 10)
        assert child.pid is None
        assert child.result() == 1024
    finally:
        os.sched_setaffinity(0, cpus)


def _capped_fork_pid(out: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))
    child = Forked(pow, 2, 10)
    out.put((child.pid, child.result()))


def test_a_capped_address_space_computes_inline() -> None:
    """A flow run whose memoryGB is applied as RLIMIT_AS does not fork: the child would have a
    cap of its own and the run could take twice its limit."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_capped_fork_pid, args=(out,))
    p.start()
    assert out.get(timeout=120) == (None, 1024)
    p.join(30)


def test_another_thread_means_inline() -> None:
    """A fork copies the locks other threads hold (a child could wait on one for ever): with
    another thread alive, the call computes inline."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="someone else's", daemon=True)
    other.start()
    try:
        child = Forked(pow, 2, 10)
        assert child.pid is None and child.result() == 1024
    finally:
        stop.set()
        other.join()
    with Forked(pow, 2, 10) as child:  # alone again: forked
        assert child.pid is not None and child.result() == 1024
