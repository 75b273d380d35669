"""The contract's closed vocabularies: statuses, operation types, priorities, phases, event types.

Every value is the seed's own spelling. The enums are `StrEnum`s, so a member equals its string
("Completed" == OperationStatus.Completed) and serialises as it: code that still holds the bare
strings (store rows, JSON documents) keeps working next to code that uses the members.
"""

from __future__ import annotations

from enum import StrEnum

from analysis import phases as _phases


class OperationStatus(StrEnum):
    """An operation's status (`status` of the status, list, results and event bodies)."""

    Initiated = "Initiated"
    Pending = "Pending"  # in a batch, waiting for its dependencies
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Cancelled = "Cancelled"
    Timeout = "Timeout"

    @property
    def terminal(self) -> bool:
        """Finished: no further change comes."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[OperationStatus] = frozenset(
    {
        OperationStatus.Completed,
        OperationStatus.Failed,
        OperationStatus.Cancelled,
        OperationStatus.Timeout,
    }
)


class BatchStatus(StrEnum):
    """A batch's status."""

    Initiated = "Initiated"
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Cancelled = "Cancelled"


BATCH_TERMINAL_STATUSES: frozenset[BatchStatus] = frozenset(
    {BatchStatus.Completed, BatchStatus.Failed, BatchStatus.Cancelled}
)


class OperationType(StrEnum):
    ProcessMiningAnalysis = "ProcessMiningAnalysis"
    DataEnrichment = "DataEnrichment"
    ReportGeneration = "ReportGeneration"


class Priority(StrEnum):
    """Higher priorities start first when the workers are busy (`rank` orders them)."""

    Low = "Low"
    Normal = "Normal"
    High = "High"
    Critical = "Critical"

    @property
    def rank(self) -> int:
        """0 (Low) to 3 (Critical): what the queue orders by."""
        return _PRIORITY_ORDER.index(self)

    @property
    def work_queue(self) -> str:
        """The Prefect work queue of its flow runs in workpool execution (PMOPS_EXECUTION):
        Critical shares High's queue (the API's own queue still starts it first)."""
        return "High" if self is Priority.Critical else self.value


_PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)

# the work pool's queues in workpool execution, first served first (Prefect's queue priority 1..3)
WORK_QUEUES: tuple[str, ...] = ("High", "Normal", "Low")


class RetryMode(StrEnum):
    resume = "resume"
    restart = "restart"


class WebhookStatus(StrEnum):
    Active = "Active"
    Disabled = "Disabled"


class DeliveryStatus(StrEnum):
    """A delivery's status; Failed is a dead letter."""

    Pending = "Pending"
    Retrying = "Retrying"
    Delivered = "Delivered"
    Failed = "Failed"
    Cancelled = "Cancelled"


class DeliveryKind(StrEnum):
    webhook = "webhook"
    callback = "callback"
    email = "email"
    slack = "slack"


class EventType(StrEnum):
    """Every event the service emits: the event stream's `type`, a webhook delivery's `type`."""

    started = "operation.started"
    progress = "operation.progress"
    phase_completed = "operation.phase.completed"
    completed = "operation.completed"
    failed = "operation.failed"
    cancelled = "operation.cancelled"
    timeout = "operation.timeout"
    batch_started = "batch.started"
    batch_operation_completed = "batch.operation.completed"
    batch_completed = "batch.completed"
    # a project event, not about an operation: told to the project's owners, not subscribable
    webhook_disabled = "webhook.disabled"

    @property
    def subscribable(self) -> bool:
        """A webhook may subscribe to it."""
        return self is not EventType.webhook_disabled

    @property
    def terminal(self) -> bool:
        """The last event of an operation."""
        return self in TERMINAL_EVENTS.values()


OPERATION_EVENTS: tuple[EventType, ...] = tuple(e for e in EventType if e.startswith("operation."))
BATCH_EVENTS: tuple[EventType, ...] = tuple(e for e in EventType if e.startswith("batch."))
SUBSCRIBABLE_EVENTS: tuple[EventType, ...] = tuple(e for e in EventType if e.subscribable)
# the event that ends an operation of each terminal status
TERMINAL_EVENTS: dict[OperationStatus, EventType] = {
    OperationStatus.Completed: EventType.completed,
    OperationStatus.Failed: EventType.failed,
    OperationStatus.Cancelled: EventType.cancelled,
    OperationStatus.Timeout: EventType.timeout,
}


class PhaseName(StrEnum):
    """A phase of an operation, by its English name (what the service shows). Its Japanese name
    from the seed is an alias: PhaseName("機械学習分析") is PhaseName.MachineLearningAnalysis."""

    DataLoadingAndValidation = _phases.LOAD
    ProcessDiscovery = _phases.DISCOVERY
    MachineLearningAnalysis = _phases.MACHINE_LEARNING
    ReportGeneration = _phases.REPORTS
    DataCleaning = _phases.CLEANING
    EnrichedDatasetExport = _phases.EXPORT
    SourceCollection = _phases.COLLECT

    @property
    def ja(self) -> str:
        """The Japanese name (the seed's, for the four phases it names)."""
        return _JAPANESE[self]

    def weight(self, operation_type: OperationType | str) -> float:
        """Its share of an operation of this type's percentage (measured wall-time share)."""
        return _phases.PHASE_WEIGHTS[str(operation_type)].get(self.value, 1.0)

    @classmethod
    def _missing_(cls, value: object) -> PhaseName | None:
        if isinstance(value, str):
            for member, name in _JAPANESE.items():
                if name == value.strip():
                    return member
        return None


_JAPANESE: dict[PhaseName, str] = {
    # the seed's names (status and results examples)
    PhaseName.DataLoadingAndValidation: "データの読み込みと検証",
    PhaseName.ProcessDiscovery: "プロセス発見",
    PhaseName.MachineLearningAnalysis: "機械学習分析",
    PhaseName.ReportGeneration: "レポート生成",
    # phases the seed does not name: データクリーニング is the seed's name of the cleaning step
    # (its batch example); the other two are ours
    PhaseName.DataCleaning: "データクリーニング",
    PhaseName.EnrichedDatasetExport: "拡張データセットのエクスポート",
    PhaseName.SourceCollection: "ソースの収集",
}

# the phases of each operation type, in order (analysis/phases.py is the one table)
PHASES: dict[OperationType, tuple[PhaseName, ...]] = {
    OperationType(kind): tuple(PhaseName(name) for name in names)
    for kind, names in _phases.PHASES.items()
}
