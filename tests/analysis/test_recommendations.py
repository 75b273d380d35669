from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.columns import ACTIVITY, CASE, ROW, TIMESTAMP
from analysis.recommendations import recommend
from tests._logs import canonical_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def frame(cases: dict[str, list[tuple[str, float]]], lifecycle: list[str] | None = None):
    """An event frame from {case: [(activity, hours since T0), ...]}."""
    rows = [(c, a, T0 + pd.Timedelta(hours=h)) for c, evs in cases.items() for a, h in evs]
    df = pd.DataFrame(rows, columns=[CASE, ACTIVITY, TIMESTAMP])
    df[ROW] = np.arange(len(df), dtype=np.int64)
    if lifecycle is not None:
        df["lifecycle:transition"] = lifecycle
    return df.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)


# waits before each event (hours): c1 b2 c1 d10 | c2 b1 c1 b2 c1 b2 d18 | c3 b1 c2 d6
KNOWN = {
    "c1": [("a", 0), ("b", 2), ("c", 3), ("d", 13)],
    "c2": [("a", 0), ("b", 1), ("c", 2), ("b", 4), ("c", 5), ("b", 7), ("d", 25)],
    "c3": [("a", 0), ("b", 1), ("c", 3), ("d", 9)],
}


def by_category(recs):
    return {r.category: r for r in recs}


def test_bottleneck_and_rework_figures_match_hand_computation():
    recs = by_category(recommend(frame(KNOWN), {}))
    total_cycle = 13 + 25 + 9  # hours, = sum of all waits
    wait_d = 10 + 18 + 6
    bottleneck = recs["Process Optimization"]
    assert "'d'" in bottleneck.recommendation
    assert f"{100 * wait_d / total_cycle:.1f}% of all case time" in bottleneck.recommendation
    assert f"by {100 * 0.5 * wait_d / total_cycle:.1f}%" in bottleneck.expected_improvement
    # 17 h saved over 3 cases; mean cycle 47/3 h -> 30/3 h
    assert "about 5.7 hours per case, from 15.7 hours to 10.0 hours" in (
        bottleneck.expected_improvement
    )
    assert bottleneck.priority == "High"
    assert bottleneck.basis

    rework = recs["Rework Reduction"]
    # 15 events, b repeated twice and c once in c2
    assert "3 of 15 events (20.0%)" in rework.recommendation
    assert "'b' is repeated most (2 repetitions in 1 case)" in rework.recommendation
    # removing the two repeated b's: 2 events (13.3%) and 2 + 2 hours of waiting before them
    assert "removes 2 events (13.3% of all)" in rework.expected_improvement
    assert "4.0 hours of waiting per affected case" in rework.expected_improvement
    assert f"({100 * 4 / total_cycle:.1f}% of all case time)" in rework.expected_improvement
    assert rework.priority == "High"
    assert set(rework.to_dict()) == {
        "category",
        "priority",
        "recommendation",
        "expectedImprovement",
        "basis",
    }


def test_discovery_bottleneck_is_used_when_named():
    doc = {
        "phaseResults": [
            {
                "phaseName": "Process Discovery",
                "results": {
                    "performanceMetrics": {
                        "bottleneckActivities": ["c"],
                        "bottlenecks": [{"activity": "c", "totalWaitHours": 5.0}],
                    }
                },
            }
        ]
    }
    rec = by_category(recommend(frame(KNOWN), doc))["Process Optimization"]
    wait_c = 1 + 1 + 1 + 2  # before every c
    assert "'c'" in rec.recommendation
    assert f"by {100 * 0.5 * wait_c / 47:.1f}%" in rec.expected_improvement
    assert "discovery phase" in rec.basis


def test_document_driven_recommendations():
    doc = {
        "phaseResults": [
            {
                "phaseName": "Data Loading and Validation",
                "results": {
                    "recordsLoaded": 1000,
                    "dataQualityScore": 98.0,
                    "dataQualityMethod": "valid / loaded",
                    "validationErrors": [
                        {"type": "Missing Timestamp", "count": 3, "resolved": True},
                        {"type": "Duplicate Event", "count": 2, "resolved": True},
                        {"type": "Unknown Case", "count": 0, "resolved": True},
                    ],
                    "cases": 3,
                },
            },
            {
                "phaseName": "Process Discovery",
                "results": {
                    "conformance": {
                        "fitness": 0.75,
                        "fittingTracesPercentage": 60.0,
                        "method": "token replay",
                    }
                },
            },
            {
                "phaseName": "Machine Learning Analysis",
                "results": {
                    "anomalies": {
                        "detected": 2,
                        "highSeverity": 1,
                        "method": "isolation forest",
                        "topAnomalies": [{"caseId": "c2", "score": 0.9, "severity": "high"}],
                    }
                },
            },
        ]
    }
    recs = by_category(recommend(frame(KNOWN), doc))
    quality = recs["Data Quality"]
    assert "Missing Timestamp (3 records), Duplicate Event (2 records)" in quality.recommendation
    assert "Unknown Case" not in quality.recommendation
    assert "from 98.0 to 98.5 (+0.5 points)" in quality.expected_improvement  # 98 + 100*5/1000
    assert quality.priority == "Medium"
    conformance = recs["Compliance"]
    assert "0.75" in conformance.recommendation
    assert "40.0% of cases (1 case)" in conformance.recommendation
    assert conformance.priority == "Medium"
    # 1 of 3 cases is high severity (33%): many
    risk = recs["Risk Management"]
    assert "1 high-severity" in risk.recommendation
    # c2 lasts 25 h, the mean case 47/3 h: 1.6x, 25/47 of all case time
    assert "(1.6× the mean of all cases)" in risk.expected_improvement
    assert f"{100 * 25 / 47:.1f}% of all case time" in risk.expected_improvement
    order = [r.priority for r in recommend(frame(KNOWN), doc)]
    assert order == sorted(order, key=["High", "Medium", "Low"].index)


def test_nothing_applies():
    # every event at one instant per case, no activity repeated, a healthy document
    quiet = frame({"c1": [("a", 0), ("b", 0)], "c2": [("a", 5), ("c", 5)]})
    doc = {
        "phaseResults": [
            {
                "phaseName": "Data Loading and Validation",
                "results": {"recordsLoaded": 4, "dataQualityScore": 100.0, "validationErrors": []},
            },
            {"phaseName": "Process Discovery", "results": {"conformance": {"fitness": 0.97}}},
            {
                "phaseName": "Machine Learning Analysis",
                "results": {"anomalies": {"detected": 0, "highSeverity": 0}},
            },
        ]
    }
    assert recommend(quiet, doc) == []
    assert recommend(quiet, {}) == []


def test_lifecycle_start_complete_is_not_rework():
    events = frame(
        {"c1": [("a", 0), ("a", 1), ("b", 2), ("b", 3)]},
        lifecycle=["start", "complete", "start", "complete"],
    )
    assert "Rework Reduction" not in by_category(recommend(events, {}))
    events = frame(
        {"c1": [("a", 0), ("a", 1), ("a", 2), ("a", 3)]},
        lifecycle=["start", "complete", "start", "complete"],
    )
    rework = by_category(recommend(events, {}))["Rework Reduction"]
    assert "1 of 2 completed executions" in rework.recommendation


@pytest.mark.parametrize("log", ["receipt.xes.gz"])
def test_real_log_bottleneck_share_matches_independent_computation(datasets: Path, log: str):
    events = canonical_frame(datasets / log)
    recs = by_category(recommend(events, {}))
    t = events[TIMESTAMP]
    wait = t.groupby(events[CASE]).diff().dt.total_seconds()
    per_activity = wait.groupby(events[ACTIVITY]).sum()
    span = t.groupby(events[CASE]).agg(lambda s: (s.max() - s.min()).total_seconds()).sum()
    top = per_activity.idxmax()
    rec = recs["Process Optimization"]
    assert f"'{top}'" in rec.recommendation
    assert f"by {50 * per_activity[top] / span:.1f}%" in rec.expected_improvement
    repeats = int(events.groupby([CASE, ACTIVITY]).cumcount().gt(0).sum())
    assert f"{repeats:,} of {len(events):,} events" in recs["Rework Reduction"].recommendation
