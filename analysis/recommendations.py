"""Recommendations derived from the analysis figures and the event log.

Every number in a recommendation is computed here from the events or taken from the results
document, and `basis` says how. The only constants are the thresholds that decide whether a
finding is worth a recommendation and how urgent it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds
from analysis.formatting import hours_text

LIFECYCLE = "lifecycle:transition"

# a bottleneck is worth naming when its waiting time is at least this share of all case time
MIN_BOTTLENECK_SHARE = 0.01
# rework is worth naming when repeated executions are at least this share of the events
MIN_REWORK_SHARE = 0.01
# anomalies are "many" when high-severity cases reach this count or this share of cases
MIN_HIGH_ANOMALIES, MIN_HIGH_ANOMALY_SHARE = 10, 0.01
# conformance below this fitness deserves attention
MAX_GOOD_FITNESS = 0.9

_PRIORITY_ORDER = {"High": 0, "Medium": 1, "Low": 2}


@dataclass(frozen=True)
class Recommendation:
    category: str
    priority: str  # "High" | "Medium" | "Low"
    recommendation: str
    expected_improvement: str
    basis: str

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category,
            "priority": self.priority,
            "recommendation": self.recommendation,
            "expectedImprovement": self.expected_improvement,
            "basis": self.basis,
        }


def phase_results(results: Mapping[str, Any], phase_name: str) -> dict[str, Any]:
    """The `results` dict of the named phase, or {} when the phase is absent or skipped."""
    for phase in results.get("phaseResults") or []:
        if isinstance(phase, Mapping) and phase.get("phaseName") == phase_name:
            inner = phase.get("results")
            return dict(inner) if isinstance(inner, Mapping) else {}
    return {}


def _priority(value: float, high: float, medium: float) -> str:
    if value >= high:
        return "High"
    if value >= medium:
        return "Medium"
    return "Low"


def _cases(n: int) -> str:
    return f"{n:,} case" if n == 1 else f"{n:,} cases"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@dataclass(frozen=True)
class _Waits:
    """Per-event waiting time (seconds since the previous event of the case; NaN for a case's
    first event) and per-case cycle times, from a canonical (case, time)-sorted frame."""

    gap: np.ndarray
    n_cases: int
    total_cycle: float


def _waits(events: pd.DataFrame) -> _Waits:
    n = len(events)
    cases = events[CASE].to_numpy()
    secs = event_seconds(events)
    gap = np.full(n, np.nan)
    if n > 1:
        same = cases[1:] == cases[:-1]
        diff = secs[1:] - secs[:-1]
        gap[1:][same] = diff[same]
    n_cases = int(pd.Series(cases).nunique()) if n else 0
    # the frame is time-sorted within each case, so the gaps of a case add up to its cycle time
    return _Waits(gap=gap, n_cases=n_cases, total_cycle=float(np.nansum(gap)))


def _top_bottleneck(results: Mapping[str, Any], known: set[str]) -> str | None:
    """The discovery phase's top bottleneck (largest total waiting time), if it named one."""
    perf = phase_results(results, "Process Discovery").get("performanceMetrics") or {}
    entries = [
        b for b in perf.get("bottlenecks") or [] if isinstance(b, Mapping) and b.get("activity")
    ]
    if entries and all(b.get("totalWaitHours") is not None for b in entries):
        entries = sorted(entries, key=lambda b: -float(b["totalWaitHours"]))
    names = [str(b["activity"]) for b in entries] + [
        str(a) for a in perf.get("bottleneckActivities") or []
    ]
    return next((a for a in names if a in known), None)


def _bottleneck(
    events: pd.DataFrame, results: Mapping[str, Any], w: _Waits
) -> list[Recommendation]:
    if w.total_cycle <= 0:
        return []
    wait_by_activity = pd.Series(w.gap).groupby(events[ACTIVITY].to_numpy()).sum(min_count=1)
    wait_by_activity = wait_by_activity.dropna()
    if wait_by_activity.empty:
        return []
    target = _top_bottleneck(results, set(wait_by_activity.index))
    source = "the discovery phase's top bottleneck" if target else "the largest total wait"
    if target is None:
        target = str(wait_by_activity.idxmax())
    wait = float(wait_by_activity[target])
    share = wait / w.total_cycle
    if share < MIN_BOTTLENECK_SHARE:
        return []
    is_target = (events[ACTIVITY] == target).to_numpy() & ~np.isnan(w.gap)
    occurrences = int(is_target.sum())
    cases_with = int(events.loc[is_target, CASE].nunique())
    mean_cycle_h = w.total_cycle / w.n_cases / 3600
    saved_h = wait / 2 / w.n_cases / 3600
    return [
        Recommendation(
            category="Process Optimization",
            priority=_priority(share / 2, 0.10, 0.03),
            recommendation=(
                f"Reduce the waiting time before '{target}': it accounts for {_pct(share)} of "
                f"all case time ({hours_text(wait / occurrences / 3600)} on average per "
                f"occurrence, {occurrences:,} occurrences in {_cases(cases_with)})."
            ),
            expected_improvement=(
                f"Halving the waiting time before '{target}' shortens the average cycle time by "
                f"{_pct(share / 2)} (about {hours_text(saved_h)} per case, from "
                f"{hours_text(mean_cycle_h)} to {hours_text(mean_cycle_h - saved_h)})."
            ),
            basis=(
                f"'{target}' is {source}. Waiting before an activity is the time from the "
                "previous event of the same case to the activity's event. Within a case these "
                "waits add up to its cycle time (last minus first event), so the share of the "
                f"mean cycle time spent waiting before '{target}' is its summed waits over all "
                f"cases' summed cycle times ({hours_text(wait / 3600)} of "
                f"{hours_text(w.total_cycle / 3600)} over {w.n_cases:,} cases = {_pct(share)}); "
                "halving those waits saves half of that share."
            ),
        )
    ]


def _completed(events: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Events that each stand for one execution: with lifecycle transitions, the 'complete' ones
    (a start and a complete of one execution are not a repetition)."""
    if LIFECYCLE in events.columns:
        life = events[LIFECYCLE].astype(str).str.lower()
        if life.nunique() > 1 and (life == "complete").any():
            done = events.loc[(life == "complete").to_numpy()].reset_index(drop=True)
            return done, "completed executions"
    return events, "events"


def _rework(events: pd.DataFrame) -> list[Recommendation]:
    done, unit = _completed(events)
    lifecycle_note = (
        "Counted on lifecycle 'complete' events only, so a start and a complete of one "
        "execution are not a repetition. "
        if unit != "events"
        else ""
    )
    n = len(done)
    if n == 0:
        return []
    w = _waits(done)
    # occurrence number of each activity within its case: 0 for the first, 1+ for repetitions
    occurrence = done.groupby([CASE, ACTIVITY], sort=False).cumcount().to_numpy()
    repeated = occurrence > 0
    total_reps = int(repeated.sum())
    rep_share = total_reps / n
    if total_reps == 0 or rep_share < MIN_REWORK_SHARE:
        return []
    acts = done[ACTIVITY].to_numpy()
    reps = pd.Series(repeated).groupby(acts).sum().sort_values(ascending=False, kind="stable")
    reps = reps[reps > 0]
    target = str(reps.index[0])
    target_mask = repeated & (acts == target)
    target_reps = int(target_mask.sum())
    cases_affected = int(done.loc[target_mask, CASE].nunique())
    target_wait = float(np.nansum(w.gap[target_mask]))
    time_share = target_wait / w.total_cycle if w.total_cycle > 0 else 0.0
    others = ", ".join(f"'{a}' ({int(c):,})" for a, c in list(reps.items())[1:3])
    also = f" Other repeated activities: {others}." if others else ""
    time_text = (
        f" and {hours_text(target_wait / cases_affected / 3600)} of waiting per affected case "
        f"({_pct(time_share)} of all case time)"
        if target_wait > 0
        else ""
    )
    return [
        Recommendation(
            category="Rework Reduction",
            priority=_priority(rep_share, 0.10, 0.03),
            recommendation=(
                f"Reduce rework: {total_reps:,} of {n:,} {unit} ({_pct(rep_share)}) repeat an "
                f"activity already done in the same case. '{target}' is repeated most "
                f"({target_reps:,} repetitions in {_cases(cases_affected)}).{also}"
            ),
            expected_improvement=(
                f"Doing '{target}' right the first time removes {target_reps:,} {unit} "
                f"({_pct(target_reps / n)} of all){time_text}."
            ),
            basis=(
                f"{lifecycle_note}A repetition is an occurrence of an activity after its first "
                f"in the same case. Time saved is the waiting time before each repeated "
                f"'{target}' (time from the previous one of the case's {unit}), summed, over "
                f"the summed cycle times of all {w.n_cases:,} cases."
            ),
        )
    ]


def _data_quality(results: Mapping[str, Any]) -> list[Recommendation]:
    loading = phase_results(results, "Data Loading and Validation")
    errors = [
        e
        for e in loading.get("validationErrors") or []
        if isinstance(e, Mapping) and int(e.get("count") or 0) > 0
    ]
    if not errors:
        return []
    affected = sum(int(e["count"]) for e in errors)
    listed = ", ".join(
        f"{e.get('type', 'unspecified')} ({int(e['count']):,} records)"
        for e in sorted(errors, key=lambda e: -int(e["count"]))
    )
    score = loading.get("dataQualityScore")
    loaded = loading.get("recordsLoaded")
    method = loading.get("dataQualityMethod")
    if score is not None and loaded:
        score_f = float(score)
        expected = min(100.0, score_f + 100.0 * affected / int(loaded))
        # enough decimals that a small gain does not print as +0.0
        digits = 1 if expected - score_f >= 0.1 else 2 if expected - score_f >= 0.01 else 3
        improvement = (
            f"Data-quality score from {score_f:.{digits}f} to {expected:.{digits}f} "
            f"(+{expected - score_f:.{digits}f} points) once these {affected:,} of {int(loaded):,} "
            "records are valid at the source."
        )
        basis = (
            f"Each affected record counts 1/{int(loaded):,} of the score: expected score = "
            f"score + 100 × {affected:,} / {int(loaded):,}, capped at 100."
        )
        priority = _priority(100.0 - score_f, 10.0, 2.0)
    else:
        improvement = f"{affected:,} records become usable (the quality score was not computed)."
        basis = "Counts of the validation errors reported by data loading."
        priority = "Low"
    if method:
        basis += f" Score method: {method}"
    return [
        Recommendation(
            category="Data Quality",
            priority=priority,
            recommendation=f"Fix the data-quality issues at the source system: {listed}.",
            expected_improvement=improvement,
            basis=basis,
        )
    ]


def _anomalies(
    events: pd.DataFrame, results: Mapping[str, Any], n_cases: int
) -> list[Recommendation]:
    ml = phase_results(results, "Machine Learning Analysis").get("anomalies") or {}
    high = ml.get("highSeverity")
    if high is None:
        return []
    high = int(high)
    cases = n_cases or int(phase_results(results, "Data Loading and Validation").get("cases") or 0)
    share = high / cases if cases else 0.0
    if high == 0 or (high < MIN_HIGH_ANOMALIES and share < MIN_HIGH_ANOMALY_SHARE):
        return []
    listed = {
        str(a.get("caseId"))
        for a in ml.get("topAnomalies") or []
        if isinstance(a, Mapping) and a.get("severity") == "high"
    }
    improvement = f"{high:,} high-severity cases ({_pct(share)} of cases) get a root-cause review."
    basis = f"Anomaly counts from the machine-learning phase (method: {ml.get('method', 'n/a')})."
    if listed and len(events):
        secs = pd.Series(event_seconds(events)).groupby(events[CASE].to_numpy())
        durations = (secs.max() - secs.min()) / 3600
        found = durations[durations.index.isin(listed)]
        if len(found):
            ratio = float(found.mean()) / float(durations.mean()) if durations.mean() > 0 else 0
            time_share = float(found.sum()) / float(durations.sum()) if durations.sum() > 0 else 0
            mean_text = hours_text(float(found.mean()))
            improvement += (
                f" The {len(found):,} listed high-severity cases take {mean_text} on average"
                f" ({ratio:.1f}× the mean of all cases) and hold {_pct(time_share)} of "
                "all case time."
            )
            basis += (
                " Cycle time (last minus first event) of the high-severity cases in the "
                "document's top-anomaly list, against all cases."
            )
    fpr = ml.get("falsePositiveRate")
    if fpr is not None:
        basis += f" Estimated false-positive rate: {float(fpr):.2f}."
    return [
        Recommendation(
            category="Risk Management",
            priority=_priority(share, 0.05, 0.01),
            recommendation=(
                f"Investigate the {high:,} high-severity anomalous cases ({_pct(share)} of "
                "cases) and address their recurring causes."
            ),
            expected_improvement=improvement,
            basis=basis,
        )
    ]


def _conformance(results: Mapping[str, Any], n_cases: int) -> list[Recommendation]:
    conf = phase_results(results, "Process Discovery").get("conformance") or {}
    fitness = conf.get("fitness")
    if fitness is None or float(fitness) >= MAX_GOOD_FITNESS:
        return []
    fitness = float(fitness)
    fitting = conf.get("fittingTracesPercentage")
    cases = n_cases or int(phase_results(results, "Data Loading and Validation").get("cases") or 0)
    if fitting is not None:
        # the document gives a percentage; accept a fraction too
        pct = float(fitting) if float(fitting) > 1 else 100 * float(fitting)
        deviating_n = f" ({_cases(round(cases * (100 - pct) / 100))})" if cases else ""
        deviating = f"{100 - pct:.1f}% of cases{deviating_n} do not fit the model"
        improvement = (
            f"Bringing the deviating {100 - pct:.1f}% of cases onto modelled paths raises "
            f"fitness from {fitness:.2f} toward 1.00."
        )
    else:
        deviating = "part of the cases deviate from the model"
        improvement = f"Fewer deviations raise fitness from {fitness:.2f} toward 1.00."
    return [
        Recommendation(
            category="Compliance",
            priority=_priority(1 - fitness, 0.3, 0.2),
            recommendation=(
                f"Standardise the process: the discovered model reaches a fitness of only "
                f"{fitness:.2f} and {deviating}. Review the deviating paths and either enforce "
                "the intended path or accept the variants into the reference model."
            ),
            expected_improvement=improvement,
            basis=(
                "Fitness and fitting-case share from the discovery phase's conformance check "
                f"(method: {conf.get('method', 'n/a')})."
            ),
        )
    ]


def recommend(events: pd.DataFrame, results: dict[str, Any]) -> list[Recommendation]:
    """Recommendations that apply to this log, most urgent first; [] when nothing applies."""
    out: list[Recommendation] = []
    n_cases = 0
    if events is not None and len(events):
        w = _waits(events)
        n_cases = w.n_cases
        out += _bottleneck(events, results, w)
        out += _rework(events)
    else:
        events = pd.DataFrame(columns=[CASE, ACTIVITY])
    out += _data_quality(results)
    out += _anomalies(events, results, n_cases)
    out += _conformance(results, n_cases)
    return sorted(out, key=lambda r: _PRIORITY_ORDER[r.priority])
