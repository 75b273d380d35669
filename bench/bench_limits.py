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
  .venv/bin/python bench/bench_limits.py --together 3 --limits 2 0.5

--together N starts N analyses at once per limit (PMOPS_WORKER_LIMIT=N) and reads, where the
run limits are cgroups (v1 or v2), the kernel's own count of all runs together: the parent
`pmops` memory cgroup's peak (v1 `memory.max_usage_in_bytes`, reset at the start; v2
`memory.current` sampled every 50 ms), against the sum of the N limits. The service's fixed
processes (API, runner, forkserver, Prefect server) are sampled beside it: they are not runs.

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

from pmops.service import runlimits  # noqa: E402
from pmops.settings import Settings  # noqa: E402

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


class RunsPeak(threading.Thread):
    """The runs' combined memory as the kernel counts it (the parent `pmops` memory cgroup),
    and the stack's other processes' RSS, until `stop`."""

    def __init__(self, stack_pid: int) -> None:
        super().__init__(daemon=True)
        self.stop, self.stack_pid = threading.Event(), stack_pid
        found = runlimits.hierarchy(Settings())
        self.parent = found.memory if found is not None else None
        self.version = found.version if found is not None else 0
        self.sampled = self.fixed_rss = 0
        if self.parent is not None:
            self.parent.mkdir(parents=True, exist_ok=True)
            # v1: the cache earlier runs' removed cgroups handed up reclaimed, then the
            # high-water mark reset to what is left
            for name in ("memory.force_empty", "memory.max_usage_in_bytes"):
                with contextlib.suppress(OSError):
                    (self.parent / name).write_text("0")

    def run(self) -> None:
        while not self.stop.is_set():
            if self.parent is not None:
                with contextlib.suppress(OSError, ValueError):
                    name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
                    self.sampled = max(self.sampled, int((self.parent / name).read_text()))
            self.fixed_rss = max(self.fixed_rss, self._fixed())
            time.sleep(0.05)

    def _fixed(self) -> int:
        """RSS of the stack's processes that are not in a run's cgroup."""
        total = 0
        with contextlib.suppress(psutil.Error):
            for proc in [
                psutil.Process(self.stack_pid),
                *psutil.Process(self.stack_pid).children(True),
            ]:
                with contextlib.suppress(psutil.Error, OSError):
                    if "/pmops/run-" not in Path(f"/proc/{proc.pid}/cgroup").read_text():
                        total += proc.memory_info().rss
        return total

    def kernel_peak(self) -> int | None:
        if self.parent is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            if self.version == 1:
                return int((self.parent / "memory.max_usage_in_bytes").read_text())
        return self.sampled


def run_together(limit: float, n: int, log: Path) -> dict[str, Any]:
    """N comprehensive analyses of the log at once, each under memoryGB `limit`."""
    os.environ["PMOPS_MEMORY_GB"] = str(limit)
    with Stack(worker_limit=n) as stack:
        dataset = stack.upload(log)
        assert stack.proc is not None
        peak = RunsPeak(stack.proc.pid)
        peak.start()
        started, ids = time.monotonic(), []
        for i in range(n):
            body = stack.start_body(dataset, f"100k activities {i + 1}/{n} under {limit:g} GB")
            body["parameters"]["analysisType"] = "comprehensive"
            r = httpx.post(f"{stack.base}/async/operation", headers=stack.headers, json=body)
            r.raise_for_status()
            ids.append(r.json()["operationId"])
        finals = [_wait(stack, op_id) for op_id in ids]
        peak.stop.set()
        peak.join(5)
        runs_peak = peak.kernel_peak()
        return {
            "memoryGB": limit,
            "together": n,
            "sumOfLimitsGB": round(limit * n, 3),
            "mechanism": f"cgroup v{peak.version}" if peak.version else "not a cgroup",
            "runsPeakGB": None if runs_peak is None else round(runs_peak / GIB, 3),
            "withinSum": None if runs_peak is None else runs_peak <= limit * n * GIB,
            "fixedProcessesPeakRssGB": round(peak.fixed_rss / GIB, 3),
            "outcomes": [
                f["status"] + (f" {f['error']['code']}" if f.get("error") else "") for f in finals
            ],
            "wallSeconds": round(time.monotonic() - started, 1),
        }


def _wait(stack: Stack, op_id: str) -> dict[str, Any]:
    url = f"{stack.base}/async/operation/{op_id}"
    while True:
        s: dict[str, Any] = httpx.get(url, headers=stack.headers, timeout=30).json()
        if s["status"] in TERMINAL:
            return s
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[2.0, 0.1])
    parser.add_argument("--together", type=int, default=0, help="N analyses at once per limit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        log = wide_logs.many_activities(Path(work) / "activities.csv")
        runs = []
        for limit in args.limits:
            load = os.getloadavg()[0]
            if args.together:
                run = run_together(limit, args.together, log)
            else:
                run = run_under(limit, log)
            run["load1"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            runs.append(run)
            print(run, flush=True)
    name = "limits_together" if args.together else "limits"
    path = write_json(name, {"machine": machine(), "runs": runs})
    print(f"raw figures: {path}")


if __name__ == "__main__":
    main()
