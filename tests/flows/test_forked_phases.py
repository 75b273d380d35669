"""The analysis phases inside a real Prefect flow run (its tasks' threads, its API log and
event threads): no child is forked there (a fork copies the locks other threads hold: a child
could hang on one for ever), the phases compute inline and complete."""

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


def test_phases_compute_inline_inside_a_prefect_flow_run(tmp_path: Path, datasets: Path) -> None:
    run = ProcessMiningRun(
        datasets / "receipt.xes.gz", tmp_path / "out", {"analysisType": "comprehensive"}
    )
    with prefect_test_harness(server_startup_timeout=120):
        got = _phases(run)
    # other threads live in a flow run: the models are fitted inline by the ML task
    assert got["children_after_discovery"] == []
    assert got["ml"]["status"] == "Completed"
    assert got["ml"]["results"]["modelsTrained"] == 3
    assert got["reports"]["results"]["reportsCreated"] == 1
    assert (tmp_path / "out" / "report.pdf").stat().st_size > 0
    assert [
        c for c in psutil.Process().children() if c.pid in got["children_after_discovery"]
    ] == []
