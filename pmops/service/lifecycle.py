"""An operation's run as its flow run reports it: claim, report progress, finish.

The store row is the operation's truth. A flow run claims it (Initiated -> Running) before any
phase, reports its progress while it is still Running, and writes the terminal status only while
the row is still Running, so a terminal status set meanwhile by the API (force cancel,
dead-process sweep) is never overwritten. Every change emits its events in the transaction that
made it (pmops.service.events). The flows call only this module; none writes SQL itself.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from analysis.errors import AnalysisError
from analysis.eventlog import ColumnMapping
from analysis.pipeline import ResumePlan
from pmops.contract.enums import OperationStatus
from pmops.service.events import TERMINAL_EVENT, emit
from pmops.service.views import iso, total_duration
from pmops.store import progress as store
from pmops.store import standby
from pmops.store.operations import update_operation
from pmops.store.queue import list_unfinished_run_ids
from pmops.store.tables import transaction, utc_now


def runs_to_start(engine: Engine) -> set[str]:
    """The Prefect runs the dispatcher made that may still wait for a runner (unfinished
    operations' and batches' runs): what a runner checks before asking Prefect."""
    with engine.connect() as conn:
        return list_unfinished_run_ids(conn)


# how often a standby run looks whether it has been granted its worker slot (a read of one row)
STANDBY_POLL_SECONDS = 0.05


def wait_for_slot(
    engine: Engine,
    operation_id: str,
    beat_seconds: float,
    poll_seconds: float = STANDBY_POLL_SECONDS,
) -> float:
    """Wait while the operation's run stands by (pmops.store.standby): until the dispatcher
    grants it a worker slot, or the operation stops waiting (cancelled, timed out). Beats every
    `beat_seconds` meanwhile, so the dispatcher's sweep knows the process is alive. Returns the
    seconds waited (0.0 when the run was not standing by)."""
    started = time.monotonic()
    last_beat = -math.inf
    while True:
        with engine.connect() as conn:
            status, standing = standby.read_standby(conn, operation_id)
        if not standing or status != "Initiated":
            return time.monotonic() - started if last_beat > -math.inf else 0.0
        now = time.monotonic()
        if now - last_beat >= beat_seconds:
            with transaction(engine) as conn:
                standby.beat_standby(conn, operation_id, utc_now())
            last_beat = now
        time.sleep(poll_seconds)


def claim(
    engine: Engine, operation_id: str, flow_run_id: str | None, worker_node: str
) -> dict[str, Any] | None:
    """Initiated -> Running: the row as claimed, or None when the operation is no longer
    waiting (e.g. cancelled)."""
    with transaction(engine) as conn:
        # the row lock makes claim and a concurrent cancel serial on PostgreSQL too
        row = store.lock_operation(conn, operation_id)
        if row is None or row["status"] != "Initiated":
            return None
        now = utc_now()
        values: dict[str, Any] = {
            "status": "Running",
            "started_at": now,
            "heartbeat_at": now,
            "flow_run_id": flow_run_id or row["flow_run_id"],
            "worker_node": worker_node,
            "execution_id": f"exec-{flow_run_id}" if flow_run_id else None,
        }
        update_operation(conn, operation_id, dict(values))  # the claim: the row is locked
        emit(conn, operation_id, "operation.started")
        return {**row, **values}


def set_result_dir(engine: Engine, operation_id: str, result_key: str) -> None:
    """Where the run's results are kept: their storage key (pmops.service.storage)."""
    with transaction(engine) as conn:
        update_operation(conn, operation_id, {"result_dir": result_key})


def cancel_reason(engine: Engine, operation_id: str) -> str | None:
    """Why the operation is to stop, when a cancellation has been asked for; else None."""
    with engine.connect() as conn:
        request = store.read_cancel_request(conn, operation_id)
    if request is None or not request.requested:
        return None
    return str((request.request or {}).get("reason") or "cancelled by request")


class Announcer:
    """The events a run's progress has announced: one `operation.progress` per change of the
    whole percent shown, one `operation.phase.completed` per phase."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id
        self._percentage = 0
        self._phases: set[str] = set()

    def announce(self, conn: Connection, progress: Mapping[str, Any]) -> None:
        """Events for what changed since the last write, in the transaction that wrote it."""
        for phase in progress["phases"]:
            name = phase["phaseName"]
            if phase.get("status") == "Completed" and name not in self._phases:
                self._phases.add(name)
                emit(conn, self.operation_id, "operation.phase.completed", phaseName=name)
        shown = round(progress["percentage"])
        if shown != self._percentage:
            self._percentage = shown
            emit(conn, self.operation_id, "operation.progress")


def _progress_columns(progress: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "progress": dict(progress),
        "percentage": progress["percentage"],
        "current_phase": progress["currentPhase"],
        "processed_records": progress["processedRecords"],
    }


def report(
    engine: Engine, operation_id: str, progress: Mapping[str, Any], announcer: Announcer
) -> bool:
    """The run's live state and heartbeat; False when the operation is no longer Running."""
    with transaction(engine) as conn:
        values = {**_progress_columns(progress), "heartbeat_at": utc_now()}
        written = store.update_running_operation(conn, operation_id, values)
        if written:
            announcer.announce(conn, progress)
    return written


def stamp_times(document: dict[str, Any], started: datetime | None, ended: datetime) -> None:
    """The operation's own start and completion in its results; totalDuration is their
    difference, as the seed has it (the phases' sum is the performance figure)."""
    if started is not None:
        document["startTime"] = iso(started)
    document["completionTime"] = iso(ended)
    document["totalDuration"] = total_duration(started, ended) or document.get("totalDuration")


def finish(
    engine: Engine,
    operation_id: str,
    status: str,
    document: dict[str, Any] | None,
    *,
    ended_at: datetime | None = None,
    error: dict[str, Any] | None = None,
    progress: Mapping[str, Any] | None = None,
    announcer: Announcer | None = None,
) -> bool:
    """Running -> `status`, with the results document; False when it was no longer Running."""
    values: dict[str, Any] = {"status": status, "ended_at": ended_at or utc_now()}
    values["results"] = document
    if error is not None:
        values["error"] = error
    if progress is not None:
        values.update(_progress_columns(progress))
    if status == "Completed":
        values["percentage"] = 100.0
    with transaction(engine) as conn:
        written = store.update_running_operation(conn, operation_id, values)
        if written:
            if status == "Completed" and document:
                _record_throughput(conn, operation_id, document, values["ended_at"])
            if announcer is not None and progress is not None:
                announcer.announce(conn, progress)
            emit(conn, operation_id, TERMINAL_EVENT[OperationStatus(status)])
    return written


def _record_throughput(
    conn: Connection, operation_id: str, document: Mapping[str, Any], ended_at: datetime
) -> None:
    """What later start-time estimates of this type are computed from (service/estimates.py)."""
    start = store.read_operation_start(conn, operation_id)
    events = int((document.get("summary") or {}).get("recordsAnalyzed") or 0)
    phases = float((document.get("performance") or {}).get("totalExecutionSeconds") or 0.0)
    if start is None or start[1] is None or events <= 0 or phases <= 0:
        return
    wall = (ended_at - start[1]).total_seconds()
    startup = max(0.0, wall - phases)
    store.insert_throughput(conn, operation_id, start[0], events, phases, startup, ended_at)


def resume_plan(engine: Engine, operation_id: str) -> tuple[str, ResumePlan | None]:
    """(lineage, what a resume retry may restore) from the operation's `retries` row; the
    plan's source_dir is the original's storage key (the flow fetches it: RunFiles)."""
    with engine.connect() as conn:
        link = store.read_retry_link(conn, operation_id)
    if link is None:
        return operation_id, None
    if link.retry_mode != "resume" or not link.preserved_phases or not link.source_dir:
        return link.lineage, None
    phases = tuple(link.preserved_phases)
    return link.lineage, ResumePlan(Path(link.source_dir), link.lineage, link.original_id, phases)


def dataset_source(engine: Engine, row: Mapping[str, Any]) -> tuple[str, ColumnMapping | None]:
    """The storage key of the file the operation reads: its dataset, or the results of the
    operation it follows (the flow fetches it: RunFiles.source)."""
    params = (row["request"] or {}).get("parameters") or {}
    with engine.connect() as conn:
        if row.get("dataset_id"):
            found = store.read_dataset_file(conn, row["dataset_id"])
            if found is None:
                raise AnalysisError(
                    "the dataset of this operation no longer exists", field="parameters.datasetId"
                )
            path, summary = found
            return str(path), ColumnMapping.from_dict(summary.get("columnMapping") or {})
        source_op = params.get("sourceOperationId") or params.get("operationId")
        result_dir = store.read_result_dir(conn, source_op) if source_op else None
    if result_dir:
        return f"{result_dir.rstrip('/')}/results.json", None
    raise AnalysisError(
        "the operation has no source: give parameters.datasetId", field="parameters.datasetId"
    )


# -- batches asked for by a flow (the monthly pipeline) ----------------------------------------
def project_uploads(engine: Engine, tenant_id: str, project_id: str) -> list[str]:
    """The project's uploaded datasets (not the outputs of earlier cleanings)."""
    with engine.connect() as conn:
        return store.list_project_uploads(conn, tenant_id, project_id)


def submit_batch(
    engine: Engine,
    tenant_id: str,
    project_id: str,
    body: dict[str, Any],
    parent_flow_run_id: str | None,
) -> str:
    """Ask the API's dispatcher for a batch (validated and created as POST /async/batch)."""
    submission_id = f"sub-{uuid.uuid4()}"
    with transaction(engine) as conn:
        store.insert_batch_submission(
            conn, submission_id, tenant_id, project_id, body, parent_flow_run_id, utc_now()
        )
    return submission_id


def submission_outcome(engine: Engine, submission_id: str) -> tuple[str | None, Any]:
    """(batch id, error) once the dispatcher has taken the submission; (None, None) before."""
    with engine.connect() as conn:
        found = store.read_batch_submission(conn, submission_id)
    return found if found is not None else (None, None)
