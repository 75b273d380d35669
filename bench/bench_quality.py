"""Model quality per algorithm: fitness, ETC precision and F-score, ours beside pm4py's precision.

For each log (receipt, sepsis, helpdesk, bpic2012 by default) and each algorithm (inductive =
the default standard analysis, heuristics, alpha, quick = the inductive miner on the
directly-follows graph, as `analysisType: quick`), the model is discovered as the pipeline does
(`analysis.discovery.discover_process`, which measures fitness and precision); then the precision
is measured again on its own (cold caches) and by `pm4py.precision_token_based_replay` on the
same net and events, each timed. pm4py runs in a forked child with a time limit (--pm4py-timeout,
default 900 s). On bpic2012 pm4py replays each of ~57,000 prefixes from scratch (more than 10
minutes per model on a shared machine), so for logs named in --pm4py-slice the comparison is made
on the log's first --pm4py-cases cases (default 2,000) against the model of the whole log: ours
and pm4py's precision of that same model on that same sub-log (the whole-log figures are ours).

  .venv/bin/python bench/bench_quality.py [--logs receipt.xes.gz sepsis.csv ...]
      [--algorithms inductive heuristics alpha quick] [--pm4py-timeout 900] [--skip-pm4py]
      [--pm4py-slice bpic2012.xes.gz] [--pm4py-cases 2000]

Prints a Markdown table; raw figures go to bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
LOGS = ["receipt.xes.gz", "sepsis.csv", "helpdesk.xes.gz", "bpic2012.xes.gz"]
ALGORITHMS = {
    "inductive": ("inductive", None),
    "heuristics": ("heuristics", None),
    "alpha": ("alpha", None),
    "quick": ("inductive", "high_throughput"),
}


def _pm4py_precision(events: Any, net: Any, im: Any, fm: Any, queue: Any) -> None:
    import pm4py

    os.environ["TQDM_DISABLE"] = "1"
    t0 = time.perf_counter()
    value = pm4py.precision_token_based_replay(events, net, im, fm)
    queue.put((value, time.perf_counter() - t0))


def pm4py_precision(events: Any, net: Any, im: Any, fm: Any, timeout: float) -> tuple[Any, Any]:
    """(precision, seconds) from pm4py in a forked child, or (None, None) past the timeout."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_pm4py_precision, args=(events, net, im, fm, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.terminate()
        child.join()
        return None, None
    return queue.get() if not queue.empty() else (None, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", nargs="+", default=LOGS)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--pm4py-timeout", type=float, default=900.0)
    parser.add_argument("--skip-pm4py", action="store_true")
    parser.add_argument("--pm4py-slice", nargs="*", default=["bpic2012.xes.gz"])
    parser.add_argument("--pm4py-cases", type=int, default=2000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ["TQDM_DISABLE"] = "1"

    from analysis.columns import ACTIVITY, CASE, TIMESTAMP
    from analysis.conformance import token_replay_precision
    from analysis.discovery import discover_process, variant_counts
    from analysis.eventlog import load_event_log

    rows: list[dict[str, Any]] = []
    print(
        "| log | algorithm | fitness | precision | F-score | discovery + fitness + precision (s) | "
        "our precision alone (s) | compared on | ours there | pm4py there | abs diff | "
        "pm4py precision (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.logs:
        events = load_event_log(DATASETS / name).events
        plain = events[[CASE, ACTIVITY, TIMESTAMP]].copy()
        sliced = name in args.pm4py_slice
        if sliced:
            keep = plain[CASE].drop_duplicates().iloc[: args.pm4py_cases]
            plain = plain[plain[CASE].isin(keep)].reset_index(drop=True)
        where = f"first {args.pm4py_cases:,} cases" if sliced else "whole log"
        for algorithm in args.algorithms:
            kind, optimization = ALGORITHMS[algorithm]
            t0 = time.perf_counter()
            result = discover_process(events, algorithm=kind, optimization=optimization)
            discovery_s = time.perf_counter() - t0
            net, im, fm = result.net, result.initial_marking, result.final_marking
            t0 = time.perf_counter()
            alone = token_replay_precision(net, im, fm, result.variant_counts)
            ours_s = time.perf_counter() - t0
            ours_there = alone.precision
            if sliced:
                ours_there = token_replay_precision(net, im, fm, variant_counts(plain)).precision
            ref, ref_s = (None, None)
            if not args.skip_pm4py:
                ref, ref_s = pm4py_precision(plain, net, im, fm, args.pm4py_timeout)
            f = result.fitness
            row = {
                "log": name,
                "algorithm": algorithm,
                "fitness": f.log_fitness,
                "precision": f.precision,
                "precision_alone": alone.precision,
                "compared_on": where,
                "ours_compared": ours_there,
                "pm4py_precision": ref,
                "f_score": f.f_score,
                "discovery_seconds": discovery_s,
                "precision_seconds": ours_s,
                "pm4py_precision_seconds": ref_s,
                "prefixes": alone.prefixes,
                "algorithm_text": result.algorithm,
            }
            rows.append(row)
            diff = "n/a" if ref is None else f"{abs(ref - ours_there):.1e}"
            ref_text = (
                "timeout"
                if ref is None and not args.skip_pm4py
                else ("skipped" if ref is None else f"{ref:.4f}")
            )
            ref_time = "n/a" if ref_s is None else f"{ref_s:.2f}"
            print(
                f"| {name} | {algorithm} | {f.log_fitness:.4f} | {f.precision:.4f} | "
                f"{f.f_score:.4f} | {discovery_s:.2f} | {ours_s:.3f} | {where} | "
                f"{ours_there:.4f} | {ref_text} | {diff} | {ref_time} |",
                flush=True,
            )
    out = ROOT / "bench" / "results" / "quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
