"""Interleaved A/B of `pmops analyze` comprehensive on bpic2012 (issue #14 speed goal).

Each run is a fresh `/usr/bin/time -v python -m pmops.cli.commands analyze LOG --params
'{"analysisType":"comprehensive"}'`; a tree is a source directory run with it as the current
directory (e.g. a `git archive` of the base commit), so the same venv serves both. Prints per
run: process wall, CPU (user+sys; split into the main process's and its children's: the
forked workers and `dot`), 1-min load average before/after and each phase's wall/CPU
from results.json `resourceUsage`.

  .venv/bin/python bench/bench_speed.py --tree base=/tmp/base --tree new=. --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("PMOPS_DATASETS", ROOT.parent / "shared" / "datasets"))


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# `pmops analyze` in the measured process, then its own CPU and its children's (the forked
# workers, `dot`) written beside the results: the main process's CPU is the critical path when
# the workers finish before it needs their results
_SPLIT = """
import json, os, resource, sys
sys.path.insert(0, os.getcwd())
from pmops.cli.commands import main
rc = main(sys.argv[1:-1])
own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
with open(sys.argv[-1], "w") as fh:
    json.dump({"self": own.ru_utime + own.ru_stime, "children": kids.ru_utime + kids.ru_stime}, fh)
sys.exit(rc)
"""


def one(tree: Path, log: Path, out: Path) -> dict[str, object]:
    before = load()
    split = out.with_suffix(".cpu.json")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", _SPLIT, "analyze"]
    cmd += [str(log), "--out", str(out), "-q", "--params", '{"analysisType":"comprehensive"}']
    cmd += [str(split)]
    env = {**os.environ, "PM4PY_SHOW_PROGRESS_BAR": "false"}
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env, check=True)
    text = proc.stderr

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (.+)", text)
        assert m, name
        return m.group(1).strip()

    parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(p * 60 ** (len(parts) - 1 - i) for i, p in enumerate(parts))
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    doc = json.loads((out / "results.json").read_text())
    phases = {
        p["phaseName"]: (p["resourceUsage"]["wallSeconds"], p["resourceUsage"]["cpuSeconds"])
        for p in doc["phaseResults"]
        if "resourceUsage" in p
    }
    cpu_split = json.loads(split.read_text())
    return {
        "wall": wall,
        "cpu": cpu,
        "cpu_main": round(cpu_split["self"], 2),
        "cpu_children": round(cpu_split["children"], 2),
        "peak_kb": int(field("Maximum resident set size (kbytes)")),
        "load_before": before,
        "load_after": load(),
        "phases": phases,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, help="name=path")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--log", type=Path, default=DATASETS / "bpic2012.xes.gz")
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, tree in trees:
                r = one(tree, args.log.resolve(), Path(tmp) / f"{name}{i}")
                r["tree"] = name
                rows.append(r)
                ph = " ".join(
                    f"{k.split()[0]}={w:.2f}/{c:.2f}"
                    for k, (w, c) in r["phases"].items()  # type: ignore[attr-defined]
                )
                print(
                    f"{name:6} run {i + 1}: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s "
                    f"(main {r['cpu_main']:.2f} + children {r['cpu_children']:.2f}), "
                    f"peak {r['peak_kb'] / 1e6:.2f} GB, load {r['load_before']:.2f}"
                    f" -> {r['load_after']:.2f}; phases wall/cpu {ph}",
                    flush=True,
                )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "speed.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
