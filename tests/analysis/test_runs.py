"""The operation runs end to end on real logs: phases, progress, cancellation, the document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.phases import PHASES
from analysis.progress import CancelToken, OperationCancelled
from analysis.runs import DataEnrichmentRun, ProcessMiningRun, ReportGenerationRun

CONTRACT_SUMMARY = {
    "recordsAnalyzed",
    "processVariants",
    "anomaliesDetected",
    "modelsGenerated",
    "reportsCreated",
    "dataQualityScore",
    "overallConfidenceScore",
}


@pytest.fixture(scope="module")
def receipt_run(tmp_path_factory: pytest.TempPathFactory, datasets: Path):
    out = tmp_path_factory.mktemp("receipt")
    seen: list[tuple[str, int, int, str]] = []
    run = ProcessMiningRun(
        datasets / "receipt.xes.gz",
        out,
        {"analysisType": "comprehensive"},
        name="receipt analysis",
        sink=lambda *a: seen.append(a),
    )
    doc = run.run_all()
    return run, doc, out, seen


def test_document_has_the_contract_shape(receipt_run) -> None:
    _, doc, out, _ = receipt_run
    assert doc["status"] == "Completed" and doc["success"] is True
    assert set(doc["summary"]) >= CONTRACT_SUMMARY
    assert doc["summary"]["recordsAnalyzed"] == 8577
    assert doc["summary"]["processVariants"] == 116
    names = [p["phaseName"] for p in doc["phaseResults"]]
    assert names == list(PHASES["ProcessMiningAnalysis"])
    assert all(p["status"] == "Completed" for p in doc["phaseResults"])
    load, discovery, ml, _ = (p["results"] for p in doc["phaseResults"])
    assert load["recordsLoaded"] == 8577
    assert discovery["processModel"]["activities"] == 27
    assert {"averageCycleTime", "medianCycleTime", "bottleneckActivities", "efficiency"} <= set(
        discovery["performanceMetrics"]
    )
    assert {"anomalies", "predictions", "patterns"} <= set(ml)
    assert {"accuracy", "meanAbsoluteError"} <= set(ml["predictions"]["cycleTimePrediction"])
    assert {"accuracy", "confidence"} <= set(ml["predictions"]["pathPrediction"])
    perf = doc["performance"]
    assert perf["resourceUtilization"]["totalCost"].startswith("$")
    assert perf["throughput"].endswith("records/minute")
    # the written file is the same document
    assert json.loads((out / "results.json").read_text())["summary"] == doc["summary"]


def test_every_artifact_is_written_and_listed(receipt_run) -> None:
    _, doc, out, _ = receipt_run
    formats = {a["format"] for a in doc["artifacts"]}
    assert {"PDF", "SVG", "CSV", "PKL"} <= formats
    for artifact in doc["artifacts"]:
        path = out / artifact["path"]
        assert path.is_file() and path.stat().st_size == artifact["sizeBytes"] > 0
    text = subprocess.run(
        ["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "1,434" in text or "1434" in text


def test_progress_is_reported_per_phase_and_rises(receipt_run) -> None:
    _, _, _, seen = receipt_run
    phases_seen = [p for p, *_ in seen]
    assert set(phases_seen) == set(PHASES["ProcessMiningAnalysis"])
    for phase in PHASES["ProcessMiningAnalysis"]:
        updates = [(d, t) for p, d, t, _ in seen if p == phase]
        final_done, final_total = updates[-1]
        assert final_done == final_total > 0
        # a phase made of steps in other units (bytes, events, models) never goes back
        fractions = [d / t for d, t in updates if t > 0]
        assert fractions == sorted(fractions), (phase, updates)


def test_cancel_stops_at_a_checkpoint_and_keeps_completed_phases(
    tmp_path: Path, datasets: Path
) -> None:
    token = CancelToken()

    def sink(phase: str, done: int, total: int, activity: str) -> None:
        if phase == "Process Discovery":
            token.cancel("user asked")

    run = ProcessMiningRun(datasets / "receipt.xes.gz", tmp_path, {}, sink=sink, token=token)
    run.run_load()
    with pytest.raises(OperationCancelled):
        run.run_discovery()
    assert run.records["Data Loading and Validation"].status == "Completed"
    assert run.records["Process Discovery"].status == "Cancelled"
    assert run.load is not None and run.load.records_loaded == 8577


def test_models_fitted_beside_the_discovery_are_collected(tmp_path: Path, datasets: Path) -> None:
    """`pmops analyze` (a fresh process: it may fork) fits the Machine Learning phase's models in
    a child started with Process Discovery; the phase collects them and is charged their CPU, and
    the results equal those computed inline (here, in this test process, which does not fork: a
    long-lived process may have started native thread pools a child could not use)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "cli"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pmops.cli.commands",
            "analyze",
            str(datasets / "receipt.xes.gz"),
            "--out",
            str(out),
            "-q",
            "--params",
            '{"analysisType": "comprehensive"}',
        ],
        check=True,
        timeout=600,
        env={**os.environ, "PM4PY_SHOW_PROGRESS_BAR": "false"},
    )
    doc = json.loads((out / "results.json").read_text())
    ml_cli = next(p for p in doc["phaseResults"] if p["phaseName"] == "Machine Learning Analysis")
    here = ProcessMiningRun(
        datasets / "receipt.xes.gz", tmp_path / "here", {"analysisType": "comprehensive"}
    )
    here.run_load()
    here.run_discovery()
    assert here._models is None or here._models.pid is None  # inline in this process
    ml = here.run_machine_learning()
    assert ml_cli["results"]["modelsTrained"] == ml["results"]["modelsTrained"] == 3
    assert ml_cli["results"] == ml["results"]


def test_a_failed_discovery_leaves_no_process(
    tmp_path: Path, datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    import analysis.runs

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("mining failed")

    monkeypatch.setattr(analysis.runs, "discover_capped", broken)
    before = {c.pid for c in psutil.Process().children()}  # other fixtures' servers
    run = ProcessMiningRun(datasets / "receipt.xes.gz", tmp_path, {"analysisType": "comprehensive"})
    run.run_load()
    with pytest.raises(RuntimeError, match="mining failed"):
        run.run_discovery()
    assert run._models is None
    assert {c.pid for c in psutil.Process().children()} - before == set()


def test_enrichment_writes_a_new_dataset(tmp_path: Path, datasets: Path) -> None:
    doc = DataEnrichmentRun(datasets / "sepsis.csv", tmp_path, {}).run_all()
    assert doc["summary"]["cases"] == 1050
    (artifact,) = doc["artifacts"]
    assert (tmp_path / artifact["path"]).is_file()
    rules = doc["phaseResults"][1]["results"]["rulesApplied"]
    assert [r["rule"] for r in rules] == [
        "remove_duplicates",
        "fix_timestamps",
        "validate_activities",
    ]


def test_report_generation_from_a_prior_analysis(receipt_run, tmp_path: Path) -> None:
    _, _, out, _ = receipt_run
    doc = ReportGenerationRun(out / "results.json", tmp_path, {}).run_all()
    assert sorted(a["format"] for a in doc["artifacts"]) == ["PDF", "PPTX"]
    for artifact in doc["artifacts"]:
        assert (tmp_path / artifact["path"]).stat().st_size > 0


def test_cli_writes_results_and_fails_cleanly_on_bad_input(tmp_path: Path, datasets: Path) -> None:
    cli = [sys.executable, "-m", "pmops.cli.commands", "analyze"]
    ok = subprocess.run(
        [*cli, str(datasets / "running-example.xes"), "--out", str(tmp_path / "ok"), "-q"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "results.json").is_file()

    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    bad = subprocess.run(
        [*cli, str(garbage), "--out", str(tmp_path / "bad"), "-q"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmops: ") and "Traceback" not in bad.stderr

    params = subprocess.run(
        [
            *cli,
            str(datasets / "running-example.xes"),
            "--out",
            str(tmp_path / "p"),
            "-q",
            "--params",
            '{"analysisType": "deep"}',
        ],
        capture_output=True,
        text=True,
    )
    assert params.returncode == 2 and "parameters.analysisType" in params.stderr
