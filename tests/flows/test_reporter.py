"""Every progress state a run reports (flows/reporter.py), captured at each write of a real
comprehensive analysis of a real log: processedRecords is a running total that never goes back
and ends at the records analysed, currentPhase never names a Pending phase, and the Machine
Learning phase shows its scikit-learn models while it trains them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analysis.phases import MACHINE_LEARNING
from analysis.progress import CancelToken
from analysis.runs import ProcessMiningRun
from flows.reporter import OperationReporter
from pmops.store.tables import make_engine


class Recording(OperationReporter):
    """The reporter, keeping a copy of every state it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[dict[str, Any]] = []
        self._guard = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        with self._guard:
            self.written.append(snap)
        return snap


def test_reported_progress_follows_the_seed(tmp_path: Path, datasets: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    token = CancelToken()
    timeout = datetime.now(UTC) + timedelta(hours=1)
    reporter = Recording(engine, "op-x", "ProcessMiningAnalysis", timeout, token, interval=0.05)
    run = ProcessMiningRun(
        datasets / "receipt.xes.gz",
        tmp_path / "out",
        {
            "analysisType": "comprehensive",
            "outputOptions": {"generateReports": False, "createVisualizations": False},
        },
        sink=reporter.sink,
        token=token,
    )
    reporter.run = run
    with reporter:
        run.run_load()
        run.run_discovery()
        run.run_machine_learning()
        run.run_reports()
    final = reporter.snapshot()
    states = [*reporter.written]
    analysed = run.summary()["recordsAnalyzed"]
    assert analysed == 8577

    # processed records: a running total that only grows, and ends at the records analysed
    processed = [s["processedRecords"] for s in states]
    assert processed == sorted(processed)
    assert final["processedRecords"] == analysed and final["currentPhase"] is None
    past_load = [s for s in states if s["phases"][0]["status"] == "Completed"]
    assert past_load and all(s["processedRecords"] > 0 for s in past_load)

    for s in states:
        pending = {p["phaseName"] for p in s["phases"] if p["status"] == "Pending"}
        assert s["currentPhase"] not in pending, s["currentPhase"]
        running = [p["phaseName"] for p in s["phases"] if p["status"] == "Running"]
        if running:
            assert s["currentPhase"] == running[0]

    # the Machine Learning phase: three scikit-learn models, trained one after the other
    ml = [
        p
        for s in states
        for p in s["phases"]
        if p["phaseName"] == MACHINE_LEARNING and p["status"] == "Running"
    ]
    assert ml and all(p["modelsTraining"] == 3 for p in ml)
    trained = [p["modelsCompleted"] for p in ml]
    assert trained == sorted(trained) and trained[0] == 0 and trained[-1] >= 2
    assert all("modelsTraining" not in p for p in final["phases"])
