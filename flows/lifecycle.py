"""What every operation flow does around its phases: claim, run, record the outcome.

The store row is the operation's truth. A flow run claims it (Initiated -> Running) before any
phase, and writes the terminal status only while the row is still Running, so a terminal status
set meanwhile by the API (force cancel, dead-process sweep) is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import runtime
from prefect.states import Cancelled, Failed, State
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from analysis.costs import PriceSetting
from analysis.errors import AnalysisError
from analysis.eventlog import ColumnMapping
from analysis.phases import PHASES
from analysis.pipeline import OperationRun, ResumePlan
from analysis.progress import CancelToken, OperationCancelled
from flows.reporter import OperationReporter, worker_node
from pmops.service.events import TERMINAL_EVENT, emit
from pmops.service.storage import refusal
from pmops.settings import Settings, get_settings
from pmops.store.tables import (
    datasets,
    engine_for,
    operations,
    retries,
    throughput,
    transaction,
    utc_now,
)

PhaseTask = Callable[[Any], Any]


def claim(engine: Engine, operation_id: str, flow_run_id: str | None) -> dict[str, Any] | None:
    """Initiated -> Running; None when the operation is no longer waiting (e.g. cancelled)."""
    with transaction(engine) as conn:
        row = (
            conn.execute(
                # the row lock makes claim and a concurrent cancel serial on PostgreSQL too
                select(operations)
                .where(operations.c.operation_id == operation_id)
                .with_for_update()
            )
            .mappings()
            .first()
        )
        if row is None or row["status"] != "Initiated":
            return None
        now = utc_now()
        conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .values(
                status="Running",
                started_at=now,
                heartbeat_at=now,
                flow_run_id=flow_run_id or row["flow_run_id"],
                worker_node=worker_node(),
                execution_id=f"exec-{flow_run_id}" if flow_run_id else None,
            )
        )
        emit(conn, operation_id, "operation.started")
        return dict(row)


def finish(
    engine: Engine,
    operation_id: str,
    status: str,
    document: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
    reporter: OperationReporter | None = None,
) -> bool:
    values: dict[str, Any] = {"status": status, "ended_at": utc_now(), "results": document}
    if error is not None:
        values["error"] = error
    if progress is not None:
        values["progress"] = progress
        values["percentage"] = progress["percentage"]
        values["current_phase"] = progress["currentPhase"]
        values["processed_records"] = progress["processedRecords"]
    if status == "Completed":
        values["percentage"] = 100.0
    with transaction(engine) as conn:
        result = conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .where(operations.c.status == "Running")
            .values(**values)
        )
        if result.rowcount:
            if status == "Completed" and document:
                _record_throughput(conn, operation_id, document, values["ended_at"])
            if reporter is not None and progress is not None:
                reporter.announce(conn, progress)
            emit(conn, operation_id, TERMINAL_EVENT[status])
    return bool(result.rowcount)


def _record_throughput(
    conn: Connection, operation_id: str, document: dict[str, Any], ended_at: datetime
) -> None:
    """What later start-time estimates of this type are computed from (api/estimates.py)."""
    row = conn.execute(
        select(operations.c.operation_type, operations.c.started_at).where(
            operations.c.operation_id == operation_id
        )
    ).first()
    events = int((document.get("summary") or {}).get("recordsAnalyzed") or 0)
    phases = float((document.get("performance") or {}).get("totalExecutionSeconds") or 0.0)
    if row is None or row.started_at is None or events <= 0 or phases <= 0:
        return
    wall = (ended_at - row.started_at).total_seconds()
    conn.execute(
        throughput.insert().values(
            operation_id=operation_id,
            operation_type=row.operation_type,
            events=events,
            phase_seconds=phases,
            startup_seconds=max(0.0, wall - phases),
            ended_at=ended_at,
        )
    )


class InjectedFault(AnalysisError):
    """A failure asked for by `parameters.faultInjection` (PMOPS_FAULT_INJECTION)."""

    code = "injected_fault"


def resume_plan(engine: Engine, operation_id: str) -> tuple[str, ResumePlan | None]:
    """(lineage, what a resume retry may restore) from the operation's `retries` row."""
    with engine.connect() as conn:
        link = conn.execute(select(retries).where(retries.c.operation_id == operation_id)).first()
        if link is None:
            return operation_id, None
        source = conn.execute(
            select(operations.c.result_dir).where(operations.c.operation_id == link.original_id)
        ).scalar()
    if link.retry_mode != "resume" or not link.preserved_phases or not source:
        return link.lineage, None
    plan = ResumePlan(Path(source), link.lineage, link.original_id, tuple(link.preserved_phases))
    return link.lineage, plan


def dataset_source(engine: Engine, row: dict[str, Any]) -> tuple[Path, ColumnMapping | None]:
    params = (row["request"] or {}).get("parameters") or {}
    with engine.connect() as conn:
        if row.get("dataset_id"):
            ds = (
                conn.execute(select(datasets).where(datasets.c.dataset_id == row["dataset_id"]))
                .mappings()
                .first()
            )
            if ds is None:
                raise AnalysisError(
                    "the dataset of this operation no longer exists", field="parameters.datasetId"
                )
            mapping = ds["summary"].get("columnMapping") or {}
            return Path(ds["path"]), ColumnMapping.from_dict(mapping)
        source_op = params.get("sourceOperationId") or params.get("operationId")
        if source_op:
            op = conn.execute(
                select(operations.c.result_dir).where(operations.c.operation_id == source_op)
            ).first()
            if op is not None and op.result_dir:
                return Path(op.result_dir) / "results.json", None
    raise AnalysisError(
        "the operation has no source: give parameters.datasetId", field="parameters.datasetId"
    )


def run_operation(
    operation_id: str,
    run_cls: Callable[..., Any],
    phases: Sequence[PhaseTask],
    on_complete: Callable[[Engine, dict[str, Any], Any], None] | None = None,
    settings: Settings | None = None,
) -> State | dict[str, Any]:
    settings = settings or get_settings()
    _lower_priority(settings.run_niceness)
    engine = engine_for(settings.resolved_database_url)
    flow_run_id = runtime.flow_run.id
    row = claim(engine, operation_id, str(flow_run_id) if flow_run_id else None)
    if row is None:
        return Cancelled(message=f"{operation_id} was not waiting to start (cancelled or done)")
    out_dir = settings.results_dir.resolve() / operation_id
    with transaction(engine) as conn:
        conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .values(result_dir=str(out_dir))
        )
    token = CancelToken()
    reporter = OperationReporter(
        engine,
        operation_id,
        row["operation_type"],
        row["timeout_at"],
        token,
        interval=settings.heartbeat_interval_seconds,
    )
    run: Any = None
    try:
        with reporter:
            source, mapping = dataset_source(engine, row)
            params = (row["request"] or {}).get("parameters") or {}
            lineage, resume = resume_plan(engine, operation_id)
            run = run_cls(
                source,
                out_dir,
                params,
                mapping,
                name=row["operation_name"],
                sink=reporter.sink,
                token=token,
                prices=PriceSetting(settings.price_cpu_hour, settings.price_gb_hour),
                resume=resume,
                lineage=lineage,
            )
            reporter.run = run
            fail_in = (params.get("faultInjection") or {}).get("failPhase")
            for name, phase in zip(PHASES[row["operation_type"]], phases, strict=True):
                if fail_in == name and settings.fault_injection:
                    run.fail_phase(name, InjectedFault(f"fault injected in {name}"))
                phase(run)
            if on_complete is not None:
                on_complete(engine, row, run)
            document = run.document()
            run.write_document(document)
            run.drop_checkpoints()
        finish(
            engine,
            operation_id,
            "Completed",
            document,
            progress=reporter.snapshot(),
            reporter=reporter,
        )
        return {"operationId": operation_id, "status": "Completed"}
    except OperationCancelled as exc:
        status = "Timeout" if reporter.timed_out else "Cancelled"
        document = _partial(run, status)
        finish(
            engine, operation_id, status, document, progress=reporter.snapshot(), reporter=reporter
        )
        return Cancelled(message=f"{status}: {exc}")
    except AnalysisError as exc:
        _fail(engine, operation_id, run, reporter, exc.to_dict())
        return Failed(message=exc.message)
    except OSError as exc:
        if (error := storage_error(exc)) is None:
            _fail(engine, operation_id, run, reporter, unexpected(exc))
            raise
        _fail(engine, operation_id, run, reporter, error)
        return Failed(message=error["message"])
    except Exception as exc:
        # recorded as the operation's failure, and raised again so that Prefect keeps the traceback
        _fail(engine, operation_id, run, reporter, unexpected(exc))
        raise


def _fail(
    engine: Engine,
    operation_id: str,
    run: OperationRun | None,
    reporter: OperationReporter,
    error: dict[str, Any],
) -> None:
    finish(
        engine,
        operation_id,
        "Failed",
        _partial(run, "Failed"),
        error=error,
        progress=reporter.snapshot(),
        reporter=reporter,
    )


def unexpected(exc: Exception) -> dict[str, Any]:
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "field": None}


def storage_error(exc: OSError) -> dict[str, Any] | None:
    """The operation's error for a write the results storage refused, or None."""
    reason = refusal(exc)
    if reason is None:
        return None
    return {
        "code": "storage_unavailable",
        "message": f"The operation's results could not be written: {reason}. Completed "
        "phases are kept where they could be written; retry once the storage is fixed.",
        "field": None,
    }


def _lower_priority(niceness: int) -> None:
    """Analyses yield the CPU to the API. Linux applies nice to the calling thread and the threads
    it starts later: this is called before the phases (and their BLAS threads) start."""
    if niceness <= 0 or not hasattr(os, "nice"):
        return
    try:
        current = os.nice(0)
        if current < niceness:
            os.nice(niceness - current)
    except OSError:
        pass


def _partial(run: OperationRun | None, status: str) -> dict[str, Any] | None:
    """What completed phases produced, kept downloadable after cancel, timeout or failure."""
    if run is None:
        return None
    summary = run.summary() if hasattr(run, "summary") else {}
    document = run.base_document(False, summary)
    document["status"] = status
    # the store keeps the document; the file is what a full or read-only disk may refuse
    with contextlib.suppress(OSError):
        run.write_document(document)
    return document
