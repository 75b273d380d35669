"""Caps that keep wide logs (tens of thousands of distinct activities) within bounded memory.

A log's activity vocabulary drives the size of several structures: pm4py's inductive miner
re-mines its variant log once per activity, the next-activity classifier stores one probability
per activity in every tree node, the process map draws one node per activity. Past a cap, the
activities outside the most frequent ones are grouped under one label before these steps, and
the step's `method`/`algorithm` text says so (`ActivityCap.statement`). Figures that describe the
log itself (activity, transition and variant counts, cycle times, patterns) are always computed
on the whole log.

Every cap here is far above the vocabulary of the real logs we test on (bpic2012: 24 activities,
receipt 27, sepsis 16, helpdesk 14, bpic2019 one trace per variant: 42), so they change nothing
there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY

# process discovery (inductive miner and the other miners): activities kept as themselves
DISCOVERY_ACTIVITIES = 50
# predictions (prefix features and the next-activity classes)
PREDICTION_ACTIVITIES = 200
OTHER_LABEL = "(other activities)"


@dataclass(frozen=True)
class ActivityCap:
    """What grouping the rare activities did to a log."""

    kept: int  # activities kept as themselves
    total: int  # distinct activities of the log
    grouped_events: int  # events relabelled
    events: int
    label: str

    @property
    def grouped_activities(self) -> int:
        return self.total - self.kept

    def statement(self) -> str:
        share = self.grouped_events / self.events if self.events else 0.0
        return (
            f"capped to the {self.kept:,} most frequent of {self.total:,} activities: the other "
            f"{self.grouped_activities:,} ({self.grouped_events:,} events, {share:.1%} of the "
            f"log) are grouped as '{self.label}' (bounded memory on wide logs)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "activitiesKept": self.kept,
            "activitiesTotal": self.total,
            "eventsGrouped": self.grouped_events,
            "label": self.label,
            "statement": self.statement(),
        }


def group_rare_activities(
    events: pd.DataFrame, keep: int, label: str = OTHER_LABEL
) -> tuple[pd.DataFrame, ActivityCap | None]:
    """`events` with every activity outside the `keep` most frequent ones (ties: first seen
    first) renamed `label`; (events itself, None) when the log has at most `keep` activities.

    The label is made unique against the log's own activity names. Only the activity column is
    copied; the frame keeps its order and index."""
    codes, names = pd.factorize(events[ACTIVITY], sort=False)
    if len(names) <= keep:
        return events, None
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    kept = np.zeros(len(names), dtype=bool)
    kept[order[:keep]] = True
    existing = {str(n) for n in names}
    while label in existing:
        label = f"{label}*"
    event_kept = kept[codes] | (codes < 0)
    relabelled = np.where(event_kept, events[ACTIVITY].to_numpy(dtype=object), label)
    capped = events.copy(deep=False)
    capped[ACTIVITY] = pd.Series(relabelled, index=events.index, dtype=events[ACTIVITY].dtype)
    cap = ActivityCap(
        kept=keep,
        total=len(names),
        grouped_events=int((~event_kept).sum()),
        events=len(events),
        label=label,
    )
    return capped, cap
