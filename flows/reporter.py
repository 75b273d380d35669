"""The one object through which a flow run's progress reaches the app store.

It receives every progress update of the running phase (the analysis `Progress` sink), and a
heartbeat thread writes the operation's live state every `heartbeat_interval_seconds`: phases,
percentage, records, the flow-run process's CPU/memory/disk/network use, and the heartbeat time
the API uses to detect a dead process. The same thread reads back a cancellation request or an
expired timeout and sets the run's CancelToken, so the phase stops at its next checkpoint.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psutil
from sqlalchemy.engine import Engine

from analysis.formatting import size_text
from analysis.phases import MACHINE_LEARNING, PHASE_WEIGHTS
from analysis.pipeline import OperationRun, PhaseRecord
from analysis.progress import CancelToken
from analysis.runs import ProcessMiningRun
from pmops.service.lifecycle import Announcer, cancel_reason, report
from pmops.service.views import current_phase, processed_records
from pmops.store.tables import as_utc, utc_now

TIMEOUT_REASON = "timeout"


def _net_bytes() -> int:
    """Bytes sent and received on this machine's interfaces (see docs: not per process)."""
    counters = psutil.net_io_counters()
    return int(counters.bytes_sent + counters.bytes_recv) if counters else 0


class OperationReporter:
    def __init__(
        self,
        engine: Engine,
        operation_id: str,
        operation_type: str,
        timeout_at: datetime,
        token: CancelToken,
        interval: float = 2.0,
    ) -> None:
        self.engine = engine
        self.operation_id = operation_id
        self.weights = PHASE_WEIGHTS[operation_type]
        self.timeout_at = timeout_at
        self.token = token
        self.interval = interval
        self.run: OperationRun | None = None
        self.timed_out = False
        self._live: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()
        # one write at a time (the sink and the heartbeat both write), so rows never go back
        self._write_lock = threading.Lock()
        # the highest share of each phase reported so far: a phase whose steps count in other
        # units (bytes read, then events parsed) restarts at 0, which must not lower progress
        self._high: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_write = 0.0
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)
        self._net0 = _net_bytes()
        self._started = time.monotonic()
        self._cpu_samples: list[float] = []
        # what events have announced so far
        self.announcer = Announcer(operation_id)
        # told (status, results document) once the run's end is recorded (flows/publish.py)
        self.on_finish: Callable[[str, dict[str, Any] | None], None] | None = None

    # -- analysis Progress sink -------------------------------------------------------------
    def sink(self, phase: str, done: int, total: int, activity: str) -> None:
        with self._lock:
            previous = self._live.get(phase)
            self._live[phase] = (done, total, activity)
        # a new phase or a finished one is worth writing at once; the rest waits for the beat
        if previous is None or done >= total or time.monotonic() - self._last_write > 0.5:
            self.write()

    # -- heartbeat ----------------------------------------------------------------------------
    def __enter__(self) -> OperationReporter:
        self._thread = threading.Thread(target=self._beat, name="pmops-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write()
                self._check_cancellation()
            except Exception:
                continue

    def _check_cancellation(self) -> None:
        if self.token.cancelled:
            return
        if utc_now() >= self.timeout_at:
            self.timed_out = True
            self.token.cancel(TIMEOUT_REASON)
            return
        reason = cancel_reason(self.engine, self.operation_id)
        if reason is not None:
            self.token.cancel(reason)

    # -- the live state -----------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        cpu = self._proc.cpu_percent(None)
        self._cpu_samples.append(cpu)
        mem = self._proc.memory_info().rss
        try:
            io = self._proc.io_counters()
            disk = int(io.read_bytes + io.write_bytes)
        except (psutil.AccessDenied, AttributeError):
            disk = 0
        net = max(0, _net_bytes() - self._net0)
        return {
            "cpuUsage": round(cpu),
            "memoryUsage": size_text(mem),
            "memoryBytes": mem,
            "diskUsage": size_text(disk),
            "diskBytes": disk,
            "networkIO": size_text(net),
            "networkBytes": net,
            "averageCpuUsage": round(sum(self._cpu_samples) / len(self._cpu_samples)),
        }

    def _phase(
        self, name: str, record: PhaseRecord | None, live: tuple[int, int, str]
    ) -> tuple[dict[str, Any], float]:
        """The phase's entry of `phases` and the share of it done."""
        entry: dict[str, Any] = record.to_dict() if record is not None else {"phaseName": name}
        entry.setdefault("status", "Pending")
        figures = entry.get("results") or {}
        if "validRecords" in figures:  # the seed shows the load phase's checks here
            entry["validationResults"] = {
                k: figures.get(k) for k in ("validRecords", "errorRecords", "dataQualityScore")
            }
        if entry["status"] == "Completed":
            return entry, 1.0
        if entry["status"] not in ("Running", "Cancelled", "Failed"):
            return entry, 0.0
        done, total, activity = live
        # a stopped phase keeps the share it had done: progress never goes back
        fraction = min(1.0, done / total) if total else 0.0
        fraction = self._high[name] = max(fraction, self._high.get(name, 0.0))
        entry["progress"] = round(100 * fraction)
        if entry["status"] == "Running":
            entry["currentActivity"] = activity
            entry["recordsDone"] = done
            entry["recordsTotal"] = total
            if name == MACHINE_LEARNING and isinstance(self.run, ProcessMiningRun):
                # the scikit-learn models of the phase, and how many have been trained so far
                entry["modelsTraining"] = self.run.models_planned
                entry["modelsCompleted"] = self.run.models_completed
        return entry, fraction

    def snapshot(self) -> dict[str, Any]:
        run = self.run
        with self._lock:
            live = dict(self._live)
        records = run.records if run is not None else {}
        weight_total = sum(self.weights.values()) or 1.0
        phases: list[dict[str, Any]] = []
        share = 0.0
        for name, weight in self.weights.items():
            entry, fraction = self._phase(name, records.get(name), live.get(name, (0, 0, "")))
            share += weight / weight_total * fraction
            phases.append(entry)
        if phases and all(p["status"] == "Completed" for p in phases):
            share = 1.0
        first = records.get(next(iter(self.weights)))
        analysed = run.records_to_analyse() if run is not None else None
        return {
            "phases": phases,
            "percentage": round(100 * share, 1),
            "currentPhase": current_phase(phases),
            "processedRecords": processed_records(analysed, share),
            "totalRecords": first.records if first is not None else 0,
            "elapsedSeconds": round(time.monotonic() - self._started, 3),
            "resourceUsage": self.usage(),
        }

    def write(self) -> None:
        with self._write_lock:
            snap = self.snapshot()
            self._last_write = time.monotonic()
            report(self.engine, self.operation_id, snap, self.announcer)


def worker_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = ["TIMEOUT_REASON", "OperationReporter", "as_utc", "worker_node"]
