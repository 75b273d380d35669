"""Tests marked `alone` need their process to have one thread (a fork copies the locks other
threads hold; analysis.forked computes inline when another thread lives). Under xdist an earlier
test in the same worker may have left threads behind (a Prefect harness, fsspec's IO loop, a
served app); then those tests run once more in a fresh `pytest` process of their own, and each
one's outcome there is its outcome here. Nothing is skipped for want of a quiet process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from analysis.forked import READER_THREAD

# nodeid -> ("passed" | "failed" | "skipped", detail), filled once per test file
_OUTCOMES: dict[str, tuple[str, str]] = {}


def other_threads() -> list[str]:
    me = threading.current_thread()
    return [t.name for t in threading.enumerate() if t is not me and t.name != READER_THREAD]


def _run_apart(item: pytest.Item) -> None:
    """Run the `alone` tests of item's file in a fresh process; note each one's outcome."""
    root = Path(str(item.config.rootpath))
    file_id = item.nodeid.split("::", 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "apart.xml"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:xdist",
                "-p",
                "no:cacheprovider",
                "-m",
                "alone",
                f"--junitxml={report}",
                file_id,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        tree = ET.parse(report) if report.exists() else None
    if tree is None:
        raise RuntimeError(f"the apart run left no report:\n{done.stdout}\n{done.stderr}")
    for case in tree.iter("testcase"):
        name = case.get("name", "")
        nodeid = f"{file_id}::{name}"
        found = (case.find("failure"), case.find("error"))
        failed = next((f for f in found if f is not None), None)
        skipped = case.find("skipped")
        if failed is not None:
            why = (failed.get("message") or "") + "\n" + (failed.text or "")
            _OUTCOMES[nodeid] = ("failed", why)
        elif skipped is not None:
            _OUTCOMES[nodeid] = ("skipped", skipped.get("message") or "")
        else:
            _OUTCOMES[nodeid] = ("passed", "")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if pyfuncitem.get_closest_marker("alone") is None or not other_threads():
        return None
    if pyfuncitem.nodeid not in _OUTCOMES:
        _run_apart(pyfuncitem)
    outcome, detail = _OUTCOMES.get(pyfuncitem.nodeid, ("failed", "not run in the apart process"))
    if outcome == "failed":
        pytest.fail(f"in a process of its own: {detail}", pytrace=False)
    if outcome == "skipped":
        pytest.skip(f"in a process of its own: {detail}")
    return True
