"""What someone did to an operation's flow run outside pmops (an operator in the Prefect UI),
made true in the operation (docs/observability.md, "Actions in the Prefect UI").

- **Cancel:** a run set Cancelling (or Cancelled) by anyone but pmops while its operation is
  Initiated or Running cancels the operation. pmops's own cancels never reach here: they record
  the request (or the terminal status) in the store before they ask Prefect. A waiting operation
  is Cancelled at once; a running one gets a graceful cancel request (its run, if still alive,
  stops at its next checkpoint and keeps what its completed phases made), and once the run is
  Cancelled in Prefect (the runner stopped its process) the operation is Cancelled
  at once, its completed phases kept (pmops.service.operations.results_document).
- **Retry:** a terminal run set back to Scheduled (the UI's Retry: "AwaitingRetry") starts the
  flow again; its claim fails (the operation has ended), and the flow asks `retry_from_run`: a
  pmops retry (a new operation in the original's chain, as POST .../retry in resume mode) or the
  reason it is refused, which the flow writes into the run's state message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from pmops.contract.requests import CancelRequest, RetryCreate
from pmops.service.errors import Problem
from pmops.service.operations import force_cancelled, request_cancel
from pmops.service.orchestrator import Run, RunStateType
from pmops.service.retries import create_retry
from pmops.service.scope import Principal, Scope
from pmops.settings import Settings
from pmops.store import queue
from pmops.store.operations import read_operation_by_id

CANCELLED_OUTSIDE = (RunStateType.CANCELLING, RunStateType.CANCELLED)
WHO = "Prefect (a flow-run action outside pmops)"


def _scope(row: dict[str, Any]) -> Scope:
    principal = Principal(row["tenant_id"], row["project_id"], WHO, "Critical")
    return Scope(row["tenant_id"], row["project_id"], principal)


def watched_runs(engine: Engine) -> list[dict[str, Any]]:
    """The operations whose runs are watched: Initiated or Running with a run."""
    with engine.connect() as conn:
        return queue.list_operations_with_runs(conn)


def cancelled_outside(engine: Engine, rows: list[dict[str, Any]], runs: dict[str, Run]) -> int:
    """Cancel the operations whose runs were cancelled in Prefect; how many changed."""
    changed = 0
    for row in rows:
        run = runs.get(row["flow_run_id"])
        state = run.state if run is not None else None
        if state is None or state.type not in CANCELLED_OUTSIDE:
            continue
        if row["status"] == "Initiated" and state.final:
            continue  # ended before it started: dispatched again (Dispatcher.sweep_unstarted)
        if not row["cancel_requested"]:
            said = f": {state.message}" if state.message else ""
            reason = f"its flow run was set {state.name or state.type.value} in Prefect{said}"
            try:
                request_cancel(
                    engine, _scope(row), row["operation_id"], CancelRequest(reason=reason)
                )
            except Problem:
                continue  # it ended meanwhile: its own outcome stands
            changed += 1
        if (
            state.final
            and row["status"] == "Running"
            and force_cancelled(engine, row["operation_id"])
        ):
            changed += 1
    return changed


def retry_from_run(engine: Engine, settings: Settings, operation_id: str, run_key: str) -> str:
    """A pmops retry of the operation whose ended run was started again in Prefect: the new
    operation's id. Raises Problem with the reason when it is refused (not Failed, Cancelled or
    Timeout; an active retry; the project's queue full). `run_key` (the flow run and its run
    count) makes a repeated attempt of the same start answer the same retry."""
    with engine.connect() as conn:
        row = read_operation_by_id(conn, operation_id)
    if row is None:
        raise Problem(404, f"operation {operation_id} not found")
    body = RetryCreate(retryReason="retried in the Prefect UI (its flow run was started again)")
    _, answer, _ = create_retry(
        engine, settings, _scope(dict(row)), operation_id, body, idempotency_key=run_key
    )
    return str(answer["newOperationId"])
