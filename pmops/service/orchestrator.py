"""What the service needs from the workflow engine: the `Orchestrator` protocol and its values.

The service starts each operation (and each batch's parent run) as a run of the orchestrator,
reads the state of runs it dispatched, and cancels runs. Prefect is the real one
(`api/prefect_orchestrator.py`); the in-process API tests use a fake (`tests/api/conftest.py`).
Nothing here imports Prefect: states are this module's `RunStateType`, named as Prefect names them.

What an implementation must do, beyond the signatures:
- `create_run` and `create_batch_run` are idempotent per key (the operation id, `<id>:<attempt>`
  for a later attempt, the batch id): after a crash between "created" and "recorded", the next
  call returns the same run instead of a second one.
- A call that fails because the orchestrator is down, restarting or not ready (its runner has not
  registered the flows yet) raises `OrchestratorUnavailable`; anything else is a bug and may raise
  anything. The dispatcher waits out the first kind quietly and logs the second.
- No call blocks for long: the API's own queue (the operations table) is what absorbs bursts.
- A run's state is the orchestrator's view only. A run whose runner and process were both killed
  may stay Running there forever; the service trusts its own heartbeat for those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

# who asks for a cancel: a request handler, or the dispatcher's sweep (the Prefect client keeps a
# connection per caller, so a slow dispatch never delays a user's cancel)
Caller = Literal["request", "dispatcher"]


class OrchestratorUnavailable(RuntimeError):
    """The orchestrator is down, restarting, or not ready yet: not a bug of ours; try later."""


class RunStateType(StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


FINAL_STATES = frozenset(
    {RunStateType.COMPLETED, RunStateType.FAILED, RunStateType.CANCELLED, RunStateType.CRASHED}
)


@dataclass(frozen=True)
class RunState:
    """A run's current state: its type, the orchestrator's name for it (e.g. 'Late' for a
    Scheduled run), the message it carries and when it was entered."""

    type: RunStateType
    timestamp: datetime
    name: str | None = None
    message: str | None = None

    @property
    def final(self) -> bool:
        return self.type in FINAL_STATES


@dataclass(frozen=True)
class Run:
    """One run of the orchestrator; `state` is None when it has none (yet)."""

    run_id: str
    state: RunState | None


@dataclass(frozen=True)
class OperationRunSpec:
    """What the orchestrator is told about an operation it runs (names, tags, the subflow key)."""

    operation_id: str
    tenant_id: str
    project_id: str
    operation_type: str
    operation_name: str
    priority: str
    batch_id: str | None = None
    operation_key: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OperationRunSpec:
        """From an operations row (a batch member carries request.batch.{batchId,operationKey})."""
        member = (row.get("request") or {}).get("batch") or {}
        return cls(
            operation_id=row["operation_id"],
            tenant_id=row["tenant_id"],
            project_id=row["project_id"],
            operation_type=row["operation_type"],
            operation_name=row["operation_name"],
            priority=row["priority"],
            batch_id=member.get("batchId"),
            operation_key=member.get("operationKey"),
        )


@dataclass(frozen=True)
class BatchRunSpec:
    """What the orchestrator is told about a batch's parent run."""

    batch_id: str
    tenant_id: str
    project_id: str
    batch_name: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BatchRunSpec:
        return cls(
            batch_id=row["batch_id"],
            tenant_id=row["tenant_id"],
            project_id=row["project_id"],
            batch_name=row["batch_name"],
        )


class Orchestrator(Protocol):
    """The operations the dispatcher and the request handlers need from the workflow engine."""

    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        """A run for this operation (its id); attempt n > 1 is a new run. A batch member's run
        is a child of its batch's parent run (`parent_run_id`)."""
        ...

    def create_batch_run(self, batch: BatchRunSpec) -> str:
        """The batch's parent run (its id)."""
        ...

    def read_runs(self, run_ids: list[str]) -> dict[str, Run]:
        """The runs the orchestrator knows of these ids, by id (unknown ids are left out)."""
        ...

    def runs_of(self, operation_id: str) -> list[Run]:
        """Every run created for this operation, whatever the attempt."""
        ...

    def abandon_run(self, run_id: str, message: str) -> None:
        """End a run that never started its operation, so that it never starts it later."""
        ...

    def cancel_run(self, run_id: str, caller: Caller = "request") -> bool:
        """Ask the orchestrator to stop the run; False if it refused or is unavailable (the
        operation's row is cancelled already: its process reads that and stops by itself)."""
        ...

    def healthy(self) -> bool:
        """The orchestrator answers, quickly (a health check must not wait)."""
        ...

    def close(self) -> None: ...
