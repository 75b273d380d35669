"""Token-based replay fitness and ETC precision of a whole log against a Petri net, memoised.

The semantics are pm4py's token-based replay (`pm4py.fitness_token_based_replay`, the
default parameters of `pm4py.algo.conformance.tokenreplay` with remaining tokens counted):
per event, the transition with the activity's label is fired; if it is not enabled, silent
transitions on the shortest silent paths towards its input places are fired first (pm4py's own
`apply_hidden_trans`), and tokens still missing are added and counted. At the end of a trace
silent transitions are fired towards the final marking, then missing/remaining tokens are
counted against it. fitness = 0.5 * (1 - missing/consumed) + 0.5 * (1 - remaining/produced).

pm4py replays each variant from scratch (21 s on bpic2012). Here one replay step is a pure
function of (marking, activity) and the end of a trace a pure function of the marking, so both
are cached: a log with thousands of variants reaches only a few hundred distinct markings, and
the replay of the whole log, weighted by variant counts, becomes dictionary look-ups.

Precision is ETConformance with escaping edges on token-based replay (Muñoz-Gama & Carmona
2010), as `pm4py.precision_token_based_replay` computes it: every prefix of every case (lengths
1 to n-1) is replayed with the same step semantics but stopping at the first missing token; at
the marking a fitting prefix reaches, the visible transitions the model enables (directly or
through silent transitions) are compared with the activities the log shows after that prefix
(over all cases sharing it); the ones never seen are escaping edges. The empty prefix counts
once per case (enabled at the initial marking against the log's start activities).
precision = 1 - sum(escaping x occurrences) / sum(enabled x occurrences). The prefixes come from
a trie over the variants (weighted by case counts), the replay steps from the fitness cache and
the enabled labels are memoised per marking, so precision costs one look-up per distinct prefix.
(pm4py re-splits prefixes at commas, so it differs on activity names containing a comma; here
a name is never split.) F-score = 2 * fitness * precision / (fitness + precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from typing import Any

from pm4py.algo.conformance.tokenreplay.variants import token_replay as tbr
from pm4py.objects.petri_net import semantics
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.petri_net.utils.petri_utils import get_places_shortest_path_by_hidden

from analysis.progress import Progress

METHOD = (
    "token-based replay of every case (all {variants:,} variants weighted by their {cases:,} "
    "cases) with pm4py's semantics (silent transitions fired along shortest silent paths to "
    "enable the next activity and to reach the final marking); log fitness = "
    "0.5·(1 − missing/consumed) + 0.5·(1 − remaining/produced) over all tokens; a case fits when "
    "it has neither missing nor remaining tokens"
)

PRECISION_METHOD = (
    "ETConformance precision (escaping edges, token-based replay, as "
    "pm4py.precision_token_based_replay): each of the {prefixes:,} distinct case prefixes "
    "(weighted by the {occurrences:,} times cases pass through them, plus the empty prefix once "
    "per case) is replayed on the model; at the reached marking the activities the model enables "
    "but the log never shows after that prefix are escaping edges; precision = 1 − escaping / "
    "enabled over all prefixes; prefixes that cannot be replayed without missing tokens "
    "({unfit:,} occurrences) are left out"
)
F_SCORE_METHOD = (
    "harmonic mean of fitness and precision: 2·fitness·precision / (fitness + precision)"
)

# (consumed, produced, missing) tokens of one step, and (consumed, produced, missing, remaining)
# of the end of a trace
_Step = tuple[int, int, int, int]
_Arcs = tuple[tuple[Any, int], ...]
_End = tuple[int, int, int, int]


@dataclass(frozen=True)
class FitnessResult:
    log_fitness: float
    average_trace_fitness: float
    fitting_traces_percentage: float
    method: str
    cases: int
    variants: int
    distinct_markings: int
    precision: float | None = None
    precision_method: str = ""

    @property
    def f_score(self) -> float | None:
        """Harmonic mean of log fitness and precision (None without precision)."""
        return f_score(self.log_fitness, self.precision)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fitness": round(self.log_fitness, 4),
            "averageTraceFitness": round(self.average_trace_fitness, 4),
            "fittingTracesPercentage": round(self.fitting_traces_percentage, 2),
            "method": self.method,
        }
        if self.precision is not None:
            score = self.f_score
            out["precision"] = round(self.precision, 4)
            out["fScore"] = None if score is None else round(score, 4)
            out["precisionMethod"] = self.precision_method
            out["fScoreMethod"] = F_SCORE_METHOD
        return out


def f_score(fitness: float | None, precision: float | None) -> float | None:
    if fitness is None or precision is None:
        return None
    total = fitness + precision
    return 2 * fitness * precision / total if total > 0 else 0.0


class _Replayer:
    """Caches replay steps of one net; markings are interned as ints."""

    def __init__(self, net: PetriNet, initial: Marking, final: Marking):
        self.net, self.final = net, final
        self.paths = get_places_shortest_path_by_hidden(
            net, tbr.TechnicalParameters.MAX_REC_DEPTH.value
        )
        # pm4py resolves a label to the last transition by name when none with it is enabled
        self.by_label: dict[str, Any] = {}
        for t in sorted(net.transitions, key=lambda x: x.name):
            if t.label is not None:
                self.by_label[t.label] = t
        labels = [t.label for t in net.transitions if t.label is not None]
        self.duplicated = {label for label in labels if labels.count(label) > 1}
        self.markings: list[Marking] = []
        self.ids: dict[tuple[tuple[Any, int], ...], int] = {}
        self.steps: dict[tuple[int, str], _Step] = {}
        self.ends: dict[int, _End] = {}
        self.enabled: dict[int, frozenset[str]] = {}
        self.order: list[tuple[Any, str | None, _Arcs, _Arcs]] | None = None
        self.enabled_in: dict[frozenset[tuple[Any, int]], tuple[int, ...]] = {}
        self.initial = self.intern(copy(initial))
        self.initial_tokens = sum(initial.values())
        self.final_tokens = sum(final.values())

    def intern(self, marking: Marking) -> int:
        # insertion order is part of the key: pm4py's end-of-trace search breaks ties by it
        key = tuple(marking.items())
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.markings)
            self.markings.append(marking)
        return found

    def step(self, state: int, activity: str) -> _Step:
        cached = self.steps.get((state, activity))
        if cached is None:
            cached = self.steps[(state, activity)] = self._step(state, activity)
        return cached

    def _step(self, state: int, activity: str) -> _Step:
        net, marking = self.net, self.markings[state]
        t = self.by_label.get(activity)
        if t is None:  # activity not in the model: pm4py skips it without token moves
            return state, 0, 0, 0
        if activity in self.duplicated:
            # pm4py fires the first enabled transition with the label, in its set's order
            enabled = [
                x for x in semantics.enabled_transitions(net, marking) if x.label == activity
            ]
            if enabled:
                t = enabled[0]
        consumed = produced = missing = 0
        if not semantics.is_enabled(t, net, marking):
            _, marking, fired, _ = tbr.apply_hidden_trans(
                t, net, copy(marking), self.paths, [], 0, set(), [], False
            )
            for hidden in fired:
                consumed += tbr.get_consumed_tokens(hidden)[0]
                produced += tbr.get_produced_tokens(hidden)[0]
        if not semantics.is_enabled(t, net, marking):
            marking = copy(marking)
            missing += tbr.add_missing_tokens(t, marking)[0]
        consumed += tbr.get_consumed_tokens(t)[0]
        produced += tbr.get_produced_tokens(t)[0]
        marking = semantics.execute(t, net, marking)
        return self.intern(marking), consumed, produced, missing

    def enabled_labels(self, state: int) -> frozenset[str]:
        """Labels of the visible transitions the marking enables, directly or through silent
        transitions (pm4py's get_visible_transitions_eventually_enabled_by_marking)."""
        cached = self.enabled.get(state)
        if cached is None:
            cached = self.enabled[state] = self._eventually_enabled(self.markings[state])
        return cached

    def _eventually_enabled(self, marking: Marking) -> frozenset[str]:
        """pm4py's get_visible_transitions_eventually_enabled_by_marking step for step: the same
        queue, the same transition order, the same visited keys (a transition with the marking
        it is looked at in, which is the last one it was queued with); but on frozen markings
        whose enabled transitions are cached (pm4py spends its time building repr strings)."""
        order = self._order()
        visible: set[str] = set()
        visited: set[tuple[int, frozenset[tuple[Any, int]]]] = set()
        start = frozenset(marking.items())
        queue = list(self._enabled_in(start))
        at = dict.fromkeys(queue, start)
        i = 0
        while i < len(queue):
            index = queue[i]
            m = at[index]
            key = (index, m)
            if key not in visited:
                _, label, pre, post = order[index]
                if label is not None:
                    visible.add(label)
                else:  # enabled: a transition is only ever queued with a marking enabling it
                    new = dict(m)
                    for p, w in pre:
                        new[p] -= w
                        if new[p] == 0:
                            del new[p]
                    for p, w in post:
                        new[p] = new.get(p, 0) + w
                    frozen = frozenset(new.items())
                    for index2 in self._enabled_in(frozen):
                        queue.append(index2)
                        at[index2] = frozen
                visited.add(key)
            i += 1
        return frozenset(visible)

    def _order(self) -> list[tuple[Any, str | None, _Arcs, _Arcs]]:
        if self.order is None:
            ordered = sorted(self.net.transitions, key=lambda x: (str(x.name), id(x)))
            self.order = [
                (
                    t,
                    t.label,
                    tuple((a.source, a.weight) for a in t.in_arcs),
                    tuple((a.target, a.weight) for a in t.out_arcs),
                )
                for t in ordered
            ]
        return self.order

    def _enabled_in(self, marking: frozenset[tuple[Any, int]]) -> tuple[int, ...]:
        """Indexes (in pm4py's sort order) of the transitions the marking enables."""
        cached = self.enabled_in.get(marking)
        if cached is None:
            m = dict(marking)
            cached = self.enabled_in[marking] = tuple(
                i
                for i, (_, _, pre, _) in enumerate(self._order())
                if all(m.get(p, 0) >= w for p, w in pre)
            )
        return cached

    def end(self, state: int) -> _End:
        cached = self.ends.get(state)
        if cached is None:
            cached = self.ends[state] = self._end(self.markings[state])
        return cached

    def _end(self, marking: Marking) -> _End:
        """pm4py's end of `apply_trace`: fire silent transitions towards the final marking."""
        net, final, paths = self.net, self.final, self.paths
        consumed = produced = 0

        def fire(t: Any) -> None:
            nonlocal marking, consumed, produced
            marking = semantics.execute(t, net, marking)
            consumed += tbr.get_consumed_tokens(t)[0]
            produced += tbr.get_produced_tokens(t)[0]

        for _ in range(tbr.TechnicalParameters.MAX_IT_FINAL1.value):
            if tbr.break_condition_final_marking(marking, final):
                break
            groups = tbr.get_req_transitions_for_final_marking(marking, final, paths)
            for group in groups:
                for t in group:
                    if semantics.is_enabled(t, net, marking):
                        fire(t)
                if tbr.break_condition_final_marking(marking, final):
                    break
        if not tbr.break_condition_final_marking(marking, final) and len(final) == 1:
            sink = next(iter(final))
            # ties in path length keep the marking's order, as in pm4py
            connections = sorted(
                (paths[p][sink] for p in marking if p in paths and sink in paths[p]), key=len
            )
            for _ in range(tbr.TechnicalParameters.MAX_IT_FINAL2.value):
                for path in connections:
                    for t in path:
                        if not semantics.is_enabled(t, net, marking):
                            break
                        fire(t)
        missing = sum(max(0, n - marking[p]) for p, n in final.items())
        remaining = sum(max(0, n - final[p]) if p in final else n for p, n in marking.items())
        return consumed + self.final_tokens, produced, missing, remaining


@dataclass(frozen=True)
class PrecisionResult:
    precision: float
    method: str
    prefixes: int
    escaping: int
    enabled: int


def _precision(
    replayer: _Replayer, variants: Sequence[tuple[tuple[str, ...], int]]
) -> PrecisionResult:
    """ETC precision over the prefix trie of the variants (see the module docstring).

    The variants are walked in lexicographic order, so each trie node (a distinct prefix) is
    created once, right after its parent, by extending the previous variant's path from their
    common prefix; a node keeps its marking (-1 once the prefix is unfit), how many cases end at
    it and how many of the labels its marking enables are followed in the log (its children)."""
    initial = replayer.initial
    states: list[int] = [initial]
    parents: list[int] = [-1]
    ending: list[int] = [0]  # cases whose whole trace is this prefix
    reflected: list[int] = [0]  # children whose activity the node's marking enables
    cases = 0
    starts: set[str] = set()
    step, enabled_labels = replayer.step, replayer.enabled_labels
    path = [0]  # path[k]: the node of the previous variant's prefix of length k
    previous: tuple[str, ...] = ()
    for trace, count in sorted(variants):
        cases += count
        if not trace:
            continue
        starts.add(trace[0])
        common, limit = 0, min(len(previous), len(trace))
        while common < limit and previous[common] == trace[common]:
            common += 1
        del path[common + 1 :]
        node = path[common]
        for activity in trace[common:]:
            state = states[node]
            if state >= 0:
                if activity in enabled_labels(state):
                    reflected[node] += 1
                state, _, _, missing = step(state, activity)
                if missing:
                    state = -1
            child = len(states)
            states.append(state)
            parents.append(node)
            ending.append(0)
            reflected.append(0)
            path.append(child)
            node = child
        ending[node] += count
        previous = trace
    # cases passing through each node (its subtree's endings); children come after parents
    through = ending[:]
    for node in range(len(states) - 1, 0, -1):
        through[parents[node]] += through[node]
    labels = enabled_labels(initial)
    enabled = cases * len(labels)
    escaping = cases * len(labels - starts)
    occurrences = unfit = prefixes = 0
    for node in range(1, len(states)):
        weight = through[node] - ending[node]  # cases that go on after this prefix
        if weight == 0:
            continue
        prefixes += 1
        occurrences += weight
        if states[node] < 0:
            unfit += weight
            continue
        n = len(enabled_labels(states[node]))
        enabled += n * weight
        escaping += (n - reflected[node]) * weight
    value = 1.0 - escaping / enabled if enabled > 0 else 1.0
    method = PRECISION_METHOD.format(prefixes=prefixes, occurrences=occurrences, unfit=unfit)
    return PrecisionResult(value, method, prefixes, escaping, enabled)


def token_replay_precision(
    net: PetriNet,
    initial_marking: Marking,
    final_marking: Marking,
    variants: Sequence[tuple[tuple[str, ...], int]],
) -> PrecisionResult:
    """ETC precision of the net on all `variants` (activity sequence, number of cases)."""
    return _precision(_Replayer(net, initial_marking, final_marking), variants)


def token_replay_fitness(
    net: PetriNet,
    initial_marking: Marking,
    final_marking: Marking,
    variants: Sequence[tuple[tuple[str, ...], int]],
    progress: Progress | None = None,
    with_precision: bool = False,
) -> FitnessResult:
    """Fitness of all `variants` (activity sequence, number of cases) against the net; with
    `with_precision`, ETC precision too (sharing the replay cache)."""
    progress = progress or Progress()
    replayer = _Replayer(net, initial_marking, final_marking)
    total_c = total_p = total_m = total_r = 0
    cases = fitting = 0
    trace_fitness_sum = 0.0
    chunk = max(1, len(variants) // 20)
    for i, (trace, count) in enumerate(variants):
        if i % chunk == 0:
            progress.update(i, len(variants), "Replaying variants on the model")
        state = replayer.initial
        consumed, produced, missing = 0, replayer.initial_tokens, 0
        for activity in trace:
            state, c, p, m = replayer.step(state, activity)
            consumed, produced, missing = consumed + c, produced + p, missing + m
        c, p, m, remaining = replayer.end(state)
        consumed, produced, missing = consumed + c, produced + p, missing + m
        if consumed > 0 and produced > 0:
            value = 0.5 * (1 - missing / consumed) + 0.5 * (1 - remaining / produced)
        else:
            value = 1.0
        cases += count
        fitting += count if missing == 0 and remaining == 0 else 0
        trace_fitness_sum += value * count
        total_c, total_p = total_c + consumed * count, total_p + produced * count
        total_m, total_r = total_m + missing * count, total_r + remaining * count
    precision = None
    if with_precision:
        progress.update(len(variants), len(variants), "Measuring the model's precision")
        precision = _precision(replayer, variants)
    progress.update(len(variants), len(variants), "Replayed variants on the model")
    if cases and total_c and total_p:
        log_fitness = 0.5 * (1 - total_m / total_c) + 0.5 * (1 - total_r / total_p)
        average, fitting_pct = trace_fitness_sum / cases, 100.0 * fitting / cases
    else:  # pm4py reports zeros for an empty log
        log_fitness = average = fitting_pct = 0.0
    return FitnessResult(
        log_fitness=log_fitness,
        average_trace_fitness=average,
        fitting_traces_percentage=fitting_pct,
        method=METHOD.format(variants=len(variants), cases=cases),
        cases=cases,
        variants=len(variants),
        distinct_markings=len(replayer.markings),
        precision=None if precision is None else precision.precision,
        precision_method="" if precision is None else precision.method,
    )
