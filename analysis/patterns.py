"""Frequent, rare and critical behaviour patterns, at the level of trace variants.

A variant is the sequence of activities of a case. The thresholds are fixed and stated in the
result's `definitions`, so a reader can tell exactly what "frequent", "rare" and "critical" mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds
from analysis.progress import Progress

FREQUENT_SHARE = 0.01  # a variant followed by at least 1% of cases (and 2 cases)
RARE_SHARE = 0.001  # a variant with a single case or below 0.1% of cases
CRITICAL_QUANTILE = 0.75  # recurring variants slower (median) than 75% of all cases
TOP = 10
SEPARATOR = " -> "

DEFINITIONS = {
    "frequent": (
        f"variants followed by at least {FREQUENT_SHARE:.0%} of cases and by at least 2 cases"
    ),
    "rare": f"variants followed by a single case or by fewer than {RARE_SHARE:.1%} of cases",
    "critical": (
        "recurring variants (at least 2 cases and at least "
        f"{RARE_SHARE:.1%} of cases, i.e. not rare) whose median cycle time (first to last "
        "event) is at or above the "
        f"{CRITICAL_QUANTILE * 100:.0f}th percentile of all cases' cycle times"
    ),
}


@dataclass(frozen=True)
class VariantStat:
    activities: tuple[str, ...]
    cases: int
    share: float
    median_duration_hours: float | None

    @property
    def text(self) -> str:
        return SEPARATOR.join(self.activities)


@dataclass(frozen=True)
class PatternResult:
    frequent: list[VariantStat]  # all frequent variants, most cases first
    rare: list[VariantStat]  # all rare variants, fewest cases first
    critical: list[VariantStat]  # slowest median first
    definitions: dict[str, str]
    total_variants: int
    total_cases: int
    duration_threshold_hours: float | None  # the percentile that makes a variant critical

    def to_dict(self) -> dict[str, Any]:
        def item(v: VariantStat) -> dict[str, Any]:
            return {"variant": list(v.activities), "cases": v.cases, "share": round(v.share, 4)}

        return {
            "frequentPatterns": len(self.frequent),
            "rarePatterns": len(self.rare),
            "criticalPaths": len(self.critical),
            "definitions": dict(self.definitions),
            "frequent": [item(v) for v in self.frequent[:TOP]],
            "rare": [item(v) for v in self.rare[:TOP]],
            "critical": [
                {
                    "variant": list(v.activities),
                    "cases": v.cases,
                    "medianDurationHours": (
                        None
                        if v.median_duration_hours is None
                        else round(v.median_duration_hours, 2)
                    ),
                }
                for v in self.critical[:TOP]
            ],
        }


def case_variants(events: pd.DataFrame) -> tuple[list[tuple[str, ...]], np.ndarray, np.ndarray]:
    """(variants, variant index per case, cycle time in hours per case) of a sorted frame."""
    cases = events[CASE].to_numpy()
    n = len(cases)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = cases[1:] != cases[:-1]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    codes, names = pd.factorize(events[ACTIVITY].astype(str), sort=False)
    codes = codes.astype(np.int32)
    keys = [codes[a:b].tobytes() for a, b in zip(starts, ends, strict=True)]
    variant_of, _ = pd.factorize(pd.Series(keys, dtype=object), sort=False)
    _, first_case = np.unique(variant_of, return_index=True)  # ids are 0..k-1 in order
    labels = [str(a) for a in names]  # indexing a pandas Index per element is slow
    variants = [tuple(labels[c] for c in codes[starts[i] : ends[i]].tolist()) for i in first_case]
    secs = event_seconds(events)
    hours = (secs[ends - 1] - secs[starts]) / 3600.0
    return variants, variant_of, hours


def find_patterns(
    events: pd.DataFrame,
    variant_counts: list[tuple[tuple[str, ...], int]] | None = None,
    progress: Progress | None = None,
) -> PatternResult:
    """Classify variants; `variant_counts` (sorted by count, e.g. from discovery) overrides the
    counts computed here, durations always come from `events`."""
    progress = progress or Progress()
    progress.update(0, 2, "Grouping cases into variants")
    variants, variant_of, hours = case_variants(events)
    n_cases = len(hours)
    medians = pd.Series(hours).groupby(variant_of).median().to_numpy() if n_cases else np.zeros(0)
    median_of = {v: float(m) for v, m in zip(variants, medians, strict=True)}
    if variant_counts is None:
        counts = np.bincount(variant_of, minlength=len(variants)) if n_cases else np.zeros(0)
        order = np.argsort(-counts, kind="stable")
        variant_counts = [(variants[i], int(counts[i])) for i in order]
    total = sum(c for _, c in variant_counts) or 1
    progress.update(1, 2, f"Classifying {len(variant_counts):,} variants")
    stats = [
        VariantStat(tuple(v), int(c), c / total, median_of.get(tuple(v))) for v, c in variant_counts
    ]
    frequent = [s for s in stats if s.share >= FREQUENT_SHARE and s.cases >= 2]
    frequent.sort(key=lambda s: -s.cases)
    rare = [s for s in stats if s.cases == 1 or s.share < RARE_SHARE]
    rare.sort(key=lambda s: s.cases)
    threshold = float(np.quantile(hours, CRITICAL_QUANTILE)) if n_cases else None
    critical = [
        s
        for s in stats
        if s.cases >= 2
        and s.share >= RARE_SHARE
        and threshold is not None
        and s.median_duration_hours is not None
        and s.median_duration_hours >= threshold
    ]
    critical.sort(key=lambda s: -(s.median_duration_hours or 0.0))
    progress.update(2, 2, "Patterns done")
    return PatternResult(
        frequent=frequent,
        rare=rare,
        critical=critical,
        definitions=dict(DEFINITIONS),
        total_variants=len(stats),
        total_cases=n_cases,
        duration_threshold_hours=threshold,
    )
