"""Process discovery: a Petri net from the event frame, its size and complexity, and its fitness.

Every miner works on exact aggregates of the log rather than on the event frame:
- inductive: pm4py's Inductive Miner infrequent (IMf, noise 0.2) on the variant log (each
  distinct activity sequence with its case count: the input IMf itself reduces a log to);
- alpha: pm4py's Alpha Miner on the directly-follows relation (all it uses);
- alpha_miner_enhanced: pm4py's Alpha+ on one trace per variant (it ignores frequencies);
- heuristics: pm4py's Heuristics Miner on the directly-follows counts, the window-2 counts and
  the length-2-loop triples, all weighted by variant counts (what it reads from a frame).
The fitness and the ETC precision of the model are always measured on every case, whatever
the algorithm or mode (see analysis.conformance): a model is never reported by fitness alone.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any

import numpy as np
import pandas as pd
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.process_tree.obj import ProcessTree

from analysis.columns import ACTIVITY, CASE
from analysis.conformance import FitnessResult, token_replay_fitness
from analysis.dfg import DirectlyFollows, compute_dfg
from analysis.errors import EventLogError, InvalidParameter
from analysis.params import normalise_algorithm
from analysis.progress import Progress

Variant = tuple[str, ...]
VariantCounts = list[tuple[Variant, int]]

NOISE_THRESHOLD = 0.2
# the default inductive run uses every variant of logs with at most this many variants ...
SMALL_LOG_VARIANTS = 1_000
# ... and otherwise the most frequent variants while (events in the distinct variants) x
# (activities) stays within this budget: IMf's cost grows with both (its activity-concurrent
# fall-through re-mines the variant log once per activity). bpic2012 (182,467 events in its
# 4,366 variants x 24 activities = 4.4 M) fits whole, in about 2.5 s.
DEFAULT_WORK_BUDGET = 6_000_000

OPTIMIZATIONS = ("high_accuracy", "high_throughput")

COMPLEXITY_METHOD = (
    "three indicators scored 0/1/2 and summed: activities (≤10: 0, ≤25: 1, more: 2), "
    "directly-follows edge density = edges / activities² (<0.15: 0, <0.30: 1, more: 2) and "
    "variant ratio = variants / cases (<0.05: 0, <0.25: 1, more: 2); total 0-1 Low, 2-3 Medium, "
    "4 Medium-High, 5-6 High"
)
UNIQUE_PATHS_METHOD = "distinct variants after collapsing immediate repetitions (A,A,B -> A,B)"


@dataclass
class DiscoveryResult:
    activities: int
    transitions: int
    variants: int
    unique_paths: int
    complexity: str
    algorithm: str
    net: PetriNet
    initial_marking: Marking
    final_marking: Marking
    model_places: int
    model_transitions: int
    fitness: FitnessResult
    variant_counts: VariantCounts
    dfg: DirectlyFollows
    cases: int = 0
    complexity_method: str = COMPLEXITY_METHOD
    unique_paths_method: str = UNIQUE_PATHS_METHOD
    model_cases_covered: float = 1.0
    model_variants_used: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "processModel": {
                "activities": self.activities,
                "transitions": self.transitions,
                "variants": self.variants,
                "complexity": self.complexity,
                "uniquePaths": self.unique_paths,
                "algorithm": self.algorithm,
                "places": self.model_places,
                "modelTransitions": self.model_transitions,
                "complexityMethod": self.complexity_method,
            },
            "conformance": self.fitness.to_dict(),
            "activitiesDiscovered": self.activities,
            "processVariants": self.variants,
            "uniquePaths": self.unique_paths,
        }


def _check_optimization(optimization: str | None) -> None:
    if optimization is not None and optimization not in OPTIMIZATIONS:
        raise InvalidParameter(
            f"Unknown discovery optimization {optimization!r}; allowed values: "
            "null (default), high_accuracy, high_throughput",
            field="parameters.optimization",
        )


def variant_counts(events: pd.DataFrame) -> VariantCounts:
    """Every variant with its number of cases, most frequent first (ties: first seen first)."""
    if events.empty:
        return []
    cases = events[CASE].to_numpy()
    codes, uniques = pd.factorize(events[ACTIVITY], sort=False)
    names = [str(u) for u in uniques]
    breaks = np.flatnonzero(cases[1:] != cases[:-1]) + 1
    counter = Counter(tuple(names[i] for i in seg) for seg in np.split(codes, breaks))
    return counter.most_common()


def unique_paths(variants: VariantCounts) -> int:
    collapsed = {tuple(a for i, a in enumerate(v) if i == 0 or v[i - 1] != a) for v, _ in variants}
    return len(collapsed)


def complexity_label(activities: int, edges: int, variants: int, cases: int) -> str:
    density = edges / activities**2 if activities else 0.0
    ratio = variants / cases if cases else 0.0
    score = (
        (0 if activities <= 10 else 1 if activities <= 25 else 2)
        + (0 if density < 0.15 else 1 if density < 0.30 else 2)
        + (0 if ratio < 0.05 else 1 if ratio < 0.25 else 2)
    )
    if score <= 1:
        return "Low"
    if score <= 3:
        return "Medium"
    return "Medium-High" if score == 4 else "High"


def select_variants(variants: VariantCounts, activities: int) -> VariantCounts:
    """The default model's input: all variants of a small log, else the most frequent in budget."""
    if len(variants) <= SMALL_LOG_VARIANTS:
        return list(variants)
    budget = DEFAULT_WORK_BUDGET / max(activities, 1)
    used = 0
    chosen: VariantCounts = []
    for variant, count in variants:
        used += len(variant)
        if used > budget and len(chosen) >= SMALL_LOG_VARIANTS:
            break
        chosen.append((variant, count))
    return chosen


# pm4py's inductive miner recomputes the DFG of every sub-log with one Counter.update per
# directly-follows pair (10 M calls, 80% of IMf's 12 s on bpic2012). This drop-in computes the
# identical DFG object (same counts, same key order) with numpy on activity codes, and the
# activity-concurrent fall-through builds its per-candidate sub-logs without filtering the traces
# that lack the candidate; both are swapped in only while our miner runs (tests check the trees
# are identical to pm4py's).
_PATCH_LOCK = threading.Lock()
_patch_depth = 0
_original_uvcl_dfg: Any = None
_original_candidate: Any = None


def _uvcl_dfg(log: Any) -> Any:
    from pm4py.objects.dfg.obj import DFG

    dfg = DFG()
    traces = list(log)
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    for trace, n in log.items():
        if trace:
            starts[trace[0]] = starts.get(trace[0], 0) + n
            ends[trace[-1]] = ends.get(trace[-1], 0) + n
    alphabet = list(dict.fromkeys(chain.from_iterable(traces)))
    k = len(alphabet)
    if k:
        # every event as an activity code, every adjacent pair as code * k + code, the pairs
        # that cross two traces dropped; counts weighted by the variant's frequency, keys in
        # the order pm4py's loop first meets them
        index = {a: i for i, a in enumerate(alphabet)}
        codes = np.fromiter(map(index.__getitem__, chain.from_iterable(traces)), dtype=np.int64)
        lengths = np.fromiter(map(len, traces), dtype=np.int64, count=len(traces))
        counts = np.fromiter(log.values(), dtype=np.int64, count=len(traces))
        pairs = codes[:-1] * k + codes[1:]
        keep = np.ones(len(pairs), dtype=bool)
        last = np.cumsum(lengths)[:-1] - 1
        keep[last[(last >= 0) & (last < len(pairs))]] = False
        pairs = pairs[keep].astype(np.int32 if k * k < 2**31 else np.int64)
        weights = np.repeat(counts, lengths)[:-1][keep]
        if len(pairs):
            present, first = np.unique(pairs, return_index=True)
            order = present[np.argsort(first, kind="stable")]
            totals = np.bincount(pairs, weights=weights)
            dfg.graph.update(
                {(alphabet[p // k], alphabet[p % k]): int(totals[p]) for p in order.tolist()}
            )
    for a in sorted(starts):  # pm4py fills these in alphabet order
        dfg.start_activities[a] = starts[a]
    for a in sorted(ends):
        dfg.end_activities[a] = ends[a]
    return dfg


def _process_candidate(
    cls: Any,
    c: Any,
    log: Any,
    queue: Any = None,
    ev: Any = None,
    parameters: dict[str, Any] | None = None,
) -> Any:
    """pm4py's ActivityConcurrentUVCL._process_candidate with the same sub-log (same keys in
    the same order, and pm4py's assignment where two traces collapse): traces without the
    candidate are kept as they are instead of being filtered event by event."""
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL

    l_alt: Counter[Any] = Counter()
    for t, n in log.items():
        l_alt[t if c not in t else tuple([e for e in t if e != c])] = n
    cut = cls._find_cut(IMDataStructureUVCL(l_alt), ev, parameters=parameters)
    if queue is not None:
        queue.put((c, cut))
    return cut


@contextmanager
def fast_inductive_dfg() -> Iterator[None]:
    global _patch_depth, _original_uvcl_dfg, _original_candidate
    from pm4py.algo.discovery.inductive.fall_through.activity_concurrent import (
        ActivityConcurrentUVCL,
    )
    from pm4py.util.compression import util as comut

    with _PATCH_LOCK:
        if _patch_depth == 0:
            _original_uvcl_dfg = comut.discover_dfg_uvcl
            comut.discover_dfg_uvcl = _uvcl_dfg
            _original_candidate = ActivityConcurrentUVCL.__dict__["_process_candidate"]
            ActivityConcurrentUVCL._process_candidate = classmethod(_process_candidate)
        _patch_depth += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _patch_depth -= 1
            if _patch_depth == 0:
                comut.discover_dfg_uvcl = _original_uvcl_dfg
                ActivityConcurrentUVCL._process_candidate = _original_candidate


def inductive_tree(
    variants: Sequence[tuple[Variant, int]], noise_threshold: float = NOISE_THRESHOLD
) -> ProcessTree:
    """IMf (IM when noise is 0) on a variant log: the tree pm4py.discover_process_tree_inductive
    returns for the cases (pm4py reduces a log to this variant counter before mining)."""
    from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL
    from pm4py.algo.discovery.inductive.variants.im import IMUVCL
    from pm4py.algo.discovery.inductive.variants.imf import IMFUVCL
    from pm4py.objects.process_tree.utils import generic as tree_utils

    params = {"noise_threshold": noise_threshold, "multiprocessing": False}
    log = Counter(dict(variants))
    miner = IMFUVCL(params) if noise_threshold > 0 else IMUVCL(params)
    with fast_inductive_dfg():
        tree = miner.apply(IMDataStructureUVCL(log), params)
    tree = tree_utils.fold(tree)
    tree_utils.tree_sort(tree)
    return tree


def inductive_on_variants(
    variants: Sequence[tuple[Variant, int]], noise_threshold: float = NOISE_THRESHOLD
) -> tuple[PetriNet, Marking, Marking]:
    from pm4py.objects.conversion.process_tree import converter as tree_to_net

    net, im, fm = tree_to_net.apply(inductive_tree(variants, noise_threshold))
    return net, im, fm


def _inductive_on_dfg(dfg: DirectlyFollows) -> tuple[PetriNet, Marking, Marking]:
    import pm4py
    from pm4py.objects.dfg.obj import DFG

    graph, starts, ends = dfg.as_pm4py()
    net, im, fm = pm4py.discover_petri_net_inductive(
        DFG(graph, starts, ends), noise_threshold=NOISE_THRESHOLD
    )
    return net, im, fm


def _alpha(dfg: DirectlyFollows) -> tuple[PetriNet, Marking, Marking]:
    from pm4py.algo.discovery.alpha.variants import classic

    graph, starts, ends = dfg.as_pm4py()
    net, im, fm = classic.apply_dfg_sa_ea(graph, starts, ends)
    return net, im, fm


def _alpha_plus(variants: VariantCounts) -> tuple[PetriNet, Marking, Marking]:
    from pm4py.algo.discovery.alpha.variants import plus

    # plus.apply's steps without its deepcopy of the log (2 s on bpic2012): our traces are
    # throw-away dict lists, which is all these steps read
    log: Any = [[{"concept:name": a} for a in v] for v, _ in variants]
    filtered, loop_one, before, after, _, _ = plus.preprocessing(log)
    causal, _, follows = plus.get_relations(filtered)
    net, im, fm, pairs = plus.processing(filtered, causal, follows)
    net, im, fm = plus.postprocessing(net, im, fm, before, after, pairs, loop_one)
    net, im = plus.remove_initial_hidden_if_possible(net, im)
    net = plus.remove_final_hidden_if_possible(net, fm)
    return net, im, fm


def _heuristics(variants: VariantCounts) -> tuple[PetriNet, Marking, Marking]:
    from pm4py.algo.discovery.heuristics.variants import classic
    from pm4py.objects.conversion.heuristics_net import converter

    dfg: Counter[tuple[str, str]] = Counter()
    window2: Counter[tuple[str, str]] = Counter()
    triples: Counter[tuple[str, str, str]] = Counter()
    occurrences: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for v, n in variants:
        if not v:
            continue
        starts[v[0]] += n
        ends[v[-1]] += n
        for a in v:
            occurrences[a] += n
        for pair in pairwise(v):
            dfg[pair] += n
        for i in range(len(v) - 2):
            window2[(v[i], v[i + 2])] += n
            triples[(v[i], v[i + 1], v[i + 2])] += n
    heu = classic.apply_heu_dfg(
        dict(dfg),
        activities=list(occurrences),
        activities_occurrences=dict(occurrences),
        start_activities=dict(starts),
        end_activities=dict(ends),
        dfg_window_2=dict(window2),
        freq_triples=dict(triples),
    )
    net, im, fm = converter.apply(heu)
    return net, im, fm


def _mine(
    kind: str,
    optimization: str | None,
    variants: VariantCounts,
    dfg: DirectlyFollows,
    cases: int,
) -> tuple[tuple[PetriNet, Marking, Marking], str, int, float]:
    """(net, what ran, variants used, share of cases they cover)."""
    n = len(variants)
    if kind == "alpha":
        return _alpha(dfg), "alpha miner on the directly-follows relation of all cases", n, 1.0
    if kind == "alpha_plus":
        text = f"alpha+ miner on all {n:,} variants (one trace each: alpha+ ignores frequencies)"
        return _alpha_plus(variants), text, n, 1.0
    if kind == "heuristics":
        text = (
            "heuristics miner (dependency 0.5, and 0.65, length-2 loops 0.5) on the "
            "directly-follows, window-2 and triple counts of all cases"
        )
        return _heuristics(variants), text, n, 1.0
    if optimization == "high_throughput":
        text = (
            f"inductive miner (IMd, noise {NOISE_THRESHOLD}) on the directly-follows graph "
            "of all cases (fast; may generalise to a flower-like model)"
        )
        return _inductive_on_dfg(dfg), text, n, 1.0
    chosen = (
        variants
        if optimization == "high_accuracy"
        else select_variants(variants, len(dfg.activity_counts))
    )
    covered = sum(c for _, c in chosen) / cases if cases else 1.0
    net = inductive_on_variants(chosen)
    if len(chosen) == n:
        plural = "s" if n != 1 else ""
        text = f"inductive miner infrequent (noise {NOISE_THRESHOLD}) on all {n:,} variant{plural}"
    else:
        text = (
            f"inductive miner infrequent (noise {NOISE_THRESHOLD}) on the {len(chosen):,} most "
            f"frequent of {n:,} variants covering {covered:.0%} of cases"
        )
    return net, text, len(chosen), covered


def discover_process(
    events: pd.DataFrame,
    algorithm: str = "inductive",
    optimization: str | None = None,
    dfg: DirectlyFollows | None = None,
    progress: Progress | None = None,
) -> DiscoveryResult:
    progress = progress or Progress()
    kind = normalise_algorithm(algorithm)
    _check_optimization(optimization)
    if events.empty:
        raise EventLogError("The event log has no events to discover a process model from")
    progress.update(0, 3, "Computing variants and directly-follows graph")
    dfg = dfg if dfg is not None else compute_dfg(events)
    variants = variant_counts(events)
    cases = sum(c for _, c in variants)
    progress.update(1, 3, "Discovering the process model")
    with progress.heartbeat(1, 3, "Discovering the process model"):
        (net, im, fm), text, used, covered = _mine(kind, optimization, variants, dfg, cases)
    progress.update(2, 3, "Measuring the model's fitness and precision")
    fitness = token_replay_fitness(
        net, im, fm, variants, progress=progress.part(2 / 3, 1.0), with_precision=True
    )
    activities, edges = len(dfg.activity_counts), len(dfg.edges)
    return DiscoveryResult(
        activities=activities,
        transitions=edges,
        variants=len(variants),
        unique_paths=unique_paths(variants),
        complexity=complexity_label(activities, edges, len(variants), cases),
        algorithm=text,
        net=net,
        initial_marking=im,
        final_marking=fm,
        model_places=len(net.places),
        model_transitions=len(net.transitions),
        fitness=fitness,
        variant_counts=variants,
        dfg=dfg,
        cases=cases,
        model_cases_covered=covered,
        model_variants_used=used,
    )
