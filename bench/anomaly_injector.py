"""Plant known anomalies into copies of normal cases of a real event log.

`plant_anomalies(events, per_kind, seed)` takes a canonical event frame (as `analysis.eventlog`
loads it: CASE, ACTIVITY, TIMESTAMP tz-aware UTC, ROW, sorted by case, time, row), picks normal
cases (cases of the log's frequent variants) with a seeded RNG, copies each under a new case id
and plants one anomaly of one of five kinds in the copy:

- `skip`:    a common activity (present in at least half of the cases) is removed
- `repeat`:  an event is repeated right after itself (same activity, half-way to the next event)
- `swap`:    two adjacent events with distinct activities exchange their activities
- `delay`:   30-120 days are inserted before one event (not the first); later events shift too
- `unknown`: an event of an activity the log has never seen (a new name per case) is inserted

A planted control-flow anomaly (skip, repeat, swap) must give an activity sequence that no case
of the log has: a copy identical to real cases' sequence is not an anomaly in any sense (another
position or case is drawn; up to 200 tries). Returns the frame with the copies added (sorted as
the loader sorts) and the ground truth: planted case id -> (kind, description).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, ROW, TIMESTAMP

KINDS = ("skip", "repeat", "swap", "delay", "unknown")
COMMON_SHARE = 0.5  # "a common activity": present in at least this share of cases
FREQUENT_SHARE = 0.01  # normal cases: their variant covers >= 1 % of cases (and >= 2 cases)
MIN_NORMAL = 60  # if fewer, the most frequent variants (>= 2 cases) until this many cases
DELAY_DAYS = (30.0, 120.0)
TRIES = 200


@dataclass(frozen=True)
class Planted:
    events: pd.DataFrame
    truth: dict[str, tuple[str, str]]  # case id -> (kind, description)

    def kind_of(self) -> dict[str, str]:
        return {case: kind for case, (kind, _) in self.truth.items()}


def _normal_cases(variant_of: pd.Series) -> list[str]:
    counts = variant_of.value_counts()
    n = len(variant_of)
    frequent = counts[(counts >= 2) & (counts >= FREQUENT_SHARE * n)]
    if int(frequent.sum()) < MIN_NORMAL:
        recurring = counts[counts >= 2]
        frequent = recurring[recurring.cumsum().shift(fill_value=0) < MIN_NORMAL]
    return sorted(variant_of.index[variant_of.isin(frequent.index)])


def _between(t: pd.Timestamp, nxt: pd.Timestamp | None) -> pd.Timestamp:
    return t if nxt is None else t + ((nxt - t) / 2).floor("s")


def _plant(
    kind: str,
    case: pd.DataFrame,
    rng: np.random.Generator,
    common: set[str],
    serial: int,
) -> tuple[pd.DataFrame, str] | None:
    """The case with one anomaly of `kind`, or None when the case cannot take it."""
    acts = case[ACTIVITY].tolist()
    n = len(acts)
    ts = case[TIMESTAMP].tolist()
    if kind == "skip":
        where = [i for i, a in enumerate(acts) if a in common]
        if n < 2 or not where:
            return None
        i = int(rng.choice(where))
        return case.drop(index=case.index[i]), f"skipped '{acts[i]}'"
    if kind == "repeat":
        i = int(rng.integers(n))
        extra = case.iloc[[i]].copy()
        extra[TIMESTAMP] = _between(ts[i], ts[i + 1] if i + 1 < n else None)
        out = pd.concat([case.iloc[: i + 1], extra, case.iloc[i + 1 :]])
        return out, f"'{acts[i]}' repeated"
    if kind == "swap":
        pairs = [i for i in range(n - 1) if acts[i] != acts[i + 1]]
        if not pairs:
            return None
        i = int(rng.choice(pairs))
        out = case.copy()
        col = out.columns.get_loc(ACTIVITY)
        out.iloc[i, col], out.iloc[i + 1, col] = acts[i + 1], acts[i]
        return out, f"'{acts[i]}' and '{acts[i + 1]}' swapped"
    if kind == "delay":
        if n < 2:
            return None
        i = int(rng.integers(1, n))
        days = float(rng.uniform(*DELAY_DAYS))
        out = case.copy()
        col = out.columns.get_loc(TIMESTAMP)
        shifted = out[TIMESTAMP].iloc[i:] + pd.Timedelta(seconds=round(days * 86400))
        out.iloc[i:, col] = shifted
        return out, f"+{days:.1f} days before '{acts[i]}'"
    if kind == "unknown":
        i = int(rng.integers(n + 1))  # insert before event i (n: at the end)
        name = f"Unplanned step {serial}"
        extra = case.iloc[[min(i, n - 1)]].copy()
        extra[ACTIVITY] = name
        if i == 0:
            extra[TIMESTAMP] = ts[0]
        else:
            extra[TIMESTAMP] = _between(ts[i - 1], ts[i] if i < n else None)
        out = pd.concat([case.iloc[:i], extra, case.iloc[i:]])
        return out, f"unknown activity '{name}' inserted"
    raise ValueError(kind)


def plant_anomalies(events: pd.DataFrame, per_kind: int = 6, seed: int = 0) -> Planted:
    rng = np.random.default_rng(seed)
    variant_of = events.groupby(CASE, sort=False)[ACTIVITY].agg(tuple)
    seen = set(variant_of)
    n_cases = len(variant_of)
    share = events.drop_duplicates([CASE, ACTIVITY])[ACTIVITY].value_counts() / n_cases
    common = set(share.index[share >= COMMON_SHARE])
    normal = _normal_cases(variant_of)
    rows = events[events[CASE].isin(set(normal))]
    by_case = {str(c): g for c, g in rows.groupby(CASE, sort=False)}
    next_row = int(events[ROW].max()) + 1
    copies: list[pd.DataFrame] = []
    truth: dict[str, tuple[str, str]] = {}
    serial = 0
    for kind in KINDS:
        for k in range(per_kind):
            for _ in range(TRIES):
                source = str(rng.choice(normal))
                planted = _plant(kind, by_case[source], rng, common, serial)
                if planted is None:
                    continue
                frame, text = planted
                if kind in ("skip", "repeat", "swap") and tuple(frame[ACTIVITY]) in seen:
                    continue
                break
            else:
                raise RuntimeError(f"could not plant '{kind}' in {TRIES} tries")
            case_id = f"planted-{seed}-{kind}-{k}"
            frame = frame.copy()
            frame[CASE] = case_id
            frame[ROW] = np.arange(next_row, next_row + len(frame), dtype=np.int64)
            next_row += len(frame)
            copies.append(frame)
            truth[case_id] = (kind, f"{text} (copy of case {source})")
            serial += 1
    out = pd.concat([events, *copies], ignore_index=True)
    out = out.sort_values([CASE, TIMESTAMP, ROW], kind="stable").reset_index(drop=True)
    return Planted(out, truth)
