from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, ROW, TIMESTAMP
from analysis.errors import EventLogError
from analysis.performance import LIFECYCLE, compute_performance
from analysis.progress import Progress
from tests._logs import canonical_frame

T0 = pd.Timestamp("2024-01-01 08:00", tz="UTC")


def _frame(rows: list[tuple[str, str, float, str | None]]) -> pd.DataFrame:
    """(case, activity, hours after T0, lifecycle or None) rows -> canonical frame."""
    frame = pd.DataFrame(
        {
            CASE: [r[0] for r in rows],
            ACTIVITY: [r[1] for r in rows],
            TIMESTAMP: [T0 + pd.Timedelta(hours=r[2]) for r in rows],
        }
    )
    if any(r[3] is not None for r in rows):
        frame[LIFECYCLE] = [r[3] or "" for r in rows]
    frame[ROW] = np.arange(len(frame))
    return frame.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)


def test_cycle_times_equal_pandas_on_receipt(datasets: Path) -> None:
    events = canonical_frame(datasets / "receipt.xes.gz")
    result = compute_performance(events)
    span = events.groupby(CASE)[TIMESTAMP].agg(["min", "max"])
    hours = (span["max"] - span["min"]).dt.total_seconds() / 3600
    assert result.cases == 1434
    assert result.average_cycle_hours == pytest.approx(hours.mean(), rel=1e-9)
    assert result.median_cycle_hours == pytest.approx(hours.median(), rel=1e-9)
    # no lifecycle start events: every gap is waiting, and processing time is unknown
    assert result.total_waiting_hours == pytest.approx(hours.sum(), rel=1e-9)
    assert result.efficiency is None and result.total_processing_hours is None
    assert result.efficiency_method.startswith("not computed")
    d = result.to_dict()
    assert d["efficiency"] is None
    assert d["bottleneckActivities"] == [b.activity for b in result.bottlenecks[:3]]
    assert sum(b.share_of_total_wait for b in result.bottlenecks) == pytest.approx(1.0)


def test_bottleneck_ranking_on_a_known_frame() -> None:
    # waits before: B 1 h + 1 h (total 2), C 5 h (total 5), D 0.5 h x 2 (total 1)
    rows = [
        ("1", "A", 0, None), ("1", "B", 1, None), ("1", "C", 6, None), ("1", "D", 6.5, None),
        ("2", "A", 0, None), ("2", "B", 1, None), ("2", "D", 1.5, None),
    ]  # fmt: skip
    result = compute_performance(_frame(rows))
    assert [b.activity for b in result.bottlenecks] == ["C", "B", "D"]
    c, b, d = result.bottlenecks
    assert (c.total_wait_hours, c.mean_wait_hours, c.occurrences) == (5.0, 5.0, 1)
    assert (b.total_wait_hours, b.median_wait_hours, b.occurrences) == (2.0, 1.0, 2)
    assert d.mean_wait_hours == pytest.approx(0.5)
    assert c.share_of_total_wait == pytest.approx(5 / 8)
    assert result.average_cycle_hours == pytest.approx((6.5 + 1.5) / 2)
    assert result.to_dict()["bottleneckActivities"] == ["C", "B", "D"]
    assert result.to_dict()["averageCycleTime"] == "4.0 hours"


def test_efficiency_on_a_lifecycle_frame() -> None:
    # case 1: A done at 0; B scheduled 0.5, started 2, completed 3; C started 3, completed 5;
    #         an atomic D completes at 6.
    #   processing = [2,3] + [3,5] = 3 h; cycle = 6 h;
    #   waits: B 2 h (0 -> 2), C 0 h (3 -> 3), D 1 h (5 -> 6)
    # case 2: X started 0, completed 1; Y and Z overlap: Y 1-4, Z 2-3 -> union 1-4 = 3 h;
    #   processing = 1 + 3 = 4 h; cycle 4 h; waits: Y 0 h, Z 1 h (1 -> 2)
    rows = [
        ("1", "A", 0, "complete"), ("1", "B", 0.5, "schedule"), ("1", "B", 2, "start"),
        ("1", "B", 3, "complete"), ("1", "C", 3, "start"), ("1", "C", 5, "complete"),
        ("1", "D", 6, "COMPLETE"),
        ("2", "X", 0, "start"), ("2", "X", 1, "complete"), ("2", "Y", 1, "start"),
        ("2", "Z", 2, "start"), ("2", "Z", 3, "complete"), ("2", "Y", 4, "complete"),
    ]  # fmt: skip
    result = compute_performance(_frame(rows))
    assert result.total_processing_hours == pytest.approx(7.0)
    assert result.total_cycle_hours == pytest.approx(10.0)
    assert result.efficiency == pytest.approx(70.0)
    assert result.total_waiting_hours == pytest.approx(2 + 0 + 1 + 0 + 1)
    waits = {b.activity: b.total_wait_hours for b in result.bottlenecks}
    assert waits == pytest.approx({"B": 2.0, "C": 0.0, "D": 1.0, "Y": 0.0, "Z": 1.0})
    # ties in total and mean wait are ordered by name
    assert [b.activity for b in result.bottlenecks] == ["B", "D", "Z", "C", "Y"]
    assert result.paired_instances == 5
    assert "5 paired start/complete" in result.efficiency_method
    assert result.to_dict()["efficiency"] == 70.0


def test_progress_and_dict_keys() -> None:
    rows = [("1", "A", 0, None), ("1", "B", 2, None)]
    seen: list[tuple[int, int, str]] = []
    result = compute_performance(_frame(rows), progress=Progress(sink=lambda *a: seen.append(a)))
    assert seen[-1][0] == seen[-1][1]
    assert {
        "averageCycleTime",
        "medianCycleTime",
        "bottleneckActivities",
        "efficiency",
        "averageCycleTimeHours",
        "medianCycleTimeHours",
        "bottlenecks",
        "efficiencyMethod",
    } <= set(result.to_dict())
    assert result.to_dict()["bottlenecks"][0] == {
        "activity": "B",
        "meanWaitHours": 2.0,
        "medianWaitHours": 2.0,
        "totalWaitHours": 2.0,
        "occurrences": 1,
        "shareOfTotalWait": 1.0,
    }


@pytest.mark.slow
def test_bpic2012_lifecycle(datasets: Path) -> None:
    events = canonical_frame(datasets / "bpic2012.xes.gz")
    result = compute_performance(events)
    assert result.cases == 13087
    span = events.groupby(CASE)[TIMESTAMP].agg(["min", "max"])
    hours = (span["max"] - span["min"]).dt.total_seconds() / 3600
    assert result.average_cycle_hours == pytest.approx(hours.mean(), rel=1e-9)
    # W_ work items have start/complete pairs: processing is measured, and small
    assert result.efficiency is not None and 0.0 < result.efficiency < 100.0
    assert result.total_processing_hours is not None
    assert 0 < result.total_processing_hours < result.total_cycle_hours
    starts = int((events[LIFECYCLE].str.lower() == "start").sum())
    assert 0.99 * starts <= result.paired_instances <= starts
    assert f"{result.paired_instances:,} paired" in result.efficiency_method
    assert result.bottlenecks[0].total_wait_hours >= result.bottlenecks[1].total_wait_hours


def test_empty_frame_is_an_event_log_error() -> None:
    with pytest.raises(EventLogError):
        compute_performance(_frame([("1", "A", 0, None)]).iloc[:0])


def test_summary_texts_give_median_beside_mean() -> None:
    from analysis.performance import bottleneck_line, bottleneck_sentence

    row = {
        "activity": "T06",
        "meanWaitHours": 51.754,
        "medianWaitHours": 0.013,
        "totalWaitHours": 73283.23,
        "occurrences": 1416,
        "shareOfTotalWait": 0.3937,
    }
    sentence = bottleneck_sentence("T06", row)
    assert sentence == (
        "The main bottleneck is 'T06': median wait 47 seconds, mean 2.2 days before it "
        "(39% of all waiting time)."
    )
    assert (
        bottleneck_line(row)
        == "T06: median wait 47 seconds, mean 2.2 days, 39% of all waiting time"
    )
    assert "待ち時間の中央値 47 seconds" in bottleneck_sentence("T06", row, lang="ja")
    assert bottleneck_sentence("T06", {}) == "The main bottleneck is 'T06'."


def test_every_bottleneck_row_has_mean_and_median(datasets: Path) -> None:
    events = canonical_frame(datasets / "receipt.xes.gz")
    rows = compute_performance(events).to_dict()["bottlenecks"]
    assert rows
    for row in rows:
        assert row["meanWaitHours"] is not None and row["medianWaitHours"] is not None
