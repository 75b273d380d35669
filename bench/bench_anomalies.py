"""Planted anomalies in real logs: recall, flagged share and precision of the detector.

For each log and seed, `anomaly_injector.plant_anomalies` copies normal cases (cases of frequent
variants) and plants 5 kinds x 6 anomalies (skip, repeat, swap, delay, unknown); the detector
runs exactly as the ProcessMiningAnalysis Machine Learning phase calls it
(`detect_anomalies(events, random_state=0)` on the loaded frame). A planted case counts as found
when it is flagged high or medium. Beside it, the plain rule of the audit: a case is flagged when
it has a directly-follows transition or an activity present in < 1 % of cases, or a duration
above the 99th percentile.

  PYTHONPATH=. .venv/bin/python bench/bench_anomalies.py [--logs receipt,helpdesk,...]
      [--seeds 0,1,2] [--per-kind 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anomaly_injector import KINDS, plant_anomalies  # noqa: E402

from analysis.anomalies import detect_anomalies  # noqa: E402
from analysis.columns import ACTIVITY, CASE  # noqa: E402
from analysis.dfg import event_seconds  # noqa: E402
from analysis.eventlog import load_event_log  # noqa: E402

DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
LOGS = "receipt,helpdesk,sepsis,bpic2012"


def plain_rule(events: pd.DataFrame) -> set[str]:
    """Rare transition or activity (< 1 % of cases), or duration above the 99th percentile."""
    cases = events[CASE].to_numpy()
    acts = events[ACTIVITY].to_numpy()
    n_cases = events[CASE].nunique()
    act_share = events.drop_duplicates([CASE, ACTIVITY]).groupby(ACTIVITY).size() / n_cases
    rare_act = set(act_share.index[act_share < 0.01])
    same = cases[1:] == cases[:-1]
    tr = pd.DataFrame({"c": cases[1:][same], "s": acts[:-1][same], "t": acts[1:][same]})
    tr_share = tr.drop_duplicates().groupby(["s", "t"]).size() / n_cases
    rare_tr = tr_share[tr_share < 0.01].reset_index()[["s", "t"]]
    flagged = set(events.loc[events[ACTIVITY].isin(rare_act), CASE].astype(str))
    flagged |= set(tr.merge(rare_tr, on=["s", "t"])["c"].astype(str))
    secs = pd.Series(event_seconds(events), index=events.index)
    dur = secs.groupby(events[CASE]).agg(lambda s: s.max() - s.min())
    flagged |= set(dur.index[dur > dur.quantile(0.99)].astype(str))
    return flagged


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logs", default=LOGS)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--per-kind", type=int, default=6)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        "| log | seed | cases | recall h+m | flagged h+m | precision h+m | "
        + " | ".join(KINDS)
        + " | rule recall | rule flagged | rule precision | detect s (CPU s) | FPR |"
    )
    print("|" + "---|" * (11 + len(KINDS)))
    for name in args.logs.split(","):
        loaded = load_event_log(DATASETS / f"{name}.xes.gz").events
        totals: dict[str, list[float]] = defaultdict(list)
        for seed in seeds:
            planted = plant_anomalies(loaded, args.per_kind, seed)
            events = planted.events
            n_cases = int(events[CASE].nunique())
            t0, c0 = time.perf_counter(), time.process_time()
            result = detect_anomalies(events, random_state=0)
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            cases = result.cases
            hm = set(cases.loc[cases["severity"].isin(["high", "medium"]), "caseId"])
            truth = planted.kind_of()
            found = {c for c in truth if c in hm}
            per_kind = {
                k: sum(1 for c, kk in truth.items() if kk == k and c in hm)
                / max(sum(1 for kk in truth.values() if kk == k), 1)
                for k in KINDS
            }
            rule = plain_rule(events)
            rule_found = {c for c in truth if c in rule}
            row = {
                "recall": len(found) / len(truth),
                "flagged": len(hm) / n_cases,
                "precision": len(found) / max(len(hm), 1),
                "rule_recall": len(rule_found) / len(truth),
                "rule_flagged": len(rule) / n_cases,
                "rule_precision": len(rule_found) / max(len(rule), 1),
                **{f"k_{k}": v for k, v in per_kind.items()},
            }
            for key, value in row.items():
                totals[key].append(value)
            fpr = result.false_positive_rate
            print(
                f"| {name} | {seed} | {n_cases:,} | {row['recall']:.2f} | {row['flagged']:.1%} | "
                f"{row['precision']:.2f} | "
                + " | ".join(f"{per_kind[k]:.2f}" for k in KINDS)
                + f" | {row['rule_recall']:.2f} | {row['rule_flagged']:.1%} | "
                f"{row['rule_precision']:.2f} | {took:.2f} ({cpu:.2f}) | "
                f"{'-' if fpr is None else f'{fpr:.3f}'} |",
                flush=True,
            )
            missed = [planted.truth[c] for c in truth if c not in hm]
            for kind, text in missed:
                print(f"<!-- missed {name} seed {seed}: {kind}: {text} -->", file=sys.stderr)
        mean = {k: float(np.mean(v)) for k, v in totals.items()}
        print(
            f"| **{name} mean** | {len(seeds)} seeds | | **{mean['recall']:.2f}** | "
            f"{mean['flagged']:.1%} | {mean['precision']:.2f} | "
            + " | ".join(f"{mean[f'k_{k}']:.2f}" for k in KINDS)
            + f" | {mean['rule_recall']:.2f} | {mean['rule_flagged']:.1%} | "
            f"{mean['rule_precision']:.2f} | | |",
            flush=True,
        )


if __name__ == "__main__":
    main()
