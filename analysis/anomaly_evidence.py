"""Per-case evidence of anomalous behaviour, each kind measured against the log itself.

Control flow (relative to the log's own frequencies):
- `activity`: -log10 of the share of cases containing the case's rarest activity (an activity
  in no other case is unknown to the log).
- `transition`: the case's two least likely directly-follows steps, each scored
  -log10 sqrt(P(next | current) * P(current | next)) over all the log's steps (with a virtual
  start and end, so an unusual first or last activity counts too), summed, minus log10 of the
  number of step pairs of the case (Bonferroni: a long case has more chances of a rare step).
- `order2`: the least likely second-order step, -log10 P(next | two previous activities) where
  that context occurs >= `MIN_ORDER2_CONTEXT` times, minus log10 of the number of steps.
- `repeat`: an activity occurring k >= 2 times: -log10 of the share of the cases containing it
  that have it k or more times.
- `missing`: a common activity (present in >= 50 % of cases) absent: -log10 of the share of
  cases without it.
Time (on log10(1 + minutes)):
- `wait`: the wait before each event minus the 99th percentile of the waits of the same
  transition (source -> target; the target activity's waits when the transition has fewer than
  `MIN_CONTEXT` waits, the log's when the activity has fewer too); the case's largest excess.
- `duration`: the case's duration, robust z against median + MAD of all cases' durations.
- `slow`: the same against the cases with the same activity sequence (when >= `MIN_CONTEXT`
  cases share it; else as `duration`).

Each kind yields a raw value per case (larger = more unusual) and a detail the reasons quote.
All tables are sparse (np.unique / groupby over the pairs that occur), never activities x
activities, so logs with 100,000 distinct activities stay linear in their events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.columns import ACTIVITY, CASE
from analysis.dfg import event_seconds

COMMON_SHARE = 0.5
MIN_CONTEXT = 10
MIN_ORDER2_CONTEXT = (
    20  # second-order steps count where their two-activity context is this frequent
)
MAD_TO_SIGMA = 1.4826
# smallest robust scale of a context's log10 waits: a context whose waits are (nearly) constant
# would otherwise turn minutes into huge z-scores
MIN_SCALE = 0.25
TAIL_QUANTILE = 0.99
KINDS = (
    "activity",
    "transition",
    "order2",
    "repeat",
    "missing",
    "wait",
    "duration",
    "slow",
    "nearmiss",
)
# near-miss of a standard path: a rare activity sequence (<= RARE_VARIANT_CASES cases) one edit
# (skip, insertion, substitution, adjacent swap) away from a frequent one (>= FREQUENT_SHARE of
# cases and >= MIN_CONTEXT cases; at most MAX_FREQUENT of them, the most frequent first)
RARE_VARIANT_CASES = 9
FREQUENT_SHARE = 0.01
MAX_FREQUENT = 50


@dataclass(frozen=True)
class NearMiss:
    """One rare variant's nearest frequent path (edit distance 1)."""

    base: int  # index of the frequent variant
    edit: str  # "skip", "insert", "repeat", "swap", "substitute"
    first: int  # activity code(s) the edit concerns
    second: int


def _one_edit(a: np.ndarray, b: np.ndarray) -> tuple[str, int, int] | None:
    """How `a` (rare) is one edit from `b` (frequent), or None if it is not."""
    la, lb = len(a), len(b)
    m = min(la, lb)
    diff = np.flatnonzero(a[:m] != b[:m])
    p = int(diff[0]) if len(diff) else m
    # common suffix, not overlapping the prefix
    ra, rb = a[::-1][: m - p], b[::-1][: m - p]
    dsuf = np.flatnonzero(ra != rb)
    s = int(dsuf[0]) if len(dsuf) else m - p
    if la == lb:
        if p + s == la - 1:
            return "substitute", int(b[p]), int(a[p])
        if p + s == la - 2 and a[p] == b[p + 1] and a[p + 1] == b[p]:
            return "swap", int(b[p]), int(b[p + 1])
        return None
    if la == lb - 1 and p + s >= la:
        return "skip", int(b[p]), -1
    if la == lb + 1 and p + s >= lb:
        x = int(a[p])
        neighbour = (p > 0 and a[p - 1] == x) or (p + 1 < la and a[p + 1] == x)
        return ("repeat" if neighbour else "insert"), x, -1
    return None


def path_text(activities: list[str], head: int = 4, tail: int = 2) -> str:
    """'A → B → C → D → … → Y → Z (12 steps)' for long paths, the whole path for short ones."""
    if len(activities) <= head + tail + 1:
        return " → ".join(activities)
    shown = [*activities[:head], "…", *activities[-tail:]]
    return f"{' → '.join(shown)} ({len(activities)} steps)"


def near_misses(
    sequences: list[np.ndarray], counts: np.ndarray, n_cases: int
) -> tuple[dict[int, NearMiss], np.ndarray]:
    """For each rare variant one edit from a frequent one: its nearest frequent path (the most
    frequent among those at distance 1). Returns ({rare variant: NearMiss}, frequent variants)."""
    threshold = max(FREQUENT_SHARE * n_cases, MIN_CONTEXT)
    frequent = np.flatnonzero(counts >= threshold)
    frequent = frequent[np.argsort(-counts[frequent], kind="stable")][:MAX_FREQUENT]
    by_length: dict[int, list[int]] = {}
    for f in frequent.tolist():  # most frequent first within each length
        by_length.setdefault(len(sequences[f]), []).append(f)
    out: dict[int, NearMiss] = {}
    if not by_length:
        return out, frequent
    for v in np.flatnonzero(counts <= RARE_VARIANT_CASES).tolist():
        a = sequences[v]
        best: NearMiss | None = None
        for length in (len(a) - 1, len(a), len(a) + 1):
            for f in by_length.get(length, ()):
                if best is not None and counts[f] <= counts[best.base]:
                    break
                edit = _one_edit(a, sequences[f])
                if edit is not None:
                    best = NearMiss(f, *edit)
                    break
        if best is not None:
            out[v] = best
    return out, frequent


@dataclass(frozen=True)
class Evidence:
    """`raw[kind]`: per case (in order of first appearance), larger = more unusual."""

    case_ids: np.ndarray
    raw: dict[str, np.ndarray]
    n_cases: int
    # details for reasons, per case
    activity_name: np.ndarray
    activity_cases: np.ndarray
    transition_source: np.ndarray
    transition_target: np.ndarray
    transition_prob: np.ndarray
    transition_cases: np.ndarray
    order2_before: np.ndarray  # the second-order step: before, source -> target, P(target | both)
    order2_source: np.ndarray
    order2_target: np.ndarray
    order2_prob: np.ndarray
    repeat_name: np.ndarray
    repeat_count: np.ndarray
    repeat_share: np.ndarray
    missing_name: np.ndarray
    missing_presence: np.ndarray
    wait_hours: np.ndarray
    wait_source: np.ndarray
    wait_target: np.ndarray
    wait_bound_hours: np.ndarray  # the context's 99th percentile
    wait_context: np.ndarray  # 2: the transition's waits, 1: the target activity's, 0: the log's
    wait_context_count: np.ndarray
    duration_hours: np.ndarray
    duration_bound_hours: np.ndarray
    variant_share: np.ndarray
    variant_cases: np.ndarray
    path_median_hours: np.ndarray  # median duration of the cases with the same path
    # near-miss of a frequent path: that path, its cases, the edit and the activities it concerns
    nearmiss_path: np.ndarray
    nearmiss_cases: np.ndarray
    nearmiss_edit: np.ndarray
    nearmiss_first: np.ndarray
    nearmiss_second: np.ndarray


def _first_per_group(group: np.ndarray, order_key: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the element with the smallest `order_key` in each group (-1 if empty)."""
    order = np.lexsort((order_key, group))
    g = group[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    out = np.full(n_groups, -1, dtype=np.int64)
    out[g[first]] = order[first]
    return out


def _hours_from_log(lw: np.ndarray) -> np.ndarray:
    minutes: np.ndarray = np.power(10.0, lw) - 1.0
    return minutes / 60.0


def _robust(values: pd.Series, groups: np.ndarray) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per group: median, robust scale (MAD as sigma, floored), count."""
    grouped = values.groupby(groups)
    median = grouped.median()
    dev = (values - median.reindex(groups).to_numpy()).abs()
    scale = (dev.groupby(groups).median() * MAD_TO_SIGMA).clip(lower=MIN_SCALE)
    return median, scale, grouped.size()


def case_evidence(events: pd.DataFrame) -> Evidence:  # whole: one pass sharing ~20 arrays
    """Evidence of every case of `events` (the canonical frame: sorted by case, then time)."""
    cases = events[CASE].to_numpy()
    n = len(cases)
    same = np.zeros(n, dtype=bool)
    if n > 1:
        same[1:] = cases[1:] == cases[:-1]
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:], n].astype(np.int64)
    n_cases = len(starts)
    case_of = (np.cumsum(~same) - 1).astype(np.int64)
    codes_raw, names_idx = pd.factorize(events[ACTIVITY], sort=False)
    codes = codes_raw.astype(np.int64)
    n_act = len(names_idx)
    names = np.array([str(a) for a in names_idx] + ["[start]", "[end]"], dtype=object)
    start_code, end_code, width = n_act, n_act + 1, n_act + 2
    secs = event_seconds(events)

    # ---- activities per case
    pairs, pair_count = np.unique(case_of * n_act + codes, return_counts=True)
    pcase, pact = pairs // max(n_act, 1), pairs % max(n_act, 1)
    act_cases = np.bincount(pact, minlength=n_act)
    rarest = _first_per_group(pcase, act_cases[pact], n_cases)
    activity_cases = act_cases[pact[rarest]]

    # ---- repetitions: share of the cases containing the activity with >= k occurrences
    rep = pd.DataFrame({"a": pact, "k": pair_count})
    at_least = rep.groupby("a")["k"].rank(method="max", ascending=False).to_numpy()
    rep_share = at_least / act_cases[pact]
    rep_raw = np.where(pair_count >= 2, -np.log10(rep_share), 0.0)
    top_rep = _first_per_group(pcase, -rep_raw, n_cases)

    # ---- transitions with virtual start/end: P(target | source) over all steps
    inner = np.flatnonzero(same)
    src = np.concatenate([np.full(n_cases, start_code), codes[inner - 1], codes[ends - 1]])
    tgt = np.concatenate([codes[starts], codes[inner], np.full(n_cases, end_code)])
    ecase = np.concatenate([np.arange(n_cases), case_of[inner], np.arange(n_cases)])
    ekey = src * width + tgt
    edges, edge_idx, edge_count = np.unique(ekey, return_inverse=True, return_counts=True)
    src_count = np.bincount(src, weights=None, minlength=width)
    prob = edge_count[edge_idx] / src_count[src]
    ce = np.unique(ecase * len(edges) + edge_idx)
    edge_cases = np.bincount(ce % len(edges), minlength=len(edges))
    tgt_count = np.bincount(tgt, minlength=width)
    back = edge_count[edge_idx] / tgt_count[tgt]
    step = -0.5 * (np.log10(prob) + np.log10(back))
    least = _first_per_group(ecase, -step, n_cases)
    t_prob = prob[least]
    # the second least likely step adds to the first: an edit of a path changes several steps
    rest = step.copy()
    rest[least] = 0.0
    second = _first_per_group(ecase, -rest, n_cases)
    # Bonferroni over the case's steps: a long case has more chances of one rare step
    n_steps = (ends - starts + 1).astype(np.float64)
    flow_raw = step[least] + rest[second] - np.log10(n_steps * (n_steps - 1) / 2)
    # second order: P(target | the two previous activities), where that context is frequent
    prev2 = np.concatenate(
        [
            np.full(n_cases, -1),
            np.where(same[inner - 1], codes[np.maximum(inner - 2, 0)], start_code),
            np.where(ends - starts >= 2, codes[np.maximum(ends - 2, 0)], start_code),
        ]
    )
    ctx2 = (prev2 + 1) * width + src
    _, c2_idx, c2_count = np.unique(ctx2, return_inverse=True, return_counts=True)
    _, k3_idx, k3_count = np.unique(c2_idx * width + tgt, return_inverse=True, return_counts=True)
    p2 = k3_count[k3_idx] / c2_count[c2_idx]
    s2 = np.where(c2_count[c2_idx] >= MIN_ORDER2_CONTEXT, -np.log10(p2), 0.0)
    worst2 = _first_per_group(ecase, -s2, n_cases)
    order2_raw = s2[worst2] - np.log10(n_steps)

    # ---- missing common activities
    common = np.flatnonzero(act_cases >= COMMON_SHARE * n_cases)
    miss_raw = np.zeros(n_cases)
    miss_name = np.full(n_cases, "", dtype=object)
    miss_presence = np.zeros(n_cases)
    for code in common[np.argsort(act_cases[common], kind="stable")]:
        has = np.zeros(n_cases, dtype=bool)
        has[pcase[pact == code]] = True
        presence = act_cases[code] / n_cases
        value = -np.log10(max(1.0 - presence, 0.5 / n_cases))
        better = ~has & (value > miss_raw)
        miss_raw[better], miss_name[better], miss_presence[better] = value, names[code], presence

    # ---- waits before events, per transition context
    gaps = np.maximum(secs[inner] - secs[inner - 1], 0.0)
    lw = pd.Series(np.log10(1.0 + gaps / 60.0))
    w_src, w_tgt = codes[inner - 1], codes[inner]
    ctx = w_src * width + w_tgt
    z = np.zeros(len(inner))
    bound = np.zeros(len(inner))
    # which baseline each wait was measured against (2 transition, 1 target activity, 0 log)
    context = np.zeros(len(inner), dtype=np.int64)
    context_n = np.zeros(len(inner), dtype=np.int64)
    if len(inner):
        med_e, sc_e, cnt_e = _robust(lw, ctx)
        med_a, sc_a, cnt_a = _robust(lw, w_tgt)
        q_e = lw.groupby(ctx).quantile(TAIL_QUANTILE)
        q_a = lw.groupby(w_tgt).quantile(TAIL_QUANTILE)
        use_edge = cnt_e.reindex(ctx).to_numpy() >= MIN_CONTEXT
        med = np.where(use_edge, med_e.reindex(ctx).to_numpy(), med_a.reindex(w_tgt).to_numpy())
        scale = np.where(use_edge, sc_e.reindex(ctx).to_numpy(), sc_a.reindex(w_tgt).to_numpy())
        q = np.where(use_edge, q_e.reindex(ctx).to_numpy(), q_a.reindex(w_tgt).to_numpy())
        few = ~use_edge & (cnt_a.reindex(w_tgt).to_numpy() < MIN_CONTEXT)
        if few.any():  # neither context has enough waits: the log's own waits
            all_med = float(lw.median())
            all_scale = max(float((lw - all_med).abs().median()) * MAD_TO_SIGMA, MIN_SCALE)
            med[few], scale[few] = all_med, all_scale
            q[few] = float(lw.quantile(TAIL_QUANTILE))
        z = lw.to_numpy() - q
        bound = q
        context = np.where(use_edge, 2, np.where(few, 0, 1))
        context_n = np.where(
            use_edge,
            cnt_e.reindex(ctx).to_numpy(),
            np.where(few, len(inner), cnt_a.reindex(w_tgt).to_numpy()),
        )
    wait_raw = np.zeros(n_cases)
    longest = np.full(n_cases, -1, dtype=np.int64)
    if len(inner):
        longest = _first_per_group(case_of[inner], -z, n_cases)
        has_wait = longest >= 0
        wait_raw[has_wait] = z[longest[has_wait]]
    safe = np.maximum(longest, 0)

    # ---- case duration
    dur_s = secs[ends - 1] - secs[starts]
    ld = np.log10(1.0 + np.maximum(dur_s, 0.0) / 60.0)
    d_med = float(np.median(ld)) if n_cases else 0.0
    d_scale = max(float(np.median(np.abs(ld - d_med))) * MAD_TO_SIGMA, MIN_SCALE)
    dur_raw = (ld - d_med) / d_scale
    d_bound = float(np.quantile(ld, TAIL_QUANTILE)) if n_cases else 0.0

    # ---- variants: the false-positive reference, and the duration of cases of the same path
    seq = [codes[a:b].tobytes() for a, b in zip(starts, ends, strict=True)]
    vid, variant_seqs = pd.factorize(pd.Series(seq, dtype=object), sort=False)
    variant_cases = np.bincount(vid)[vid]
    variant_share = variant_cases / max(n_cases, 1)
    v_med, v_scale, _ = _robust(pd.Series(ld), vid)
    same_path = variant_cases >= MIN_CONTEXT
    path_median = np.where(same_path, v_med.reindex(vid).to_numpy(), d_med)
    path_scale = np.where(same_path, v_scale.reindex(vid).to_numpy(), d_scale)
    slow_raw = np.where(same_path, (ld - path_median) / path_scale, dur_raw)

    # ---- near-miss of a frequent path (one edit from it)
    counts = np.bincount(vid)
    sequences = [np.frombuffer(u, dtype=np.int64) for u in variant_seqs]
    misses, _ = near_misses(sequences, counts, n_cases)
    n_var = len(counts)
    v_ratio = np.zeros(n_var)
    v_path = np.full(n_var, "", dtype=object)
    v_base = np.zeros(n_var, dtype=np.int64)
    v_edit = np.full(n_var, "", dtype=object)
    v_first = np.full(n_var, "", dtype=object)
    v_second = np.full(n_var, "", dtype=object)
    for v, miss in misses.items():
        v_ratio[v] = np.log10(counts[miss.base] / counts[v])
        v_path[v] = path_text([str(names[c]) for c in sequences[miss.base]])
        v_base[v] = counts[miss.base]
        v_edit[v] = miss.edit
        v_first[v] = str(names[miss.first])
        v_second[v] = str(names[miss.second]) if miss.second >= 0 else ""

    has_w = longest >= 0
    return Evidence(
        case_ids=cases[starts].astype(str),
        raw={
            "activity": -np.log10(activity_cases / max(n_cases, 1)),
            "transition": flow_raw,
            "order2": order2_raw,
            "repeat": rep_raw[top_rep],
            "missing": miss_raw,
            "wait": wait_raw,
            "duration": dur_raw,
            "slow": slow_raw,
            "nearmiss": v_ratio[vid],
        },
        n_cases=n_cases,
        activity_name=names[pact[rarest]],
        activity_cases=activity_cases,
        transition_source=names[src[least]],
        transition_target=names[tgt[least]],
        transition_prob=t_prob,
        transition_cases=edge_cases[edge_idx[least]],
        order2_before=np.where(prev2[worst2] >= 0, names[np.maximum(prev2[worst2], 0)], ""),
        order2_source=names[src[worst2]],
        order2_target=names[tgt[worst2]],
        order2_prob=p2[worst2],
        repeat_name=names[pact[top_rep]],
        repeat_count=pair_count[top_rep],
        repeat_share=rep_share[top_rep],
        missing_name=miss_name,
        missing_presence=miss_presence,
        wait_hours=np.where(has_w, gaps[safe] / 3600.0 if len(inner) else 0.0, 0.0),
        wait_source=np.where(has_w, names[w_src[safe]] if len(inner) else "", ""),
        wait_target=np.where(has_w, names[w_tgt[safe]] if len(inner) else "", ""),
        wait_bound_hours=np.where(has_w, _hours_from_log(bound[safe]) if len(inner) else 0.0, 0.0),
        wait_context=np.where(has_w, context[safe] if len(inner) else 0, 0),
        wait_context_count=np.where(has_w, context_n[safe] if len(inner) else 0, 0),
        duration_hours=dur_s / 3600.0,
        duration_bound_hours=np.full(n_cases, float(_hours_from_log(np.array([d_bound]))[0])),
        variant_share=variant_share,
        variant_cases=variant_cases,
        path_median_hours=_hours_from_log(path_median),
        nearmiss_path=v_path[vid],
        nearmiss_cases=v_base[vid],
        nearmiss_edit=v_edit[vid],
        nearmiss_first=v_first[vid],
        nearmiss_second=v_second[vid],
    )
