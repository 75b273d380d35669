"""Benchmark of the analysis engine against the naive pm4py script, on bpic2012.

Runs, each in a fresh subprocess so imports and peak memory are counted per run:
  1. naive baseline: pm4py.read_xes + discover_petri_net_inductive + fitness_token_based_replay
  2. `pmops analyze` comprehensive (all phases, all artifacts), default settings
  3. the same with performanceOptimization=high_accuracy
  4. linearity: the log as Parquet (262k events) and replicated to ~1M events (Parquet)
Prints a Markdown table; raw figures go to bench/results/analysis.json.

  .venv/bin/python bench/bench_analysis.py [--skip-baseline] [--skip-scale] [--log PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _stack import ForeignLoad, at_most, foreign_metric, metric  # noqa: E402

DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))
PY = sys.executable

BASELINE = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import pm4py
t1 = time.perf_counter()
log = pm4py.read_xes(sys.argv[1])
t2 = time.perf_counter()
net, im, fm = pm4py.discover_petri_net_inductive(log)
t3 = time.perf_counter()
fit = pm4py.fitness_token_based_replay(log, net, im, fm)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "read_xes": t2 - t1, "inductive": t3 - t2,
                  "token_replay": t4 - t3, "total": t4 - t0, "fitness": fit["log_fitness"]}))
"""


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS bytes of the child, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited children; runs go in ascending size
    # order or report the larger figure, so also read the child's own report when it has one
    return wall, max(peak, before) * 1024, proc.stdout


def analyze(log: Path, params: dict, out: Path) -> dict:
    cmd = [
        PY,
        "-m",
        "pmops.cli.commands",
        "analyze",
        str(log),
        "--out",
        str(out),
        "-q",
        "--params",
        json.dumps(params),
    ]
    wall, _, _ = run_child(cmd, {**os.environ, "PM4PY_SHOW_PROGRESS_BAR": "false"})
    doc = json.loads((out / "results.json").read_text())
    phases = {
        p["phaseName"]: {
            "wall": p["resourceUsage"]["wallSeconds"],
            "peakMemoryBytes": p["resourceUsage"]["peakMemoryBytes"],
        }
        for p in doc["phaseResults"]
        if "resourceUsage" in p
    }
    peak_phase = max((p["peakMemoryBytes"] for p in phases.values()), default=0)
    return {
        "process_wall": wall,
        "phases_wall": doc["performance"]["totalExecutionSeconds"],
        "peak_rss_bytes": peak_phase,
        "phases": phases,
        "artifacts": [a["path"] for a in doc["artifacts"]],
        "algorithm": doc["phaseResults"][1]["results"]["processModel"]["algorithm"],
        "fitness": doc["phaseResults"][1]["results"]["conformance"]["fitness"],
        "events": doc["summary"]["recordsAnalyzed"],
    }


def replicate(log: Path, factor: int, out: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from analysis.columns import CASE, ROW
    from analysis.eventlog import load_event_log

    events = load_event_log(log).events.drop(columns=[ROW])
    copies = []
    for i in range(factor):
        part = events.copy()
        part[CASE] = part[CASE].astype(str) + (f"#{i}" if i else "")
        copies.append(part)
    big = pd.concat(copies, ignore_index=True)
    big.to_parquet(out, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", type=Path, default=DATASETS / "bpic2012.xes.gz")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    comprehensive = {"analysisType": "comprehensive"}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_s, ForeignLoad() as noise:
        tmp = Path(tmp_s)
        if not args.skip_baseline:
            wall, peak, out = run_child([PY, "-c", BASELINE, str(args.log)])
            results["baseline"] = {
                **json.loads(out.strip().splitlines()[-1]),
                "process_wall": wall,
                "peak_rss_bytes": peak,
            }
        results["pmops_default"] = analyze(args.log, comprehensive, tmp / "default")
        results["pmops_high_accuracy"] = analyze(
            args.log,
            {**comprehensive, "algorithmSettings": {"performanceOptimization": "high_accuracy"}},
            tmp / "accurate",
        )
        if not args.skip_scale:
            small = replicate(args.log, 1, tmp / "x1.parquet")
            big = replicate(args.log, 4, tmp / "x4.parquet")
            results["parquet_x1"] = analyze(small, comprehensive, tmp / "p1")
            results["parquet_x4"] = analyze(big, comprehensive, tmp / "p4")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    doc = {**results, "foreign_load": noise.report()}
    doc["metrics"] = [*metrics(results), foreign_metric(doc["foreign_load"])]
    (out_dir / "analysis.json").write_text(json.dumps(doc, indent=2))
    print_table(results)


def metrics(r: dict[str, dict]) -> list[dict]:
    """The issue #2 goals as bench/run_all.py reports them."""
    out = []
    base, default = r.get("baseline"), r.get("pmops_default")
    if base:
        out.append(metric("naive pm4py script: wall (process)", base["process_wall"], "s"))
    if default:
        wall = default["process_wall"]
        out.append(
            metric(
                "pmops comprehensive: wall (process, incl. imports)",
                wall,
                "s",
                "<= 20 s",
                at_most(wall, 20),
            )
        )
    if base and default:
        ratio = default["process_wall"] / base["process_wall"]
        out.append(
            metric("pmops / naive script (process wall)", ratio, "x", "<= 0.5", at_most(ratio, 0.5))
        )
    if default:
        gb = default["peak_rss_bytes"] / 1e9
        out.append(metric("pmops comprehensive: peak RSS", gb, "GB", "<= 2 GB", at_most(gb, 2)))
    if "pmops_high_accuracy" in r:
        wall = r["pmops_high_accuracy"]["process_wall"]
        out.append(metric("pmops high_accuracy: wall (process)", wall, "s"))
    x1, x4 = r.get("parquet_x1"), r.get("parquet_x4")
    if x1:
        out.append(metric("Parquet x1 (262k events): wall (phases)", x1["phases_wall"], "s"))
    if x4:
        out.append(metric("Parquet x4 (1M events): wall (phases)", x4["phases_wall"], "s"))
        gb = x4["peak_rss_bytes"] / 1e9
        out.append(metric("Parquet x4 (1M events): peak RSS", gb, "GB", "<= 2 GB", at_most(gb, 2)))
    if x1 and x4:
        scale = x4["phases_wall"] / x1["phases_wall"]
        out.append(metric("x4 / x1 events (phases wall)", scale, "x", "<= 4", at_most(scale, 4)))
    return out


def print_table(r: dict[str, dict]) -> None:
    print("| run | events | wall (process) | wall (phases) | peak RSS | notes |")
    print("|---|---|---|---|---|---|")
    if "baseline" in r:
        b = r["baseline"]
        print(
            f"| naive pm4py script | 262,200 | {b['process_wall']:.1f} s | - | "
            f"{b['peak_rss_bytes'] / 1e9:.2f} GB | read_xes {b['read_xes']:.1f} s, inductive "
            f"{b['inductive']:.1f} s, token replay {b['token_replay']:.1f} s, fitness "
            f"{b['fitness']:.4f} |"
        )
    for key, label in (
        ("pmops_default", "pmops comprehensive (default)"),
        ("pmops_high_accuracy", "pmops comprehensive, high_accuracy"),
        ("parquet_x1", "pmops comprehensive, Parquet x1"),
        ("parquet_x4", "pmops comprehensive, Parquet x4"),
    ):
        if key not in r:
            continue
        x = r[key]
        phases = ", ".join(
            f"{k.split()[0].lower()} {v['wall']:.1f} s" for k, v in x["phases"].items()
        )
        print(
            f"| {label} | {x['events']:,} | {x['process_wall']:.1f} s | {x['phases_wall']:.1f} s | "
            f"{x['peak_rss_bytes'] / 1e9:.2f} GB | {phases}; fitness {x['fitness']:.4f} |"
        )
    if "baseline" in r and "pmops_default" in r:
        print(
            f"\nratio pmops/naive (process wall): "
            f"{r['pmops_default']['process_wall'] / r['baseline']['process_wall']:.2f}"
        )
    if "parquet_x1" in r and "parquet_x4" in r:
        print(
            f"scale x4 events / x1 (phases wall): "
            f"{r['parquet_x4']['phases_wall'] / r['parquet_x1']['phases_wall']:.2f}"
        )


if __name__ == "__main__":
    main()
