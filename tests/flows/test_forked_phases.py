"""The analysis phases' forked children inside a real Prefect flow run (its tasks' threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
from prefect import flow
from prefect.testing.utilities import prefect_test_harness

from analysis.runs import ProcessMiningRun
from flows.analyze_process import (
    analyse_with_ml,
    discover_process,
    generate_reports,
    load_and_validate,
)


@flow(name="forked-phases", persist_result=False)
def _phases(run: ProcessMiningRun) -> dict[str, Any]:
    before = {c.pid for c in psutil.Process().children()}  # the harness's server
    load_and_validate(run)
    discover_process(run)
    children = [c.pid for c in psutil.Process().children() if c.pid not in before]
    ml = analyse_with_ml(run)
    reports = generate_reports(run)
    return {"children_after_discovery": children, "ml": ml, "reports": reports}


def test_phases_fork_inside_a_prefect_flow_run(tmp_path: Path, datasets: Path) -> None:
    run = ProcessMiningRun(
        datasets / "receipt.xes.gz", tmp_path / "out", {"analysisType": "comprehensive"}
    )
    with prefect_test_harness(server_startup_timeout=120):
        got = _phases(run)
    # the models' child started with the discovery task, collected by the ML task
    assert len(got["children_after_discovery"]) == 1
    assert got["ml"]["status"] == "Completed"
    assert got["ml"]["results"]["modelsTrained"] == 3
    assert got["reports"]["results"]["reportsCreated"] == 1
    assert (tmp_path / "out" / "report.pdf").stat().st_size > 0
    assert [
        c for c in psutil.Process().children() if c.pid in got["children_after_discovery"]
    ] == []
