"""deployments/warmstart.py leans on Prefect internals: fail loudly when an upgrade moves them."""

from __future__ import annotations

import inspect
import multiprocessing
import subprocess
import sys

import prefect
import prefect.flow_engine as flow_engine
import pytest
from prefect.runner import _starter_direct

from deployments import warmstart


def test_prefect_still_starts_served_runs_the_way_warmstart_expects() -> None:
    assert prefect.__version__ == warmstart.PREFECT_VERSION, "re-check deployments/warmstart.py"
    # Runner.add_flow runs go through this function, looked up at call time in flow_engine
    assert _starter_direct.run_flow_in_subprocess is flow_engine.run_flow_in_subprocess
    assert 'multiprocessing.get_context("spawn")' in inspect.getsource(
        flow_engine.run_flow_in_subprocess
    )


@pytest.mark.skipif(not warmstart.available(), reason="no forkserver on this platform")
def test_install_swaps_spawn_for_a_forkserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_engine, "multiprocessing", multiprocessing)
    assert warmstart.install(preload=[], start=False)
    ctx = flow_engine.multiprocessing.get_context("spawn")
    assert ctx.get_start_method() == "forkserver"
    assert flow_engine.multiprocessing.get_context("fork").get_start_method() == "fork"
    assert warmstart.install(preload=[], start=False)  # idempotent
    # the exit code still reaches the runner (non-zero -> Crashed)
    p = ctx.Process(target=sys.exit, args=(3,))
    p.start()
    p.join(60)
    assert p.exitcode == 3


def test_the_preload_leaves_the_report_fonts_loaded() -> None:
    """analysis.warm (in PRELOAD) parses the report fonts once in the forkserver: in a fresh
    interpreter, importing it registers reportlab's fonts and draws the warm-up chart, starting
    no thread (a fork copies only the forking thread)."""
    assert "analysis.warm" in warmstart.PRELOAD
    probe = (
        "import threading, analysis.warm\n"
        "from reportlab.pdfbase import pdfmetrics\n"
        "from analysis import report_pdf\n"
        "names = pdfmetrics.getRegisteredFontNames()\n"
        "assert report_pdf.FONT in names and report_pdf.FONT_BOLD in names, names\n"
        "assert report_pdf._state.dejavu\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
