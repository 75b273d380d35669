"""Uploads are read in worker processes (pmops.service.inspection): the same summary as reading
in process, an error naming the field comes back as raised, a worker that dies is a clear
EventLogError naming `file`, and the pool goes on after it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from analysis.errors import EventLogError
from analysis.eventlog import ColumnMapping
from pmops.service.inspection import Inspector
from pmops.service.registration import inspect_here


@pytest.fixture(scope="module")
def inspector() -> Any:
    pool = Inspector(2)
    yield pool
    pool.close()


def test_the_summary_equals_reading_in_process(inspector: Inspector, datasets: Path) -> None:
    for name in ("running-example.xes", "sepsis.csv"):
        assert inspector.inspect(datasets / name, None) == inspect_here(datasets / name, None)
    mapping = ColumnMapping.from_dict({"timezone": "Europe/Amsterdam"})
    path = datasets / "sepsis.csv"
    assert inspector.inspect(path, mapping) == inspect_here(path, mapping)


def test_each_file_is_read_in_another_process(inspector: Inspector, datasets: Path) -> None:
    pids = {inspector._executor().submit(os.getpid).result() for _ in range(3)}
    assert os.getpid() not in pids
    assert len(pids) == 3  # one file per worker: its memory goes back to the system at once


def test_an_unreadable_file_names_its_field(inspector: Inspector, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(EventLogError) as caught:
        inspector.inspect(bad, None)
    assert caught.value.field is not None
    assert caught.value.message == _in_process_error(bad).message


def _in_process_error(path: Path) -> EventLogError:
    try:
        inspect_here(path, None)
    except EventLogError as e:
        return e
    raise AssertionError("read in process")


def _die(path: str, mapping: object) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def test_a_worker_that_dies_is_an_event_log_error_and_the_next_upload_works(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Inspector(1)
    try:
        monkeypatch.setattr("pmops.service.inspection._inspect", _die)
        with pytest.raises(EventLogError) as caught:
            pool.inspect(datasets / "running-example.xes", None)
        assert caught.value.field == "file" and "ended" in caught.value.message
        monkeypatch.undo()
        assert pool.inspect(datasets / "running-example.xes", None)["cases"] == 6
    finally:
        pool.close()


HOLDER = """
import os, sys, time
from pmops.service.inspection import Inspector

if __name__ == "__main__":
    pool = Inspector(2)
    pool.warm()
    pool._executor().submit(int, 0).result()  # a worker started and idle
    print("ready", flush=True)
    time.sleep(600)
"""


def command(process: Any) -> str:
    """Its command line; empty once it has ended (a worker that finished its one task)."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def test_a_killed_api_leaves_no_fork_server_or_worker_behind(tmp_path: Path) -> None:
    """SIGKILL runs no shutdown: the API's fork server and its idle workers used to stay for good
    (each worker holds both ends of its task pipe, and the fork server stays while a worker holds
    its "alive" pipe). Each worker now ends with its parent, and the fork server after them."""
    import subprocess
    import sys

    import psutil

    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # the fork server and a live worker (the one that ran the task ends: one task each, and
        # the pool starts the next)
        deadline = time.monotonic() + 60
        while True:
            family = psutil.Process(proc.pid).children(recursive=True)
            if len([p for p in family if "forkserver" in command(p)]) >= 2:
                break
            assert time.monotonic() < deadline, "no idle worker"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(family, timeout=60)
    left = [command(p)[:80] for p in alive]
    for p in alive:
        p.kill()
    assert not left, f"left behind: {left}"
