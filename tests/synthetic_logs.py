"""Seeded synthetic event logs: a normal order-to-delivery process with injected anomalies.

Normal behaviour: an optional second stock check, an XOR choice (stock or supplier), a parallel
block of two activities in either order, an optional query step, working-hour starts and
log-normal waits. Anomalies: a mandatory step skipped, a step repeated 3-5 extra times, one wait
stretched by 7-30 days, two strictly ordered steps swapped, an activity outside the model. A known
share of cases gets exactly one anomaly of a known kind, so a detector's precision and recall can
be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, RESOURCE, ROW, TIMESTAMP

ANOMALY_KINDS = (
    "skipped_step",
    "rework_loop",
    "extreme_delay",
    "swapped_order",
    "unknown_activity",
)

# activity -> (median wait before it in hours, resource pool)
_STEPS: dict[str, tuple[float, tuple[str, ...]]] = {
    "Receive order": (0.0, ("clerk1", "clerk2", "clerk3")),
    "Check stock": (2.0, ("clerk1", "clerk2", "clerk3")),
    "Reserve items": (1.0, ("ware1", "ware2")),
    "Order from supplier": (3.0, ("buyer1", "buyer2")),
    "Receive supply": (40.0, ("ware1", "ware2")),
    "Pick items": (4.0, ("ware1", "ware2", "ware3")),
    "Prepare invoice": (3.0, ("acct1", "acct2")),
    "Ship order": (6.0, ("ship1", "ship2")),
    "Handle query": (10.0, ("clerk1", "clerk2", "clerk3")),
    "Close order": (8.0, ("clerk1", "clerk2", "clerk3")),
}
_SKIPPABLE = ("Check stock", "Pick items", "Prepare invoice", "Ship order")
_REWORKABLE = ("Check stock", "Prepare invoice", "Ship order", "Pick items")
_UNKNOWN = ("Manual override", "Escalate to legal", "Data correction", "Phone supplier")
_BASE = pd.Timestamp("2024-01-01", tz="UTC")


@dataclass(frozen=True)
class SyntheticLog:
    events: pd.DataFrame  # canonical event frame
    labels: dict[str, str]  # case id -> anomaly kind, only for anomalous cases

    @property
    def anomalous(self) -> set[str]:
        return set(self.labels)


def _normal_trace(rng: np.random.Generator) -> list[str]:
    trace = ["Receive order", "Check stock"]
    if rng.random() < 0.1:  # an ordinary second look, so repetition alone is not anomalous
        trace.append("Check stock")
    if rng.random() < 0.7:
        trace.append("Reserve items")
    else:
        trace += ["Order from supplier", "Receive supply"]
    block = ["Pick items", "Prepare invoice"]
    if rng.random() < 0.5:
        block.reverse()
    trace += [*block, "Ship order"]
    if rng.random() < 0.2:
        trace.append("Handle query")
    trace.append("Close order")
    return trace


def _inject(trace: list[str], kind: str, rng: np.random.Generator) -> tuple[list[str], int]:
    """The anomalous trace and the index of an event whose wait is stretched (-1: none)."""
    t = list(trace)
    if kind == "skipped_step":
        t.remove(str(rng.choice(_SKIPPABLE)))
    elif kind == "rework_loop":
        step = str(rng.choice(_REWORKABLE))
        i = t.index(step)
        t[i + 1 : i + 1] = [step] * int(rng.integers(3, 6))
    elif kind == "swapped_order":
        # swap two steps that the model keeps strictly ordered
        ship = t.index("Ship order")
        pairs = [(0, 1), (ship - 1, ship), (len(t) - 2, len(t) - 1)]
        a, b = pairs[int(rng.integers(len(pairs)))]
        t[a], t[b] = t[b], t[a]
    elif kind == "unknown_activity":
        t.insert(int(rng.integers(1, len(t))), str(rng.choice(_UNKNOWN)))
    elif kind == "extreme_delay":
        return t, int(rng.integers(1, len(t)))
    return t, -1


def generate_log(n_cases: int = 2000, anomaly_share: float = 0.05, seed: int = 0) -> SyntheticLog:
    rng = np.random.default_rng(seed)
    n_bad = round(n_cases * anomaly_share)
    bad = set(rng.choice(n_cases, size=n_bad, replace=False).tolist())
    kinds = {case: ANOMALY_KINDS[k % len(ANOMALY_KINDS)] for k, case in enumerate(sorted(bad))}
    rows: list[tuple[str, str, pd.Timestamp, str]] = []
    labels: dict[str, str] = {}
    for c in range(n_cases):
        case_id = f"case-{c:05d}"
        trace, delayed = _normal_trace(rng), -1
        if c in kinds:
            labels[case_id] = kinds[c]
            trace, delayed = _inject(trace, kinds[c], rng)
        # starts on weekdays in working hours, spread over a year
        day = int(rng.integers(0, 365))
        if day % 7 >= 5:  # 2024-01-01 is a Monday: move weekend starts to the next Monday
            day += 7 - day % 7
        t = _BASE + pd.Timedelta(days=day, hours=float(rng.uniform(8, 17)))
        for i, act in enumerate(trace):
            median, pool = _STEPS.get(act, (4.0, ("clerk1", "clerk2", "clerk3")))
            if i:
                wait = median * float(rng.lognormal(0.0, 0.7))
                if i == delayed:
                    wait += float(rng.uniform(7, 30)) * 24
                t = t + pd.Timedelta(hours=wait)
            rows.append((case_id, act, t, str(rng.choice(pool))))
    events = pd.DataFrame(rows, columns=[CASE, ACTIVITY, TIMESTAMP, RESOURCE])
    events[TIMESTAMP] = pd.to_datetime(events[TIMESTAMP], utc=True)
    events[ROW] = np.arange(len(events), dtype=np.int64)
    events = events.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)
    return SyntheticLog(events=events, labels=labels)
