"""Anomalous cases: an Isolation Forest on robust-scaled case features, with reasons.

Scores are Isolation Forest anomaly scores s = 2^(-E[h(x)] / c(psi)) in (0, 1]; with a fixed
subsample size psi they are comparable across logs, so severities use fixed thresholds. Reasons
come from the features in which a flagged case is rarest relative to the rest of the log. The
false-positive rate is estimated on reference cases that are normal by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from analysis.case_features import (
    END,
    RARE_ACTIVITY_SHARE,
    RARE_TRANSITION_SHARE,
    START,
    CaseFeatures,
    build_case_features,
    case_features_with,
)
from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP
from analysis.dfg import event_seconds
from analysis.formatting import hours_text
from analysis.progress import Progress

# Severity thresholds on the anomaly score; below LOW a case is not flagged. 0.5 is the paper's
# "no distinct anomaly" level; 0.55 keeps the flagged share at a few percent on real logs.
LOW, MEDIUM, HIGH = 0.55, 0.60, 0.65
MIN_CASES = 10
N_ESTIMATORS = 150
# a larger subsample than the paper's 256 so frequent discrete variants are well represented
MAX_SAMPLES = 1024
TOP = 20
MAX_REASONS = 3
TAIL_SHARE = 0.05  # a value is notable when at most 5% of cases reach it
LOW_TAIL_SHARE = 0.01
UNUSUAL_HOUR_SHARE = 0.02
FREQUENT_VARIANT_SHARE = 0.01
REFERENCE_CASES = 2000

# the detector's inputs (a subset of the case features; resource ones only when present)
DETECTOR_FEATURES = (
    "log_duration",
    "log_max_gap",
    "log_delay_ratio",
    "event_count",
    "max_repeat",
    "loop_count",
    "transition_rarity",
    "rare_transition_count",
    "activity_rarity",
    "missing_common_count",
    "resource_changes",
    "start_hour_rarity",
)

METHOD = (
    f"Isolation Forest ({N_ESTIMATORS} trees, subsample {MAX_SAMPLES}) on robust-scaled case "
    "features (log duration, longest wait, duration against the sum of the path's median "
    "waits, event count, repetitions, direct loops, rarest "
    "transition and activity, missing common activities, resource changes, start-hour rarity); "
    f"score = Isolation Forest anomaly score in (0, 1]; flagged when score >= {LOW}, severity "
    f"low [{LOW}, {MEDIUM}), medium [{MEDIUM}, {HIGH}), high >= {HIGH}"
)
FPR_METHOD = (
    f"share flagged among up to {REFERENCE_CASES} reference cases that are normal by "
    f"construction: real cases of frequent variants (>= {FREQUENT_VARIANT_SHARE:.0%} of cases) "
    "resampled with every wait redrawn uniformly from the inter-quartile range of that "
    "transition's observed waits, scored by the fitted detector"
)


@dataclass(frozen=True)
class AnomalyResult:
    detected: int
    high: int
    medium: int
    low: int
    false_positive_rate: float | None
    method: str
    false_positive_rate_method: str
    cases_scored: int
    # every flagged case: caseId, score, severity, reasons ("; "-joined), by score descending
    cases: pd.DataFrame
    model: Pipeline | None = None
    feature_names: list[str] = field(default_factory=list)
    top_reasons: list[list[str]] = field(default_factory=list)  # reasons of `cases`' top rows

    def to_dict(self) -> dict[str, Any]:
        top = self.cases.head(TOP)
        return {
            "detected": self.detected,
            "highSeverity": self.high,
            "mediumSeverity": self.medium,
            "lowSeverity": self.low,
            "falsePositiveRate": (
                None if self.false_positive_rate is None else round(self.false_positive_rate, 4)
            ),
            "method": self.method,
            "falsePositiveRateMethod": self.false_positive_rate_method,
            "casesScored": self.cases_scored,
            "topAnomalies": [
                {
                    "caseId": str(row.caseId),
                    "score": round(float(row.score), 4),  # type: ignore[arg-type]
                    "severity": str(row.severity),
                    "reasons": reasons,
                }
                for row, reasons in zip(top.itertuples(index=False), self.top_reasons, strict=False)
            ],
        }


def _empty_cases() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "caseId": pd.Series([], dtype=str),
            "score": pd.Series([], dtype=float),
            "severity": pd.Series([], dtype=str),
            "reasons": pd.Series([], dtype=str),
        }
    )


def _severity(score: np.ndarray) -> np.ndarray:
    return np.where(score >= HIGH, "high", np.where(score >= MEDIUM, "medium", "low"))


def _share_text(share: float) -> str:
    return f"{share * 100:.2f}%" if share < 0.001 else f"{share * 100:.1f}%"


class _Tails:
    """Upper/lower tail shares of a feature's distribution over the log's cases."""

    def __init__(self, values: np.ndarray):
        self.sorted = np.sort(values)
        self.n = len(values)
        self.median = float(np.median(values)) if self.n else 0.0

    def upper(self, x: float) -> float:
        return (self.n - int(np.searchsorted(self.sorted, x, "left"))) / self.n

    def lower(self, x: float) -> float:
        return int(np.searchsorted(self.sorted, x, "right")) / self.n


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _strength(share: float) -> float:
    return -math.log10(max(share, 1e-9))


class _Reasons:
    """Reasons found for one case with their strength, and the weakest tail seen so far."""

    def __init__(self, tails: dict[str, _Tails]):
        self.tails = tails
        self.found: list[tuple[float, str]] = []
        self.weakest: tuple[float, str] | None = None

    def add(self, share: float, text: str, bonus: float = 0.0) -> None:
        self.found.append((_strength(share) + bonus, text))

    def tail(self, name: str, value: float, text: str) -> None:
        """A reason when `value` is in the feature's upper tail; else maybe the weakest one."""
        t = self.tails[name]
        share = t.upper(value)
        if value > t.median and share <= TAIL_SHARE:
            self.add(share, text)
        elif self.weakest is None or share < 10 ** (-self.weakest[0]):
            self.weakest = (_strength(share), f"{text}, reached by {_share_text(share)} of cases")


def _duration_reasons(r: _Reasons, row: Any) -> None:
    """Too long or too short, in itself and against the usual time of the case's path."""
    dur, med = float(row.duration_hours), r.tails["duration_hours"].median
    ratio = f"{dur / med:.1f}x the median" if med > 0 else "above the median"
    r.tail("duration_hours", dur, f"duration {ratio} ({hours_text(dur)} vs {hours_text(med)})")
    low_share = r.tails["duration_hours"].lower(dur)
    if dur < med and low_share <= LOW_TAIL_SHARE:
        r.add(low_share, f"unusually short: {hours_text(dur)} vs a median of {hours_text(med)}")
    expected = float(row.expected_hours)
    if expected > 0 and dur >= 2 * expected:
        r.tail(
            "log_delay_ratio",
            float(row.log_delay_ratio),
            f"took {dur / expected:.1f}x the usual time for its path ({hours_text(dur)} vs "
            f"{hours_text(expected)} from the median waits of its transitions)",
        )
    fast_share = r.tails["log_delay_ratio"].lower(float(row.log_delay_ratio))
    if expected > 0 and dur <= 0.5 * expected and fast_share <= LOW_TAIL_SHARE:
        r.add(
            fast_share,
            f"unusually fast for its path: {hours_text(dur)} vs {hours_text(expected)} from "
            "the median waits of its transitions",
        )


def _count_reasons(r: _Reasons, row: Any) -> None:
    """Long waits, repetitions, many events, many resource changes."""
    gap = float(row.max_gap_hours)
    r.tail(
        "max_gap_hours",
        gap,
        f"waited {hours_text(gap)} between two events "
        f"(median longest wait {hours_text(r.tails['max_gap_hours'].median)})",
    )
    if row.max_repeat >= 2:
        r.tail(
            "max_repeat",
            float(row.max_repeat),
            f"activity '{row.most_repeated_activity}' repeated {int(row.max_repeat)} times",
        )
    r.tail(
        "event_count",
        float(row.event_count),
        f"{int(row.event_count)} events (median {_num(r.tails['event_count'].median)})",
    )
    if "resource_changes" in r.tails:
        r.tail(
            "resource_changes",
            float(row.resource_changes),
            f"{int(row.resource_changes)} resource changes "
            f"(median {_num(r.tails['resource_changes'].median)})",
        )


def _rarity_reasons(r: _Reasons, row: Any, n_cases: int, activity_share: dict[str, float]) -> None:
    """Rare activities and transitions, a missing common activity, an unusual start hour."""
    rare_activity = ""
    a_share = float(row.min_activity_share)
    if a_share < RARE_ACTIVITY_SHARE:
        rare_activity = str(row.rarest_activity)
        k = round(a_share * n_cases)
        text = (
            f"unknown activity '{rare_activity}' (in no other case)"
            if k <= 1
            else f"rare activity '{rare_activity}' ({k} cases, {_share_text(a_share)})"
        )
        r.add(a_share, text, bonus=0.5)
    t_share = float(row.min_transition_share)
    src, tgt = str(row.rarest_transition_source), str(row.rarest_transition_target)
    if t_share < RARE_TRANSITION_SHARE and rare_activity not in (src, tgt):
        share = _share_text(t_share)
        if src == START:
            text = f"unusual first activity '{tgt}' ({share} of cases)"
        elif tgt == END:
            text = f"unusual last activity '{src}' ({share} of cases)"
        else:
            text = f"rare transition '{src}' -> '{tgt}' ({share} of cases)"
        r.add(t_share, text)
    if row.missing_common_count > 0 and row.missing_common_activity:
        present = activity_share.get(str(row.missing_common_activity), 0.0)
        r.add(
            1.0 - present,
            f"activity '{row.missing_common_activity}' missing "
            f"(present in {_share_text(present)} of cases)",
        )
    hour_share = float(row.start_hour_share)
    if hour_share < UNUSUAL_HOUR_SHARE:
        r.add(
            hour_share,
            f"started at {int(row.start_hour):02d}:00 UTC, outside usual hours "
            f"({_share_text(hour_share)} of cases start in that hour)",
        )


def _case_reasons(
    row: Any, tails: dict[str, _Tails], n_cases: int, activity_share: dict[str, float]
) -> list[str]:
    """Reasons for one flagged case, strongest first (strength = -log10 of the tail share)."""
    r = _Reasons(tails)
    _duration_reasons(r, row)
    _count_reasons(r, row)
    _rarity_reasons(r, row, n_cases, activity_share)
    found = sorted(r.found, key=lambda f: -f[0])
    if any(text.startswith("took ") for _, text in found):
        # the path-relative delay says more than the plain duration; keep one of them
        found = [(v, text) for v, text in found if not text.startswith("duration ")]
    reasons = [text for _, text in found[:MAX_REASONS]]
    if not reasons and r.weakest is not None:
        # no single feature is extreme: name the least common one ("; " separates reasons)
        reasons = [f"unusual combination of features, most unusual: {r.weakest[1]}"]
    return reasons


def _reference_events(
    events: pd.DataFrame, features: CaseFeatures, rng: np.random.Generator
) -> pd.DataFrame | None:
    """Normal-by-construction cases: real cases of frequent variants, waits redrawn from the
    inter-quartile range of each transition's observed waits. None if no variant is frequent."""
    table = features.table
    frequent = np.flatnonzero(
        (table["variant_share"].to_numpy() >= FREQUENT_VARIANT_SHARE)
        & (table["variant_share"].to_numpy() * len(table) >= 2)
    )
    if len(frequent) == 0:
        return None
    cases = events[CASE].to_numpy()
    same = np.r_[False, cases[1:] == cases[:-1]]
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:], len(events)]
    secs = event_seconds(events)
    codes, _ = pd.factorize(events[ACTIVITY])
    width = int(codes.max()) + 1
    edge = np.where(same, np.r_[0, codes[:-1]] * width + codes, -1)
    gaps = secs - np.r_[secs[:1], secs[:-1]]
    inner = same.nonzero()[0]
    quart = (
        pd.DataFrame({"e": edge[inner], "g": gaps[inner]})
        .groupby("e")["g"]
        .quantile(np.array([0.25, 0.75]))
        .unstack()
    )
    picked = np.sort(rng.choice(frequent, size=min(REFERENCE_CASES, 4 * len(table)), replace=True))
    lengths = ends[picked] - starts[picked]
    offsets = np.repeat(starts[picked] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    rows = np.arange(int(lengths.sum())) + offsets
    ref_case = np.repeat(np.arange(len(picked)), lengths)
    first = np.r_[True, ref_case[1:] != ref_case[:-1]]
    q = quart.reindex(edge[rows])
    # single-event cases have no transitions, hence no quartile columns
    lo = np.nan_to_num(q[0.25].to_numpy(dtype=np.float64)) if 0.25 in q else np.zeros(len(rows))
    hi = np.nan_to_num(q[0.75].to_numpy(dtype=np.float64)) if 0.75 in q else np.zeros(len(rows))
    wait = np.where(first, 0.0, rng.uniform(lo, hi))
    # cumulative waits restarted at each case's real start time
    total = np.cumsum(wait)
    base = np.repeat(total[first] - wait[first], lengths)
    new_secs = np.repeat(secs[starts[picked]], lengths) + (total - base)
    ref = pd.DataFrame(
        {
            CASE: np.char.add("ref-", np.char.zfill(ref_case.astype(str), 6)),
            ACTIVITY: events[ACTIVITY].to_numpy()[rows],
            TIMESTAMP: pd.to_datetime(
                np.round(new_secs * 1e6).astype(np.int64), unit="us", utc=True
            ),
            ROW: np.arange(len(rows), dtype=np.int64),
        }
    )
    if RESOURCE in events.columns:
        ref[RESOURCE] = events[RESOURCE].to_numpy()[rows]
    return ref


def _skipped(n_cases: int) -> AnomalyResult:
    return AnomalyResult(
        detected=0,
        high=0,
        medium=0,
        low=0,
        false_positive_rate=None,
        method=(
            f"skipped: the log has {n_cases} cases; anomaly detection needs at least {MIN_CASES}"
        ),
        false_positive_rate_method="not estimated: no detector was fitted",
        cases_scored=0,
        cases=_empty_cases(),
    )


def _detector(n_cases: int, random_state: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", RobustScaler()),
            (
                "forest",
                IsolationForest(
                    n_estimators=N_ESTIMATORS,
                    max_samples=min(MAX_SAMPLES, n_cases),
                    random_state=random_state,
                ),
            ),
        ]
    )


def _explain(features: CaseFeatures, flagged: np.ndarray) -> list[list[str]]:
    """The reasons of each flagged case (rows of the feature table), in `flagged`'s order."""
    table = features.table
    tail_columns = [
        "duration_hours",
        "log_delay_ratio",
        "max_gap_hours",
        "max_repeat",
        "event_count",
    ]
    if features.stats.has_resources:
        tail_columns.append("resource_changes")
    tails = {c: _Tails(table[c].to_numpy(dtype=np.float64)) for c in tail_columns}
    activity_share = dict(
        zip(features.stats.activities, features.stats.activity_case_share.tolist(), strict=True)
    )
    return [
        _case_reasons(row, tails, len(table), activity_share)
        for row in table.iloc[flagged].itertuples(index=False)
    ]


def detect_anomalies(
    events: pd.DataFrame,
    features: CaseFeatures | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> AnomalyResult:
    progress = progress or Progress()
    steps = 5
    progress.update(0, steps, "Building case features")
    if features is None:
        n_cases = int(events[CASE].nunique()) if len(events) else 0
        if n_cases < MIN_CASES:
            progress.update(steps, steps, "Anomaly detection skipped")
            return _skipped(n_cases)
        features = build_case_features(events)
    table = features.table
    n_cases = len(table)
    if n_cases < MIN_CASES:
        progress.update(steps, steps, "Anomaly detection skipped")
        return _skipped(n_cases)
    columns = [
        c
        for c in DETECTOR_FEATURES
        if features.stats.has_resources or c not in ("resource_changes", "distinct_resources")
    ]
    model = _detector(n_cases, random_state)
    x = table[columns].to_numpy(dtype=np.float64)
    with progress.heartbeat(1, steps, f"Fitting the Isolation Forest on {n_cases:,} cases"):
        model.fit(x)
    progress.update(2, steps, "Scoring cases")
    # rounded once, so the reported score, the flag and the severity always agree
    score = np.round(-model.score_samples(x), 4)
    flagged = np.flatnonzero(score >= LOW)
    flagged = flagged[np.argsort(-score[flagged], kind="stable")]
    severity = _severity(score[flagged])

    progress.update(3, steps, f"Explaining {len(flagged)} anomalous cases")
    reasons = _explain(features, flagged)
    cases = pd.DataFrame(
        {
            "caseId": table.index.to_numpy()[flagged].astype(str),
            "score": score[flagged],
            "severity": severity,
            "reasons": ["; ".join(r) for r in reasons],
        }
    )

    progress.update(4, steps, "Estimating the false-positive rate")
    fpr, fpr_method = _false_positive_rate(events, features, model, columns, random_state)
    progress.update(steps, steps, "Anomaly detection done")
    return AnomalyResult(
        detected=len(flagged),
        high=int((severity == "high").sum()),
        medium=int((severity == "medium").sum()),
        low=int((severity == "low").sum()),
        false_positive_rate=fpr,
        method=METHOD,
        false_positive_rate_method=fpr_method,
        cases_scored=n_cases,
        cases=cases if len(cases) else _empty_cases(),
        model=model,
        feature_names=columns,
        top_reasons=reasons[:TOP],
    )


def _false_positive_rate(
    events: pd.DataFrame,
    features: CaseFeatures,
    model: Pipeline,
    columns: list[str],
    random_state: int,
) -> tuple[float | None, str]:
    rng = np.random.default_rng(random_state)
    ref = _reference_events(events, features, rng)
    if ref is None:
        return None, (
            "not estimated: no variant covers "
            f">= {FREQUENT_VARIANT_SHARE:.0%} of cases (and 2 cases), so there is no "
            "reference of normal behaviour"
        )
    ref_features = case_features_with(ref, features.stats).table
    ref_score = np.round(-model.score_samples(ref_features[columns].to_numpy(dtype=np.float64)), 4)
    n_ref = len(ref_score)
    return float((ref_score >= LOW).mean()), f"{FPR_METHOD} ({n_ref} reference cases)"
