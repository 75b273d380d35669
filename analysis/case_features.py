"""One row of behavioural features per case, built with vectorised numpy/pandas.

The features feed the anomaly detector and explain its verdicts: every "rarity" figure is relative
to the log the features are built from (its `LogStatistics`), so reference cases scored later can
be measured against the same yardstick (`case_features_with`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE, RESOURCE
from analysis.dfg import event_seconds

# Transitions and activities present in fewer than this share of cases count as rare.
RARE_TRANSITION_SHARE = 0.01
RARE_ACTIVITY_SHARE = 0.01
# Activities present in at least this share of cases are "common": their absence is notable.
COMMON_ACTIVITY_SHARE = 0.9
START = "[start]"
END = "[end]"

# Columns the detector sees; resource columns are dropped when the log has no resources.
MODEL_FEATURES = (
    "log_duration",
    "event_count",
    "rework_count",
    "max_repeat",
    "loop_count",
    "rare_transition_count",
    "transition_rarity",
    "rare_activity_count",
    "activity_rarity",
    "missing_common_count",
    "log_max_gap",
    "log_delay_ratio",
    "resource_changes",
    "distinct_resources",
    "start_hour_rarity",
)
RESOURCE_FEATURES = ("resource_changes", "distinct_resources")


@dataclass(frozen=True)
class LogStatistics:
    """Frequencies of the reference log, by activity code (plus START/END as the last two)."""

    activities: tuple[str, ...]
    n_cases: int
    activity_case_share: np.ndarray  # per activity code
    edge_keys: np.ndarray  # sorted edge keys, source * symbols + target
    edge_case_share: np.ndarray  # share of cases containing each edge of `edge_keys`
    wait_keys: np.ndarray  # sorted keys of transitions between real activities
    wait_median_hours: np.ndarray  # median wait of each transition of `wait_keys`
    overall_median_wait_hours: float
    start_hour_share: np.ndarray  # 24 shares of case starts by UTC hour
    has_resources: bool

    @property
    def symbols(self) -> int:
        return len(self.activities) + 2

    def edge_share(self, keys: np.ndarray) -> np.ndarray:
        """Share of reference cases containing each edge key; 0 for edges never seen (-1 too)."""
        if len(self.edge_keys) == 0:
            return np.zeros(len(keys))
        pos = np.minimum(np.searchsorted(self.edge_keys, keys), len(self.edge_keys) - 1)
        return np.where(self.edge_keys[pos] == keys, self.edge_case_share[pos], 0.0)

    def median_wait(self, keys: np.ndarray) -> np.ndarray:
        """Median wait (hours) of each transition key; the overall median for unseen ones."""
        if len(self.wait_keys) == 0:
            return np.full(len(keys), self.overall_median_wait_hours)
        pos = np.minimum(np.searchsorted(self.wait_keys, keys), len(self.wait_keys) - 1)
        found = self.wait_keys[pos] == keys
        return np.where(found, self.wait_median_hours[pos], self.overall_median_wait_hours)

    def code(self, name: str) -> int:
        if name == START:
            return len(self.activities)
        if name == END:
            return len(self.activities) + 1
        return self.activities.index(name)

    def name(self, code: int) -> str:
        n = len(self.activities)
        return self.activities[code] if code < n else (START if code == n else END)


@dataclass(frozen=True)
class CaseFeatures:
    """`table`: one row per case (index = case id as str), numeric features plus detail columns
    (`most_repeated_activity`, `rarest_transition_source/target`, `rarest_activity`, `variant_id`)
    that reason generation quotes. `variants[variant_id]` is the activity sequence."""

    table: pd.DataFrame
    stats: LogStatistics
    variants: list[tuple[str, ...]]

    @property
    def model_columns(self) -> list[str]:
        return [c for c in MODEL_FEATURES if self.stats.has_resources or c not in RESOURCE_FEATURES]

    def model_matrix(self) -> np.ndarray:
        return self.table[self.model_columns].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class _Layout:
    """Where cases start and end in the sorted frame, and each event's case index."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive
    case_of: np.ndarray
    case_ids: np.ndarray
    same_case: np.ndarray  # event i and i-1 belong to the same case (len n, first False)


def _layout(events: pd.DataFrame) -> _Layout:
    cases = events[CASE].to_numpy()
    n = len(cases)
    same = np.zeros(n, dtype=bool)
    if n > 1:
        same[1:] = cases[1:] == cases[:-1]
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    case_of = np.cumsum(~same) - 1
    return _Layout(starts, ends, case_of, cases[starts].astype(str), same)


def _first_per_group(group: np.ndarray, order_key: np.ndarray, n_groups: int) -> np.ndarray:
    """Index (into the arrays) of the element with the smallest order_key in each group; -1 if
    the group is empty."""
    order = np.lexsort((order_key, group))
    g = group[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    out = np.full(n_groups, -1, dtype=np.int64)
    out[g[first]] = order[first]
    return out


def _edges(codes: np.ndarray, lay: _Layout, n_act: int) -> tuple[np.ndarray, np.ndarray]:
    """All transitions of all cases including virtual START->first and last->END, as
    (case index, edge key) with key = source * (n_act + 2) + target."""
    s = n_act + 2
    inner = np.flatnonzero(lay.same_case)
    src = np.concatenate([np.full(len(lay.starts), n_act), codes[inner - 1], codes[lay.ends - 1]])
    tgt = np.concatenate([codes[lay.starts], codes[inner], np.full(len(lay.ends), n_act + 1)])
    n_cases = len(lay.starts)
    case = np.concatenate([np.arange(n_cases), lay.case_of[inner], np.arange(n_cases)])
    return case, src.astype(np.int64) * s + tgt


def _statistics(events: pd.DataFrame) -> LogStatistics:
    lay = _layout(events)
    codes, names = pd.factorize(events[ACTIVITY], sort=False)
    n_cases, n_act = len(lay.starts), len(names)
    pair = np.unique(lay.case_of.astype(np.int64) * n_act + codes)
    act_share = np.bincount(pair % n_act, minlength=n_act) / max(n_cases, 1)
    case, key = _edges(codes, lay, n_act)
    uniq = np.unique(case.astype(np.int64) * (n_act + 2) ** 2 + key) % (n_act + 2) ** 2
    edge_keys, edge_counts = np.unique(uniq, return_counts=True)
    hours = _start_hours(events, lay)
    inner = np.flatnonzero(lay.same_case)
    secs = event_seconds(events)
    waits = pd.Series((secs[inner] - secs[inner - 1]) / 3600.0)
    wait_key = codes[inner - 1].astype(np.int64) * (n_act + 2) + codes[inner]
    medians = waits.groupby(wait_key).median()
    has_res = RESOURCE in events.columns and bool((events[RESOURCE].astype(str) != "").any())
    return LogStatistics(
        activities=tuple(str(a) for a in names),
        n_cases=n_cases,
        activity_case_share=act_share,
        edge_keys=edge_keys,
        edge_case_share=edge_counts / max(n_cases, 1),
        wait_keys=medians.index.to_numpy(dtype=np.int64),
        wait_median_hours=medians.to_numpy(dtype=np.float64),
        overall_median_wait_hours=float(waits.median()) if len(waits) else 0.0,
        start_hour_share=np.bincount(hours, minlength=24) / max(n_cases, 1),
        has_resources=has_res,
    )


def _start_hours(events: pd.DataFrame, lay: _Layout) -> np.ndarray:
    # epoch arithmetic: converting tz-aware timestamps to objects is 100x slower
    secs = event_seconds(events)[lay.starts]
    hours: np.ndarray = (np.floor(secs / 3600.0).astype(np.int64) % 24).astype(np.int64)
    return hours


def build_case_features(events: pd.DataFrame) -> CaseFeatures:
    """Features of every case of `events`, with rarities measured against `events` itself."""
    return case_features_with(events, _statistics(events))


@dataclass(frozen=True)
class _Codes:
    """Activity codes of a log in the reference's numbering: its activities, START, END, then
    activities the reference never saw; `share` is each code's share of reference cases."""

    codes: np.ndarray  # per event
    names: list[str]  # per code
    share: np.ndarray  # per code

    @property
    def width(self) -> int:
        return len(self.names)


def _encode(events: pd.DataFrame, stats: LogStatistics) -> _Codes:
    n, n_act = len(events), len(stats.activities)
    lookup = {a: i for i, a in enumerate(stats.activities)}
    raw_names = events[ACTIVITY].astype(str)
    local_codes, local_names = pd.factorize(raw_names, sort=False)
    # activities unknown to the reference statistics get fresh codes beyond START/END
    mapping = np.array([lookup.get(a, -1) for a in local_names], dtype=np.int64).reshape(-1)
    unknown = mapping < 0
    mapping[unknown] = n_act + 2 + np.arange(int(unknown.sum()))
    codes = mapping[local_codes] if n else np.zeros(0, dtype=np.int64)
    all_names = list(stats.activities) + [START, END] + [str(a) for a in local_names[unknown]]
    act_share = np.zeros(len(all_names))
    act_share[:n_act] = stats.activity_case_share
    return _Codes(codes, all_names, act_share)


def _timing_columns(secs: np.ndarray, lay: _Layout, n: int) -> dict[str, np.ndarray]:
    count = (lay.ends - lay.starts).astype(np.int64)
    first_s, last_s = secs[lay.starts], secs[lay.ends - 1]
    duration_h = (last_s - first_s) / 3600.0
    gap = np.where(lay.same_case, secs - np.r_[secs[:1], secs[:-1]], 0.0) / 3600.0
    max_gap = np.maximum.reduceat(gap, lay.starts) if n else np.zeros(0)
    mean_gap = np.where(count > 1, duration_h / np.maximum(count - 1, 1), 0.0)
    return {
        "duration_hours": duration_h,
        "event_count": count,
        "mean_gap_hours": mean_gap,
        "max_gap_hours": max_gap,
        "start_seconds": first_s,
        "end_seconds": last_s,
    }


def _activity_columns(
    enc: _Codes, lay: _Layout, stats: LogStatistics, n_cases: int
) -> dict[str, np.ndarray]:
    """Repetitions, rarest activity and missing common activities per case."""
    width, act_share, n_act = enc.width, enc.share, len(stats.activities)
    # repetitions: (case, activity) pairs and how often each occurs
    pkey = lay.case_of.astype(np.int64) * width + enc.codes
    pairs, pcount = np.unique(pkey, return_counts=True)
    pcase, pact = pairs // width, pairs % width
    distinct = np.bincount(pcase, minlength=n_cases)
    top = _first_per_group(pcase, -pcount, n_cases)
    pshare = act_share[pact]
    rarest_a = _first_per_group(pcase, pshare, n_cases)
    rare_act = np.bincount(pcase[pshare < RARE_ACTIVITY_SHARE], minlength=n_cases)
    # common activities a case lacks: the rarest-to-miss one is quoted in reasons
    common = act_share >= COMMON_ACTIVITY_SHARE
    present_common = np.bincount(pcase[common[pact]], minlength=n_cases)
    missing_name = np.full(n_cases, "", dtype=object)
    common_codes = np.flatnonzero(common[:n_act])
    # most common last, so the most surprising absence is the one named
    for code in common_codes[np.argsort(act_share[common_codes], kind="stable")]:
        has = np.zeros(n_cases, dtype=bool)
        has[pcase[pact == code]] = True
        missing_name[~has] = stats.activities[code]
    names_arr = np.array(enc.names, dtype=object)
    return {
        "distinct_activities": distinct,
        "max_repeat": pcount[top],
        "most_repeated_activity": names_arr[pact[top]],
        "rare_activity_count": rare_act,
        "min_activity_share": pshare[rarest_a],
        "rarest_activity": names_arr[pact[rarest_a]],
        "missing_common_count": int(common.sum()) - present_common,
        "missing_common_activity": missing_name,
    }


def _loop_count(codes: np.ndarray, lay: _Layout, n: int, n_cases: int) -> np.ndarray:
    """Direct loops per case: A A (self loop) or A B A (back loop of length two)."""
    prev1 = np.r_[-1, codes[:-1]][:n]
    prev2 = np.r_[-1, -1, codes[:-2]][:n]
    same2 = lay.same_case & np.r_[False, lay.same_case[:-1]][:n]
    loops = (lay.same_case & (codes == prev1)) | (same2 & (codes == prev2) & (codes != prev1))
    counts: np.ndarray = np.bincount(lay.case_of[loops], minlength=n_cases)
    return counts


def _transition_columns(
    enc: _Codes, lay: _Layout, stats: LogStatistics, n_cases: int
) -> dict[str, np.ndarray]:
    """Transitions (with virtual start/end) and their share of cases in the reference log."""
    codes, width, n_act = enc.codes, enc.width, len(stats.activities)
    s_ref = n_act + 2
    inner = np.flatnonzero(lay.same_case)
    e_src = np.concatenate([np.full(n_cases, n_act), codes[inner - 1], codes[lay.ends - 1]])
    e_tgt = np.concatenate([codes[lay.starts], codes[inner], np.full(n_cases, n_act + 1)])
    e_case = np.concatenate([np.arange(n_cases), lay.case_of[inner], np.arange(n_cases)])
    ekey = e_src * width + e_tgt
    ukey = np.unique(e_case.astype(np.int64) * width * width + ekey)
    u_case, u_edge = ukey // (width * width), ukey % (width * width)
    u_src, u_tgt = u_edge // width, u_edge % width
    known = (u_src < s_ref) & (u_tgt < s_ref)
    ref_key = np.where(known, u_src * s_ref + u_tgt, -1)
    eshare = stats.edge_share(ref_key)
    rare_tr = np.bincount(u_case[eshare < RARE_TRANSITION_SHARE], minlength=n_cases)
    # expected duration: the sum of the usual (median) waits along the case's own path
    i_src, i_tgt = codes[inner - 1], codes[inner]
    wait_key = np.where((i_src < n_act) & (i_tgt < n_act), i_src * s_ref + i_tgt, -1)
    expected_h = np.bincount(
        lay.case_of[inner], weights=stats.median_wait(wait_key), minlength=n_cases
    )
    rarest_e = _first_per_group(u_case, eshare, n_cases)
    names_arr = np.array(enc.names, dtype=object)
    return {
        "rare_transition_count": rare_tr,
        "min_transition_share": eshare[rarest_e],
        "rarest_transition_source": names_arr[u_src[rarest_e]],
        "rarest_transition_target": names_arr[u_tgt[rarest_e]],
        "expected_hours": expected_h,
    }


def _resource_columns(events: pd.DataFrame, lay: _Layout, n_cases: int) -> dict[str, np.ndarray]:
    """Hand-overs between known performers, and distinct performers, per case."""
    if RESOURCE not in events.columns:
        return {
            "resource_changes": np.zeros(n_cases, dtype=np.int64),
            "distinct_resources": np.zeros(n_cases, dtype=np.int64),
        }
    res_codes, res_names = pd.factorize(events[RESOURCE].astype(str), sort=False)
    empty = np.flatnonzero(res_names == "")
    known_res = res_codes >= 0
    if len(empty):
        known_res &= res_codes != empty[0]
    prev_res = np.r_[-1, res_codes[:-1]]
    prev_known = np.r_[False, known_res[:-1]]
    change = lay.same_case & known_res & prev_known & (res_codes != prev_res)
    rpairs = np.unique(
        lay.case_of[known_res].astype(np.int64) * max(len(res_names), 1) + res_codes[known_res]
    )
    return {
        "resource_changes": np.bincount(lay.case_of[change], minlength=n_cases),
        "distinct_resources": np.bincount(rpairs // max(len(res_names), 1), minlength=n_cases),
    }


def _variant_columns(
    enc: _Codes, lay: _Layout, n_cases: int
) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
    """Each case's variant (its activity sequence, identified by its code bytes) and share."""
    codes = enc.codes
    seq_keys = [codes[a:b].tobytes() for a, b in zip(lay.starts, lay.ends, strict=True)]
    variant_id, uniques = pd.factorize(pd.Series(seq_keys, dtype=object), sort=False)
    first_of_variant = _first_per_group(variant_id, np.zeros(n_cases), len(uniques))
    variants = [
        tuple(enc.names[c] for c in codes[lay.starts[i] : lay.ends[i]]) for i in first_of_variant
    ]
    variant_share = np.bincount(variant_id, minlength=len(uniques))[variant_id] / max(n_cases, 1)
    return {"variant_id": variant_id, "variant_share": variant_share}, variants


# the table's columns in order (the helpers above compute them by group)
_COLUMNS = (
    "duration_hours",
    "event_count",
    "distinct_activities",
    "rework_count",
    "max_repeat",
    "most_repeated_activity",
    "loop_count",
    "rare_transition_count",
    "min_transition_share",
    "rarest_transition_source",
    "rarest_transition_target",
    "rare_activity_count",
    "min_activity_share",
    "rarest_activity",
    "missing_common_count",
    "missing_common_activity",
    "resource_changes",
    "distinct_resources",
    "start_hour",
    "start_weekday",
    "start_hour_share",
    "mean_gap_hours",
    "max_gap_hours",
    "expected_hours",
    "variant_id",
    "variant_share",
    "start_seconds",
    "end_seconds",
)


def case_features_with(events: pd.DataFrame, stats: LogStatistics) -> CaseFeatures:
    """Features of the cases of `events` with rarities looked up in `stats` (another log's)."""
    lay = _layout(events)
    n, n_cases = len(events), len(lay.starts)
    enc = _encode(events, stats)
    secs = event_seconds(events)
    columns = _timing_columns(secs, lay, n)
    columns.update(_activity_columns(enc, lay, stats, n_cases))
    columns["rework_count"] = columns["event_count"] - columns["distinct_activities"]
    columns["loop_count"] = _loop_count(enc.codes, lay, n, n_cases)
    columns.update(_transition_columns(enc, lay, stats, n_cases))
    columns.update(_resource_columns(events, lay, n_cases))
    hours = np.floor(secs[lay.starts] / 3600.0).astype(np.int64) % 24
    columns["start_hour"] = hours
    # 1970-01-01 was a Thursday (weekday 3 with Monday = 0)
    columns["start_weekday"] = (np.floor(secs[lay.starts] / 86400.0).astype(np.int64) + 3) % 7
    hour_share = stats.start_hour_share[hours]
    columns["start_hour_share"] = hour_share
    variant_columns, variants = _variant_columns(enc, lay, n_cases)
    columns.update(variant_columns)

    floor = 0.5 / max(stats.n_cases, 1)  # share of "half a case": keeps logs finite for unseen
    table = pd.DataFrame(
        {name: columns[name] for name in _COLUMNS}, index=pd.Index(lay.case_ids, name=CASE)
    )
    duration_h, expected_h = columns["duration_hours"], columns["expected_hours"]
    table["log_duration"] = np.log1p(duration_h)
    table["log_max_gap"] = np.log1p(columns["max_gap_hours"])
    table["log_delay_ratio"] = np.log1p(duration_h) - np.log1p(expected_h)
    table["transition_rarity"] = -np.log10(np.maximum(table["min_transition_share"], floor))
    table["activity_rarity"] = -np.log10(np.maximum(table["min_activity_share"], floor))
    table["start_hour_rarity"] = -np.log10(np.maximum(hour_share, floor))
    return CaseFeatures(table=table, stats=stats, variants=variants)
