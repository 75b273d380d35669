"""Operation runs as a sequence of phases, and the results document they produce.

One class per operation type. Each phase method is what a Prefect task (or the local CLI) calls;
it measures itself (wall, CPU, peak memory), reports progress through one sink and returns the
phase's entry of `phaseResults`. `document()` assembles the contract's `detailed` results.
Artifacts are written under `out_dir` and listed with paths relative to it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import phases
from analysis.costs import PriceSetting, money_text
from analysis.formatting import seconds_text, size_text
from analysis.measure import PhaseMeter, PhaseUsage
from analysis.progress import CancelToken, OperationCancelled, Progress

# (phase name, records done, records total, current activity)
PhaseSink = Callable[[str, int, int, str], None]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Artifact:
    name: str
    type: str  # Report | Visualization | Dataset | Model
    format: str  # PDF | SVG | CSV | PKL | JSON | PPTX
    path: str  # relative to out_dir
    description: str
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "size": size_text(self.size_bytes),
            "sizeBytes": self.size_bytes,
            "path": self.path,
            "description": self.description,
        }


@dataclass
class PhaseRecord:
    name: str
    status: str = "Pending"
    start: str | None = None
    end: str | None = None
    usage: PhaseUsage | None = None
    records: int = 0
    results: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phaseName": self.name, "status": self.status}
        if self.start:
            out["startTime"] = self.start
        if self.end:
            out["endTime"] = self.end
        if self.usage is not None:
            out["duration"] = seconds_text(self.usage.wall_seconds)
            out["resourceUsage"] = self.usage.to_dict()
        out["recordsProcessed"] = self.records
        out["results"] = self.results
        return out


class OperationRun:
    """Shared machinery: out dir, progress sink, cancel token, phase records, artifacts."""

    operation_type = ""

    def __init__(
        self,
        out_dir: Path,
        name: str = "",
        sink: PhaseSink | None = None,
        token: CancelToken | None = None,
        prices: PriceSetting | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name or self.operation_type
        self.sink = sink
        self.token = token or CancelToken()
        self.prices = prices or PriceSetting()
        self.records = {p: PhaseRecord(p) for p in phases.PHASES[self.operation_type]}
        self.artifacts: list[Artifact] = []
        self.started = utc_now()

    def _progress(self, phase: str) -> Progress:
        sink = self.sink
        if sink is None:
            return Progress(token=self.token)
        return Progress(sink=lambda d, t, a: sink(phase, d, t, a), token=self.token)

    def _run_phase(self, phase: str, work: Callable[[Progress], tuple[int, dict[str, Any]]]):
        record = self.records[phase]
        record.status, record.start = "Running", utc_now()
        progress = self._progress(phase)
        meter = PhaseMeter()
        try:
            with meter:
                record.records, record.results = work(progress)
        except BaseException as exc:
            record.status = "Cancelled" if isinstance(exc, OperationCancelled) else "Failed"
            record.end = utc_now()
            record.usage = meter.usage
            raise
        record.status, record.end, record.usage = "Completed", utc_now(), meter.usage
        progress.update(record.records, record.records, "done")
        return record.to_dict()

    def _artifact(self, name: str, type_: str, fmt: str, path: Path, description: str) -> None:
        self.artifacts.append(
            Artifact(
                name,
                type_,
                fmt,
                str(path.relative_to(self.out_dir)),
                description,
                path.stat().st_size,
            )
        )

    def _usage_totals(self) -> tuple[float, float, int]:
        usages = [r.usage for r in self.records.values() if r.usage is not None]
        wall = sum(u.wall_seconds for u in usages)
        cpu = sum(u.cpu_seconds for u in usages)
        peak = max((u.peak_memory_bytes for u in usages), default=0)
        return wall, cpu, peak

    def performance(self, records_analyzed: int) -> dict[str, Any]:
        wall, cpu, peak = self._usage_totals()
        per_minute = records_analyzed / (wall / 60) if wall > 0 else 0.0
        cost = self.prices.cost(cpu, peak, wall)
        return {
            "totalExecutionTime": seconds_text(wall),
            "totalExecutionSeconds": round(wall, 3),
            "resourceUtilization": {
                "averageCpuUsage": round(100 * cpu / wall, 1) if wall else 0.0,
                "peakMemoryUsage": size_text(peak),
                "peakMemoryBytes": peak,
                "totalCpuHours": round(cpu / 3600, 6),
                "totalCost": money_text(cost),
                "costMethod": self.prices.describe(),
            },
            "throughput": f"{per_minute:.0f} records/minute",
            # share of the wall time a core was busy on this run's work (1 core = 100)
            "efficiency": round(min(100.0, 100 * cpu / wall), 1) if wall else 0.0,
            "efficiencyMethod": "CPU seconds / wall seconds of all phases, capped at 100",
        }

    def base_document(self, success: bool, summary: dict[str, Any]) -> dict[str, Any]:
        return {
            "operationType": self.operation_type,
            "operationName": self.name,
            "status": "Completed" if success else "Failed",
            "startTime": self.started,
            "completionTime": utc_now(),
            "totalDuration": seconds_text(self._usage_totals()[0]),
            "success": success,
            "summary": summary,
            "phaseResults": [r.to_dict() for r in self.records.values()],
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    def write_document(self, doc: Mapping[str, Any]) -> Path:
        path = self.out_dir / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=_json_default))
        tmp.replace(path)  # never a half-written results file
        return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None
