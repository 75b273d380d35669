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
    total_cycle = 13 + 25 + 9  # hours, = sum of all waits (no start events, no overlap)
    wait_d = 10 + 18 + 6
    bottleneck = recs["Process Optimization"]
    assert "'d'" in bottleneck.recommendation
    # the bottleneck table's figures: median 10 h, mean 34/3 h, share of all waiting 34/47
    assert "median 10.0 hours and a mean 11.3 hours before it (3 occurrences)" in (
        bottleneck.recommendation
    )
    assert f"{100 * wait_d / total_cycle:.1f}% of all waiting time" in bottleneck.recommendation
    assert f"up to {100 * 0.5 * wait_d / total_cycle:.1f}% of the average cycle time" in (
        bottleneck.expected_improvement
    )
    # 17 h saved over 3 cases; mean cycle 47/3 h -> 30/3 h
    assert "saves 5.7 hours per case on average" in bottleneck.expected_improvement
    assert "(from 15.7 hours to 10.0 hours)" in bottleneck.expected_improvement
    assert bottleneck.priority == "High"
    assert "previous completion in the same case" in bottleneck.basis

    rework = recs["Rework Reduction"]
    # 15 events, b repeated twice and c once in c2
    assert "3 of 15 events (20.0%)" in rework.recommendation
    assert "'b' is repeated most (2 repetitions in 1 case)" in rework.recommendation
    # removing the two repeated b's: 2 events (13.3%) and the 2 + 2 hours before them
    assert "removes 2 events (13.3% of all)" in rework.expected_improvement
    assert "4.0 hours per affected case between the previous completion" in (
        rework.expected_improvement
    )
    assert f"({100 * 4 / total_cycle:.1f}% of all case time)" in rework.expected_improvement
    assert rework.priority == "High"
    assert set(rework.to_dict()) == {
        "category",
        "priority",
        "recommendation",
        "expectedImprovement",
        "basis",
    }


def test_bottleneck_uses_the_documents_table_row():
    row = {
        "activity": "c",
        "meanWaitHours": 1.25,
        "medianWaitHours": 1.0,
        "totalWaitHours": 5.0,
        "occurrences": 4,
        "shareOfTotalWait": 0.1064,
    }
    perf = {"bottlenecks": [row], "totalCycleHours": 47.0, "totalWaitingHours": 47.0}
    doc = {
        "phaseResults": [
            {"phaseName": "Process Discovery", "results": {"performanceMetrics": perf}}
        ]
    }
    rec = by_category(recommend(frame(KNOWN), doc))["Process Optimization"]
    assert "'c'" in rec.recommendation
    assert "median 1.0 hours and a mean 1.2 hours before it (4 occurrences), 10.6%" in (
        rec.recommendation
    )
    assert f"up to {100 * 0.5 * 5 / 47:.1f}% of the average cycle time" in rec.expected_improvement
    assert "first row of the bottleneck table" in rec.basis


def test_bottleneck_waits_stop_at_the_activitys_start():
    # a: 0-1 h; b starts at 5 h and completes at 6 h: 4 h of waiting before b, not 5
    events = frame(
        {
            "c1": [("a", 0), ("a", 1), ("b", 5), ("b", 6)],
            "c2": [("a", 0), ("a", 1), ("b", 3), ("b", 4)],
        },
        lifecycle=["start", "complete", "start", "complete"] * 2,
    )
    rec = by_category(recommend(events, {}))["Process Optimization"]
    # waits before b: 4 h and 2 h
    assert "median 3.0 hours and a mean 3.0 hours before it (2 occurrences)" in rec.recommendation


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


def test_receipt_recommendation_figures_equal_the_bottleneck_table(datasets: Path):
    # one definition: the recommendation, the summary sentence and the table agree
    from analysis.formatting import hours_text
    from analysis.performance import bottleneck_sentence, compute_performance

    events = canonical_frame(datasets / "receipt.xes.gz")
    perf = compute_performance(events).to_dict()
    doc = {
        "phaseResults": [
            {"phaseName": "Process Discovery", "results": {"performanceMetrics": perf}}
        ]
    }
    row = perf["bottlenecks"][0]
    # waiting on a log without start events: the time since the case's previous event
    t = events[TIMESTAMP]
    gap = t.groupby(events[CASE]).diff().dt.total_seconds() / 3600
    waits = gap[events[ACTIVITY] == row["activity"]].dropna()
    assert row["meanWaitHours"] == pytest.approx(waits.mean(), abs=1e-3)
    assert row["medianWaitHours"] == pytest.approx(waits.median(), abs=1e-3)
    for source in (doc, {}):  # from the document, or measured the same way from the events
        rec = by_category(recommend(events, source))["Process Optimization"]
        expected = (
            f"'{row['activity']}': cases wait a median {hours_text(row['medianWaitHours'])} "
            f"and a mean {hours_text(row['meanWaitHours'])} before it "
            f"({row['occurrences']:,} occurrences), {100 * row['shareOfTotalWait']:.1f}% of all "
            "waiting time"
        )
        assert expected in rec.recommendation
    # the figures: mean 2.2 days where the median is 47 seconds
    assert "median 47 seconds and a mean 2.2 days" in rec.recommendation
    sentence = bottleneck_sentence(row["activity"], row)
    assert "median wait 47 seconds, mean 2.2 days" in sentence
    repeats = int(events.groupby([CASE, ACTIVITY]).cumcount().gt(0).sum())
    rework = by_category(recommend(events, {}))["Rework Reduction"]
    assert f"{repeats:,} of {len(events):,} events" in rework.recommendation


def test_low_precision_model_gets_a_model_quality_recommendation():
    conf = {"fitness": 1.0, "fittingTracesPercentage": 100.0, "precision": 0.13, "fScore": 0.23}
    doc = {"phaseResults": [{"phaseName": "Process Discovery", "results": {"conformance": conf}}]}
    rec = by_category(recommend(frame(KNOWN), doc))["Model Quality"]
    assert "fitness 1.00" in rec.recommendation
    assert "precision 0.13" in rec.recommendation
    assert "allows much more behaviour" in rec.recommendation
    assert rec.priority == "Medium"
    conf["precision"] = 0.8
    assert "Model Quality" not in by_category(recommend(frame(KNOWN), doc))
    # low fitness: the compliance recommendation names precision too
    conf["fitness"] = 0.7
    assert "fitness of only 0.70 (precision 0.80)" in (
        by_category(recommend(frame(KNOWN), doc))["Compliance"].recommendation
    )


def test_japanese_texts_are_registered():
    conf = {"fitness": 1.0, "fittingTracesPercentage": 100.0, "precision": 0.13, "fScore": 0.23}
    doc = {"phaseResults": [{"phaseName": "Process Discovery", "results": {"conformance": conf}}]}
    recs = by_category(recommend(frame(KNOWN), doc, lang="ja"))
    assert "precision 0.13" in recs["Model Quality"].recommendation
    assert "ログにない振る舞い" in recs["Model Quality"].recommendation
    assert "待ち時間の中央値 10.0 hours" in recs["Process Optimization"].recommendation


@pytest.mark.slow
def test_bpic2012_lifecycle_recommendation_equals_the_table(datasets: Path):
    # the issue's case: with start/complete events the recommendation said "33.3 h per
    # occurrence, 63.9 %" (gaps before every lifecycle event) while the table said "75.1 h mean,
    # 52 %" (waiting before the activity's start); now both are the table's
    from analysis.formatting import hours_text
    from analysis.performance import compute_performance

    events = canonical_frame(datasets / "bpic2012.xes.gz")
    row = compute_performance(events).to_dict()["bottlenecks"][0]
    assert row["meanWaitHours"] == pytest.approx(75.1, abs=0.05)
    assert row["shareOfTotalWait"] == pytest.approx(0.52, abs=0.005)
    rec = by_category(recommend(events, {}))["Process Optimization"]
    assert (
        f"median {hours_text(row['medianWaitHours'])} and a mean "
        f"{hours_text(row['meanWaitHours'])} before it ({row['occurrences']:,} occurrences), "
        f"{100 * row['shareOfTotalWait']:.1f}% of all waiting time"
    ) in rec.recommendation
    assert "63.9" not in rec.recommendation


def test_report_texts_do_not_import_pm4py():
    # the model-quality sentence lives here, not in analysis.conformance: a report from a
    # results.json must not pay pm4py's import
    import subprocess
    import sys

    code = (
        "import sys, analysis.report_pdf, analysis.executive, analysis.recommendations; "
        "assert 'pm4py' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
