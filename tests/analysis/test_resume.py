"""Resume: a retry reuses the phases an earlier run of its lineage completed (analysis level).

The earlier run fails in the ML phase by fault injection; the retry restores loading and
discovery from the checkpoints and computes the rest. Deleting the event log before the retry
shows the restored phases do no work: loading it again would fail.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from analysis import phases
from analysis.errors import AnalysisError
from analysis.pipeline import ResumePlan
from analysis.runs import ProcessMiningRun

PARAMS = {"analysisType": "standard"}


def failed_run(log: Path, out: Path) -> ProcessMiningRun:
    run = ProcessMiningRun(log, out, PARAMS, lineage="op-original")
    run.run_load()
    run.run_discovery()
    with pytest.raises(AnalysisError):
        run.fail_phase(phases.MACHINE_LEARNING, AnalysisError("injected", field=None))
    return run


@pytest.fixture
def log(tmp_path: Path, datasets: Path) -> Path:
    copy = tmp_path / "receipt.xes.gz"
    shutil.copy(datasets / "receipt.xes.gz", copy)
    return copy


def plan(source: Path) -> ResumePlan:
    return ResumePlan(source, "op-original", "op-original", (phases.LOAD, phases.DISCOVERY))


def test_resume_restores_completed_phases_without_work(tmp_path: Path, log: Path) -> None:
    first = failed_run(log, tmp_path / "first")
    assert [r.status for r in first.records.values()] == [
        "Completed",
        "Completed",
        "Failed",
        "Pending",
    ]
    log.unlink()  # a restored phase must not read the log again
    retry = ProcessMiningRun(log, tmp_path / "retry", PARAMS, resume=plan(tmp_path / "first"))
    for step in (
        retry.run_load,
        retry.run_discovery,
        retry.run_machine_learning,
        retry.run_reports,
    ):
        step()
    doc = retry.document()
    by_name = {p["phaseName"]: p for p in doc["phaseResults"]}
    for name in (phases.LOAD, phases.DISCOVERY):
        assert by_name[name]["preservedFrom"] == "op-original"
        assert by_name[name]["results"] == first.records[name].to_dict()["results"]
    for name in (phases.MACHINE_LEARNING, phases.REPORTS):
        assert "preservedFrom" not in by_name[name] and by_name[name]["status"] == "Completed"
    assert retry.events.equals(first.events)
    # this run's cost counts only what it computed
    computed = sum(
        retry.records[n].usage.wall_seconds  # type: ignore[union-attr]
        for n in (phases.MACHINE_LEARNING, phases.REPORTS)
    )
    assert doc["performance"]["totalExecutionSeconds"] == pytest.approx(computed, abs=1e-3)


def test_changed_inputs_recompute_from_the_first_changed_phase(tmp_path: Path, log: Path) -> None:
    failed_run(log, tmp_path / "first")
    retry = ProcessMiningRun(
        log,
        tmp_path / "retry",
        {**PARAMS, "algorithm": "heuristics"},
        resume=plan(tmp_path / "first"),
    )
    retry.run_load()
    retry.run_discovery()
    assert retry.records[phases.LOAD].preserved_from == "op-original"
    assert retry.records[phases.DISCOVERY].preserved_from is None
    assert (
        retry.records[phases.DISCOVERY]
        .results["processModel"]["algorithm"]
        .startswith("heuristics")
    )


def test_another_lineage_does_not_match(tmp_path: Path, log: Path) -> None:
    failed_run(log, tmp_path / "first")
    other = ResumePlan(tmp_path / "first", "op-someone-else", "op-x", (phases.LOAD,))
    retry = ProcessMiningRun(log, tmp_path / "retry", PARAMS, resume=other)
    retry.run_load()
    assert retry.records[phases.LOAD].preserved_from is None


def test_restored_artifacts_are_identical_copies(tmp_path: Path, log: Path) -> None:
    """ML writes models.pkl; a retry failing in reports reuses it byte for byte."""
    first = ProcessMiningRun(log, tmp_path / "first", PARAMS, lineage="op-original")
    first.run_load()
    first.run_discovery()
    first.run_machine_learning()
    with pytest.raises(AnalysisError):
        first.fail_phase(phases.REPORTS, AnalysisError("injected", field=None))
    names = (phases.LOAD, phases.DISCOVERY, phases.MACHINE_LEARNING)
    retry = ProcessMiningRun(
        log,
        tmp_path / "retry",
        PARAMS,
        resume=ResumePlan(tmp_path / "first", "op-original", "op-original", names),
    )
    for step in (
        retry.run_load,
        retry.run_discovery,
        retry.run_machine_learning,
        retry.run_reports,
    ):
        step()
    assert all(retry.records[n].preserved_from == "op-original" for n in names)
    models = [a.path for a in retry.artifacts if a.format == "PKL"]
    assert models, "the ML phase's model file is listed again"
    for rel in models:
        digest = [
            hashlib.sha256((d / rel).read_bytes()).hexdigest()
            for d in (first.out_dir, retry.out_dir)
        ]
        assert digest[0] == digest[1]
    assert {a.format for a in retry.artifacts} >= {"PKL", "SVG", "PDF"}
