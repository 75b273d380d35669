"""Anomalous cases: control-flow and time evidence against the log itself, plus an Isolation
Forest on case features, combined into one ranked score with reasons that name the deviation.

Evidence kinds (`analysis.anomaly_evidence`): the rarest activity, the least likely
directly-follows steps (first and second order), repetitions, missing common activities, the
longest wait against its transition's 99th percentile, the case duration (against all cases and
against the cases with the same activity sequence); and the Isolation Forest score of the case
features; and the near-miss of a frequent path (a rare activity sequence one edit from a
frequent one). Each kind is calibrated on the log: a case's evidence
E_k = -log10(share of cases at least as unusual in kind k) (0 below the top 10 %); the near-miss
is used as log10(cases of the path / cases of the deviation) when that is larger. The combined
evidence is the largest E_k plus 0.3 x the second largest, so one strong deviation counts most
and a second one adds to it; the near-miss adds in full (it measures the whole path, the others
single steps). One measurement is one voice: the case duration against all cases and against
the cases with the same path count once (the larger; where fewer than 10 cases share the path
both baselines are all cases), and a second-order step on the transition kind's own least likely
step counts once (the larger of the two).

Severities: only cases past a floor of absolute strength can be high or medium (see
STRONG_RAW), so a clean log shows far fewer than 5 %; among them high + medium are at most 5 %
of cases (the top of the ranking with combined evidence >= 2, i.e. rarer than 1 in 100 in some
respect), hard evidence
first (an activity in no other case; a wait at least 10x its transition's 99th percentile);
high = hard evidence or combined evidence >= 3; low = the next cases with evidence >= 1.3, up to
10 % of cases flagged in all. The start hour is no evidence at all.
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

from analysis.anomaly_evidence import MIN_CONTEXT as MIN_PATH_CASES
from analysis.anomaly_evidence import Evidence, case_evidence
from analysis.case_features import CaseFeatures, build_case_features
from analysis.columns import CASE
from analysis.formatting import hours_text
from analysis.progress import Progress

MIN_CASES = 10
N_ESTIMATORS = 100
MAX_SAMPLES = 512
TOP = 20
MAX_REASONS = 3
# calibration and combination
NOTABLE = 1.0  # an evidence kind counts when the case is in its top 10 %
SECOND_WEIGHT = 0.3
FOREST_WEIGHT = 0.75  # the forest summarises the same features: one more, weaker voice
# the duration against all cases is the weaker baseline of the case duration (`_count_once`
# keeps the larger of it and `slow`); at full weight it flagged more cases of frequent paths for
# time alone (helpdesk's falsePositiveRate 0.0016 -> 0.0034, see bench/notes/anomaly.md)
KIND_WEIGHT = {"duration": 0.6}
# severities
FLAG_SHARE = 0.05  # high + medium: at most this share of cases
ALL_SHARE = 0.10  # high + medium + low: at most this share
MEDIUM_EVIDENCE = 2.0
HIGH_EVIDENCE = 3.0
LOW_EVIDENCE = 1.3
HARD_WAIT = 1.0  # log10 units beyond the context's 99th percentile: 10x
HARD_BONUS = 3.0
# control-flow evidence needs a minimal rarity before it counts (in its raw units)
MIN_RAW = {
    "activity": 1.3,
    "transition": 1.0,
    "order2": 0.8,
    "repeat": 1.3,
    "missing": 1.3,
    "nearmiss": 1.0,
}
FREQUENT_VARIANT_SHARE = 0.01
# kinds whose raw value is already a -log10 tail share and is used as evidence uncalibrated:
# a near-miss's log10(cases of the frequent path / cases of the deviation)
ABSOLUTE = frozenset({"nearmiss"})
NEARMISS_WEIGHT = 1.0  # adds to the other kinds: it measures the whole path, they the steps
# severity floor: a case is medium/high only with evidence that is strong in absolute terms too,
# not merely in the log's top 1 %: a control-flow kind past its MIN_RAW, hard evidence, or a time
# kind past STRONG_RAW (a wait >= 2x its context's 99th percentile; a duration >= 3.5 robust
# sigmas above the median, all cases' or its path's) or in the log's top 0.3 % of cases in that
# kind (calibrated E >= STRONG_RARE). The forest alone is never enough.
STRONG_RAW = {"wait": math.log10(2.0), "duration": 3.5, "slow": 3.5}
STRONG_RARE = 2.5
# thresholds on score = E / (E + 1) matching the evidence levels (for readers of the scores)
LOW = round(LOW_EVIDENCE / (LOW_EVIDENCE + 1), 4)
MEDIUM = round(MEDIUM_EVIDENCE / (MEDIUM_EVIDENCE + 1), 4)
HIGH = round(HIGH_EVIDENCE / (HIGH_EVIDENCE + 1), 4)

# the Isolation Forest's inputs (the start hour is deliberately not one of them)
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
)

METHOD = (
    "evidence per case against the log itself: rarest activity; least likely directly-follows "
    "steps (surprise of P(next | current) and P(current | next) with a virtual start and end, "
    "the two least likely summed, and second order P(next | two previous), both adjusted for "
    "the number of steps); repetitions (share of the cases with the activity that have it as "
    "often); missing common activities (present in >= 50 % of cases); longest wait against the "
    "99th percentile of the same transition's waits (the target activity's when the transition "
    "has < 10 waits); case duration against median + MAD of all cases (weight "
    f"{KIND_WEIGHT['duration']}) or of the cases with the same activity sequence (>= 10 cases), "
    "the larger of the two; Isolation "
    f"Forest ({N_ESTIMATORS} trees, subsample {MAX_SAMPLES}) on robust-scaled case features "
    f"(weight {FOREST_WEIGHT}); near-miss of a frequent path (a variant of <= 9 cases one "
    "skip, insertion, repeat, adjacent swap or substitution from a variant of >= 1 % and >= 10 "
    "cases: log10(cases of the path / cases of the deviation), from 1, uncalibrated or "
    "calibrated, whichever is larger, added to the other kinds' combined evidence). Each kind "
    "calibrated on the log: E = -log10(share of cases at "
    f"least as unusual), counted in its top 10 %; combined E = largest + {SECOND_WEIGHT} x "
    f"second; score = E / (E + 1), with {HARD_BONUS:g} added to E on hard evidence (an activity "
    "in no other case, a wait >= 10x its transition's 99th percentile). high + medium = at "
    "most "
    f"{FLAG_SHARE:.0%} of cases (at least 1), only past a floor (hard evidence, control flow past "
    "its minimal rarity, a wait >= 2x its context's 99th percentile, a duration >= 3.5 robust "
    "sigmas, or a time kind in the log's top 0.3 %; never the forest alone), down the ranking "
    "among cases with E >= "
    f"{MEDIUM_EVIDENCE:g} or hard evidence; high = hard evidence or E >= {HIGH_EVIDENCE:g}; low "
    f"= next cases with E >= {LOW_EVIDENCE:g}, up to {ALL_SHARE:.0%} of cases flagged; the "
    "start hour is not evidence"
)
FPR_METHOD = (
    "share flagged high or medium among the cases of frequent variants (>= "
    f"{FREQUENT_VARIANT_SHARE:.0%} of cases and >= 2 cases), presumed normal in control flow; "
    "their flags come from time evidence or the forest, so the figure counts real delays in "
    "them as false positives"
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
    # the Isolation Forest's score (-score_samples) of every case, by case id
    forest_scores: pd.Series | None = None

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


def _share_text(share: float) -> str:
    if share < 0.001:
        return f"{share * 100:.2f} %"
    return f"{share * 100:.1f} %"


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


def calibrate(raw: np.ndarray) -> np.ndarray:
    """E = -log10(share of cases with a raw value >= this one's); 0 outside the top 10 %."""
    n = len(raw)
    if n == 0:
        return np.zeros(0)
    ordered = np.sort(raw)
    at_least = n - np.searchsorted(ordered, raw, "left")
    e = -np.log10(at_least / n)
    out: np.ndarray = np.where(e >= NOTABLE, e, 0.0)
    return out


def _evidence_matrix(ev: Evidence, forest: np.ndarray) -> tuple[list[str], np.ndarray]:
    kinds = [*ev.raw, "forest"]
    rows = []
    for kind, raw in ev.raw.items():
        e = np.maximum(raw, calibrate(raw)) if kind in ABSOLUTE else calibrate(raw)
        if kind in MIN_RAW:
            e = np.where(raw >= MIN_RAW[kind], e, 0.0)
        rows.append(KIND_WEIGHT.get(kind, 1.0) * e)
    rows.append(FOREST_WEIGHT * calibrate(forest))
    matrix = np.vstack(rows)
    _count_once(kinds, matrix, ev)
    return kinds, matrix


def _count_once(kinds: list[str], matrix: np.ndarray, ev: Evidence) -> None:
    """One measurement is one voice (in place): `duration` and `slow` measure the same case
    duration against two baselines (all cases, the cases with the same path; where fewer than
    MIN_PATH_CASES share the path `slow` falls back to all cases too), so only the larger
    counts; where the second-order kind's step is the first-order kind's least likely step,
    both describe one step and only the larger counts."""
    d, s = kinds.index("duration"), kinds.index("slow")
    by_path = matrix[s] >= matrix[d]
    matrix[d] = np.where(by_path, 0.0, matrix[d])
    matrix[s] = np.where(by_path, matrix[s], 0.0)
    same_step = (ev.order2_source == ev.transition_source) & (
        ev.order2_target == ev.transition_target
    )
    t, o = kinds.index("transition"), kinds.index("order2")
    matrix[t] = np.where(same_step, np.maximum(matrix[t], matrix[o]), matrix[t])
    matrix[o] = np.where(same_step, 0.0, matrix[o])


def _combine_with_nearmiss(kinds: list[str], matrix: np.ndarray) -> np.ndarray:
    """The near-miss combines with the other kinds' evidence at weight NEARMISS_WEIGHT."""
    j = kinds.index("nearmiss")
    rest = _combine(np.delete(matrix, j, axis=0))
    near = matrix[j]
    out: np.ndarray = np.maximum(rest, near) + NEARMISS_WEIGHT * np.minimum(rest, near)
    return out


def _combine(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] < 2:
        combined: np.ndarray = matrix.max(axis=0)
        return combined
    top2 = -np.partition(-matrix, 1, axis=0)[:2]
    result: np.ndarray = top2[0] + SECOND_WEIGHT * top2[1]
    return result


def _hard(ev: Evidence) -> np.ndarray:
    hard: np.ndarray = (ev.activity_cases <= 1) | (ev.raw["wait"] >= HARD_WAIT)
    return hard


def _strong(kinds: list[str], matrix: np.ndarray, ev: Evidence) -> np.ndarray:
    """Cases with some evidence past the severity floor (see STRONG_RAW)."""
    strong = _hard(ev)
    for j, kind in enumerate(kinds):
        if kind == "forest":
            continue
        counts = matrix[j] > 0
        if kind in STRONG_RAW:
            # a time kind on its own calibration: `_count_once` may have merged its voice into
            # the other baseline's, which does not move the floor
            e = calibrate(ev.raw[kind])
            counts = (e > 0) & ((ev.raw[kind] >= STRONG_RAW[kind]) | (e >= STRONG_RARE))
        strong = strong | counts
    return strong


def _severities(
    combined: np.ndarray, hard: np.ndarray, strong: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(order of flagged cases, their severities): hard evidence first, then by evidence."""
    n = len(combined)
    if strong is None:
        strong = np.ones(n, dtype=bool)
    key = combined + np.where(hard, HARD_BONUS, 0.0)
    order = np.lexsort((np.arange(n), -key))
    cap = max(math.floor(FLAG_SHARE * n), 1)  # a tiny log may still show its one case
    all_cap = math.floor(ALL_SHARE * n)
    candidate = hard[order] | ((combined[order] >= MEDIUM_EVIDENCE) & strong[order])
    flag_rank = np.cumsum(candidate)
    top = candidate & (flag_rank <= cap)
    high = top & (hard[order] | (combined[order] >= HIGH_EVIDENCE))
    low = ~top & (combined[order] >= LOW_EVIDENCE)
    low &= np.cumsum(low) <= max(all_cap - int(top.sum()), 0)
    keep = top | low
    severity = np.where(high, "high", np.where(top, "medium", "low"))
    # high and medium first (a case below the floor may outrank them by evidence), then low
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(~top[kept], kind="stable")]
    return order[kept], severity[kept]


def _wait_text(ev: Evidence, i: int) -> str:
    src, tgt = ev.wait_source[i], ev.wait_target[i]
    n = int(ev.wait_context_count[i])
    context = {2: f"waits before '{tgt}' after '{src}'", 1: f"waits before '{tgt}'"}.get(
        int(ev.wait_context[i]), "waits of the log"
    )
    return (
        f"waits {hours_text(float(ev.wait_hours[i]))} before '{tgt}' (after '{src}'); "
        f"99th percentile of the {n:,} {context}: {hours_text(float(ev.wait_bound_hours[i]))}"
    )


def _transition_text(ev: Evidence, i: int) -> str:
    src, tgt = str(ev.transition_source[i]), str(ev.transition_target[i])
    k = int(ev.transition_cases[i])
    seen = f"seen in {k:,} case{'s' if k != 1 else ''} ({_share_text(k / ev.n_cases)})"
    if src == "[start]":
        return f"starts with '{tgt}', {seen}"
    if tgt == "[end]":
        return f"ends with '{src}', {seen}"
    after = _share_text(float(ev.transition_prob[i]))
    return (
        f"'{tgt}' directly follows '{src}', {seen}; after '{src}' it comes next {after} of the time"
    )


def _nearmiss_text(ev: Evidence, i: int) -> str:
    a, b = f"'{ev.nearmiss_first[i]}'", f"'{ev.nearmiss_second[i]}'"
    what = {
        "skip": f"{a} is skipped",
        "repeat": f"{a} is repeated",
        "insert": f"{a} is inserted",
        "swap": f"{a} and {b} are swapped",
        "substitute": f"{b} replaces {a}",
    }[str(ev.nearmiss_edit[i])]
    k, base = int(ev.variant_cases[i]), int(ev.nearmiss_cases[i])
    return (
        f"follows the frequent path '{ev.nearmiss_path[i]}' ({base:,} cases) except that {what}"
        f" ({k:,} case{'s' if k != 1 else ''} deviate{'' if k != 1 else 's'} so)"
    )


def _order2_text(ev: Evidence, i: int) -> str:
    before, src, tgt = str(ev.order2_before[i]), str(ev.order2_source[i]), str(ev.order2_target[i])
    share = _share_text(float(ev.order2_prob[i]))
    if src == "[start]":
        return f"starts with '{tgt}', as {share} of cases do"
    after = (
        f"after starting with '{src}'" if before == "[start]" else f"after '{before}' then '{src}'"
    )
    nxt = "the case ends" if tgt == "[end]" else f"'{tgt}' comes next"
    return f"{after}, {nxt} {share} of the time"


def _reason(kind: str, ev: Evidence, i: int, forest: float, forest_e: float) -> str:
    n = ev.n_cases
    if kind == "activity":
        k = int(ev.activity_cases[i])
        name = ev.activity_name[i]
        if k <= 1:
            return f"activity '{name}' never seen in the log outside this case"
        return f"rare activity '{name}', in {k:,} cases ({_share_text(k / n)})"
    if kind == "transition":
        return _transition_text(ev, i)
    if kind == "order2":
        return _order2_text(ev, i)
    if kind == "repeat":
        return (
            f"'{ev.repeat_name[i]}' occurs {int(ev.repeat_count[i])} times; "
            f"{_share_text(float(ev.repeat_share[i]))} of the cases with it have it that often"
        )
    if kind == "missing":
        return (
            f"'{ev.missing_name[i]}' missing, present in "
            f"{_share_text(float(ev.missing_presence[i]))} of cases"
        )
    if kind == "wait":
        return _wait_text(ev, i)
    if kind == "nearmiss":
        return _nearmiss_text(ev, i)
    if kind == "slow" and ev.variant_cases[i] >= MIN_PATH_CASES:
        return (
            f"takes {hours_text(float(ev.duration_hours[i]))} where the "
            f"{int(ev.variant_cases[i]):,} cases with the same activity sequence take a median "
            f"{hours_text(float(ev.path_median_hours[i]))}"
        )
    if kind in ("duration", "slow"):
        return (
            f"takes {hours_text(float(ev.duration_hours[i]))} where 99 % of cases take under "
            f"{hours_text(float(ev.duration_bound_hours[i]))}"
        )
    return (
        f"unusual combination of case features (Isolation Forest score {forest:.3f}, "
        f"top {_share_text(10 ** (-forest_e / FOREST_WEIGHT))} of cases)"
    )


def _explain(
    kinds: list[str], matrix: np.ndarray, ev: Evidence, forest: np.ndarray, flagged: np.ndarray
) -> list[list[str]]:
    out = []
    forest_row = kinds.index("forest")
    for i in flagged:
        col = matrix[:, i]
        picked = [k for k in np.argsort(-col, kind="stable") if col[k] > 0][:MAX_REASONS]
        texts: list[str] = []
        for k in picked:
            text = _reason(kinds[k], ev, int(i), float(forest[i]), float(matrix[forest_row, i]))
            # the same step may come from the first- and the second-order kind
            if not any(t.split(",")[0] == text.split(",")[0] for t in texts):
                texts.append(text)
        if ev.activity_cases[i] <= 1 and not any(t.startswith("activity '") for t in texts):
            texts.insert(0, _reason("activity", ev, int(i), 0.0, 0.0))
        if ev.raw["wait"][i] >= HARD_WAIT and not any(t.startswith("waits ") for t in texts):
            texts.insert(0, _wait_text(ev, int(i)))
        out.append(texts[:MAX_REASONS])
    return out


def detect_anomalies(
    events: pd.DataFrame,
    features: CaseFeatures | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> AnomalyResult:
    progress = progress or Progress()
    steps = 5
    progress.update(0, steps, "Building case features")
    n_cases = int(events[CASE].nunique()) if len(events) else 0
    if n_cases < MIN_CASES:
        progress.update(steps, steps, "Anomaly detection skipped")
        return _skipped(n_cases)
    if features is None:
        features = build_case_features(events)
    table = features.table
    columns = [
        c
        for c in DETECTOR_FEATURES
        if features.stats.has_resources or c not in ("resource_changes", "distinct_resources")
    ]
    model = _detector(n_cases, random_state)
    x = table[columns].to_numpy(dtype=np.float64)
    with progress.heartbeat(1, steps, f"Fitting the Isolation Forest on {n_cases:,} cases"):
        model.fit(x)
    forest = -model.score_samples(x)
    progress.update(2, steps, "Measuring control-flow and time evidence")
    ev = case_evidence(events)
    # the feature table and the evidence list cases in the same (frame) order
    forest_by_case = pd.Series(forest, index=table.index.astype(str))
    forest_aligned = forest_by_case.reindex(ev.case_ids).to_numpy(dtype=np.float64)
    kinds, matrix = _evidence_matrix(ev, forest_aligned)
    combined = _combine_with_nearmiss(kinds, matrix)
    hard = _hard(ev)
    flagged, severity = _severities(combined, hard, _strong(kinds, matrix, ev))
    key = combined + np.where(hard, HARD_BONUS, 0.0)
    score = np.round(key / (key + 1.0), 4)

    progress.update(3, steps, f"Explaining {len(flagged)} anomalous cases")
    reasons = _explain(kinds, matrix, ev, forest_aligned, flagged)
    cases = pd.DataFrame(
        {
            "caseId": ev.case_ids[flagged].astype(str),
            "score": score[flagged],
            "severity": severity,
            "reasons": ["; ".join(r) for r in reasons],
        }
    )
    progress.update(4, steps, "Measuring the false-positive rate")
    fpr, fpr_method = _false_positive_rate(ev, flagged, severity)
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
        forest_scores=forest_by_case,
    )


def _false_positive_rate(
    ev: Evidence, flagged: np.ndarray, severity: np.ndarray
) -> tuple[float | None, str]:
    reference = (ev.variant_share >= FREQUENT_VARIANT_SHARE) & (ev.variant_share * ev.n_cases >= 2)
    n_ref = int(reference.sum())
    if n_ref == 0:
        return None, (
            f"not measured: no variant covers >= {FREQUENT_VARIANT_SHARE:.0%} of cases (and 2 "
            "cases), so the log offers no reference of normal behaviour"
        )
    high_medium = np.zeros(ev.n_cases, dtype=bool)
    high_medium[flagged[severity != "low"]] = True
    fpr = float((high_medium & reference).sum() / n_ref)
    return fpr, f"{FPR_METHOD} ({n_ref:,} reference cases)"
