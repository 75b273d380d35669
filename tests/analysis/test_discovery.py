from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pm4py
import pytest
from pm4py.util.compression import util as comut

from analysis.columns import ACTIVITY, CASE, TIMESTAMP
from analysis.discovery import (
    SMALL_LOG_VARIANTS,
    _uvcl_dfg,
    complexity_label,
    discover_process,
    inductive_tree,
    select_variants,
    variant_counts,
)
from analysis.errors import EventLogError, InvalidParameter
from analysis.progress import Progress
from tests._logs import canonical_frame


@pytest.fixture(scope="module")
def receipt(datasets: Path) -> pd.DataFrame:
    return canonical_frame(datasets / "receipt.xes.gz")


def _pm4py_variants(events: pd.DataFrame) -> Counter[tuple[str, ...]]:
    grouped = events.groupby(CASE, sort=False)[ACTIVITY].agg(tuple)
    return Counter(grouped.tolist())


def test_receipt_figures(receipt: pd.DataFrame) -> None:
    result = discover_process(receipt)
    assert result.activities == 27
    assert result.variants == 116
    assert result.cases == 1434
    assert sum(c for _, c in result.variant_counts) == 1434
    assert dict(result.variant_counts) == _pm4py_variants(receipt)
    counts = [c for _, c in result.variant_counts]
    assert counts == sorted(counts, reverse=True)
    dfg, _, _ = pm4py.discover_dfg(receipt[[CASE, ACTIVITY, TIMESTAMP]])
    assert result.transitions == len(dfg)
    # unique paths: variants after dropping events that repeat the case's previous activity
    repeat = (receipt[CASE] == receipt[CASE].shift()) & (
        receipt[ACTIVITY] == receipt[ACTIVITY].shift()
    )
    collapsed = set(_pm4py_variants(receipt[~repeat]))
    assert result.unique_paths == len(collapsed)
    assert result.unique_paths <= result.variants
    assert result.complexity in {"Low", "Medium", "Medium-High", "High"}
    assert result.algorithm == "inductive miner infrequent (noise 0.2) on all 116 variants"


def test_inductive_tree_equals_pm4py(receipt: pd.DataFrame, datasets: Path) -> None:
    sepsis = canonical_frame(datasets / "sepsis.csv")
    for events in (receipt, sepsis):
        frame = events[[CASE, ACTIVITY, TIMESTAMP]]
        for noise in (0.0, 0.2):
            ref = pm4py.discover_process_tree_inductive(frame, noise_threshold=noise)
            assert str(inductive_tree(variant_counts(events), noise)) == str(ref)


def test_fast_uvcl_dfg_is_identical_and_restored(receipt: pd.DataFrame) -> None:
    original = comut.discover_dfg_uvcl
    log = Counter(dict(variant_counts(receipt)))
    fast, slow = _uvcl_dfg(log), original(log)
    assert list(fast.graph.items()) == list(slow.graph.items())
    assert list(fast.start_activities.items()) == list(slow.start_activities.items())
    assert list(fast.end_activities.items()) == list(slow.end_activities.items())
    inductive_tree(variant_counts(receipt))
    assert comut.discover_dfg_uvcl is original


@pytest.mark.parametrize(
    "log",
    [
        Counter(),
        Counter({(): 3}),
        Counter({(): 3, ("a",): 2, ("a", "b", "a"): 1, ("b",): 4}),
        Counter({("a", "a"): 5, ("b", "a", "a", "c"): 2, ("c",): 1, (): 1, ("c", "b"): 7}),
    ],
)
def test_fast_uvcl_dfg_edge_cases(log: Counter[tuple[str, ...]]) -> None:
    fast, slow = _uvcl_dfg(log), comut.discover_dfg_uvcl(log)
    assert list(fast.graph.items()) == list(slow.graph.items())
    assert all(type(v) is int for v in fast.graph.values())
    assert list(fast.start_activities.items()) == list(slow.start_activities.items())
    assert list(fast.end_activities.items()) == list(slow.end_activities.items())


def test_activity_concurrent_patch_is_restored() -> None:
    from pm4py.algo.discovery.inductive.fall_through.activity_concurrent import (
        ActivityConcurrentUVCL,
    )

    original = ActivityConcurrentUVCL.__dict__["_process_candidate"]
    inductive_tree([(("a", "b", "c"), 3), (("b", "a", "c"), 2), (("c", "a"), 1)])
    assert ActivityConcurrentUVCL.__dict__["_process_candidate"] is original


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("inductive", "inductive miner infrequent"),
        ("inductive_miner", "inductive miner infrequent"),
        ("alpha", "alpha miner"),
        ("alpha_miner_enhanced", "alpha+ miner"),
        ("heuristics", "heuristics miner"),
        ("Heuristic-Miner", "heuristics miner"),
    ],
)
def test_each_algorithm_gives_a_net(receipt: pd.DataFrame, algorithm: str, expected: str) -> None:
    result = discover_process(receipt, algorithm=algorithm)
    assert result.algorithm.startswith(expected)
    assert result.model_places > 0 and result.model_transitions > 0
    assert result.model_places == len(result.net.places)
    assert len(result.initial_marking) == 1 and len(result.final_marking) == 1
    labels = {t.label for t in result.net.transitions if t.label is not None}
    assert labels <= set(receipt[ACTIVITY].unique())
    assert 0.0 < result.fitness.log_fitness <= 1.0


def test_optimizations_on_receipt(receipt: pd.DataFrame) -> None:
    accurate = discover_process(receipt, optimization="high_accuracy")
    fast = discover_process(receipt, optimization="high_throughput")
    assert accurate.algorithm == "inductive miner infrequent (noise 0.2) on all 116 variants"
    assert fast.algorithm.startswith("inductive miner (IMd, noise 0.2) on the directly-follows")
    assert fast.model_places > 0
    # the receipt IMf model's token-replay fitness, as pm4py computes it on the same net
    ref = pm4py.fitness_token_based_replay(
        receipt[[CASE, ACTIVITY, TIMESTAMP]],
        accurate.net,
        accurate.initial_marking,
        accurate.final_marking,
    )
    assert accurate.fitness.log_fitness == pytest.approx(ref["log_fitness"], abs=1e-9)


def test_unknown_algorithm_and_optimization(receipt: pd.DataFrame) -> None:
    with pytest.raises(InvalidParameter) as err:
        discover_process(receipt, algorithm="genetic")
    assert err.value.field == "parameters.algorithm"
    assert "genetic" in err.value.message and "heuristics" in err.value.message
    assert "alpha_miner_enhanced" in err.value.message
    with pytest.raises(InvalidParameter) as err:
        discover_process(receipt, optimization="turbo")
    assert err.value.field == "parameters.optimization"
    with pytest.raises(EventLogError):
        discover_process(receipt.iloc[:0])


def test_variant_selection_budget() -> None:
    few = [((f"a{i}", "b"), 10) for i in range(SMALL_LOG_VARIANTS)]
    assert select_variants(few, activities=1000) == few
    many = [(tuple(f"x{j}" for j in range(100)), 2000 - i) for i in range(2000)]
    # budget 6,000,000 / 20 activities = 300,000 events: 3,000 variants of 100 would not fit
    chosen = select_variants(many, activities=20)
    assert len(chosen) == 2000
    chosen = select_variants(many, activities=400)  # 15,000 events: but never fewer than 1,000
    assert len(chosen) == SMALL_LOG_VARIANTS
    assert chosen == many[:SMALL_LOG_VARIANTS]


def test_complexity_thresholds() -> None:
    assert complexity_label(5, 3, 2, 100) == "Low"
    assert complexity_label(20, 50, 10, 100) == "Medium"  # 1 + 0 + 1
    assert complexity_label(20, 100, 30, 100) == "Medium-High"  # 1 + 1 + 2
    assert complexity_label(40, 600, 50, 100) == "High"  # 2 + 2 + 2


def test_to_dict_and_progress(receipt: pd.DataFrame) -> None:
    seen: list[tuple[int, int, str]] = []
    result = discover_process(receipt, progress=Progress(sink=lambda *a: seen.append(a)))
    d = result.to_dict()
    assert set(d) == {
        "processModel",
        "conformance",
        "activitiesDiscovered",
        "processVariants",
        "uniquePaths",
    }
    assert set(d["processModel"]) == {
        "activities",
        "transitions",
        "variants",
        "complexity",
        "uniquePaths",
        "algorithm",
        "places",
        "modelTransitions",
        "complexityMethod",
    }
    assert d["processVariants"] == 116 and d["activitiesDiscovered"] == 27
    assert d["conformance"]["fitness"] == round(result.fitness.log_fitness, 4)
    assert seen and seen[-1][0] == seen[-1][1]


@pytest.mark.slow
def test_bpic2012(datasets: Path) -> None:
    events = canonical_frame(datasets / "bpic2012.xes.gz")
    result = discover_process(events)
    assert result.variants == 4366
    assert result.cases == 13087
    dfg, _, _ = pm4py.discover_dfg(events[[CASE, ACTIVITY, TIMESTAMP]])
    assert result.transitions == len(dfg)
    # 182,467 events in distinct variants x 24 activities fits the default budget: all variants
    assert result.algorithm == "inductive miner infrequent (noise 0.2) on all 4,366 variants"
    assert 0.9 < result.fitness.log_fitness < 1.0
    fast = discover_process(events, optimization="high_throughput", dfg=result.dfg)
    assert fast.model_places > 0 and fast.fitness.log_fitness > 0


@pytest.mark.slow
def test_bpic2012_tree_equals_pm4py_imf(datasets: Path) -> None:
    # the default model is pm4py's IMf on the whole log (13 s there, 2.5 s here)
    events = canonical_frame(datasets / "bpic2012.xes.gz")
    ref = pm4py.discover_process_tree_inductive(
        events[[CASE, ACTIVITY, TIMESTAMP]], noise_threshold=0.2
    )
    assert str(inductive_tree(variant_counts(events))) == str(ref)
