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
from datetime import datetime
from typing import Any

import psutil
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from analysis.formatting import size_text
from analysis.phases import PHASE_WEIGHTS
from analysis.pipeline import OperationRun
from analysis.progress import CancelToken
from pmops.service.events import emit
from pmops.store.tables import as_utc, operations, transaction, utc_now

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
        # what events have announced so far: a progress event per change of the whole percent
        # shown, a phase.completed event per phase
        self._announced_percentage = 0
        self._announced_phases: set[str] = set()

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
        with self.engine.connect() as conn:
            row = conn.execute(
                select(operations.c.cancel_requested, operations.c.cancel_request).where(
                    operations.c.operation_id == self.operation_id
                )
            ).first()
        if row is not None and row.cancel_requested:
            reason = (row.cancel_request or {}).get("reason") or "cancelled by request"
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
            "cpuUsage": round(cpu, 1),
            "memoryUsage": size_text(mem),
            "memoryBytes": mem,
            "diskUsage": size_text(disk),
            "diskBytes": disk,
            "networkIO": size_text(net),
            "networkBytes": net,
            "averageCpuUsage": round(sum(self._cpu_samples) / len(self._cpu_samples), 1),
        }

    def snapshot(self) -> dict[str, Any]:
        run = self.run
        with self._lock:
            live = dict(self._live)
        phases: list[dict[str, Any]] = []
        percentage = 0.0
        weight_total = sum(self.weights.values()) or 1.0
        current = stopped = None
        processed = 0
        total_records = 0
        done_records = 0
        records = run.records if run is not None else {}
        first = records.get(next(iter(self.weights)))
        load_done = first is not None and first.status == "Completed"
        for name, weight in self.weights.items():
            rec = records.get(name)
            entry: dict[str, Any] = rec.to_dict() if rec is not None else {"phaseName": name}
            entry.setdefault("status", "Pending")
            figures = entry.get("results") or {}
            if "validRecords" in figures:  # the seed shows the load phase's checks here
                entry["validationResults"] = {
                    k: figures.get(k) for k in ("validRecords", "errorRecords", "dataQualityScore")
                }
            done, total, activity = live.get(name, (0, 0, ""))
            if entry["status"] == "Completed":
                fraction = 1.0
                done_records += entry.get("recordsProcessed", 0)
            elif entry["status"] in ("Running", "Cancelled", "Failed"):
                # a stopped phase keeps the share it had done: progress never goes back
                fraction = min(1.0, done / total) if total else 0.0
                fraction = self._high[name] = max(fraction, self._high.get(name, 0.0))
                stopped = name
                entry["progress"] = round(100 * fraction)
                # before loading has counted the events, done is bytes or a step: not records
                processed = done if load_done else 0
                if entry["status"] == "Running":
                    current = name
                    entry["currentActivity"] = activity
                    entry["recordsDone"] = done
                    entry["recordsTotal"] = total
            else:
                fraction = 0.0
            percentage += weight / weight_total * fraction
            phases.append(entry)
        load = records.get(next(iter(self.weights)), None)
        if load is not None and load.records:
            total_records = load.records
        if stopped is not None and total_records:
            done, total, _ = live.get(stopped, (0, 0, ""))
            if total and total != total_records:
                # phases that count steps (models, files) report records in proportion
                processed = round(total_records * min(1.0, done / total))
        in_flight = processed
        if phases and all(p["status"] == "Completed" for p in phases):
            processed = total_records  # a finished run has processed every record
        if stopped is not None:
            current = stopped  # running now, or where the run stopped
        elif run is not None:
            waiting = [p["phaseName"] for p in phases if p["status"] == "Pending"]
            current = waiting[0] if waiting and phases[0]["status"] != "Pending" else None
        return {
            "phases": phases,
            "percentage": round(100 * percentage, 1),
            "currentPhase": current,
            "processedRecords": processed,
            "totalRecords": total_records,
            "recordsDoneAllPhases": done_records + in_flight,
            "elapsedSeconds": round(time.monotonic() - self._started, 3),
            "resourceUsage": self.usage(),
        }

    def announce(self, conn: Connection, snap: dict[str, Any]) -> None:
        """Events for what changed since the last write, in the transaction that wrote it."""
        for phase in snap["phases"]:
            name = phase["phaseName"]
            if phase.get("status") == "Completed" and name not in self._announced_phases:
                self._announced_phases.add(name)
                emit(conn, self.operation_id, "operation.phase.completed", phaseName=name)
        shown = round(snap["percentage"])
        if shown != self._announced_percentage:
            self._announced_percentage = shown
            emit(conn, self.operation_id, "operation.progress")

    def write(self) -> None:
        with self._write_lock:
            snap = self.snapshot()
            self._last_write = time.monotonic()
            with transaction(self.engine) as conn:
                written = conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == self.operation_id)
                    .where(operations.c.status == "Running")
                    .values(
                        progress=snap,
                        percentage=snap["percentage"],
                        current_phase=snap["currentPhase"],
                        processed_records=snap["processedRecords"],
                        heartbeat_at=utc_now(),
                    )
                )
                if written.rowcount:
                    self.announce(conn, snap)


def worker_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = ["TIMEOUT_REASON", "OperationReporter", "as_utc", "worker_node"]
