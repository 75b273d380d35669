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

Each prediction has candidates — the model and plain baselines (the median remaining time,
globally and per last activity; the most frequent next activity, globally and per last
activity) — all reported side by side. Which one is used is decided on validation cases carved
from the training cases (the latest-starting 20 %), never on the test cases; every candidate is
then refitted on all training cases and its held-out figures measured on the test cases.
Remaining-time figures are the mean absolute error and the share within ±25 % of the actual
remaining time (CYCLE_ACCURACY_DEFINITION): "finished now" scores 0 and a constant c only the
share of remaining times inside [c/1.25, c/0.75], shown beside the model as the median baseline.
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
# deterministic sample above this (random_state). 20k rather than 30k pays for the selection
# stage's fits: on bpic2012 the held-out figures barely move (MAE 151.3 vs 151.1 h, accuracy
# 0.8438 vs 0.8434) and the phase's CPU time stays where it was before the selection stage
MAX_TRAIN_PREFIXES = 20_000
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
TOLERANCE = 0.25  # within-tolerance share: |predicted - actual| <= 0.25 * actual remaining
VALIDATION_FRACTION = 0.2  # of the training cases (the latest-starting ones) for selection
MAX_SELECTION_PREFIXES = 8_000  # fitting prefixes of the selection stage (sample): bounds its cost
CONFIDENCE_Z = 1.96  # Wilson score interval, 95 % two-sided

# predictor names (results `usedPredictor`, `predictors[].name`)
MODEL = "model"
GLOBAL_MEDIAN = "globalMedian"
LAST_ACTIVITY_MEDIAN = "lastActivityMedian"
MOST_FREQUENT = "mostFrequent"
LAST_ACTIVITY_MOST_FREQUENT = "lastActivityMostFrequent"

CYCLE_ACCURACY_DEFINITION = (
    f"share of held-out prefixes whose predicted remaining time is within {TOLERANCE:.0%} of the "
    f"actual remaining time (|predicted - actual| <= {TOLERANCE:g} x actual), counted over the "
    "held-out prefixes with an actual remaining time above 0 (a case's last event is never a "
    "prefix: the case is finished there; prefixes whose later events all carry the prefix's "
    "timestamp are left out of this share, as only a prediction of exactly 0 could meet it, and "
    "count in the mean absolute error); figures of the used predictor (usedPredictor), the "
    "others in predictors[]"
)
NEXT_CONFIDENCE_DEFINITION = (
    "lower bound of the 95 % Wilson score interval of the used predictor's held-out accuracy, "
    "with the number of held-out test cases as the sample size (a case's prefixes are not "
    "independent, so counting cases rather than prefixes keeps the bound conservative)"
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
class Predictor:
    """One candidate predictor and its figures on the validation and the held-out prefixes."""

    name: str
    description: str
    validation: dict[str, Any]
    held_out: dict[str, Any]
    used: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "used": self.used,
            "validation": self.validation,
            "heldOut": self.held_out,
        }


@dataclass(frozen=True)
class CycleTimePrediction:
    accuracy: float | None  # held-out within-tolerance share of the used predictor
    mae_hours: float | None  # held-out MAE of the used predictor
    baseline_mae_hours: float | None  # held-out MAE of the global median
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
    used_predictor: str | None = None
    selection_reason: str | None = None
    predictors: list[Predictor] = field(default_factory=list)
    validation_cases: int = 0
    validation_prefixes: int = 0

    def predictor(self, name: str) -> Predictor | None:
        return next((p for p in self.predictors if p.name == name), None)

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
            "usedPredictor": self.used_predictor,
            "selectionReason": self.selection_reason,
            "predictors": [p.to_dict() for p in self.predictors],
            "validationCases": self.validation_cases,
            "validationPrefixes": self.validation_prefixes,
            "trainPrefixes": self.train_prefixes,
            "testPrefixes": self.test_prefixes,
        }


@dataclass(frozen=True)
class PathPrediction:
    accuracy: float | None  # held-out accuracy of the used predictor
    confidence: float | None  # Wilson lower bound of `accuracy` (NEXT_CONFIDENCE_DEFINITION)
    baseline_accuracy: float | None  # held-out: most frequent successor of the last activity
    method: str
    train_prefixes: int
    test_prefixes: int
    model: RandomForestClassifier | None = None
    feature_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    used_predictor: str | None = None
    selection_reason: str | None = None
    predictors: list[Predictor] = field(default_factory=list)
    validation_cases: int = 0
    validation_prefixes: int = 0

    def predictor(self, name: str) -> Predictor | None:
        return next((p for p in self.predictors if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": _round(self.accuracy),
            "confidence": _round(self.confidence),
            "method": self.method,
            "trainPrefixes": self.train_prefixes,
            "testPrefixes": self.test_prefixes,
            "baselineAccuracy": _round(self.baseline_accuracy),
            "confidenceDefinition": NEXT_CONFIDENCE_DEFINITION,
            "usedPredictor": self.used_predictor,
            "selectionReason": self.selection_reason,
            "predictors": [p.to_dict() for p in self.predictors],
            "validationCases": self.validation_cases,
            "validationPrefixes": self.validation_prefixes,
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
    last of its case); `train`/`test` index the rows of `x` (training and held-out test cases);
    `valid` the rows of `train` from validation cases (the latest-starting VALIDATION_FRACTION
    of the training cases), `fit` (a sample of) the others: predictors are chosen by fitting on
    `fit` and scoring on `valid`, then refitted on `train` and scored on `test`."""

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
    # the rows of `train` from validation cases, and from the other (fitting) training cases
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation_cases: int = 0


def _sample(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if len(idx) > cap:
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return idx


def _case_sides(ids: np.ndarray, first: np.ndarray, split: SplitInfo) -> tuple[np.ndarray, int]:
    """Per case: 1 fitting, 3 validation (the VALIDATION_FRACTION of the training cases that
    start last, stable order on ties), 2 test, 0 dropped; and the number of validation cases."""
    side = np.zeros(len(ids), dtype=np.int8)
    training = np.isin(ids, split.train_cases)
    side[training] = 1
    side[np.isin(ids, split.test_cases)] = 2
    train_rows = np.flatnonzero(training)
    n_valid = round(VALIDATION_FRACTION * len(train_rows)) if len(train_rows) >= 2 else 0
    if n_valid:
        latest = train_rows[np.argsort(first[train_rows], kind="stable")][-n_valid:]
        side[latest] = 3
    return side, n_valid


def _prefixes(events: pd.DataFrame, split: SplitInfo, random_state: int) -> _Prefixes:
    """Prefix features of a deterministic sample of training and test prefixes."""
    starts, ends, first, last = _case_bounds(events)
    n = len(events)
    lengths = ends - starts
    position = np.arange(n) - np.repeat(starts, lengths)
    ids = events[CASE].to_numpy()[starts].astype(str)
    side, n_valid = _case_sides(ids, first, split)
    event_side = np.repeat(side, lengths)
    proper = position < np.repeat(lengths, lengths) - 1
    rng = np.random.default_rng(random_state)
    all_train = np.flatnonzero(proper & ((event_side == 1) | (event_side == 3)))
    train = _sample(all_train, MAX_TRAIN_PREFIXES, rng)
    test = _sample(np.flatnonzero(proper & (event_side == 2)), MAX_TEST_PREFIXES, rng)
    in_valid = event_side[train] == 3
    fit = _sample(np.flatnonzero(~in_valid), MAX_SELECTION_PREFIXES, rng)
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
        valid=np.flatnonzero(in_valid),
        fit=fit,
        validation_cases=n_valid,
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


def remaining_time_scores(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Mean absolute error (hours) over all prefixes, and the share of prefixes with an actual
    remaining time above 0 whose prediction is within TOLERANCE of it
    (|predicted - actual| <= TOLERANCE * actual); None when no prefix qualifies."""
    error = np.abs(np.asarray(predicted, dtype=np.float64) - actual)
    positive = actual > 0
    within = (
        float((error[positive] <= TOLERANCE * actual[positive]).mean()) if positive.any() else None
    )
    return {
        "meanAbsoluteErrorHours": _round(float(error.mean()), 2) if len(error) else None,
        "withinTolerance": _round(within),
        "prefixes": len(actual),
        "prefixesWithRemainingTime": int(positive.sum()),
    }


def _medians_by_last(last: np.ndarray, remaining: np.ndarray) -> tuple[np.ndarray, float]:
    """Median remaining hours per last-activity code (the global median for codes not seen)."""
    overall = float(np.median(remaining))
    table = np.full(MAX_CATEGORIES, overall)
    grouped = pd.Series(remaining).groupby(last.astype(np.int64)).median()
    table[grouped.index.to_numpy()] = grouped.to_numpy()
    return table, overall


def _select(candidates: list[tuple[str, float | None]], lower_is_better: bool) -> tuple[str, str]:
    """The candidate with the best validation figure; a later (more complex) candidate must be
    strictly better than every earlier one. Returns (name, reason)."""
    scored = [(n, v) for n, v in candidates if v is not None]
    if not scored:
        return (
            MODEL,
            "no validation figures (too few validation or fitting prefixes): the model is used",
        )
    best_name, best = scored[0]
    for name, value in scored[1:]:
        if (value < best) if lower_is_better else (value > best):
            best_name, best = name, value
    return best_name, ""


def _regressor(n_train: int, categorical: np.ndarray, random_state: int) -> Any:
    booster = HistGradientBoostingRegressor(
        loss="absolute_error",  # the figure reported is the mean absolute error
        max_iter=REGRESSOR_ITERATIONS,
        learning_rate=0.2,
        max_leaf_nodes=REGRESSOR_LEAVES,
        # large leaves: remaining times are heavy-tailed, small leaves chase single outliers
        min_samples_leaf=_leaf_size(n_train),
        categorical_features=categorical,
        early_stopping=False,
        random_state=random_state,
    )
    # log1p target: remaining times span seconds to months; the median is unchanged by the
    # monotone transform, and in log space every tree step is a relative correction
    return TransformedTargetRegressor(
        regressor=booster, func=np.log1p, inverse_func=np.expm1, check_inverse=False
    )


def _remaining_guesses(
    pre: _Prefixes, fit: np.ndarray, rows: np.ndarray, random_state: int
) -> tuple[dict[str, np.ndarray], Any, np.ndarray, float]:
    """Every candidate fitted on the prefixes `fit` and predicting the prefixes `rows`: the
    predictions by name, the fitted model, the median per last-activity code and overall."""
    model = _regressor(len(fit), pre.categorical, random_state)
    with threadpool_limits(limits=THREADS):
        model.fit(pre.x[fit], pre.remaining_hours[fit])
        predicted = np.maximum(model.predict(pre.x[rows]), 0.0)
    by_last, median = _medians_by_last(pre.last_code[fit], pre.remaining_hours[fit])
    guesses = {
        GLOBAL_MEDIAN: np.full(len(rows), median),
        LAST_ACTIVITY_MEDIAN: by_last[pre.last_code[rows].astype(np.int64)],
        MODEL: predicted,
    }
    return guesses, model, by_last, median


def _remaining_description(name: str, median: float) -> str:
    return {
        GLOBAL_MEDIAN: f"the median remaining time of the training prefixes ({hours_text(median)})",
        LAST_ACTIVITY_MEDIAN: (
            "the median remaining time of the training prefixes ending with the same activity "
            "(the global median for an activity not seen there)"
        ),
        MODEL: "the gradient-boosted regressor on the prefix features",
    }[name]


def _choose_remaining(
    pre: _Prefixes, random_state: int
) -> tuple[dict[str, dict[str, Any]], str, str]:
    """Validation figures of every remaining-time candidate (fitted on the fitting cases), the
    one to use and why."""
    validation: dict[str, dict[str, Any]] = {}
    train, valid = pre.train, pre.valid
    if len(valid) and len(pre.fit) >= MIN_TRAIN_PREFIXES:
        guesses, *_ = _remaining_guesses(pre, train[pre.fit], train[valid], random_state)
        y = pre.remaining_hours[train[valid]]
        validation = {n: remaining_time_scores(g, y) for n, g in guesses.items()}
    used, reason = _select(
        [(n, validation[n]["meanAbsoluteErrorHours"] if validation else None) for n in _CYCLE],
        lower_is_better=True,
    )
    if not reason:
        figures = ", ".join(
            f"{n} {v['meanAbsoluteErrorHours']:,.1f} h" for n, v in validation.items()
        )
        reason = (
            f"lowest mean absolute error on the {pre.validation_cases} validation cases "
            f"({len(valid):,} prefixes): {figures}; a baseline is kept unless the model is "
            "strictly better"
        )
    return validation, used, reason


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
    train, valid, test = pre.train, pre.valid, pre.test
    selecting = f"Choosing the cycle-time predictor on {len(valid):,} validation prefixes"
    with progress.heartbeat(1, 3, selecting):
        validation, used, reason = _choose_remaining(pre, random_state)
    training = f"Training the cycle-time regressor on {len(train):,} prefixes"
    with progress.heartbeat(2, 3, training):
        guesses, model, by_last, median = _remaining_guesses(pre, train, test, random_state)
    y = pre.remaining_hours[test]
    held_out = {n: remaining_time_scores(g, y) for n, g in guesses.items()}
    predictors = [
        Predictor(
            n, _remaining_description(n, median), validation.get(n, {}), held_out[n], n == used
        )
        for n in _CYCLE
    ]
    progress.update(3, 3, "Cycle-time prediction done")
    metadata = _metadata(split, pre, "remaining cycle time in hours")
    metadata |= {
        "usedPredictor": used,
        "globalMedianHours": median,
        "lastActivityMedianHours": {
            name: float(by_last[code]) for code, name in enumerate(pre.vocabulary[:-1])
        },
    }
    return CycleTimePrediction(
        accuracy=held_out[used]["withinTolerance"],
        mae_hours=held_out[used]["meanAbsoluteErrorHours"],
        baseline_mae_hours=held_out[GLOBAL_MEDIAN]["meanAbsoluteErrorHours"],
        method=(
            f"used: {used}. Candidates: the global median remaining time, the median remaining "
            "time per last activity, and a HistGradientBoostingRegressor (absolute-error loss on "
            f"log1p of the remaining hours, {REGRESSOR_ITERATIONS} iterations, trees of <= "
            f"{REGRESSOR_LEAVES} leaves of >= {_leaf_size(len(train))} prefixes) predicting the "
            "remaining time of a case prefix from its length, elapsed time, time since the "
            f"previous event, hour and weekday, last {LAST_K} activities (categorical), "
            f"repetitions of the last activity and per-activity counts. {_selection_text()}; "
            f"{_split_text(split)}; {_sizes_text(pre)}"
        ),
        accuracy_definition=CYCLE_ACCURACY_DEFINITION,
        train_cases=len(split.train_cases),
        test_cases=len(split.test_cases),
        split_time=split_when,
        train_prefixes=len(train),
        test_prefixes=len(test),
        model=model,
        feature_names=pre.feature_names,
        metadata=metadata,
        horizon_hours=split.horizon_hours,
        excluded_by_horizon=split.excluded_by_horizon,
        used_predictor=used,
        selection_reason=reason,
        predictors=predictors,
        validation_cases=pre.validation_cases,
        validation_prefixes=len(valid),
    )


_CYCLE = (GLOBAL_MEDIAN, LAST_ACTIVITY_MEDIAN, MODEL)  # simplest first
_NEXT = (MOST_FREQUENT, LAST_ACTIVITY_MOST_FREQUENT, MODEL)


def _selection_text() -> str:
    return (
        f"Selection: the {VALIDATION_FRACTION:.0%} of the training cases that start last are "
        "validation cases; every candidate is fitted on the other training cases' prefixes "
        f"(a sample of at most {MAX_SELECTION_PREFIXES:,}) and scored on the validation cases' "
        "prefixes; the best is used (a baseline unless the model is strictly better); then "
        "every candidate is refitted on all training prefixes and scored on the held-out test "
        "cases (the figures reported)"
    )


def _leaf_size(n_train: int) -> int:
    """0.5% of the training prefixes, within [5, 100]."""
    return int(np.clip(n_train // 200, 5, 100))


def _sizes_text(pre: _Prefixes) -> str:
    return (
        f"{len(pre.train):,} training prefixes (of {pre.all_train:,}; deterministic sample of "
        f"at most {MAX_TRAIN_PREFIXES:,}; {len(pre.valid):,} of them from validation cases) and "
        f"{len(pre.test):,} test prefixes (at most {MAX_TEST_PREFIXES:,})"
    )


def wilson_lower_bound(share: float, n: int, z: float = CONFIDENCE_Z) -> float:
    """Lower end of the Wilson score interval of a share observed on n trials."""
    if n <= 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - spread) / (1 + z * z / n)))


def _choose_next(pre: _Prefixes, random_state: int) -> tuple[dict[str, dict[str, Any]], str, str]:
    """Validation figures of every next-activity candidate (fitted on the fitting cases), the
    one to use and why."""
    validation: dict[str, dict[str, Any]] = {}
    train, valid = pre.train, pre.valid
    fit = train[pre.fit]
    if len(valid) and len(np.unique(pre.next_activity[fit])) >= 2:
        guesses, *_ = _next_guesses(pre, fit, train[valid], random_state)
        y = pre.next_activity[train[valid]]
        validation = {n: _accuracy(g, y) for n, g in guesses.items()}
    used, reason = _select(
        [(n, validation[n]["accuracy"] if validation else None) for n in _NEXT],
        lower_is_better=False,
    )
    if not reason:
        figures = ", ".join(f"{n} {v['accuracy']:.3f}" for n, v in validation.items())
        reason = (
            f"highest accuracy on the {pre.validation_cases} validation cases "
            f"({len(valid):,} prefixes): {figures}; a baseline is kept unless the model is "
            "strictly better"
        )
    return validation, used, reason


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
    train, valid, test = pre.train, pre.valid, pre.test
    selecting = f"Choosing the next-activity predictor on {len(valid):,} validation prefixes"
    with progress.heartbeat(1, 3, selecting):
        validation, used, reason = _choose_next(pre, random_state)
    training = f"Training the next-activity classifier on {len(train):,} prefixes"
    with progress.heartbeat(2, 3, training):
        guesses, model, lookup, frequent = _next_guesses(pre, train, test, random_state)
    y = pre.next_activity[test]
    held_out = {n: _accuracy(g, y) for n, g in guesses.items()}
    descriptions = {
        MOST_FREQUENT: f"the most frequent next activity of the training prefixes ({frequent})",
        LAST_ACTIVITY_MOST_FREQUENT: (
            "the most frequent next activity after the same last activity in the training "
            "prefixes (the overall most frequent one for an activity not seen there)"
        ),
        MODEL: "the random-forest classifier on the prefix features",
    }
    predictors = [
        Predictor(n, descriptions[n], validation.get(n, {}), held_out[n], used=n == used)
        for n in _NEXT
    ]
    accuracy = held_out[used]["accuracy"]
    progress.update(3, 3, "Next-activity prediction done")
    metadata = _metadata(split, pre, "next activity name")
    metadata |= {
        "usedPredictor": used,
        "mostFrequent": frequent,
        "lastActivityMostFrequent": {
            name: str(lookup[code]) for code, name in enumerate(pre.vocabulary[:-1])
        },
    }
    return PathPrediction(
        accuracy=accuracy,
        confidence=None
        if accuracy is None
        else wilson_lower_bound(accuracy, len(split.test_cases)),
        baseline_accuracy=held_out[LAST_ACTIVITY_MOST_FREQUENT]["accuracy"],
        method=(
            f"used: {used}. Candidates: the most frequent next activity, the most frequent "
            "next activity after the same last activity, and a RandomForestClassifier "
            f"({CLASSIFIER_TREES} trees, depth <= 12) on the same prefix features as the "
            f"cycle-time model (activities as frequency-rank codes). {_selection_text()}; "
            f"{_split_text(split)}; {_sizes_text(pre)}; confidence = {NEXT_CONFIDENCE_DEFINITION}"
        ),
        train_prefixes=len(train),
        test_prefixes=len(test),
        model=model,
        feature_names=pre.feature_names,
        metadata=metadata,
        used_predictor=used,
        selection_reason=reason,
        predictors=predictors,
        validation_cases=pre.validation_cases,
        validation_prefixes=len(valid),
    )


def _next_guesses(
    pre: _Prefixes, fit: np.ndarray, rows: np.ndarray, random_state: int
) -> tuple[dict[str, np.ndarray], RandomForestClassifier, np.ndarray, str]:
    """Every candidate fitted on the prefixes `fit` and predicting the prefixes `rows`."""
    # a random forest: HistGradientBoosting needs one tree per class per iteration, which is
    # several times slower with 20+ activities
    model = RandomForestClassifier(
        n_estimators=CLASSIFIER_TREES,
        max_depth=12,
        min_samples_leaf=3,
        random_state=random_state,
        n_jobs=THREADS,
    )
    model.fit(pre.x[fit], pre.next_activity[fit])
    lookup, frequent = _successors(pre.last_code[fit], pre.next_activity[fit])
    guesses = {
        MOST_FREQUENT: np.full(len(rows), frequent, dtype=object),
        LAST_ACTIVITY_MOST_FREQUENT: lookup[pre.last_code[rows].astype(np.int64)],
        MODEL: model.predict(pre.x[rows]),
    }
    return guesses, model, lookup, frequent


def _accuracy(predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    hit = np.asarray(predicted).astype(str) == actual
    return {"accuracy": _round(float(hit.mean())) if len(hit) else None, "prefixes": len(hit)}


def _successors(last: np.ndarray, following: np.ndarray) -> tuple[np.ndarray, str]:
    """Per last-activity code, the most frequent next activity (ties: the first in name order);
    and the overall most frequent one (for codes not seen)."""
    pairs = pd.DataFrame({"last": last, "next": following})
    counts = pairs.groupby(["last", "next"]).size().reset_index(name="n")
    best = counts.sort_values(["last", "n"], ascending=[True, False], kind="stable")
    best = best.drop_duplicates("last")
    frequent = str(pairs["next"].mode().iloc[0])
    table = np.full(MAX_CATEGORIES, frequent, dtype=object)
    table[best["last"].to_numpy().astype(np.int64)] = best["next"].to_numpy()
    return table, frequent


def _metadata(split: SplitInfo, pre: _Prefixes, target: str) -> dict[str, Any]:
    return {
        "target": target,
        "splitTime": None if split.split_time is None else split.split_time.isoformat(),
        "trainCases": len(split.train_cases),
        "testCases": len(split.test_cases),
        "trainPrefixes": len(pre.train),
        "validationCases": pre.validation_cases,
        "validationPrefixes": len(pre.valid),
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
