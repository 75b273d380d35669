"""What every operation flow does around its phases: claim, run, record the outcome.

The flow is thin: the service (pmops.service.lifecycle) claims the operation, takes its progress
reports and records how it ended; this module runs the phases in between as Prefect tasks and
maps exceptions to the operation's outcome and the flow run's state.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from prefect import runtime
from prefect.client.schemas.objects import State
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed
from sqlalchemy.engine import Engine

from analysis.costs import PriceSetting
from analysis.errors import AnalysisError
from analysis.phases import PHASES
from analysis.pipeline import OperationRun
from analysis.progress import CancelToken, OperationCancelled
from flows.observe import flow_run_id, run_logs
from flows.publish import RunPublisher
from flows.reporter import OperationReporter, worker_node
from pmops import logs
from pmops.service.errors import Problem
from pmops.service.lifecycle import (
    claim,
    dataset_source,
    finish,
    resume_plan,
    set_result_dir,
    stamp_times,
    wait_for_slot,
)
from pmops.service.lifecycle import runs_to_start as store_runs_to_start
from pmops.service.outside import retry_from_run
from pmops.service.runlimits import (
    Applied,
    apply,
    cgroup_peak_bytes,
    exhausted,
    exhausted_error,
    limits_for,
    memory_peaks,
    release,
)
from pmops.service.storage import RunFiles, refusal, storage_for
from pmops.settings import Settings, get_settings
from pmops.store.tables import engine_for, utc_now

PhaseTask = Callable[[Any], Any]
RunFactory = Callable[..., OperationRun]
OnComplete = Callable[[Engine, dict[str, Any], Any], None]


class InjectedFault(AnalysisError):
    """A failure asked for by `parameters.faultInjection` (PMOPS_FAULT_INJECTION)."""

    code = "injected_fault"


def runs_to_start(settings: Settings) -> set[str]:
    """The runs the dispatcher made that may still wait for a runner (deployments/gate.py)."""
    return store_runs_to_start(engine_for(settings.resolved_database_url))


def run_operation(
    operation_id: str,
    run_cls: RunFactory,
    phases: Sequence[PhaseTask],
    on_complete: OnComplete | None = None,
    settings: Settings | None = None,
) -> State | dict[str, Any]:
    settings = settings or get_settings()
    with run_logs(settings, operationId=operation_id):
        _lower_priority(settings.run_niceness)
        engine = engine_for(settings.resolved_database_url)
        waited = wait_for_slot(engine, operation_id, settings.heartbeat_interval_seconds)
        if waited:
            _logger().info("stood by %.2f s for a worker slot (a standby run)", waited)
        row = claim(engine, operation_id, flow_run_id(), worker_node())
        if row is None:
            return _not_claimed(engine, settings, operation_id)
        with logs.bound(tenantId=row["tenant_id"], projectId=row["project_id"]):
            return _run_limited(engine, row, run_cls, phases, on_complete, settings)


def _not_claimed(engine: Engine, settings: Settings, operation_id: str) -> State:
    """The run's state when the operation was not waiting for it. A run that ran before and was
    started again (the Prefect UI's Retry of an ended run) asks for a pmops retry instead
    (pmops.service.outside): the new operation, or why not, is its state's message."""
    run_count = int(runtime.flow_run.run_count or 0)
    if run_count <= 1:
        return Cancelled(message=f"{operation_id} was not waiting to start (cancelled or done)")
    key = f"prefect-retry:{flow_run_id()}:{run_count}"
    try:
        new_id = retry_from_run(engine, settings, operation_id, key)
    except Problem as exc:
        _logger().warning("not retried in pmops: %s", exc.detail)
        return Cancelled(message=f"not retried in pmops: {exc.detail}")
    _logger().info("retried in pmops as operation %s", new_id)
    return Completed(
        message=f"retried in pmops as operation {new_id} (a new operation in {operation_id}'s "
        "retry chain; its own flow run does the work)"
    )


def _run_limited(
    engine: Engine,
    row: dict[str, Any],
    run_cls: RunFactory,
    phases: Sequence[PhaseTask],
    on_complete: OnComplete | None,
    settings: Settings,
) -> State | dict[str, Any]:
    """The claimed run within its resource limits (pmops.service.runlimits)."""
    operation_id = row["operation_id"]
    # before any phase (and the threads the reporter and the phases start)
    applied = apply(limits_for(settings, row["request"]), operation_id, settings)
    logger = _logger()
    limits = applied.limits
    logger.info(
        "limits: memoryGB %s, cpuUnits %g: %s", limits.describe(), limits.cpu_units, applied.detail
    )
    try:
        return _run_claimed(engine, row, run_cls, phases, on_complete, settings, applied)
    finally:
        peak = cgroup_peak_bytes(applied)
        cgroup = "" if peak is None else f"; the run's cgroup peaked at {peak / 1024**3:.2f} GiB"
        logger.info("memory: %s%s", memory_peaks(), cgroup)
        release(applied)


def _run_claimed(
    engine: Engine,
    row: dict[str, Any],
    run_cls: RunFactory,
    phases: Sequence[PhaseTask],
    on_complete: OnComplete | None,
    settings: Settings,
    applied: Applied,
) -> State | dict[str, Any]:
    operation_id = row["operation_id"]
    # the run's files: in place on file://, a scratch copy (removed when the run ends) elsewhere
    with RunFiles(storage_for(settings), settings, operation_id) as files:
        set_result_dir(engine, operation_id, files.key)
        reporter = OperationReporter(
            engine,
            operation_id,
            row["operation_type"],
            row["timeout_at"],
            CancelToken(),
            interval=settings.heartbeat_interval_seconds,
        )
        publisher = RunPublisher(row, _logger(), settings.heartbeat_interval_seconds)
        reporter.on_finish = lambda status, document: publisher.finished(
            status, document, reporter.run
        )
        publisher.started()
        try:
            with reporter:
                run = _start_run(engine, row, files, reporter, settings, run_cls)
                _run_phases(run, row, phases, settings, files, publisher, reporter)
                if on_complete is not None:
                    on_complete(engine, row, run)
                document = run.document()
                ended = utc_now()
                stamp_times(document, row["started_at"], ended)
                run.write_document(document)
                run.drop_checkpoints()
                files.sync()
                files.drop_checkpoints()
            _finish(engine, row, reporter, "Completed", document, ended)
            publisher.links(engine, settings, run)
            return {"operationId": operation_id, "status": "Completed"}
        except Exception as exc:
            state = _record_stop(engine, row, reporter, exc, applied, files)
            if state is None:
                # recorded as the operation's failure, and raised again so that Prefect keeps
                # the traceback
                raise
            return state


def _start_run(
    engine: Engine,
    row: dict[str, Any],
    files: RunFiles,
    reporter: OperationReporter,
    settings: Settings,
    run_cls: RunFactory,
) -> OperationRun:
    """The operation's run over its source, reporting through `reporter`."""
    source, mapping = dataset_source(engine, row)
    params = (row["request"] or {}).get("parameters") or {}
    lineage, resume = resume_plan(engine, row["operation_id"])
    if resume is not None:  # the original's checkpoints, on this machine
        resume = replace(resume, source_dir=files.resume_dir(str(resume.source_dir)))
    run = run_cls(
        files.source(source),
        files.out_dir,
        params,
        mapping,
        name=row["operation_name"],
        sink=reporter.sink,
        token=reporter.token,
        prices=PriceSetting(settings.price_cpu_hour, settings.price_gb_hour),
        resume=resume,
        lineage=lineage,
    )
    # the source's identity in checkpoint keys is its storage key, not where the copy is
    run.source_identity = [source, repr(mapping)]
    reporter.run = run
    return run


def _run_phases(
    run: OperationRun,
    row: dict[str, Any],
    phases: Sequence[PhaseTask],
    settings: Settings,
    files: RunFiles,
    publisher: RunPublisher,
    reporter: OperationReporter,
) -> None:
    """Each phase as its Prefect task, in order (a fault injected where the request asks), its
    start and end logged and shown in the progress artifact; what a completed phase wrote (its
    artifacts, its checkpoint) goes to the storage at once."""
    params = (row["request"] or {}).get("parameters") or {}
    fail_in = (params.get("faultInjection") or {}).get("failPhase")
    try:
        for name, phase in zip(PHASES[row["operation_type"]], phases, strict=True):
            publisher.phase_started(name, reporter.snapshot()["percentage"])
            try:
                if fail_in == name and settings.fault_injection:
                    run.fail_phase(name, InjectedFault(f"fault injected in {name}"))
                phase(run)
            finally:
                percentage = reporter.snapshot()["percentage"]
                publisher.phase_ended(name, run.records.get(name), percentage)
            files.sync()
    finally:
        run.close()  # no worker process outlives the phases (analysis.forked)


def _record_stop(
    engine: Engine,
    row: dict[str, Any],
    reporter: OperationReporter,
    exc: Exception,
    applied: Applied,
    files: RunFiles | None = None,
) -> State | None:
    """Record how the run stopped; the flow run's state, or None for an unexpected error."""
    if isinstance(exc, OperationCancelled):
        status = "Timeout" if reporter.timed_out else "Cancelled"
        _finish_partial(engine, row, reporter, status, None, files)
        return Cancelled(message=f"{status}: {exc}")
    # out of memory: under an enforced limit always (even where the reader said too_large)
    if exhausted(exc) and (applied.enforced or not isinstance(exc, AnalysisError)):
        # the failed phase's frames hold what filled the memory: free it before recording
        traceback.clear_frames(exc.__traceback__)
        gc.collect()
        lack = exhausted_error(applied.limits, applied.enforced)
        _finish_partial(engine, row, reporter, "Failed", lack, files)
        return Failed(message=lack["message"])
    if isinstance(exc, AnalysisError):
        _finish_partial(engine, row, reporter, "Failed", exc.to_dict(), files)
        return Failed(message=exc.message)
    error = storage_error(exc) if isinstance(exc, OSError) else None
    if error is not None:
        _finish_partial(engine, row, reporter, "Failed", error, files)
        return Failed(message=error["message"])
    _finish_partial(engine, row, reporter, "Failed", unexpected(exc), files)
    return None


def _finish(
    engine: Engine,
    row: dict[str, Any],
    reporter: OperationReporter,
    status: str,
    document: dict[str, Any] | None,
    ended: datetime,
    error: dict[str, Any] | None = None,
) -> None:
    finish(
        engine,
        row["operation_id"],
        status,
        document,
        ended_at=ended,
        error=error,
        progress=reporter.snapshot(),
        announcer=reporter.announcer,
    )
    if reporter.on_finish is not None:
        reporter.on_finish(status, document)


def _finish_partial(
    engine: Engine,
    row: dict[str, Any],
    reporter: OperationReporter,
    status: str,
    error: dict[str, Any] | None,
    files: RunFiles | None = None,
) -> None:
    """Cancelled, timed out or failed: what completed phases produced stays downloadable (and
    in the storage: the checkpoints a resume reads)."""
    ended = utc_now()
    document = _partial(reporter.run, status, row["started_at"], ended)
    if files is not None:
        try:
            files.sync()
        except Exception:  # the store keeps the document; the storage may be what failed
            _logger().exception("the partial results could not all be stored")
    _finish(engine, row, reporter, status, document, ended, error)


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


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger (its lines reach Prefect and the runner's output)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pmops.flows")


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


def _partial(
    run: OperationRun | None, status: str, started: datetime | None, ended: datetime
) -> dict[str, Any] | None:
    """What completed phases produced, kept downloadable after cancel, timeout or failure."""
    if run is None:
        return None
    summary = run.summary() if hasattr(run, "summary") else {}
    document = run.base_document(False, summary)
    document["status"] = status
    stamp_times(document, started, ended)
    # the store keeps the document; the file is what a full or read-only disk may refuse
    with contextlib.suppress(OSError):
        run.write_document(document)
    return document
