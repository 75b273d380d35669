"""How often each phase reports progress on bpic2012 (goal: every second of work or 5 %).

Runs a comprehensive ProcessMiningAnalysis in this process with a sink that records every
update, then prints per phase: updates, the longest gap between two updates (seconds) and the
largest step between two updates (percent of the phase total).

  .venv/bin/python bench/bench_progress.py [--log PATH]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))


def main() -> None:
    from _stack import ForeignLoad, foreign_metric, machine, metric, write_json

    from analysis.runs import ProcessMiningRun

    ap = argparse.ArgumentParser()
    ap.add_argument("--log", type=Path, default=DATASETS / "bpic2012.xes.gz")
    args = ap.parse_args()
    seen: list[tuple[float, str, int, int]] = []
    starts: dict[str, float] = {}

    def sink(phase: str, done: int, total: int, activity: str) -> None:
        now = time.perf_counter()
        starts.setdefault(phase, now)
        seen.append((now, phase, done, total))

    with tempfile.TemporaryDirectory() as out, ForeignLoad() as noise:
        run = ProcessMiningRun(args.log, Path(out), {"analysisType": "comprehensive"}, sink=sink)
        run.run_all()
        ends = {name: rec.usage.wall_seconds for name, rec in run.records.items() if rec.usage}
    print("| phase | wall | updates | longest gap | largest step | gaps > 1 s with a step > 5 % |")
    print("|---|---|---|---|---|---|")
    rows_out: list[dict] = []
    for phase, wall in ends.items():
        rows = [(t, d, tot) for t, p, d, tot in seen if p == phase]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(rows)]
        steps = [
            100 * (b[1] - a[1]) / b[2] if b[2] == a[2] and b[2] else 0.0
            for a, b in itertools.pairwise(rows)
        ]
        misses = sum(1 for g, s in zip(gaps, steps, strict=True) if g > 1.0 and s > 5)
        print(
            f"| {phase} | {wall:.2f} s | {len(rows)} | {max(gaps, default=0):.2f} s | "
            f"{max(steps, default=0):.0f} % | {misses} |"
        )
        rows_out.append(
            {
                "phase": phase,
                "wall": wall,
                "updates": len(rows),
                "longest_gap": max(gaps, default=0.0),
                "largest_step_pct": max(steps, default=0.0),
                "misses": misses,
            }
        )
    total_misses = sum(r["misses"] for r in rows_out)
    found = [
        metric(
            "gaps > 1 s with a step > 5 % (all phases)",
            total_misses,
            "",
            "0 (an update every second of work or 5 %)",
            total_misses == 0,
        )
    ]
    for r in rows_out:
        found.append(metric(f"{r['phase']}: longest gap", r["longest_gap"], "s"))
    found.append(foreign_metric(noise.report()))
    write_json(
        "progress",
        {"machine": machine(), "log": str(args.log), "phases": rows_out, "metrics": found},
    )


if __name__ == "__main__":
    main()
