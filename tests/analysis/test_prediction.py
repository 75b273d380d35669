from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

import analysis.prediction as prediction
from analysis.anomalies import detect_anomalies
from analysis.case_features import build_case_features
from analysis.columns import CASE, TIMESTAMP
from analysis.dfg import event_seconds
from analysis.errors import InvalidParameter
from analysis.patterns import find_patterns
from analysis.prediction import (
    GLOBAL_MEDIAN,
    HORIZON_QUANTILE,
    LAST_ACTIVITY_MEDIAN,
    LAST_ACTIVITY_MOST_FREQUENT,
    MODEL,
    MOST_FREQUENT,
    TOLERANCE,
    _prefixes,
    _select,
    _split_prefixes,
    predict_cycle_time,
    predict_next_activity,
    remaining_time_scores,
    save_models,
    time_ordered_split,
    wilson_lower_bound,
)
from analysis.runs import ProcessMiningRun
from tests._logs import canonical_frame
from tests.synthetic_logs import generate_log

CYCLE_KEYS = {
    "accuracy",
    "meanAbsoluteError",
    "meanAbsoluteErrorHours",
    "method",
    "accuracyDefinition",
    "trainCases",
    "testCases",
    "splitTime",
    "baselineMeanAbsoluteErrorHours",
    "horizonHours",
    "excludedByHorizon",
    "usedPredictor",
    "selectionReason",
    "predictors",
    "validationCases",
    "validationPrefixes",
    "trainPrefixes",
    "testPrefixes",
}
PATH_KEYS = {
    "accuracy",
    "confidence",
    "method",
    "trainPrefixes",
    "testPrefixes",
    "baselineAccuracy",
    "confidenceDefinition",
    "usedPredictor",
    "selectionReason",
    "predictors",
    "validationCases",
    "validationPrefixes",
}


def _case_span(events: pd.DataFrame) -> pd.DataFrame:
    secs = pd.Series(event_seconds(events)).groupby(events[CASE].to_numpy())
    return pd.DataFrame({"start": secs.min(), "end": secs.max()})


@pytest.mark.parametrize("name", ["receipt.xes.gz", "sepsis.csv"])
def test_time_split_has_no_leakage(datasets: Path, name: str) -> None:
    events = canonical_frame(datasets / name)
    split = time_ordered_split(events, test_fraction=0.2)
    assert split.split_time is not None and split.horizon_hours is not None
    span = _case_span(events)
    split_s = split.split_time.timestamp()
    train, test = set(split.train_cases), set(split.test_cases)
    assert train and test and not train & test
    # recomputed from the events, not taken from the split's own fields
    assert span.loc[list(train), "end"].max() <= split_s + 1e-6
    assert span.loc[list(test), "start"].min() > split_s - 1e-6
    # the horizon: the quantile of the durations of the cases that ended before the split
    before = span[span["end"] <= split_s + 1e-6]
    horizon = float(np.quantile(before["end"] - before["start"], HORIZON_QUANTILE))
    assert split.horizon_hours == pytest.approx(horizon / 3600.0)
    assert horizon > 0
    # training cases started >= H before the split, test cases >= H before the log's end
    log_end = span["end"].max()
    assert span.loc[list(train), "start"].max() <= split_s - horizon + 1e-6
    assert span.loc[list(test), "start"].max() <= log_end - horizon + 1e-6
    # exactly the cases breaking the horizon rule are excluded, and they are counted
    early = before.index[before["start"] <= split_s - horizon + 1e-6]
    late = span.index[span["start"] > split_s]
    eligible = late[span.loc[late, "start"] <= log_end - horizon + 1e-6]
    assert train == set(early) and test == set(eligible)
    assert split.excluded_train == len(before) - len(early)
    assert split.excluded_test == len(late) - len(eligible)
    assert split.excluded_by_horizon > 0
    counted = len(train) + len(test) + split.dropped_cases + split.excluded_by_horizon
    assert counted == len(span)
    assert split.to_dict()["excludedByHorizon"] == split.excluded_by_horizon
    # without the horizon: the plain split, a superset on both sides
    plain = time_ordered_split(events, test_fraction=0.2, horizon_quantile=None)
    assert plain.horizon_hours is None and plain.excluded_by_horizon == 0
    assert set(plain.train_cases) == set(before.index) and set(plain.test_cases) == set(late)
    # the prefixes a model trains on come from training cases only
    pre = _prefixes(events, split, random_state=0)
    assert set(pre.case[pre.train]) <= train
    assert set(pre.case[pre.test]) <= test
    assert len(pre.train) > 0 and len(pre.test) > 0


def test_split_rejects_bad_fraction(datasets: Path) -> None:
    events = canonical_frame(datasets / "running-example.xes")
    with pytest.raises(InvalidParameter):
        time_ordered_split(events, test_fraction=1.5)
    with pytest.raises(InvalidParameter):
        time_ordered_split(events, horizon_quantile=0.0)


def test_horizon_leaving_no_test_case_skips_with_reason(datasets: Path) -> None:
    # an early extract (up to the 30% point of case starts): its last 20% of cases start within
    # a few weeks, less than the horizon before its end, so no test case could have been
    # observed for the horizon and both predictions degrade instead of testing truncated cases
    events = canonical_frame(datasets / "receipt.xes.gz")
    starts = _case_span(events)["start"].sort_values()
    cutoff = pd.Timestamp(starts.iloc[int(0.3 * len(starts))], unit="s", tz="UTC")
    early = events[events[TIMESTAMP] <= cutoff].reset_index(drop=True)
    split = time_ordered_split(early)
    assert split.horizon_hours is not None and len(split.test_cases) == 0
    assert split.excluded_test > 0
    cycle = predict_cycle_time(early)
    path = predict_next_activity(early)
    assert cycle.accuracy is None and cycle.model is None and path.accuracy is None
    assert cycle.method.startswith("skipped") and "horizon" in cycle.method
    assert "0 test cases" in path.method
    assert cycle.to_dict()["excludedByHorizon"] == split.excluded_by_horizon


def test_prefixes_built_once_for_both_predictions(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    build = prediction._build_split_prefixes

    def counting(events: pd.DataFrame, random_state: int) -> Any:
        calls.append(random_state)
        return build(events, random_state)

    monkeypatch.setattr(prediction, "_build_split_prefixes", counting)
    monkeypatch.setattr(prediction, "_last_prefixes", [])
    events = canonical_frame(datasets / "receipt.xes.gz")
    cycle = predict_cycle_time(events)
    path = predict_next_activity(events)
    assert calls == [0]
    assert cycle.train_prefixes == path.train_prefixes
    predict_next_activity(events, random_state=1)  # another sample
    assert calls == [0, 1]
    moved = events.copy()
    moved[TIMESTAMP] = moved[TIMESTAMP] + pd.Timedelta(hours=1)
    predict_cycle_time(moved)  # another frame
    events[TIMESTAMP] = events[TIMESTAMP] + pd.Timedelta(hours=1)
    predict_cycle_time(events, random_state=1)  # same frame, re-timed in place
    assert calls == [0, 1, 0, 1]
    del moved
    assert prediction._last_prefixes  # still held for `events`
    del events
    gc.collect()
    assert not prediction._last_prefixes  # released with its frame


@pytest.mark.parametrize("name", ["receipt.xes.gz", "sepsis.csv"])
def test_predictions_on_real_logs(datasets: Path, name: str) -> None:
    events = canonical_frame(datasets / name)
    cycle = predict_cycle_time(events, random_state=0)
    path = predict_next_activity(events, random_state=0)
    c, p = cycle.to_dict(), path.to_dict()
    assert set(c) == CYCLE_KEYS and set(p) == PATH_KEYS
    print(f"\n{name}: cycle {c}\nnext {p}")
    assert c["accuracy"] is not None and 0.0 <= c["accuracy"] <= 1.0
    assert c["usedPredictor"] in {GLOBAL_MEDIAN, LAST_ACTIVITY_MEDIAN, MODEL}
    assert c["meanAbsoluteErrorHours"] > 0 and c["baselineMeanAbsoluteErrorHours"] > 0
    assert c["meanAbsoluteError"].split()[-1] in {"seconds", "minutes", "hours", "days"}
    assert c["trainCases"] > 0 and c["testCases"] > 0 and c["splitTime"]
    assert p["accuracy"] is not None and 0.0 <= p["accuracy"] <= 1.0
    assert 0.0 < p["confidence"] <= 1.0 and 0.0 <= p["baselineAccuracy"] <= 1.0
    # the classifier sees the last activity too, so it does not lose to the lookup baseline
    assert p["accuracy"] >= p["baselineAccuracy"] - 0.02
    assert p["trainPrefixes"] > 0 and p["testPrefixes"] > 0


def test_models_beat_baselines_on_synthetic_log() -> None:
    events = generate_log(n_cases=1500, anomaly_share=0.02, seed=7).events
    cycle = predict_cycle_time(events, random_state=0)
    path = predict_next_activity(events, random_state=0)
    print(f"\nsynthetic: cycle {cycle.to_dict()}\nnext {path.to_dict()}")
    assert cycle.mae_hours is not None and cycle.baseline_mae_hours is not None
    assert path.used_predictor == MODEL
    assert cycle.mae_hours < 0.8 * cycle.baseline_mae_hours
    assert path.accuracy is not None and path.baseline_accuracy is not None
    assert path.accuracy >= path.baseline_accuracy


def test_tiny_log_skips_with_reason(datasets: Path) -> None:
    events = canonical_frame(datasets / "running-example.xes")
    cycle = predict_cycle_time(events)
    path = predict_next_activity(events)
    assert cycle.accuracy is None and cycle.mae_hours is None and cycle.model is None
    assert path.accuracy is None and path.confidence is None and path.model is None
    assert cycle.method.startswith("skipped") and "test cases" in cycle.method
    assert path.method.startswith("skipped")
    assert cycle.to_dict()["meanAbsoluteError"] is None


def test_save_models_round_trip(datasets: Path, tmp_path: Path) -> None:
    events = canonical_frame(datasets / "receipt.xes.gz")
    anomalies = detect_anomalies(events)
    cycle = predict_cycle_time(events)
    path = predict_next_activity(events)
    target = tmp_path / "models.pkl"
    assert save_models(target, anomalies, cycle, path) == 3
    saved = joblib.load(target)
    models = saved["models"]
    assert set(models) == {"anomalyDetector", "cycleTimeRegressor", "nextActivityClassifier"}

    table = build_case_features(events).table
    detector = models["anomalyDetector"]
    scores = -detector["estimator"].score_samples(
        table[detector["featureNames"]].to_numpy(dtype=np.float64)
    )
    # the saved forest reproduces the forest scores the detector combined with its evidence
    assert anomalies.forest_scores is not None
    assert np.allclose(scores, anomalies.forest_scores.reindex(table.index).to_numpy())

    split = time_ordered_split(events)
    pre = _prefixes(events, split, random_state=0)
    x = pre.x[pre.test[:50]]
    regressor, classifier = models["cycleTimeRegressor"], models["nextActivityClassifier"]
    assert regressor["featureNames"] == pre.feature_names
    assert cycle.model is not None and path.model is not None
    assert np.allclose(regressor["estimator"].predict(x), cycle.model.predict(x))
    assert (classifier["estimator"].predict(x) == path.model.predict(x)).all()
    assert set(classifier["estimator"].classes_) <= set(events["concept:name"])
    assert regressor["metadata"]["trainCases"] == len(split.train_cases)

    # nothing fitted, nothing written
    tiny = canonical_frame(datasets / "running-example.xes")
    assert save_models(tmp_path / "none.pkl", predict_cycle_time(tiny)) == 0
    assert not (tmp_path / "none.pkl").exists()


@pytest.mark.slow
def test_all_phases_on_bpic2012(datasets: Path) -> None:
    events = canonical_frame(datasets / "bpic2012.xes.gz")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    anomalies = detect_anomalies(events)
    timings["anomalies"] = time.perf_counter() - start
    t = time.perf_counter()
    cycle = predict_cycle_time(events)
    timings["cycle"] = time.perf_counter() - t
    t = time.perf_counter()
    path = predict_next_activity(events)
    timings["next"] = time.perf_counter() - t
    t = time.perf_counter()
    patterns = find_patterns(events)
    timings["patterns"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    print("\nbpic2012 timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    print(anomalies.to_dict()["detected"], cycle.to_dict(), path.to_dict())
    assert anomalies.cases_scored == 13087
    assert cycle.accuracy is not None and path.accuracy is not None
    assert path.accuracy > path.baseline_accuracy  # type: ignore[operator]
    assert patterns.total_variants == 4366


# -- baselines, selection on validation cases, within-tolerance share, confidence ----------------


@pytest.fixture(scope="module")
def receipt_predictions(datasets: Path) -> tuple[Any, Any]:
    events = canonical_frame(datasets / "receipt.xes.gz")
    return predict_cycle_time(events), predict_next_activity(events)


@pytest.fixture(scope="module")
def sepsis_predictions(datasets: Path) -> tuple[Any, Any]:
    events = canonical_frame(datasets / "sepsis.csv")
    return predict_cycle_time(events), predict_next_activity(events)


@pytest.mark.parametrize("log", ["receipt_predictions", "sepsis_predictions"])
def test_baselines_reported_beside_the_model(log: str, request: pytest.FixtureRequest) -> None:
    cycle, path = request.getfixturevalue(log)
    c, p = cycle.to_dict(), path.to_dict()
    print(f"\n{log}: cycle used {c['usedPredictor']} ({c['selectionReason']})")
    for q in c["predictors"] + p["predictors"]:
        print(f"  {q['name']}: validation {q['validation']} held-out {q['heldOut']}")
    assert [q["name"] for q in c["predictors"]] == [GLOBAL_MEDIAN, LAST_ACTIVITY_MEDIAN, MODEL]
    assert [q["name"] for q in p["predictors"]] == [
        MOST_FREQUENT,
        LAST_ACTIVITY_MOST_FREQUENT,
        MODEL,
    ]
    for d in (c, p):
        used = [q for q in d["predictors"] if q["used"]]
        assert len(used) == 1 and used[0]["name"] == d["usedPredictor"]
        assert d["selectionReason"] and "validation" in d["selectionReason"]
        assert d["validationCases"] > 0 and d["validationPrefixes"] > 0
        for q in d["predictors"]:
            assert q["validation"] and q["heldOut"] and q["description"]
            assert q["heldOut"]["prefixes"] == d["testPrefixes"]
            assert q["validation"]["prefixes"] == d["validationPrefixes"]
    # the reported figures are the used predictor's held-out ones; the global median's MAE is
    # the baseline figure; the next-activity baseline is the per-last-activity lookup
    held = {q["name"]: q["heldOut"] for q in c["predictors"]}
    assert c["accuracy"] == held[c["usedPredictor"]]["withinTolerance"]
    assert c["meanAbsoluteErrorHours"] == held[c["usedPredictor"]]["meanAbsoluteErrorHours"]
    assert c["baselineMeanAbsoluteErrorHours"] == held[GLOBAL_MEDIAN]["meanAbsoluteErrorHours"]
    held = {q["name"]: q["heldOut"] for q in p["predictors"]}
    assert p["accuracy"] == held[p["usedPredictor"]]["accuracy"]
    assert p["baselineAccuracy"] == held[LAST_ACTIVITY_MOST_FREQUENT]["accuracy"]
    assert "25%" in c["accuracyDefinition"] and "0.25 x actual" in c["accuracyDefinition"]


@pytest.mark.parametrize("log", ["receipt_predictions", "sepsis_predictions"])
def test_used_predictor_never_worse_than_the_median_on_validation(
    log: str, request: pytest.FixtureRequest
) -> None:
    cycle, path = request.getfixturevalue(log)
    valid = {q.name: q.validation for q in cycle.predictors}
    used = valid[cycle.used_predictor]["meanAbsoluteErrorHours"]
    assert used == min(v["meanAbsoluteErrorHours"] for v in valid.values())
    assert used <= valid[GLOBAL_MEDIAN]["meanAbsoluteErrorHours"]
    valid = {q.name: q.validation for q in path.predictors}
    used = valid[path.used_predictor]["accuracy"]
    assert used == max(v["accuracy"] for v in valid.values())
    assert used >= valid[MOST_FREQUENT]["accuracy"]


def test_selection_keeps_the_simpler_predictor_unless_strictly_beaten() -> None:
    assert _select([("a", 2.0), ("b", 2.0), ("c", 1.0)], lower_is_better=True)[0] == "c"
    assert _select([("a", 1.0), ("b", 1.0), ("c", 1.0)], lower_is_better=True)[0] == "a"
    assert _select([("a", 0.5), ("b", 0.7), ("c", 0.7)], lower_is_better=False)[0] == "b"
    name, reason = _select([("a", None), (MODEL, None)], lower_is_better=True)
    assert name == MODEL and "no validation" in reason


def test_validation_cases_are_training_cases_that_start_last(datasets: Path) -> None:
    events = canonical_frame(datasets / "receipt.xes.gz")
    split, pre, _ = _split_prefixes(events, 0)
    assert pre is not None
    span = _case_span(events)
    valid_cases = set(pre.case[pre.train[pre.valid]])
    fit_cases = set(pre.case[pre.train[pre.fit]])
    assert valid_cases and fit_cases and not valid_cases & fit_cases
    assert valid_cases | fit_cases <= set(split.train_cases)
    assert not valid_cases & set(split.test_cases)
    assert span.loc[list(fit_cases), "start"].max() <= span.loc[list(valid_cases), "start"].min()
    assert pre.validation_cases == round(0.2 * len(split.train_cases))


def test_within_tolerance_share_is_exact() -> None:
    actual = np.array([10.0, 10.0, 10.0, 4.0, 0.0])
    predicted = np.array([12.5, 7.5, 12.6, 0.0, 0.0])
    scores = remaining_time_scores(predicted, actual)
    # |12.5-10| = 2.5 <= 0.25*10 counts, 12.6 does not, 0 vs 4 does not; the prefix with
    # nothing left (actual 0) is out of the share but in the MAE
    assert scores["withinTolerance"] == pytest.approx(2 / 4)
    assert scores["prefixesWithRemainingTime"] == 4 and scores["prefixes"] == 5
    assert scores["meanAbsoluteErrorHours"] == pytest.approx((2.5 + 2.5 + 2.6 + 4.0) / 5, abs=0.01)
    assert TOLERANCE == 0.25


@pytest.mark.parametrize("name", ["receipt.xes.gz", "sepsis.csv"])
def test_constant_predictors_score_low(datasets: Path, name: str) -> None:
    """'Finished now' (0) and the training median, scored like every predictor on the held-out
    prefixes: the old definition gave 'finished now' 0.87 on receipt."""
    events = canonical_frame(datasets / name)
    _, pre, _ = _split_prefixes(events, 0)
    assert pre is not None
    actual = pre.remaining_hours[pre.test]
    median = float(np.median(pre.remaining_hours[pre.train]))
    zero = remaining_time_scores(np.zeros(len(actual)), actual)
    constant = remaining_time_scores(np.full(len(actual), median), actual)
    print(f"\n{name}: finished now {zero}, median {constant}")
    assert zero["withinTolerance"] == 0.0
    assert constant["withinTolerance"] is not None and constant["withinTolerance"] < 0.15


def test_confidence_comes_from_held_out_figures(
    datasets: Path, tmp_path: Path, receipt_predictions: tuple[Any, Any]
) -> None:
    cycle, path = receipt_predictions
    # next-activity confidence: the Wilson lower bound of the held-out accuracy, test cases as n
    assert path.confidence == pytest.approx(wilson_lower_bound(path.accuracy, cycle.test_cases))
    assert 0.0 < path.confidence < path.accuracy
    assert wilson_lower_bound(0.9, 100) == pytest.approx(0.8256, abs=1e-3)
    assert path.to_dict()["confidenceDefinition"].startswith("lower bound of the 95 % Wilson")
    # overallConfidenceScore: the held-out figures of the used predictors, nothing else of them
    run = ProcessMiningRun(
        datasets / "receipt.xes.gz",
        tmp_path,
        {"analysisType": "comprehensive"},
    )
    run.run_load()
    run.run_machine_learning()
    assert run.cycle is not None and run.path_pred is not None and run.load is not None
    assert run.cycle.accuracy == cycle.accuracy and run.path_pred.accuracy == path.accuracy
    figures = [cycle.accuracy, path.accuracy, run.load.data_quality_score / 100]
    if run.anomalies is not None and run.anomalies.false_positive_rate is not None:
        figures.append(1 - run.anomalies.false_positive_rate)
    summary = run.summary()
    assert summary["overallConfidenceScore"] == round(100 * sum(figures) / len(figures), 1)
    assert "held-out" in summary["overallConfidenceMethod"]


def test_report_section_shows_baselines_beside_the_model(
    tmp_path: Path, receipt_predictions: tuple[Any, Any]
) -> None:
    import subprocess

    from analysis.prediction_report import (
        cycle_table_rows,
        next_table_rows,
        prediction_flowables,
    )
    from analysis.report_pdf import build_pdf, frame_size, styles, table

    cycle, path = receipt_predictions
    doc = {
        "phaseResults": [
            {
                "phaseName": "Machine Learning Analysis",
                "results": {
                    "predictions": {
                        "cycleTimePrediction": cycle.to_dict(),
                        "pathPrediction": path.to_dict(),
                    }
                },
            }
        ]
    }
    rows = cycle_table_rows(doc)
    assert rows[0] == ["Predictor", "Mean absolute error", "Within ±25 %", "Used"]
    assert [r[0] for r in rows[1:]] == [
        "Median remaining time",
        "Median remaining time after the last activity",
        "Model",
    ]
    assert sum(r[3] == "yes" for r in rows[1:]) == 1
    assert rows[3][1] == f"{cycle.predictor(MODEL).held_out['meanAbsoluteErrorHours']:,.1f} h"
    nxt = next_table_rows(doc)
    assert [r[0] for r in nxt[1:]] == [
        "Most frequent next activity",
        "Most frequent next activity after the last activity",
        "Model",
    ]
    ja = cycle_table_rows(doc, "ja")
    assert ja[0][0] == "予測手法" and ja[1][0] == "残り時間の中央値"
    assert next_table_rows(doc, "ja")[0][1] == "正解率"

    sheet = styles()
    story = prediction_flowables(doc, sheet, frame_size()[0], table)
    pdf = build_pdf(tmp_path / "p.pdf", story, "predictions")
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True)
    text = " ".join(out.stdout.decode().split())
    for expected in ("Remaining cycle time", "Median remaining time after the last activity"):
        assert expected in text
    assert "Most frequent next activity" in text and "Within ±25 %" in text
    assert f"{cycle.test_cases:,} test cases" in text


def test_executive_deck_has_the_predictors_slide(
    tmp_path: Path, receipt_predictions: tuple[Any, Any]
) -> None:
    from pptx import Presentation

    from analysis.executive import write_executive_summary

    cycle, path = receipt_predictions
    doc = {
        "operationName": "receipt",
        "status": "Completed",
        "phaseResults": [
            {
                "phaseName": "Machine Learning Analysis",
                "status": "Completed",
                "results": {
                    "predictions": {
                        "cycleTimePrediction": cycle.to_dict(),
                        "pathPrediction": path.to_dict(),
                    }
                },
            }
        ],
    }
    (deck,) = write_executive_summary(tmp_path, doc, None, None, formats=("PowerPoint",))
    slides = [s for s in Presentation(str(deck)).slides if s.shapes.title is not None]
    slide = next(s for s in slides if s.shapes.title.text == "Predictions")
    tables = [
        [[c.text for c in r.cells] for r in sh.table.rows] for sh in slide.shapes if sh.has_table
    ]
    assert [t[0][0] for t in tables] == ["Predictor", "Predictor"]
    assert [r[0] for r in tables[0][1:]] == [
        "Median remaining time",
        "Median remaining time after the last activity",
        "Model",
    ]
    assert tables[1][0] == ["Predictor", "Accuracy", "Used"]


def test_a_bad_model_is_not_used(datasets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.dummy import DummyRegressor

    def bad(n_train: int, categorical: np.ndarray, random_state: int) -> Any:
        return DummyRegressor(strategy="constant", constant=10_000.0)

    monkeypatch.setattr(prediction, "_regressor", bad)
    events = canonical_frame(datasets / "sepsis.csv")
    cycle = predict_cycle_time(events)
    assert cycle.used_predictor in {GLOBAL_MEDIAN, LAST_ACTIVITY_MEDIAN}
    model = cycle.predictor(MODEL)
    assert model is not None and not model.used
    assert cycle.mae_hours != model.held_out["meanAbsoluteErrorHours"]
