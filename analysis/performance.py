"""Cycle times, waiting-time bottlenecks and process efficiency of an event frame.

An activity instance is an event with lifecycle `complete` (or no lifecycle column at all), or a
`start` event paired first-in-first-out with the next `complete` of the same activity in the same
case. Other lifecycle events (schedule, suspend, ...) only count towards cycle time.

- Cycle time of a case: last event minus first event (every event, whatever its lifecycle).
- Waiting time before an instance: its start (its completion when it has no start event) minus
  the latest `complete` event of the case before it; the first instance of a case has none.
  Without lifecycle data this is simply the time since the previous event of the case.
- Bottlenecks: activities ranked by total waiting time before them (their share of all waiting),
  each with the mean and the median wait. The total ranks where cases spend their waiting; a
  mean would put rare activities first; the median says what a typical case waits (waits are
  skewed: on receipt the top bottleneck's mean is 2.2 days, its median 47 seconds).
  Waits of concurrent activities overlap, so with lifecycle data their sum can exceed cycle time.
  This is the one definition of a bottleneck: the table, the summary sentences, the
  recommendations (analysis.recommendations) and the PDF/PPTX texts all read these rows.
- Efficiency: processing time / cycle time over all cases, where processing time is the union of
  the start-complete intervals of a case (so parallel work is not counted twice). Logs without
  start events do not record processing time; their efficiency is reported as None (not computed)
  rather than guessed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import DirectlyFollows, event_seconds
from analysis.errors import EventLogError
from analysis.formatting import hours_text
from analysis.i18n import register_ja, tr
from analysis.progress import Progress

LIFECYCLE = "lifecycle:transition"
BOTTLENECKS_IN_DICT = 20

WAIT_METHOD = (
    "waiting time before an activity = its start (its completion when the log has no start "
    "event for it) minus the previous completion in the same case; activities ranked by total "
    "waiting time (waits of concurrent activities overlap, so their sum can exceed cycle time)"
)
EFFICIENCY_METHOD = (
    "efficiency = processing time / cycle time summed over all cases × 100, processing time being "
    "the union of each case's start-to-complete intervals ({pairs:,} paired start/complete events)"
)
NO_EFFICIENCY_METHOD = (
    "not computed: the log records no start events (one timestamp per activity), so processing "
    "time cannot be told apart from waiting time"
)


WAIT_TEXT = "median wait {median}, mean {mean}"
WAIT_SHARE_TEXT = "{share}% of all waiting time"
BOTTLENECK_SENTENCE = "The main bottleneck is '{activity}': {waits} before it ({share})."
BOTTLENECK_SENTENCE_NO_FIGURES = "The main bottleneck is '{activity}'."
BOTTLENECK_LINE = "{activity}: {waits}, {share}"

register_ja(
    {
        WAIT_TEXT: "待ち時間の中央値 {median}、平均 {mean}",
        WAIT_SHARE_TEXT: "全待ち時間の {share}%",
        BOTTLENECK_SENTENCE: "主なボトルネックは「{activity}」です: その前の{waits}({share})。",
        BOTTLENECK_SENTENCE_NO_FIGURES: "主なボトルネックは「{activity}」です。",
        BOTTLENECK_LINE: "{activity}: {waits}、{share}",
    }
)


def wait_text(row: Mapping[str, Any], lang: str = "en") -> str | None:
    """'median wait 47 seconds, mean 2.2 days' from a bottleneck row (None without figures)."""
    mean, median = row.get("meanWaitHours"), row.get("medianWaitHours")
    if mean is None:
        return None
    median_text = hours_text(float(median)) if median is not None else "n/a"
    return tr(WAIT_TEXT, lang).format(median=median_text, mean=hours_text(float(mean)))


def share_text(row: Mapping[str, Any], lang: str = "en") -> str | None:
    share = row.get("shareOfTotalWait")
    if share is None:
        return None
    return tr(WAIT_SHARE_TEXT, lang).format(share=f"{100 * float(share):.0f}")


def bottleneck_sentence(activity: str, row: Mapping[str, Any], lang: str = "en") -> str:
    """The summary's sentence on the top bottleneck, from its row of the bottleneck table."""
    waits, share = wait_text(row, lang), share_text(row, lang)
    if waits is None or share is None:
        return tr(BOTTLENECK_SENTENCE_NO_FIGURES, lang).format(activity=activity)
    return tr(BOTTLENECK_SENTENCE, lang).format(activity=activity, waits=waits, share=share)


def bottleneck_line(row: Mapping[str, Any], lang: str = "en") -> str:
    """A bullet line of the bottleneck list (PPTX): activity, median and mean wait, share."""
    activity = str(row.get("activity"))
    waits, share = wait_text(row, lang), share_text(row, lang)
    if waits is None or share is None:
        return activity
    return tr(BOTTLENECK_LINE, lang).format(activity=activity, waits=waits, share=share)


@dataclass(frozen=True)
class Bottleneck:
    activity: str
    mean_wait_hours: float
    median_wait_hours: float
    total_wait_hours: float
    occurrences: int
    share_of_total_wait: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "activity": self.activity,
            "meanWaitHours": round(self.mean_wait_hours, 3),
            "medianWaitHours": round(self.median_wait_hours, 3),
            "totalWaitHours": round(self.total_wait_hours, 2),
            "occurrences": self.occurrences,
            "shareOfTotalWait": round(self.share_of_total_wait, 4),
        }


@dataclass(frozen=True)
class PerformanceResult:
    average_cycle_hours: float
    median_cycle_hours: float
    bottlenecks: list[Bottleneck]
    efficiency: float | None
    efficiency_method: str
    total_cycle_hours: float
    total_waiting_hours: float
    total_processing_hours: float | None
    cases: int
    paired_instances: int = 0
    wait_method: str = WAIT_METHOD
    ranking: str = "total waiting time before the activity"

    def to_dict(self) -> dict[str, Any]:
        return {
            "averageCycleTime": hours_text(self.average_cycle_hours),
            "medianCycleTime": hours_text(self.median_cycle_hours),
            "bottleneckActivities": [b.activity for b in self.bottlenecks[:3]],
            "efficiency": None if self.efficiency is None else round(self.efficiency, 2),
            "averageCycleTimeHours": round(self.average_cycle_hours, 3),
            "medianCycleTimeHours": round(self.median_cycle_hours, 3),
            "bottlenecks": [b.to_dict() for b in self.bottlenecks[:BOTTLENECKS_IN_DICT]],
            "bottleneckMethod": self.wait_method,
            "efficiencyMethod": self.efficiency_method,
            "totalCycleHours": round(self.total_cycle_hours, 2),
            "totalWaitingHours": round(self.total_waiting_hours, 2),
            "totalProcessingHours": None
            if self.total_processing_hours is None
            else round(self.total_processing_hours, 2),
        }


@dataclass
class _Instances:
    wait_activity: list[int]
    wait_seconds: list[float]
    busy_case: list[int]
    busy_start: list[float]
    busy_end: list[float]


def _lifecycle_kinds(events: pd.DataFrame) -> np.ndarray:
    """Per event: 1 start, 2 complete, 0 other. No column (or an empty value) means complete."""
    if LIFECYCLE not in events:
        return np.full(len(events), 2, dtype=np.int8)
    lc = events[LIFECYCLE].astype("string").str.strip().str.lower().fillna("")
    kinds = np.zeros(len(events), dtype=np.int8)
    kinds[(lc == "start").to_numpy()] = 1
    kinds[((lc == "complete") | (lc == "")).to_numpy()] = 2
    return kinds


def _instances(
    case_idx: np.ndarray, codes: np.ndarray, secs: np.ndarray, kinds: np.ndarray, progress: Progress
) -> _Instances:
    out = _Instances([], [], [], [], [])
    rows = np.flatnonzero(kinds > 0)
    total = len(rows)
    chunk = max(1, total // 20)
    open_starts: dict[int, deque[float]] = {}
    current, last_complete = -1, float("nan")
    for n, (case, act, t, kind) in enumerate(
        zip(
            case_idx[rows].tolist(),
            codes[rows].tolist(),
            secs[rows].tolist(),
            kinds[rows].tolist(),
            strict=True,
        )
    ):
        if n % chunk == 0:
            progress.update(n, total, "Measuring waiting and processing times")
        if case != current:
            current, last_complete = case, float("nan")
            open_starts.clear()
        if kind == 1:
            if last_complete == last_complete:  # not NaN: a previous completion exists
                out.wait_activity.append(act)
                out.wait_seconds.append(t - last_complete)
            open_starts.setdefault(act, deque()).append(t)
            continue
        queue = open_starts.get(act)
        if queue:
            out.busy_case.append(case)
            out.busy_start.append(queue.popleft())
            out.busy_end.append(t)
        elif last_complete == last_complete:
            out.wait_activity.append(act)
            out.wait_seconds.append(t - last_complete)
        last_complete = t
    return out


def _busy_seconds(cases: list[int], starts: list[float], ends: list[float]) -> float:
    """Total length of the union of intervals within each case."""
    if not cases:
        return 0.0
    frame = pd.DataFrame({"case": cases, "s": starts, "e": ends}).sort_values(
        ["case", "s"], kind="stable"
    )
    reach = frame.groupby("case", sort=False)["e"].cummax()
    previous = reach.groupby(frame["case"], sort=False).shift(1)
    segment = (previous.isna() | (frame["s"] > previous)).cumsum()
    merged = frame.groupby(segment, sort=False).agg(s=("s", "min"), e=("e", "max"))
    return float((merged["e"] - merged["s"]).sum())


def _bottlenecks(names: list[str], inst: _Instances) -> list[Bottleneck]:
    if not inst.wait_seconds:
        return []
    waits = pd.DataFrame({"a": inst.wait_activity, "w": np.asarray(inst.wait_seconds) / 3600})
    stats = waits.groupby("a").agg(
        mean_h=("w", "mean"), median_h=("w", "median"), total_h=("w", "sum"), n=("w", "size")
    )
    total = float(stats["total_h"].sum())
    stats["activity"] = [names[i] for i in stats.index]
    stats = stats.sort_values(["total_h", "mean_h", "activity"], ascending=[False, False, True])
    columns = zip(
        stats["activity"].tolist(),
        stats["mean_h"].tolist(),
        stats["median_h"].tolist(),
        stats["total_h"].tolist(),
        stats["n"].tolist(),
        strict=True,
    )
    return [
        Bottleneck(
            activity=activity,
            mean_wait_hours=float(mean),
            median_wait_hours=float(median),
            total_wait_hours=float(wait),
            occurrences=int(n),
            share_of_total_wait=float(wait) / total if total > 0 else 0.0,
        )
        for activity, mean, median, wait, n in columns
    ]


def compute_performance(
    events: pd.DataFrame,
    dfg: DirectlyFollows | None = None,
    progress: Progress | None = None,
) -> PerformanceResult:
    """Cycle times, bottlenecks and efficiency of a canonical event frame.

    `dfg` is accepted so the discovery phase can pass the graph it shares with other steps; the
    waits here are per activity instance (lifecycle-aware, with medians), so they are measured on
    the frame itself and the graph is not needed.
    """
    del dfg
    progress = progress or Progress()
    progress.update(0, 1, "Measuring cycle times")
    if events.empty:
        raise EventLogError("The event log has no events to measure cycle times on")
    cases = events[CASE].to_numpy()
    first = np.ones(len(events), dtype=bool)
    first[1:] = cases[1:] != cases[:-1]
    starts = np.flatnonzero(first)
    case_idx = np.cumsum(first) - 1
    codes, uniques = pd.factorize(events[ACTIVITY], sort=False)
    names = [str(u) for u in uniques]
    secs = event_seconds(events)
    cycle_h = (np.maximum.reduceat(secs, starts) - np.minimum.reduceat(secs, starts)) / 3600
    inst = _instances(case_idx, codes, secs, _lifecycle_kinds(events), progress)
    total_cycle = float(cycle_h.sum())
    if inst.busy_case:
        busy_h = _busy_seconds(inst.busy_case, inst.busy_start, inst.busy_end) / 3600
        efficiency: float | None = 100.0 * busy_h / total_cycle if total_cycle > 0 else None
        method = EFFICIENCY_METHOD.format(pairs=len(inst.busy_case))
        processing: float | None = busy_h
    else:
        efficiency, method, processing = None, NO_EFFICIENCY_METHOD, None
    progress.update(1, 1, "Measured cycle times and bottlenecks")
    return PerformanceResult(
        average_cycle_hours=float(cycle_h.mean()),
        median_cycle_hours=float(np.median(cycle_h)),
        bottlenecks=_bottlenecks(names, inst),
        efficiency=efficiency,
        efficiency_method=method,
        total_cycle_hours=total_cycle,
        total_waiting_hours=float(np.sum(inst.wait_seconds)) / 3600,
        total_processing_hours=processing,
        cases=len(starts),
        paired_instances=len(inst.busy_case),
    )
