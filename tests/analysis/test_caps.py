"""Wide logs degrade gracefully: caps on the activities mined, predicted and drawn, and on the
CSV columns read, each said in the results (issue #14 item 10). The memory figures themselves are
measured by bench/bench_memory.py, not here."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.caps import (
    DISCOVERY_ACTIVITIES,
    OTHER_LABEL,
    PREDICTION_ACTIVITIES,
    group_rare_activities,
)
from analysis.columns import ACTIVITY
from analysis.eventlog import LoadLimits, load_event_log
from analysis.runs import MAP_ACTIVITIES, ProcessMiningRun

WIDE_ACTIVITIES = 20_000


def _wide_log(path: Path, activities: int = WIDE_ACTIVITIES, cases: int = 400) -> Path:
    """Every activity once, plus a frequent core (a1..a5 in most cases), over `cases` cases."""
    rng = np.random.default_rng(0)
    rows = []
    rare = rng.permutation(activities)
    per_case = np.array_split(rare, cases)
    start = pd.Timestamp("2024-01-01T00:00:00Z")
    for c, mine in enumerate(per_case):
        t = start + pd.Timedelta(hours=int(rng.integers(0, 24 * 300)))
        names = [f"core {k}" for k in range(5)] + [f"x{a:05d}" for a in mine]
        for name in names:
            t += pd.Timedelta(minutes=int(rng.integers(1, 600)))
            rows.append((f"case{c:04d}", name, t.strftime("%Y-%m-%dT%H:%M:%SZ")))
    pd.DataFrame(rows, columns=["case_id", "activity", "timestamp"]).to_csv(path, index=False)
    return path


def test_group_rare_activities_keeps_the_most_frequent() -> None:
    events = pd.DataFrame({ACTIVITY: ["a", "b", "a", "c", "a", "b", OTHER_LABEL, "d"]})
    capped, cap = group_rare_activities(events, 2)
    assert cap is not None
    label = cap.label
    assert list(capped[ACTIVITY]) == ["a", "b", "a", label, "a", "b", label, label]
    assert cap.label != OTHER_LABEL  # made unique against the log's own names
    assert (cap.kept, cap.total, cap.grouped_events) == (2, 5, 3)
    assert "capped to the 2 most frequent of 5 activities" in cap.statement()
    assert list(events[ACTIVITY])[3] == "c"  # the input is not modified
    same, none = group_rare_activities(events, 5)
    assert same is events and none is None


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("wide")
    log = _wide_log(tmp / "wide.csv")
    run = ProcessMiningRun(log, tmp / "out", {"analysisType": "comprehensive"})
    return run.run_all(), tmp / "out"


def test_wide_log_completes_with_the_caps_stated(wide_run: tuple[dict, Path]) -> None:
    doc, out = wide_run
    phases = {p["phaseName"]: p for p in doc["phaseResults"]}
    assert all(p["status"] == "Completed" for p in phases.values())
    discovery = phases["Process Discovery"]["results"]
    # figures of the log itself are of the whole log
    assert discovery["activitiesDiscovered"] == WIDE_ACTIVITIES + 5
    model = discovery["processModel"]
    assert (
        f"capped to the {DISCOVERY_ACTIVITIES} most frequent of 20,005 activities"
        in (model["algorithm"])
    )
    assert "capped" in discovery["conformance"]["method"]
    predictions = phases["Machine Learning Analysis"]["results"]["predictions"]
    for key in ("cycleTimePrediction", "pathPrediction"):
        assert f"capped to the {PREDICTION_ACTIVITIES} most frequent" in predictions[key]["method"]
    svg = next(a for a in doc["artifacts"] if a["format"] == "SVG")
    assert f"the {MAP_ACTIVITIES} most frequent of 20,005 activities" in svg["description"]
    # the map itself is bounded: activity nodes plus start and end
    nodes = re.findall(r'<g id="node\d+" class="node">', (out / svg["path"]).read_text())
    assert len(nodes) <= MAP_ACTIVITIES + 2
    json.dumps(doc)


def test_small_log_is_not_capped(tmp_path: Path) -> None:
    log = _wide_log(tmp_path / "small.csv", activities=20, cases=40)
    run = ProcessMiningRun(log, tmp_path / "out", {"analysisType": "standard"})
    run.run_load()
    result = run.run_discovery()["results"]
    assert "capped" not in result["processModel"]["algorithm"]


def test_a_5000_column_csv_loads_its_first_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide-columns.csv"
    extra = 4_997
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        # the timestamp column comes last: role columns are read wherever they are
        out.writerow(["case_id", "activity", *(f"attr_{i}" for i in range(extra)), "timestamp"])
        for r in range(40):
            values = [str((r + i) % 10) for i in range(extra)]
            out.writerow([f"c{r % 4}", f"step {r // 4}", *values, f"2024-01-01T{r % 24:02d}:00:00"])
    result = load_event_log(path, limits=LoadLimits(max_columns=1_000))
    assert result.valid_records == 40
    assert len(result.events.columns) <= 1_000 + 1  # + the row number
    assert "Columns capped: the file has 5,000 columns" in result.data_quality_method
    assert "attr_0" in result.events.columns


def test_wide_log_quick_mode_completes(tmp_path: Path) -> None:
    """`quick` mines the grouped directly-follows graph (pm4py's IMd can fail on it: the
    variant-based miner then runs, said in `algorithm`)."""
    log = _wide_log(tmp_path / "wide.csv", activities=5_000, cases=200)
    run = ProcessMiningRun(log, tmp_path / "out", {"analysisType": "quick"})
    run.run_load()
    model = run.run_discovery()["results"]["processModel"]
    assert (
        f"capped to the {DISCOVERY_ACTIVITIES} most frequent of 5,005 activities"
        in (model["algorithm"])
    )


def test_a_wide_parquet_reads_its_first_columns(tmp_path: Path) -> None:
    extra = 1_500
    data: dict[str, list[str]] = {f"attr_{i}": [str(i % 7)] * 20 for i in range(extra)}
    data["timestamp"] = [f"2024-01-01T{r:02d}:00:00" for r in range(20)]
    data["case_id"] = [f"c{r % 4}" for r in range(20)]
    data["activity"] = [f"step {r // 4}" for r in range(20)]
    path = tmp_path / "wide.parquet"
    pd.DataFrame(data).to_parquet(path, index=False)
    result = load_event_log(path, limits=LoadLimits(max_columns=100))
    assert result.valid_records == 20
    assert len(result.events.columns) <= 100 + 1
    assert "Columns capped: the file has 1,503 columns" in result.data_quality_method
