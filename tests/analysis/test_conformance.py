"""Our memoised token replay must give pm4py's token-based replay fitness exactly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pm4py
import pytest
from pm4py.objects.log.obj import Event, EventLog, Trace
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.petri_net.utils.petri_utils import add_arc_from_to

from analysis.columns import ACTIVITY, CASE, TIMESTAMP
from analysis.conformance import token_replay_fitness
from analysis.discovery import inductive_on_variants, variant_counts
from analysis.progress import Progress
from tests._logs import canonical_frame

# identical arithmetic on identical token counts: only float summation order may differ
TOLERANCE = 1e-9
LOGS = ["running-example.xes", "receipt.xes.gz", "sepsis.csv", "helpdesk.xes.gz"]


def _frame(datasets: Path, name: str) -> pd.DataFrame:
    return canonical_frame(datasets / name)[[CASE, ACTIVITY, TIMESTAMP]]


def _assert_same_as_pm4py(events: pd.DataFrame, net: PetriNet, im: Marking, fm: Marking) -> None:
    ours = token_replay_fitness(net, im, fm, variant_counts(events))
    ref = pm4py.fitness_token_based_replay(events, net, im, fm)
    assert ours.log_fitness == pytest.approx(ref["log_fitness"], abs=TOLERANCE)
    assert ours.average_trace_fitness == pytest.approx(ref["average_trace_fitness"], abs=TOLERANCE)
    assert ours.fitting_traces_percentage == pytest.approx(ref["perc_fit_traces"], abs=TOLERANCE)
    assert ours.cases == events[CASE].nunique()


@pytest.mark.parametrize("name", LOGS)
def test_fitness_equals_pm4py_on_inductive_models(datasets: Path, name: str) -> None:
    events = _frame(datasets, name)
    for noise in (0.0, 0.2):
        net, im, fm = pm4py.discover_petri_net_inductive(events, noise_threshold=noise)
        _assert_same_as_pm4py(events, net, im, fm)


@pytest.mark.parametrize("name", LOGS)
def test_fitness_equals_pm4py_on_heuristics_and_alpha_models(datasets: Path, name: str) -> None:
    # models with missing and remaining tokens exercise every branch of the replay
    events = _frame(datasets, name)
    _assert_same_as_pm4py(events, *pm4py.discover_petri_net_heuristics(events))
    _assert_same_as_pm4py(events, *pm4py.discover_petri_net_alpha(events))


def test_unfitting_model_has_fitness_below_one(datasets: Path) -> None:
    # a model mined from the 5 most frequent receipt variants cannot replay the rest cleanly
    events = _frame(datasets, "receipt.xes.gz")
    variants = variant_counts(events)
    net, im, fm = inductive_on_variants(variants[:5], noise_threshold=0.0)
    result = token_replay_fitness(net, im, fm, variants)
    assert 0.5 < result.log_fitness < 1.0
    assert 0.0 < result.fitting_traces_percentage < 100.0
    _assert_same_as_pm4py(events, net, im, fm)


def test_duplicate_labels_and_silent_transitions_match_pm4py() -> None:
    # source -> (a | tau) -> p1 -> b -> p2 -> a -> sink: label "a" appears twice
    net = PetriNet("dup")
    source, p1, p2, sink = (PetriNet.Place(n) for n in ("source", "p1", "p2", "sink"))
    a1, tau, b, a2 = (
        PetriNet.Transition("a1", "a"),
        PetriNet.Transition("tau", None),
        PetriNet.Transition("b", "b"),
        PetriNet.Transition("a2", "a"),
    )
    net.places.update({source, p1, p2, sink})
    net.transitions.update({a1, tau, b, a2})
    for x, y in [(source, a1), (a1, p1), (source, tau), (tau, p1), (p1, b), (b, p2)]:
        add_arc_from_to(x, y, net)
    add_arc_from_to(p2, a2, net)
    add_arc_from_to(a2, sink, net)
    im, fm = Marking({source: 1}), Marking({sink: 1})
    traces = [("a", "b", "a"), ("b", "a"), ("a", "b"), ("b",), ("a", "a", "b"), ("c", "b", "a"), ()]
    variants = [(t, i + 1) for i, t in enumerate(traces)]
    log = EventLog(
        [Trace([Event({ACTIVITY: a}) for a in t]) for t, n in variants for _ in range(n)]
    )
    ref = pm4py.fitness_token_based_replay(log, net, im, fm)
    ours = token_replay_fitness(net, im, fm, variants)
    assert ours.log_fitness == pytest.approx(ref["log_fitness"], abs=TOLERANCE)
    assert ours.average_trace_fitness == pytest.approx(ref["average_trace_fitness"], abs=TOLERANCE)
    assert ours.fitting_traces_percentage == pytest.approx(ref["perc_fit_traces"], abs=TOLERANCE)
    assert ours.log_fitness < 1.0


def test_progress_reaches_the_end_and_dict_keys(datasets: Path) -> None:
    events = _frame(datasets, "receipt.xes.gz")
    variants = variant_counts(events)
    net, im, fm = inductive_on_variants(variants)
    seen: list[tuple[int, int, str]] = []
    result = token_replay_fitness(
        net, im, fm, variants, progress=Progress(sink=lambda *a: seen.append(a))
    )
    assert seen[-1][0] == seen[-1][1] == len(variants)
    assert set(result.to_dict()) == {
        "fitness",
        "averageTraceFitness",
        "fittingTracesPercentage",
        "method",
    }
    assert "1,434 cases" in result.method


@pytest.mark.slow
def test_fitness_equals_pm4py_on_bpic2012(datasets: Path) -> None:
    events = _frame(datasets, "bpic2012.xes.gz")
    # a model of the 500 most frequent variants: quick to mine, far from perfectly fitting
    net, im, fm = inductive_on_variants(variant_counts(events)[:500])
    _assert_same_as_pm4py(events, net, im, fm)
