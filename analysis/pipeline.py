"""Operation runs as a sequence of phases, and the results document they produce.

One class per operation type. Each phase method is what a Prefect task (or the local CLI) calls;
it measures itself (wall, CPU, peak memory), reports progress through one sink and returns the
phase's entry of `phaseResults`. `document()` assembles the contract's `detailed` results.
Artifacts are written under `out_dir` and listed with paths relative to it.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

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
    # set when the phase was not run but restored from an earlier run of the same lineage
    preserved_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phaseName": self.name, "status": self.status}
        if self.preserved_from:
            out["preservedFrom"] = self.preserved_from
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


STATE_DIR = "state"
# parameters that are no input of any phase
NOT_INPUTS = ("faultInjection",)


@dataclass(frozen=True)
class ResumePlan:
    """Reuse what an earlier run of the same lineage completed instead of computing it again.

    `source_dir` is that run's out_dir, where each completed phase left a checkpoint
    (`state/<n>.pkl`: what later phases need, its record and its artifacts). A phase is restored
    only while every phase before it was restored too and its checkpoint's key equals the key of
    the phase here (same lineage, source and phase inputs); from the first phase that cannot be,
    everything is computed.
    """

    source_dir: Path
    lineage: str  # the first operation of the retry chain
    origin: str  # the operation the checkpoints come from
    phases: tuple[str, ...]


class OperationRun:
    """Shared machinery: out dir, progress sink, cancel token, phase records, artifacts."""

    operation_type = ""
    # what each phase leaves for the phases after it (checkpointed when it completes)
    phase_state: ClassVar[dict[str, tuple[str, ...]]] = {}
    # the raw parameter keys each phase reads; None: every key no other phase claims
    phase_parameters: ClassVar[dict[str, tuple[str, ...] | None]] = {}

    def __init__(
        self,
        out_dir: Path,
        name: str = "",
        sink: PhaseSink | None = None,
        token: CancelToken | None = None,
        prices: PriceSetting | None = None,
        resume: ResumePlan | None = None,
        lineage: str = "",
    ) -> None:
        self.resume = resume
        self.lineage = resume.lineage if resume is not None else lineage
        self._restoring = resume is not None
        self.raw_params: dict[str, Any] = {}
        self.source_identity: Any = None
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name or self.operation_type
        self.sink = sink
        self.token = token or CancelToken()
        self.prices = prices or PriceSetting()
        self.records = {p: PhaseRecord(p) for p in phases.PHASES[self.operation_type]}
        self.artifacts: list[Artifact] = []
        self.started = utc_now()

    def records_to_analyse(self) -> int | None:
        """The records the results will count as analysed, once known (None before)."""
        return None

    def document(self) -> dict[str, Any]:
        """The results document of the completed run (each operation type has its own)."""
        raise NotImplementedError

    def _progress(self, phase: str) -> Progress:
        sink = self.sink
        if sink is None:
            return Progress(token=self.token)
        return Progress(sink=lambda d, t, a: sink(phase, d, t, a), token=self.token)

    # -- checkpoints and resume ----------------------------------------------------------
    def phase_key(self, phase: str) -> str:
        """What a phase's outputs depend on: lineage, source, and the inputs of it and of every
        phase before it."""
        order = phases.PHASES[self.operation_type]
        inputs = [
            [name, self.phase_inputs(self.raw_params, name)]
            for name in order[: order.index(phase) + 1]
        ]
        material = [self.operation_type, self.lineage, self.source_identity, inputs]
        text = json.dumps(material, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def phase_inputs(cls, params: Mapping[str, Any], phase: str) -> dict[str, Any]:
        """The parameters `phase` reads (phase_parameters; None: those no other phase claims)."""
        keys = cls.phase_parameters.get(phase, ())
        if keys is not None:
            return {k: params.get(k) for k in keys}
        claimed = {k for ks in cls.phase_parameters.values() if ks for k in ks}
        return {k: v for k, v in params.items() if k not in claimed and k not in NOT_INPUTS}

    @classmethod
    def reusable_phases(
        cls, completed: Sequence[str], before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> tuple[str, ...]:
        """The leading completed phases a resume can restore when the parameters change from
        `before` to `after` (the same rule the checkpoint keys apply at run time)."""
        reusable: list[str] = []
        for name in phases.PHASES[cls.operation_type][:-1]:  # the last one keeps no checkpoint
            if name not in completed or cls.phase_inputs(before, name) != cls.phase_inputs(
                after, name
            ):
                break
            reusable.append(name)
        return tuple(reusable)

    def _state_path(self, base: Path, phase: str) -> Path:
        number = phases.PHASES[self.operation_type].index(phase) + 1
        return base / STATE_DIR / f"{number}.pkl"

    def _checkpoint(self, phase: str, artifacts_before: int) -> None:
        order = phases.PHASES[self.operation_type]
        if phase == order[-1]:
            return  # nothing runs after the last phase: nothing to resume from
        snapshot = {
            "key": self.phase_key(phase),
            "record": self.records[phase],
            "artifacts": self.artifacts[artifacts_before:],
            "state": {a: getattr(self, a) for a in self.phase_state.get(phase, ())},
        }
        path = self._state_path(self.out_dir, phase)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(snapshot, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    def _restore(self, phase: str) -> dict[str, Any] | None:
        """The phase's record restored from the resume source, or None to compute it."""
        plan = self.resume
        if plan is None or not self._restoring or phase not in plan.phases:
            self._restoring = False
            return None
        source = self._state_path(plan.source_dir, phase)
        try:
            with source.open("rb") as fh:
                snapshot = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError):
            snapshot = None
        if snapshot is None or snapshot["key"] != self.phase_key(phase):
            self._restoring = False
            return None
        for attr, value in snapshot["state"].items():
            setattr(self, attr, value)
        for artifact in snapshot["artifacts"]:
            target = self.out_dir / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(plan.source_dir / artifact.path, target)
            self.artifacts.append(artifact)
        record: PhaseRecord = snapshot["record"]
        record.preserved_from = record.preserved_from or plan.origin
        self.records[phase] = record
        target_state = self._state_path(self.out_dir, phase)
        target_state.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target_state)  # a retry of this run can resume from it too
        self._progress(phase).update(record.records, record.records, "restored")
        return record.to_dict()

    def fail_phase(self, phase: str, error: BaseException) -> None:
        """Fail `phase` as if its work had raised `error` (fault injection for tests)."""

        def work(_progress: Progress) -> tuple[int, dict[str, Any]]:
            raise error

        self._run_phase(phase, work)

    def close(self) -> None:
        """Release what the run holds beyond its phases (a ProcessMiningRun: a worker process
        started ahead of its phase); the run's records and outputs stay. Idempotent."""

    def drop_checkpoints(self) -> None:
        """A completed run is never resumed: its checkpoints only take disk space."""
        shutil.rmtree(self.out_dir / STATE_DIR, ignore_errors=True)

    def _run_phase(
        self, phase: str, work: Callable[[Progress], tuple[int, dict[str, Any]]]
    ) -> dict[str, Any]:
        restored = self._restore(phase)
        if restored is not None:
            return restored
        artifacts_before = len(self.artifacts)
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
        self._checkpoint(phase, artifacts_before)
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
        # restored phases cost this run nothing (their own run counted them)
        usages = [
            r.usage for r in self.records.values() if r.usage is not None and not r.preserved_from
        ]
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
                "averageCpuUsage": round(100 * cpu / wall) if wall else 0,
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
