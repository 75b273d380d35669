"""Our memoised token replay must give pm4py's token-based replay fitness and ETC precision."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pm4py
import pytest
from pm4py.objects.log.obj import Event, EventLog, Trace
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.petri_net.utils.petri_utils import add_arc_from_to

from analysis.columns import ACTIVITY, CASE, TIMESTAMP
from analysis.conformance import f_score, token_replay_fitness, token_replay_precision
from analysis.discovery import discover_process, inductive_on_variants, variant_counts
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


# -- precision (ETC, token-based) ------------------------------------------------------------
PRECISION_TOLERANCE = 1e-6


def _assert_precision_as_pm4py(
    events: pd.DataFrame, net: PetriNet, im: Marking, fm: Marking
) -> float:
    ours = token_replay_precision(net, im, fm, variant_counts(events))
    ref = pm4py.precision_token_based_replay(events, net, im, fm)
    assert ours.precision == pytest.approx(ref, abs=PRECISION_TOLERANCE)
    return ours.precision


def _first_cases(events: pd.DataFrame, cases: int) -> pd.DataFrame:
    # pm4py's own precision takes 1-45 s per model on all of receipt or sepsis
    # (bench/bench_quality.py compares on the whole logs)
    keep = events[CASE].drop_duplicates().iloc[:cases]
    return events[events[CASE].isin(keep)].reset_index(drop=True)


@pytest.mark.parametrize("name", ["running-example.xes", "sepsis.csv"])
def test_precision_equals_pm4py_on_every_kind_of_model(datasets: Path, name: str) -> None:
    events = _first_cases(_frame(datasets, name), 50)
    graph, starts, ends = pm4py.discover_dfg(events)
    models = [
        pm4py.discover_petri_net_inductive(events, noise_threshold=0.2),
        pm4py.discover_petri_net_heuristics(events),
        pm4py.discover_petri_net_alpha(events),
        # the quick mode's model: the inductive miner on the directly-follows graph
        pm4py.discover_petri_net_inductive(
            pm4py.objects.dfg.obj.DFG(graph, starts, ends), noise_threshold=0.2
        ),
    ]
    values = [_assert_precision_as_pm4py(events, *model) for model in models]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_precision_equals_pm4py_with_unfit_prefixes(datasets: Path) -> None:
    # a model of the 5 most frequent receipt variants: many prefixes stop at a missing token
    events = _frame(datasets, "receipt.xes.gz")
    net, im, fm = inductive_on_variants(variant_counts(events)[:5], noise_threshold=0.0)
    ours = token_replay_precision(net, im, fm, variant_counts(events))
    assert "left out" in ours.method
    _assert_precision_as_pm4py(events, net, im, fm)


def test_precision_with_duplicate_labels_matches_pm4py() -> None:
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
    traces = [("a", "b", "a"), ("b", "a"), ("a", "b"), ("b",), ("a", "a", "b"), ("c", "b", "a")]
    variants = [(t, i + 1) for i, t in enumerate(traces)]
    log = EventLog(
        [Trace([Event({ACTIVITY: a}) for a in t]) for t, n in variants for _ in range(n)]
    )
    ref = pm4py.precision_token_based_replay(log, net, im, fm)
    ours = token_replay_precision(net, im, fm, variants)
    assert ours.precision == pytest.approx(ref, abs=PRECISION_TOLERANCE)


@pytest.fixture(scope="module")
def receipt_part(datasets: Path) -> pd.DataFrame:
    return _first_cases(canonical_frame(datasets / "receipt.xes.gz"), 300)


@pytest.mark.parametrize(
    ("algorithm", "optimization"),
    [
        ("inductive", None),
        ("inductive", "high_throughput"),
        ("heuristics", None),
        ("alpha", None),
        ("alpha_miner_enhanced", None),
    ],
)
def test_every_algorithm_and_mode_reports_precision_and_f_score(
    receipt_part: pd.DataFrame, algorithm: str, optimization: str | None
) -> None:
    events = receipt_part
    result = discover_process(events, algorithm=algorithm, optimization=optimization)
    conf = result.to_dict()["conformance"]
    assert {"fitness", "precision", "fScore", "precisionMethod", "fScoreMethod"} <= set(conf)
    ref = pm4py.precision_token_based_replay(
        events[[CASE, ACTIVITY, TIMESTAMP]],
        result.net,
        result.initial_marking,
        result.final_marking,
    )
    assert result.fitness.precision == pytest.approx(ref, abs=PRECISION_TOLERANCE)
    fitness, precision = result.fitness.log_fitness, result.fitness.precision
    assert precision is not None
    assert conf["fScore"] == pytest.approx(
        2 * fitness * precision / (fitness + precision), abs=1e-4
    )
    assert "escaping" in conf["precisionMethod"]


def test_quick_mode_model_replays_everything_but_is_imprecise(datasets: Path) -> None:
    # the figures: the DFG-based (quick) model of receipt has fitness 1.00 and pm4py
    # ETC precision 0.131; the default inductive model 0.266
    events = canonical_frame(datasets / "receipt.xes.gz")
    quick = discover_process(events, optimization="high_throughput").fitness
    default = discover_process(events).fitness
    assert quick.log_fitness == pytest.approx(1.0)
    assert quick.precision == pytest.approx(0.131, abs=5e-4)
    assert default.precision == pytest.approx(0.266, abs=5e-4)


def test_f_score() -> None:
    assert f_score(1.0, 0.131) == pytest.approx(2 * 0.131 / 1.131)
    assert f_score(0.0, 0.0) == 0.0
    assert f_score(0.9, None) is None


def test_quick_analysis_and_report_from_a_log_state_precision(
    datasets: Path, tmp_path: Path
) -> None:
    from analysis.report_pdf import findings, key_figures
    from analysis.runs import ProcessMiningRun, ReportGenerationRun

    source = datasets / "running-example.xes"
    params = {
        "analysisType": "quick",
        "outputOptions": {"generateReports": False, "createVisualizations": False},
    }
    doc = ProcessMiningRun(source, tmp_path / "quick", params).run_all()
    (discovery,) = [p for p in doc["phaseResults"] if p["phaseName"] == "Process Discovery"]
    conf = discovery["results"]["conformance"]
    assert conf["precision"] is not None and conf["fScore"] is not None
    texts = findings(doc)
    assert not any("fits the log" in t for t in texts)
    (quality,) = [t for t in texts if "fitness" in t]
    assert f"precision {conf['precision']:.2f}" in quality
    labels = dict(key_figures(doc))
    assert labels["Model precision"] == f"{conf['precision']:.2f}"
    assert labels["Model F-score"] == f"{conf['fScore']:.2f}"
    # ReportGeneration from a log analyses it in quick mode: the same figures
    report = ReportGenerationRun(source, tmp_path / "report", {})
    report.run_collect()
    (collected,) = [
        p for p in report.results["phaseResults"] if p["phaseName"] == "Process Discovery"
    ]
    assert collected["results"]["conformance"]["precision"] == conf["precision"]
