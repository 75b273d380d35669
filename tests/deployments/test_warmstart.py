"""deployments/warmstart.py leans on Prefect internals: fail loudly when an upgrade moves them."""

from __future__ import annotations

import inspect
import multiprocessing
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
