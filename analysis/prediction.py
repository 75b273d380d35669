"""Predictive monitoring on case prefixes: remaining cycle time and the next activity.

Both models learn from prefixes (the first k events of a case, for every k before the last
event) and are evaluated on one split by time, so nothing of the future leaks into training.
An extract only shows a case as far as the extraction date, so cases that start near the end
of the log look short (their later events are missing, or only the quick ones are in it), and
cases that end before the split time are the short ones among those that started shortly before
it. A horizon H (a high quantile of the training cases' durations) removes both biases: training
cases start at least H before the split time and end before it, test cases start after the split
time and at least H before the last event of the log, so a case of typical length is observed to
completion on both sides.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from threadpoolctl import threadpool_limits

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds
from analysis.errors import InvalidParameter
from analysis.formatting import hours_text
from analysis.progress import Progress

MIN_TRAIN_CASES = 20
MIN_TEST_CASES = 5
MIN_TRAIN_PREFIXES = 50
MAX_TRAIN_PREFIXES = 30_000  # deterministic sample above this (random_state)
MAX_TEST_PREFIXES = 30_000
REGRESSOR_ITERATIONS = 50
REGRESSOR_LEAVES = 15  # leaves per tree (scikit-learn's default is 31)
CLASSIFIER_TREES = 20
# one thread: OpenMP workers spin and thrash when other jobs share the two cores
THREADS = 1
LAST_K = 3  # activities of the prefix encoded individually
MAX_CATEGORIES = 250  # HistGradientBoosting's categorical limit (< max_bins = 255)
MAX_COUNTED = 40  # most frequent activities whose prefix counts are features
HORIZON_QUANTILE = 0.95  # of the training cases' durations
ACCURACY_TOLERANCE = 0.2
ACCURACY_FLOOR_HOURS = 1.0

CYCLE_ACCURACY_DEFINITION = (
    "share of held-out prefixes whose predicted total cycle time (elapsed + predicted "
    f"remaining) is within {ACCURACY_TOLERANCE:.0%} of the actual total cycle time or within "
    f"{ACCURACY_FLOOR_HOURS:g} hour of it"
)


@dataclass(frozen=True)
class SplitInfo:
    """Cases on either side of `split_time` (None when the log is too small to split)."""

    split_time: pd.Timestamp | None
    train_cases: np.ndarray  # case ids (str): ended at or before split_time, started >= H before
    test_cases: np.ndarray  # case ids (str): started after split_time and >= H before the log end
    dropped_cases: int  # spanning the split time
    test_fraction: float
    max_train_end: pd.Timestamp | None
    min_test_start: pd.Timestamp | None
    horizon_hours: float | None = None  # H; None when not applied
    excluded_train: int = 0  # ended before split_time but started less than H before it
    excluded_test: int = 0  # started after split_time but less than H before the log end
    log_end: pd.Timestamp | None = None
    horizon_quantile: float | None = None

    @property
    def excluded_by_horizon(self) -> int:
        return self.excluded_train + self.excluded_test

    def to_dict(self) -> dict[str, Any]:
        return {
            "splitTime": None if self.split_time is None else self.split_time.isoformat(),
            "trainCases": len(self.train_cases),
            "testCases": len(self.test_cases),
            "droppedCases": self.dropped_cases,
            "testFraction": self.test_fraction,
            "horizonHours": _round(self.horizon_hours, 2),
            "excludedByHorizon": self.excluded_by_horizon,
        }


@dataclass(frozen=True)
class CycleTimePrediction:
    accuracy: float | None
    mae_hours: float | None
    baseline_mae_hours: float | None
    method: str
    accuracy_definition: str
    train_cases: int
    test_cases: int
    split_time: str | None
    train_prefixes: int = 0
    test_prefixes: int = 0
    # predict() gives hours: a HistGradientBoostingRegressor fitted on log1p(remaining hours)
    model: TransformedTargetRegressor | None = None
    feature_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    horizon_hours: float | None = None
    excluded_by_horizon: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": _round(self.accuracy),
            "meanAbsoluteError": None if self.mae_hours is None else hours_text(self.mae_hours),
            "meanAbsoluteErrorHours": _round(self.mae_hours, 2),
            "method": self.method,
            "accuracyDefinition": self.accuracy_definition,
            "trainCases": self.train_cases,
            "testCases": self.test_cases,
            "splitTime": self.split_time,
            "baselineMeanAbsoluteErrorHours": _round(self.baseline_mae_hours, 2),
            "horizonHours": _round(self.horizon_hours, 2),
            "excludedByHorizon": self.excluded_by_horizon,
        }


@dataclass(frozen=True)
class PathPrediction:
    accuracy: float | None
    confidence: float | None
    baseline_accuracy: float | None
    method: str
    train_prefixes: int
    test_prefixes: int
    model: RandomForestClassifier | None = None
    feature_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": _round(self.accuracy),
            "confidence": _round(self.confidence),
            "method": self.method,
            "trainPrefixes": self.train_prefixes,
            "testPrefixes": self.test_prefixes,
            "baselineAccuracy": _round(self.baseline_accuracy),
        }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def _case_bounds(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start row, end row exclusive, first seconds, last seconds) per case of the sorted frame."""
    cases = events[CASE].to_numpy()
    n = len(cases)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = cases[1:] != cases[:-1]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    secs = event_seconds(events)
    return starts, ends, secs[starts], secs[ends - 1]


def _timestamp(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(round(seconds * 1e6), unit="us", tz="UTC")


def time_ordered_split(
    events: pd.DataFrame,
    test_fraction: float = 0.2,
    horizon_quantile: float | None = HORIZON_QUANTILE,
) -> SplitInfo:
    """Split time = the start time of the case at the (1 - test_fraction) quantile of case
    starts. Cases ending at or before it train, cases starting after it test, others are
    dropped: the latest training event precedes the earliest test event.

    Against the right-censoring of the extract, a horizon H = the `horizon_quantile` of the
    training cases' durations (training data only) then keeps for training only the cases that
    started at least H before the split time, and for testing only the cases that started at
    least H before the last event of the log; `horizon_quantile=None` keeps all."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameter(
            f"test_fraction must be between 0 and 1, got {test_fraction}", field="test_fraction"
        )
    if horizon_quantile is not None and not 0.0 < horizon_quantile <= 1.0:
        raise InvalidParameter(
            f"horizon_quantile must be in (0, 1] or None, got {horizon_quantile}",
            field="horizon_quantile",
        )
    empty = np.array([], dtype=str)
    if len(events) == 0:
        return SplitInfo(None, empty, empty, 0, test_fraction, None, None)
    starts, _, first, last = _case_bounds(events)
    ids = events[CASE].to_numpy()[starts].astype(str)
    n = len(starts)
    k = n - max(1, round(test_fraction * n))
    end = float(last.max())
    if k <= 0:
        return SplitInfo(None, empty, empty, n, test_fraction, None, None, log_end=_timestamp(end))
    split = float(np.sort(first)[k - 1])
    train = last <= split
    test = first > split
    dropped = int(n - train.sum() - test.sum())
    horizon: float | None = None
    excluded_train = excluded_test = 0
    if horizon_quantile is not None and train.any():
        horizon = float(np.quantile(last[train] - first[train], horizon_quantile))
        early = first <= split - horizon
        late = first > end - horizon
        excluded_train = int((train & ~early).sum())
        excluded_test = int((test & late).sum())
        train &= early
        test &= ~late
    return SplitInfo(
        split_time=_timestamp(split),
        train_cases=ids[train],
        test_cases=ids[test],
        dropped_cases=dropped,
        test_fraction=test_fraction,
        max_train_end=_timestamp(float(last[train].max())) if train.any() else None,
        min_test_start=_timestamp(float(first[test].min())) if test.any() else None,
        horizon_hours=None if horizon is None else horizon / 3600.0,
        excluded_train=excluded_train,
        excluded_test=excluded_test,
        log_end=_timestamp(end),
        horizon_quantile=horizon_quantile,
    )


@dataclass(frozen=True)
class _Prefixes:
    """Features and targets of selected proper prefixes (a prefix ends at any event but the
    last of its case); `train`/`test` index the rows of `x`."""

    x: np.ndarray
    feature_names: list[str]
    categorical: np.ndarray  # bool mask over columns
    case: np.ndarray  # case id of each row
    remaining_hours: np.ndarray
    elapsed_hours: np.ndarray
    last_code: np.ndarray
    next_activity: np.ndarray  # names
    vocabulary: list[str]  # activity name per code (then "[other]", "[none]")
    train: np.ndarray
    test: np.ndarray
    all_train: int  # proper prefixes of training cases before sampling


def _sample(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if len(idx) > cap:
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return idx


def _prefixes(events: pd.DataFrame, split: SplitInfo, random_state: int) -> _Prefixes:
    """Prefix features of a deterministic sample of training and test prefixes."""
    starts, ends, first, last = _case_bounds(events)
    n = len(events)
    lengths = ends - starts
    position = np.arange(n) - np.repeat(starts, lengths)
    ids = events[CASE].to_numpy()[starts].astype(str)
    side = np.zeros(len(starts), dtype=np.int8)  # 1 train, 2 test, 0 dropped
    side[np.isin(ids, split.train_cases)] = 1
    side[np.isin(ids, split.test_cases)] = 2
    event_side = np.repeat(side, lengths)
    proper = position < np.repeat(lengths, lengths) - 1
    rng = np.random.default_rng(random_state)
    all_train = np.flatnonzero(proper & (event_side == 1))
    train = _sample(all_train, MAX_TRAIN_PREFIXES, rng)
    test = _sample(np.flatnonzero(proper & (event_side == 2)), MAX_TEST_PREFIXES, rng)
    idx = np.r_[train, test]

    secs = event_seconds(events)
    names = events[ACTIVITY].astype(str).to_numpy()
    codes, vocab = pd.factorize(names, sort=False)
    freq = np.bincount(codes, minlength=len(vocab))
    by_freq = np.argsort(-freq, kind="stable")
    # codes by frequency rank; rare ones beyond the categorical limit share the "other" code
    rank = np.empty(len(vocab), dtype=np.int64)
    rank[by_freq] = np.arange(len(vocab))
    ranked = np.minimum(rank[codes], MAX_CATEGORIES - 2)
    none = MAX_CATEGORIES - 1
    vocabulary = [str(vocab[c]) for c in by_freq[: MAX_CATEGORIES - 2]]
    pos = position[idx]
    t = secs[idx]
    case_start = np.repeat(first, lengths)[idx]
    cols: dict[str, np.ndarray] = {
        "prefix_length": pos + 1.0,
        "elapsed_hours": (t - case_start) / 3600.0,
        "since_previous_hours": np.where(pos > 0, t - secs[np.maximum(idx - 1, 0)], 0.0) / 3600.0,
        "hour": np.floor(t / 3600.0) % 24,
        "weekday": (np.floor(t / 86400.0) + 3) % 7,  # 1970-01-01 was a Thursday
    }
    categorical = [f"last_{k}" for k in range(1, LAST_K + 1)]
    for k in range(1, LAST_K + 1):
        cols[f"last_{k}"] = np.where(pos >= k - 1, ranked[np.maximum(idx - k + 1, 0)], none)
    # how often the last activity occurred so far (rework signal)
    occurrence = pd.DataFrame({"c": np.repeat(np.arange(len(starts)), lengths), "a": codes})
    repeats = occurrence.groupby(["c", "a"], sort=False).cumcount().to_numpy()
    cols["last_repeats"] = repeats[idx] + 1.0
    counted = min(len(vocabulary), MAX_COUNTED)
    onehot = np.zeros((n, counted), dtype=np.float32)
    rows = np.flatnonzero(ranked < counted)
    onehot[rows, ranked[rows]] = 1.0
    cum = np.cumsum(onehot, axis=0)
    case_first_row = np.repeat(starts, lengths)[idx]
    before = np.where((case_first_row > 0)[:, None], cum[np.maximum(case_first_row - 1, 0)], 0.0)
    counts = cum[idx] - before
    feature_names = list(cols) + [f"count_{vocabulary[i]}" for i in range(counted)]
    x = np.column_stack([*(cols[c].astype(np.float32) for c in cols), counts])
    return _Prefixes(
        x=x.astype(np.float32, copy=False),
        feature_names=feature_names,
        categorical=np.array([c in categorical for c in feature_names]),
        case=np.repeat(ids, lengths)[idx],
        remaining_hours=(np.repeat(last, lengths)[idx] - t) / 3600.0,
        elapsed_hours=cols["elapsed_hours"],
        last_code=cols["last_1"],
        next_activity=names[idx + 1].astype(str),
        vocabulary=[*vocabulary, "[other]", "[none]"],
        train=np.arange(len(train)),
        test=np.arange(len(train), len(idx)),
        all_train=len(all_train),
    )


@dataclass(frozen=True)
class _Cached:
    frame: weakref.ref[pd.DataFrame]
    key: tuple[int, int, int]  # rows, random_state, hash of the timestamps
    value: tuple[SplitInfo, _Prefixes | None, str | None]


# The last frame's split and prefixes: predict_cycle_time and predict_next_activity on the same
# frame build them once. Held by a weak reference (dropped with the frame) and keyed on the row
# count, random_state and the timestamps, so a different or re-timed frame is rebuilt.
_last_prefixes: list[_Cached] = []


def _forget(frame: weakref.ref[pd.DataFrame]) -> None:
    if _last_prefixes and _last_prefixes[0].frame is frame:
        _last_prefixes.clear()


def _split_prefixes(
    events: pd.DataFrame, random_state: int
) -> tuple[SplitInfo, _Prefixes | None, str | None]:
    """The time split, the prefixes (None when skipped) and the reason for skipping."""
    key = (len(events), random_state, hash(event_seconds(events).tobytes()))
    cached = _last_prefixes[0] if _last_prefixes else None
    if cached is not None and cached.frame() is events and cached.key == key:
        return cached.value
    value = _build_split_prefixes(events, random_state)
    _last_prefixes[:] = [_Cached(weakref.ref(events, _forget), key, value)]
    return value


def _build_split_prefixes(
    events: pd.DataFrame, random_state: int
) -> tuple[SplitInfo, _Prefixes | None, str | None]:
    split = time_ordered_split(events)
    if len(split.train_cases) < MIN_TRAIN_CASES or len(split.test_cases) < MIN_TEST_CASES:
        return (
            split,
            None,
            (
                f"the time split leaves {len(split.train_cases)} training and "
                f"{len(split.test_cases)} test cases; at least {MIN_TRAIN_CASES} and "
                f"{MIN_TEST_CASES} are needed ({_split_text(split)})"
            ),
        )
    pre = _prefixes(events, split, random_state)
    if len(pre.train) < MIN_TRAIN_PREFIXES or len(pre.test) == 0:
        return (
            split,
            None,
            (
                f"{len(pre.train)} training and {len(pre.test)} test prefixes; at least "
                f"{MIN_TRAIN_PREFIXES} and 1 are needed ({_split_text(split)})"
            ),
        )
    return split, pre, None


def _split_text(split: SplitInfo) -> str:
    when = "n/a" if split.split_time is None else split.split_time.isoformat()
    text = (
        f"time split at {when}: cases ending before it train, cases starting after it test, "
        f"{split.dropped_cases} cases spanning it dropped"
    )
    if split.horizon_quantile is None:
        return f"{text}; no horizon"
    if split.horizon_hours is None:
        return f"{text}; no horizon (no training case to estimate it from)"
    return (
        f"{text}; against right-censoring, horizon H = {split.horizon_hours:,.1f} h (the "
        f"{split.horizon_quantile:.0%} quantile of training case durations): training keeps cases "
        f"starting >= H before the split ({split.excluded_train} excluded), testing keeps cases "
        f"starting >= H before the log's last event ({split.excluded_test} excluded); "
        f"{len(split.train_cases)} training and {len(split.test_cases)} test cases remain"
    )


def predict_cycle_time(
    events: pd.DataFrame, random_state: int = 0, progress: Progress | None = None
) -> CycleTimePrediction:
    progress = progress or Progress()
    progress.update(0, 3, "Building prefixes for cycle-time prediction")
    split, pre, reason = _split_prefixes(events, random_state)
    split_when = None if split.split_time is None else split.split_time.isoformat()
    if pre is None:
        progress.update(3, 3, "Cycle-time prediction skipped")
        return CycleTimePrediction(
            accuracy=None,
            mae_hours=None,
            baseline_mae_hours=None,
            method=f"skipped: {reason}",
            accuracy_definition=CYCLE_ACCURACY_DEFINITION,
            train_cases=len(split.train_cases),
            test_cases=len(split.test_cases),
            split_time=split_when,
            horizon_hours=split.horizon_hours,
            excluded_by_horizon=split.excluded_by_horizon,
        )
    train, test = pre.train, pre.test
    booster = HistGradientBoostingRegressor(
        loss="absolute_error",  # the figure reported is the mean absolute error
        max_iter=REGRESSOR_ITERATIONS,
        learning_rate=0.2,
        max_leaf_nodes=REGRESSOR_LEAVES,
        # large leaves: remaining times are heavy-tailed, small leaves chase single outliers
        min_samples_leaf=_leaf_size(len(train)),
        categorical_features=pre.categorical,
        early_stopping=False,
        random_state=random_state,
    )
    # log1p target: remaining times span seconds to months; the median is unchanged by the
    # monotone transform, and in log space every tree step is a relative correction
    model = TransformedTargetRegressor(
        regressor=booster, func=np.log1p, inverse_func=np.expm1, check_inverse=False
    )
    training = f"Training the cycle-time regressor on {len(train):,} prefixes"
    with threadpool_limits(limits=THREADS), progress.heartbeat(1, 3, training):
        model.fit(pre.x[train], pre.remaining_hours[train])
    with threadpool_limits(limits=THREADS):
        progress.update(2, 3, f"Evaluating on {len(test):,} held-out prefixes")
        predicted = np.maximum(model.predict(pre.x[test]), 0.0)
    actual = pre.remaining_hours[test]
    error = np.abs(predicted - actual)
    total = pre.elapsed_hours[test] + actual
    hit = error <= np.maximum(ACCURACY_TOLERANCE * total, ACCURACY_FLOOR_HOURS)
    baseline = float(np.median(pre.remaining_hours[train]))
    progress.update(3, 3, "Cycle-time prediction done")
    return CycleTimePrediction(
        accuracy=float(hit.mean()),
        mae_hours=float(error.mean()),
        baseline_mae_hours=float(np.abs(actual - baseline).mean()),
        method=(
            f"HistGradientBoostingRegressor (absolute-error loss on log1p of the remaining "
            f"hours, {REGRESSOR_ITERATIONS} iterations, trees of <= {REGRESSOR_LEAVES} leaves of "
            f">= {_leaf_size(len(train))} prefixes) predicting the "
            "remaining time of a case prefix from its length, elapsed time, time since the "
            f"previous event, hour and weekday, last {LAST_K} activities (categorical), "
            "repetitions of the last activity and per-activity counts; "
            f"{_split_text(split)}; {_sizes_text(pre)}; baseline predicts the training median "
            "remaining time"
        ),
        accuracy_definition=CYCLE_ACCURACY_DEFINITION,
        train_cases=len(split.train_cases),
        test_cases=len(split.test_cases),
        split_time=split_when,
        train_prefixes=len(train),
        test_prefixes=len(test),
        model=model,
        feature_names=pre.feature_names,
        metadata=_metadata(split, pre, "remaining cycle time in hours"),
        horizon_hours=split.horizon_hours,
        excluded_by_horizon=split.excluded_by_horizon,
    )


def _leaf_size(n_train: int) -> int:
    """0.5% of the training prefixes, within [5, 100]."""
    return int(np.clip(n_train // 200, 5, 100))


def _sizes_text(pre: _Prefixes) -> str:
    return (
        f"{len(pre.train):,} training prefixes (of {pre.all_train:,}; deterministic sample of at "
        f"most {MAX_TRAIN_PREFIXES:,}) and {len(pre.test):,} test prefixes (at most "
        f"{MAX_TEST_PREFIXES:,})"
    )


def predict_next_activity(
    events: pd.DataFrame, random_state: int = 0, progress: Progress | None = None
) -> PathPrediction:
    progress = progress or Progress()
    progress.update(0, 3, "Building prefixes for next-activity prediction")
    split, pre, reason = _split_prefixes(events, random_state)
    if pre is not None and len(np.unique(pre.next_activity[pre.train])) < 2:
        reason = "the training prefixes have a single next activity; nothing to learn"
        pre = None
    if pre is None:
        progress.update(3, 3, "Next-activity prediction skipped")
        return PathPrediction(
            accuracy=None,
            confidence=None,
            baseline_accuracy=None,
            method=f"skipped: {reason}",
            train_prefixes=0,
            test_prefixes=0,
        )
    train, test = pre.train, pre.test
    # a random forest: HistGradientBoosting needs one tree per class per iteration, which is
    # several times slower with 20+ activities
    model = RandomForestClassifier(
        n_estimators=CLASSIFIER_TREES,
        max_depth=12,
        min_samples_leaf=3,
        random_state=random_state,
        n_jobs=THREADS,
    )
    training = f"Training the next-activity classifier on {len(train):,} prefixes"
    with progress.heartbeat(1, 3, training):
        model.fit(pre.x[train], pre.next_activity[train])
    progress.update(2, 3, f"Evaluating on {len(test):,} held-out prefixes")
    proba = model.predict_proba(pre.x[test])
    predicted = model.classes_[np.argmax(proba, axis=1)]
    actual = pre.next_activity[test]
    progress.update(3, 3, "Next-activity prediction done")
    return PathPrediction(
        accuracy=float((predicted == actual).mean()),
        confidence=float(proba.max(axis=1).mean()),
        baseline_accuracy=_baseline_next(pre),
        method=(
            f"RandomForestClassifier ({CLASSIFIER_TREES} trees, depth <= 12) predicting the next "
            "activity of a case prefix from the same prefix features as the cycle-time model "
            f"(activities as frequency-rank codes); {_split_text(split)}; {_sizes_text(pre)}; "
            "confidence = mean highest predicted probability on the test prefixes; baseline = "
            "the most frequent next activity after the same last activity in training"
        ),
        train_prefixes=len(train),
        test_prefixes=len(test),
        model=model,
        feature_names=pre.feature_names,
        metadata=_metadata(split, pre, "next activity name"),
    )


def _baseline_next(pre: _Prefixes) -> float:
    """Accuracy of predicting, for the test prefixes, the training's most frequent successor
    of their last activity (the overall most frequent one for unseen last activities)."""
    pairs = pd.DataFrame({"last": pre.last_code[pre.train], "next": pre.next_activity[pre.train]})
    counts = pairs.groupby(["last", "next"]).size().reset_index(name="n")
    best = counts.sort_values(["last", "n"], ascending=[True, False], kind="stable")
    best = best.drop_duplicates("last")
    lookup = dict(zip(best["last"].to_numpy(), best["next"].to_numpy(), strict=True))
    fallback = pairs["next"].mode().iloc[0]
    guess = np.array([lookup.get(c, fallback) for c in pre.last_code[pre.test]], dtype=object)
    return float((guess == pre.next_activity[pre.test]).mean())


def _metadata(split: SplitInfo, pre: _Prefixes, target: str) -> dict[str, Any]:
    return {
        "target": target,
        "splitTime": None if split.split_time is None else split.split_time.isoformat(),
        "trainCases": len(split.train_cases),
        "testCases": len(split.test_cases),
        "trainPrefixes": len(pre.train),
        "horizonHours": split.horizon_hours,
        "excludedByHorizon": split.excluded_by_horizon,
        # code i of the last_k features is vocabulary[i]; count_* columns follow its order
        "activityVocabulary": pre.vocabulary,
        "categoricalFeatures": [
            n for n, c in zip(pre.feature_names, pre.categorical, strict=True) if c
        ],
    }


def save_models(path: Path, *results: Any) -> int:
    """Write every fitted estimator among `results` (anomaly, cycle-time, next-activity results)
    with its feature names and training metadata to one joblib file; returns how many."""
    models: dict[str, dict[str, Any]] = {}
    names = {
        "AnomalyResult": "anomalyDetector",
        "CycleTimePrediction": "cycleTimeRegressor",
        "PathPrediction": "nextActivityClassifier",
    }
    for result in results:
        model = getattr(result, "model", None)
        if model is None:
            continue
        kind = type(result).__name__
        name = names.get(kind, kind)
        metadata = dict(getattr(result, "metadata", {}) or {})
        metadata["method"] = getattr(result, "method", "")
        if kind == "AnomalyResult":
            metadata["casesScored"] = result.cases_scored
        models[name] = {
            "estimator": model,
            "featureNames": list(getattr(result, "feature_names", [])),
            "metadata": metadata,
        }
    if not models:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"sklearnVersion": sklearn.__version__, "models": models}, path, compress=3)
    return len(models)
