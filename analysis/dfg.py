"""The directly-follows graph of an event frame, with frequencies and edge durations.

Shared by discovery (model, complexity, bottlenecks) and the process map. Computed with
vectorised pandas on the canonical frame (sorted by case, timestamp, row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, TIMESTAMP


@dataclass(frozen=True)
class DfgEdge:
    source: str
    target: str
    frequency: int
    mean_seconds: float
    median_seconds: float


@dataclass(frozen=True)
class DirectlyFollows:
    activity_counts: dict[str, int]
    start_counts: dict[str, int]
    end_counts: dict[str, int]
    edges: list[DfgEdge]

    def as_pm4py(self) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """(dfg, start_activities, end_activities) in pm4py's shape."""
        dfg = {(e.source, e.target): e.frequency for e in self.edges}
        return dfg, dict(self.start_counts), dict(self.end_counts)


def event_seconds(events: pd.DataFrame) -> np.ndarray:
    """Event timestamps as float seconds since the epoch (UTC)."""
    ts = events[TIMESTAMP].dt.tz_convert("UTC").dt.tz_localize(None)
    seconds: np.ndarray = ts.to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6
    return seconds


def compute_dfg(events: pd.DataFrame) -> DirectlyFollows:
    cases = events[CASE].to_numpy()
    codes, names = pd.factorize(events[ACTIVITY], sort=False)
    secs = event_seconds(events)
    same_case = cases[1:] == cases[:-1]
    src, tgt = codes[:-1][same_case], codes[1:][same_case]
    gaps = (secs[1:] - secs[:-1])[same_case]
    n = len(names)
    pairs = pd.DataFrame({"k": src.astype(np.int64) * n + tgt, "d": gaps})
    grouped = pairs.groupby("k", sort=False)["d"].agg(["size", "mean", "median"])
    edges = [
        DfgEdge(str(names[k // n]), str(names[k % n]), int(size), float(mean), float(median))
        for k, size, mean, median in zip(
            grouped.index.to_numpy(),
            grouped["size"].to_numpy(),
            grouped["mean"].to_numpy(),
            grouped["median"].to_numpy(),
            strict=True,
        )
    ]
    edges.sort(key=lambda e: (-e.frequency, e.source, e.target))
    first = np.ones(len(cases), dtype=bool)
    first[1:] = ~same_case
    last = np.ones(len(cases), dtype=bool)
    last[:-1] = ~same_case

    def counts(mask: np.ndarray | None) -> dict[str, int]:
        selected = codes if mask is None else codes[mask]
        c = np.bincount(selected, minlength=n)
        return {str(names[i]): int(c[i]) for i in np.argsort(-c, kind="stable") if c[i]}

    return DirectlyFollows(
        activity_counts=counts(None),
        start_counts=counts(first),
        end_counts=counts(last),
        edges=edges,
    )
