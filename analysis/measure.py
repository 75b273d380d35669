"""Wall time, CPU time and peak memory of one phase, measured in-process.

Peak memory is the process's resident-set high-water mark during the phase. On Linux the
kernel's counter (VmHWM) is reset at phase start by writing "5" to /proc/self/clear_refs, so the
figure is the true peak of this phase; elsewhere a 50 ms sampling thread approximates it.

Work a phase hands to a forked child (analysis.forked) is charged to the phase that collects it:
the child's CPU seconds are added, and so is the memory the child held beyond what it shares with
this process (its peak RSS less the RSS at the fork, or its private pages at its end, whichever is
larger) to the phase's peak: an estimate from above of the two processes' joint peak.
"""

from __future__ import annotations

import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
# the meter of the phase running in this thread (context), charged with its forked children
_ACTIVE: ContextVar[PhaseMeter | None] = ContextVar("pmops_phase_meter", default=None)


@dataclass(frozen=True)
class PhaseUsage:
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int

    @property
    def average_cpu_percent(self) -> float:
        """CPU time over wall time, in percent of one core (can exceed 100 with threads)."""
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "wallSeconds": round(self.wall_seconds, 3),
            "cpuSeconds": round(self.cpu_seconds, 3),
            "peakMemoryBytes": self.peak_memory_bytes,
            "averageCpuPercent": round(self.average_cpu_percent, 1),
        }


def _read_hwm() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def current_rss() -> int:
    """This process's resident set size now, in bytes."""
    return int(psutil.Process(os.getpid()).memory_info().rss)


def add_child_usage(cpu_seconds: float, added_peak_bytes: int) -> None:
    """Charge a reaped child's CPU time and added memory to the phase measured in this context
    (nothing when no phase is being measured)."""
    meter = _ACTIVE.get()
    if meter is not None:
        meter.child_cpu += cpu_seconds
        meter.child_peak = max(meter.child_peak, added_peak_bytes)


class PhaseMeter:
    """`with PhaseMeter() as m: ...` then `m.usage`."""

    def __init__(self) -> None:
        self.usage: PhaseUsage | None = None
        self._proc = psutil.Process(os.getpid())
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled_peak = 0
        self._kernel_hwm = False
        self.child_cpu = 0.0
        self.child_peak = 0
        self._token: Any = None

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._sampled_peak = max(self._sampled_peak, self._proc.memory_info().rss)

    def __enter__(self) -> PhaseMeter:
        self._kernel_hwm = _reset_hwm() and _read_hwm() is not None
        self._sampled_peak = self._proc.memory_info().rss
        if not self._kernel_hwm:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        self._token = _ACTIVE.set(self)
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        cpu = time.process_time() - self._c0 + self.child_cpu
        _ACTIVE.reset(self._token)
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        peak = (_read_hwm() or 0) if self._kernel_hwm else 0
        peak = max(peak, self._sampled_peak, self._proc.memory_info().rss) + self.child_peak
        self.usage = PhaseUsage(wall, cpu, peak)
