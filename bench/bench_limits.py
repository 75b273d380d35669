"""The 100,000-activity CSV under a flow run's memory limit (issue #16: bounded resources).

For each memoryGB given, a `pmops up` with PMOPS_MEMORY_GB=<limit> (PMOPS_RUN_LIMITS=auto: this
machine has cgroup v1 only, so RLIMIT_AS = memoryGB + PMOPS_RUN_ADDRESS_SPACE_EXTRA_GB) runs a
comprehensive analysis of bench/wide_logs.py's `activities` log. While it runs, the flow-run
process (and its children: graphviz, rsvg) is sampled every 50 ms: resident memory of the tree,
and the process's own VmPeak / VmHWM (peak address space, peak resident). Printed per limit:
outcome (status, error code and message), sampled peak RSS, VmPeak, VmHWM, the phases' largest
`peakMemoryBytes`, wall seconds.

  .venv/bin/python bench/bench_limits.py               # memoryGB 2 (the default) and 0.1
  .venv/bin/python bench/bench_limits.py --limits 2 1 0.5 0.1

Raw figures go to bench/results/limits.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import wide_logs  # noqa: E402
from _stack import Stack, machine, write_json  # noqa: E402

GIB = 1024**3
TERMINAL = ("Completed", "Failed", "Cancelled", "Timeout")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Samples the flow-run process tree until it is gone or `stop` is set."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.tree_rss = self.vm_peak = self.hwm = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                proc = psutil.Process(self.pid)
                rss = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                self.tree_rss = max(self.tree_rss, rss)
                self.vm_peak = max(self.vm_peak, _status_kb(self.pid, "VmPeak") * 1024)
                self.hwm = max(self.hwm, _status_kb(self.pid, "VmHWM") * 1024)
            except (psutil.Error, OSError):
                return
            time.sleep(0.05)


def run_under(limit: float, log: Path) -> dict[str, Any]:
    os.environ["PMOPS_MEMORY_GB"] = str(limit)
    with Stack(worker_limit=1) as stack:
        dataset = stack.upload(log)
        body = stack.start_body(dataset, f"100k activities under {limit:g} GB")
        body["parameters"]["analysisType"] = "comprehensive"
        started = time.monotonic()
        r = httpx.post(f"{stack.base}/async/operation", headers=stack.headers, json=body)
        r.raise_for_status()
        op_id = r.json()["operationId"]
        url = f"{stack.base}/async/operation/{op_id}"
        sampler: Sampler | None = None
        while True:
            s = httpx.get(url, headers=stack.headers, timeout=30).json()
            node = (s.get("execution") or {}).get("workerNode") or ""
            if sampler is None and s["status"] == "Running" and node.rpartition(":")[2].isdigit():
                sampler = Sampler(int(node.rpartition(":")[2]))
                sampler.start()
            if s["status"] in TERMINAL:
                break
            time.sleep(0.1)
        wall = time.monotonic() - started
        if sampler is not None:
            sampler.stop.set()
            sampler.join(5)
        doc = httpx.get(
            f"{url}/results", params={"format": "detailed"}, headers=stack.headers, timeout=60
        ).json()
        phases = [
            ((p.get("resourceUsage") or {}).get("peakMemoryBytes") or 0)
            for p in doc.get("phaseResults", [])
        ]
        return {
            "memoryGB": limit,
            "status": s["status"],
            "error": s.get("error"),
            "failedPhase": [p["phaseName"] for p in doc["phaseResults"] if p["status"] == "Failed"],
            "treePeakRssGB": round((sampler.tree_rss if sampler else 0) / GIB, 3),
            "vmPeakGB": round((sampler.vm_peak if sampler else 0) / GIB, 3),
            "vmHwmGB": round((sampler.hwm if sampler else 0) / GIB, 3),
            "phasePeakGB": round(max(phases, default=0) / GIB, 3),
            "wallSeconds": round(wall, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[2.0, 0.1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        log = wide_logs.many_activities(Path(work) / "activities.csv")
        runs = []
        for limit in args.limits:
            load = os.getloadavg()[0]
            run = run_under(limit, log)
            run["load1"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            runs.append(run)
            print(run, flush=True)
    path = write_json("limits", {"machine": machine(), "runs": runs})
    print(f"raw figures: {path}")


if __name__ == "__main__":
    main()
