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
from analysis.i18n import register_ja, tr

LIFECYCLE = "lifecycle:transition"

# a bottleneck is worth naming when its waiting time is at least this share of all case time
MIN_BOTTLENECK_SHARE = 0.01
# rework is worth naming when repeated executions are at least this share of the events
MIN_REWORK_SHARE = 0.01
# anomalies are "many" when high-severity cases reach this count or this share of cases
MIN_HIGH_ANOMALIES, MIN_HIGH_ANOMALY_SHARE = 10, 0.01
# conformance below this fitness deserves attention
MAX_GOOD_FITNESS = 0.9
# a model below this precision allows much more behaviour than the log shows
LOW_PRECISION = 0.5
VERY_LOW_PRECISION = 0.2

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
    """Per-event gap (seconds since the previous event of the case; NaN for a case's first
    event) and per-case cycle times, from a canonical (case, time)-sorted frame. Rework uses it;
    bottlenecks use the bottleneck table's waiting time (analysis.performance)."""

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


BOTTLENECK_TEXT = (
    "Reduce the waiting time before '{activity}': cases wait a median {median} and a mean "
    "{mean} before it ({occurrences} occurrences), {share_wait} of all waiting time."
)
BOTTLENECK_IMPROVEMENT = (
    "Halving the waiting time before '{activity}' saves {saved} per case on average: up to "
    "{share_cycle_half} of the average cycle time (from {mean_cycle} to {new_cycle})."
)
BOTTLENECK_BASIS = (
    "'{activity}' is the first row of the bottleneck table (activities ranked by total waiting "
    "time before them) and these are that row's figures. Waiting time before an activity = "
    "its start (its completion when the log has no start event for it) minus the previous "
    "completion in the same case. Its {occurrences} waits sum to {total} of all {all_waits} "
    "waiting ({share_wait}) and to {share_cycle} of the {cycle} summed cycle time of "
    "{cases} cases; halving them saves half of that, exactly when they lie on the case's "
    "critical path (no concurrent activity), less otherwise."
)

register_ja(
    {
        BOTTLENECK_TEXT: (
            "「{activity}」の前の待ち時間を減らしてください: 待ち時間の中央値 {median}、"
            "平均 {mean}({occurrences} 回)で、全待ち時間の {share_wait} を占めます。"
        ),
        BOTTLENECK_IMPROVEMENT: (
            "「{activity}」の前の待ち時間を半減すると、1 ケースあたり平均 {saved} 短縮します: "
            "平均サイクルタイムの最大 {share_cycle_half}({mean_cycle} → {new_cycle})。"
        ),
        BOTTLENECK_BASIS: (
            "「{activity}」はボトルネック表(その前の待ち時間の合計順)の 1 行目で、数値はその行の"
            "ものです。活動の前の待ち時間 = その開始(開始イベントがない場合は完了)から同じ"
            "ケースの直前の完了までの時間。{occurrences} 回の待ち時間の合計は {total} で、全待ち"
            "時間 {all_waits} の {share_wait}、{cases} ケースのサイクルタイム合計 {cycle} の "
            "{share_cycle} です。半減した場合の短縮はその半分で、待ちがケースのクリティカル"
            "パス上にある(並行する活動がない)場合に正確、そうでなければそれ以下です。"
        ),
    }
)


def bottleneck_table(
    events: pd.DataFrame | None, results: Mapping[str, Any]
) -> tuple[list[Mapping[str, Any]], Mapping[str, Any]]:
    """The bottleneck table's rows and the performance figures they belong to: the discovery
    phase's when the document has them, else measured on the events the same way."""
    perf = phase_results(results, "Process Discovery").get("performanceMetrics") or {}
    rows = [
        b
        for b in perf.get("bottlenecks") or []
        if isinstance(b, Mapping)
        and b.get("activity")
        and b.get("totalWaitHours") is not None
        and b.get("meanWaitHours") is not None
    ]
    if rows or events is None or not len(events):
        return rows, perf
    from analysis.performance import compute_performance

    measured = compute_performance(events).to_dict()
    return list(measured["bottlenecks"]), measured


def _bottleneck(
    events: pd.DataFrame, results: Mapping[str, Any], n_cases: int, lang: str
) -> list[Recommendation]:
    rows, perf = bottleneck_table(events, results)
    total_cycle = perf.get("totalCycleHours")
    if not rows or not total_cycle or float(total_cycle) <= 0 or not n_cases:
        return []
    row = rows[0]
    activity = str(row["activity"])
    total, cycle = float(row["totalWaitHours"]), float(total_cycle)
    share_cycle = total / cycle
    if share_cycle < MIN_BOTTLENECK_SHARE:
        return []
    all_waits = perf.get("totalWaitingHours")
    share_wait = row.get("shareOfTotalWait")
    median = row.get("medianWaitHours")
    mean_cycle = cycle / n_cases
    saved = total / 2 / n_cases
    figures = {
        "activity": activity,
        "median": hours_text(float(median)) if median is not None else "n/a",
        "mean": hours_text(float(row["meanWaitHours"])),
        "occurrences": f"{int(row.get('occurrences') or 0):,}",
        "share_wait": _pct(float(share_wait)) if share_wait is not None else "n/a",
        "saved": hours_text(saved),
        "share_cycle_half": _pct(share_cycle / 2),
        "share_cycle": _pct(share_cycle),
        "mean_cycle": hours_text(mean_cycle),
        "new_cycle": hours_text(mean_cycle - saved),
        "total": hours_text(total),
        "all_waits": hours_text(float(all_waits)) if all_waits is not None else "n/a",
        "cycle": hours_text(cycle),
        "cases": f"{n_cases:,}",
    }
    return [
        Recommendation(
            category="Process Optimization",
            priority=_priority(share_cycle / 2, 0.10, 0.03),
            recommendation=tr(BOTTLENECK_TEXT, lang).format(**figures),
            expected_improvement=tr(BOTTLENECK_IMPROVEMENT, lang).format(**figures),
            basis=tr(BOTTLENECK_BASIS, lang).format(**figures),
        )
    ]


QUALITY_IMPRECISE = (
    "The discovered model replays {fitting}% of the cases exactly (fitness {fitness}) but allows "
    "much more behaviour than the log shows (precision {precision}, F-score {f_score})."
)
QUALITY_PRECISE = (
    "The discovered model replays {fitting}% of the cases exactly (fitness {fitness}) and allows "
    "little behaviour beyond the log's (precision {precision}, F-score {f_score})."
)
QUALITY_NO_PRECISION = (
    "The discovered model has fitness {fitness}; its precision was not measured, so how much "
    "behaviour beyond the log's it allows is unknown."
)
PRECISION_LABEL = "Model precision"
F_SCORE_LABEL = "Model F-score"

register_ja(
    {
        QUALITY_IMPRECISE: (
            "発見したモデルはケースの {fitting}% をそのまま再生できます(fitness {fitness})が、"
            "ログにない振る舞いも多く許します(precision {precision}、F値 {f_score})。"
        ),
        QUALITY_PRECISE: (
            "発見したモデルはケースの {fitting}% をそのまま再生でき(fitness {fitness})、"
            "ログにない振る舞いはわずかです(precision {precision}、F値 {f_score})。"
        ),
        QUALITY_NO_PRECISION: (
            "発見したモデルの fitness は {fitness} です。precision は測定されていないため、"
            "ログにない振る舞いをどれだけ許すかは不明です。"
        ),
        PRECISION_LABEL: "モデルの precision(適合率)",
        F_SCORE_LABEL: "モデルの F値",
    }
)


def quality_sentence(conformance: Mapping[str, Any], lang: str = "en") -> str | None:
    """The reports' sentence on the model: fitness always with precision (never "fits" alone).
    Here rather than in analysis.conformance so that the reports need not import pm4py."""
    fitness = conformance.get("fitness")
    if fitness is None:
        return None
    precision = conformance.get("precision")
    if precision is None:
        return tr(QUALITY_NO_PRECISION, lang).format(fitness=f"{float(fitness):.2f}")
    fitting = conformance.get("fittingTracesPercentage")
    score = conformance.get("fScore")
    template = QUALITY_IMPRECISE if float(precision) < LOW_PRECISION else QUALITY_PRECISE
    return tr(template, lang).format(
        fitting="n/a" if fitting is None else f"{float(fitting):.0f}",
        fitness=f"{float(fitness):.2f}",
        precision=f"{float(precision):.2f}",
        f_score="n/a" if score is None else f"{float(score):.2f}",
    )


def _completed(events: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Events that each stand for one execution: with lifecycle transitions, the 'complete' ones
    (a start and a complete of one execution are not a repetition)."""
    if LIFECYCLE in events.columns:
        life = events[LIFECYCLE].astype(str).str.lower()
        if life.nunique() > 1 and (life == "complete").any():
            done = events.loc[(life == "complete").to_numpy()].reset_index(drop=True)
            return done, "completed executions"
    return events, "events"


REWORK_TIME = (
    " and {time} per affected case between the previous completion and the repeated one "
    "({share} of all case time)"
)
REWORK_BASIS_TIME = (
    "Time saved is the time from the previous one of the case's {unit} to each repeated "
    "'{activity}' (waiting and working time of the repetition: not the bottleneck table's "
    "waiting time, which stops at an activity's start), summed, over the summed cycle times of "
    "all {cases} cases."
)
register_ja(
    {
        REWORK_TIME: (
            "、影響を受けたケースあたり直前の完了から繰り返しの完了まで {time}"
            "(全ケース時間の {share})"
        ),
        REWORK_BASIS_TIME: (
            "短縮時間は、ケースの直前の{unit}から繰り返された「{activity}」までの時間"
            "(繰り返しの待ち時間と作業時間。活動の開始で終わるボトルネック表の待ち時間とは"
            "異なります)の合計を、全 {cases} ケースのサイクルタイム合計で割ったものです。"
        ),
    }
)


def _rework(events: pd.DataFrame, lang: str = "en") -> list[Recommendation]:
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
        tr(REWORK_TIME, lang).format(
            time=hours_text(target_wait / cases_affected / 3600), share=_pct(time_share)
        )
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
                "in the same case. "
                + tr(REWORK_BASIS_TIME, lang).format(
                    activity=target, unit=unit, cases=f"{w.n_cases:,}"
                )
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


CONFORMANCE_TEXT = (
    "Standardise the process: the discovered model reaches a fitness of only {fitness}{precision} "
    "and {deviating}. Review the deviating paths and either enforce the intended path or accept "
    "the variants into the reference model."
)
CONFORMANCE_PRECISION = " (precision {precision})"
DEVIATING = "{pct}% of cases{count} do not fit the model"
DEVIATING_UNKNOWN = "part of the cases deviate from the model"
CONFORMANCE_IMPROVEMENT = (
    "Bringing the deviating {pct}% of cases onto modelled paths raises fitness from {fitness} "
    "toward 1.00."
)
CONFORMANCE_IMPROVEMENT_UNKNOWN = "Fewer deviations raise fitness from {fitness} toward 1.00."
CONFORMANCE_BASIS = (
    "Fitness and fitting-case share from the discovery phase's conformance check (method: "
    "{method})."
)
PRECISION_TEXT = (
    "Do not read the discovered model as the process's rules: it replays {fitting}% of the "
    "cases exactly (fitness {fitness}) but allows much more behaviour than the log shows "
    "(precision {precision}, F-score {f_score}). Read the process from the process map and the "
    "variants, and compare the models of other algorithms (inductive on the variants in a "
    "standard analysis, heuristics) by their F-score."
)
PRECISION_IMPROVEMENT = (
    "A model that allows only observed behaviour (precision toward 1.00) makes deviations and "
    "compliance checks meaningful; a model that allows everything flags nothing."
)
PRECISION_BASIS = "Precision and F-score from the discovery phase's conformance check ({method})."

register_ja(
    {
        CONFORMANCE_TEXT: (
            "プロセスを標準化してください: 発見したモデルの fitness は {fitness}{precision} に"
            "とどまり、{deviating}。逸脱した経路を見直し、意図した経路を徹底するか、その"
            "バリアントを参照モデルに取り込んでください。"
        ),
        CONFORMANCE_PRECISION: "(precision {precision})",
        DEVIATING: "ケースの {pct}%{count} がモデルに適合しません",
        DEVIATING_UNKNOWN: "一部のケースがモデルから逸脱しています",
        CONFORMANCE_IMPROVEMENT: (
            "逸脱した {pct}% のケースをモデル化された経路に乗せると、fitness は {fitness} から "
            "1.00 に近づきます。"
        ),
        CONFORMANCE_IMPROVEMENT_UNKNOWN: (
            "逸脱が減ると fitness は {fitness} から 1.00 に近づきます。"
        ),
        CONFORMANCE_BASIS: (
            "発見フェーズの適合性チェックによる fitness と適合ケース率(方法: {method})。"
        ),
        PRECISION_TEXT: (
            "発見したモデルをプロセスの規則として読まないでください: ケースの {fitting}% を"
            "そのまま再生できます(fitness {fitness})が、ログにない振る舞いも多く許します"
            "(precision {precision}、F値 {f_score})。プロセスはプロセスマップとバリアントから"
            "読み、他のアルゴリズム(standard 分析のバリアントに対する inductive、heuristics)の"
            "モデルと F値で比べてください。"
        ),
        PRECISION_IMPROVEMENT: (
            "観測された振る舞いだけを許すモデル(precision が 1.00 に近い)なら、逸脱や"
            "コンプライアンスの確認が意味を持ちます。すべてを許すモデルは何も検出しません。"
        ),
        PRECISION_BASIS: "発見フェーズの適合性チェックによる precision と F値({method})。",
    }
)


def _conformance(results: Mapping[str, Any], n_cases: int, lang: str) -> list[Recommendation]:
    conf = phase_results(results, "Process Discovery").get("conformance") or {}
    fitness = conf.get("fitness")
    if fitness is None or float(fitness) >= MAX_GOOD_FITNESS:
        return []
    fitness = float(fitness)
    fitting = conf.get("fittingTracesPercentage")
    precision = conf.get("precision")
    cases = n_cases or int(phase_results(results, "Data Loading and Validation").get("cases") or 0)
    fitness_text = f"{fitness:.2f}"
    if fitting is not None:
        # the document gives a percentage; accept a fraction too
        pct = float(fitting) if float(fitting) > 1 else 100 * float(fitting)
        count = f" ({_cases(round(cases * (100 - pct) / 100))})" if cases else ""
        deviating = tr(DEVIATING, lang).format(pct=f"{100 - pct:.1f}", count=count)
        improvement = tr(CONFORMANCE_IMPROVEMENT, lang).format(
            pct=f"{100 - pct:.1f}", fitness=fitness_text
        )
    else:
        deviating = tr(DEVIATING_UNKNOWN, lang)
        improvement = tr(CONFORMANCE_IMPROVEMENT_UNKNOWN, lang).format(fitness=fitness_text)
    precision_text = (
        tr(CONFORMANCE_PRECISION, lang).format(precision=f"{float(precision):.2f}")
        if precision is not None
        else ""
    )
    return [
        Recommendation(
            category="Compliance",
            priority=_priority(1 - fitness, 0.3, 0.2),
            recommendation=tr(CONFORMANCE_TEXT, lang).format(
                fitness=fitness_text, precision=precision_text, deviating=deviating
            ),
            expected_improvement=improvement,
            basis=tr(CONFORMANCE_BASIS, lang).format(method=conf.get("method", "n/a")),
        )
    ]


def _precision(results: Mapping[str, Any], lang: str) -> list[Recommendation]:
    """A model that allows much more than the log shows (a flower-like model fits anything)."""
    conf = phase_results(results, "Process Discovery").get("conformance") or {}
    fitness, precision = conf.get("fitness"), conf.get("precision")
    if fitness is None or precision is None or float(precision) >= LOW_PRECISION:
        return []
    fitting = conf.get("fittingTracesPercentage")
    score = conf.get("fScore")
    return [
        Recommendation(
            category="Model Quality",
            # about the analysis's model, not the process: never above Medium
            priority="Medium" if float(precision) <= VERY_LOW_PRECISION else "Low",
            recommendation=tr(PRECISION_TEXT, lang).format(
                fitting="n/a" if fitting is None else f"{float(fitting):.0f}",
                fitness=f"{float(fitness):.2f}",
                precision=f"{float(precision):.2f}",
                f_score="n/a" if score is None else f"{float(score):.2f}",
            ),
            expected_improvement=tr(PRECISION_IMPROVEMENT, lang),
            basis=tr(PRECISION_BASIS, lang).format(method=conf.get("precisionMethod") or "n/a"),
        )
    ]


def recommend(
    events: pd.DataFrame, results: dict[str, Any], lang: str = "en"
) -> list[Recommendation]:
    """Recommendations that apply to this log, most urgent first; [] when nothing applies.
    `lang` is the language of the texts this module writes ("en" or "ja")."""
    out: list[Recommendation] = []
    n_cases = 0
    if events is not None and len(events):
        n_cases = int(events[CASE].nunique())
        out += _bottleneck(events, results, n_cases, lang)
        out += _rework(events, lang)
    else:
        events = pd.DataFrame(columns=[CASE, ACTIVITY])
    out += _data_quality(results)
    out += _anomalies(events, results, n_cases)
    out += _conformance(results, n_cases, lang)
    out += _precision(results, lang)
    return sorted(out, key=lambda r: _PRIORITY_ORDER[r.priority])
