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
    HORIZON_QUANTILE,
    _prefixes,
    predict_cycle_time,
    predict_next_activity,
    save_models,
    time_ordered_split,
)
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
}
PATH_KEYS = {
    "accuracy",
    "confidence",
    "method",
    "trainPrefixes",
    "testPrefixes",
    "baselineAccuracy",
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
