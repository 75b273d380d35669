"""Typed models of the contract's objects (../shared/api-contract.md), as the API answers them.

Every model accepts fields it does not name (`extra="allow"`): the contract only ever adds
fields, so a newer server never breaks an older client. Field names are the contract's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# -- datasets --------------------------------------------------------------------------------
class Dataset(Model):
    datasetId: str
    fileName: str | None = None
    format: str | None = None
    sizeBytes: int | None = None
    cases: int | None = None
    events: int | None = None
    activities: int | None = None
    sourceOperationId: str | None = None
    createdAt: str | None = None


class DatasetList(Model):
    datasets: list[Dataset]


# -- operations ------------------------------------------------------------------------------
class ResourcesAllocated(Model):
    cpuUnits: float | None = None
    memoryGB: float | None = None
    estimatedCost: str | None = None


class OperationStarted(Model):
    operationId: str
    operationType: str
    operationName: str
    status: str
    estimatedDuration: str | None = None
    estimatedCompletion: str | None = None
    trackingUrl: str
    webhooksRegistered: int = 0
    priority: str | None = None
    dateCreated: str | None = None
    timeoutAt: str | None = None
    resourcesAllocated: ResourcesAllocated | None = None


class Progress(Model):
    percentage: float = 0
    currentPhase: str | None = None
    phasesCompleted: int = 0
    totalPhases: int = 0
    startTime: str | None = None
    elapsedTime: str | None = None
    estimatedRemaining: str | None = None
    estimatedCompletion: str | None = None


class ResourceUsage(Model):
    cpuUsage: float | None = None
    memoryUsage: str | None = None
    diskUsage: str | None = None
    networkIO: str | None = None


class Execution(Model):
    executionId: str | None = None
    workerNode: str | None = None
    resourceUsage: ResourceUsage | None = None
    processedRecords: int = 0
    totalRecords: int = 0
    processingRate: str | None = None


class Phase(Model):
    phaseName: str
    status: str
    startTime: str | None = None
    endTime: str | None = None
    duration: str | None = None
    progress: float | None = None
    currentActivity: str | None = None
    recordsProcessed: int | None = None
    validationResults: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    estimatedStartTime: str | None = None
    estimatedDuration: str | None = None


class CallbacksInfo(Model):
    progressCallbacksSent: int = 0
    lastProgressCallback: str | None = None
    callbacksSuccessful: int = 0
    callbacksFailed: int = 0


class OperationStatus(Model):
    operationId: str
    operationType: str
    operationName: str
    status: str
    progress: Progress
    execution: Execution | None = None
    phases: list[Phase] = []
    callbacks: CallbacksInfo | None = None
    dateCreated: str | None = None
    timeoutAt: str | None = None
    priority: str | None = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Cancelled", "Timeout")


class OperationListItem(Model):
    operationId: str
    operationType: str
    operationName: str
    status: str
    progress: float = 0
    priority: str | None = None
    startTime: str | None = None
    endTime: str | None = None
    duration: str | None = None
    estimatedCompletion: str | None = None
    currentPhase: str | None = None
    resourceUsage: dict[str, Any] | None = None
    recordsProcessed: int | None = None


class ListSummary(Model):
    totalOperations: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class OperationList(Model):
    operations: list[OperationListItem]
    summary: ListSummary
    page: int
    pageSize: int
    hasNextPage: bool


class PartialResults(Model):
    available: bool = False
    completedPhases: int = 0
    downloadUrls: list[str] = []


class Cancellation(Model):
    operationId: str
    status: str
    cancellationTime: str | None = None
    reason: str | None = None
    progressAtCancellation: float | None = None
    phaseAtCancellation: str | None = None
    partialResults: PartialResults | None = None
    resourcesReleased: dict[str, Any] | None = None
    cancelledBy: str | None = None


class Artifact(Model):
    name: str
    type: str
    format: str
    size: str | None = None
    downloadUrl: str | None = None
    description: str | None = None


class Results(Model):
    operationId: str
    operationType: str | None = None
    operationName: str | None = None
    status: str
    completionTime: str | None = None
    totalDuration: str | None = None
    success: bool | None = None
    summary: dict[str, Any] = {}
    phaseResults: Any = None
    artifacts: list[Artifact] = []
    performance: dict[str, Any] | None = None
    recommendations: list[dict[str, Any]] = []


class PreservedResults(Model):
    phasesPreserved: int = 0
    recordsProcessed: int = 0
    progressSaved: int | None = None


class RetryStarted(Model):
    originalOperationId: str
    newOperationId: str
    retryMode: str
    retryNumber: int
    resumeFromPhase: str | None = None
    status: str
    estimatedDuration: str | None = None
    estimatedCompletion: str | None = None
    preservedResults: PreservedResults | None = None
    resourcesAllocated: ResourcesAllocated | None = None
    retryAttemptDate: str | None = None


# -- webhooks ---------------------------------------------------------------------------------
class DeliveryStats(Model):
    totalDeliveries: int = 0
    successfulDeliveries: int = 0
    failedDeliveries: int = 0
    averageResponseTime: float | None = None


class Webhook(Model):
    webhookId: str
    webhookUrl: str
    webhookName: str
    status: str
    eventsSubscribed: list[str] = []
    filters: dict[str, Any] = {}
    createdAt: str | None = None
    lastDelivery: dict[str, Any] | None = None
    deliveryStats: DeliveryStats | None = None


class WebhookList(Model):
    webhooks: list[Webhook]
    page: int
    pageSize: int
    hasNextPage: bool


class Delivery(Model):
    deliveryId: str
    eventId: str
    eventType: str
    operationId: str | None = None
    kind: str
    status: str
    attemptCount: int = 0
    attempts: list[dict[str, Any]] = []
    nextAttemptAt: str | None = None
    lastError: str | None = None


class DeliveryList(Model):
    deliveries: list[Delivery]
    page: int
    pageSize: int
    hasNextPage: bool


# -- batches ----------------------------------------------------------------------------------
class BatchMember(Model):
    operationKey: str
    operationId: str
    status: str
    dependencies: list[str] = []


class Batch(Model):
    batchId: str
    batchName: str
    status: str
    operations: list[BatchMember] = []
    totalOperations: int = 0
    trackingUrl: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("Completed", "Failed", "Cancelled")


# -- events -----------------------------------------------------------------------------------
class Event(Model):
    """One event: of the live stream, or the body of a webhook delivery."""

    id: str
    type: str
    timestamp: str
    sequence: int | None = None
    operationId: str | None = None
    data: dict[str, Any] = {}

    @property
    def terminal(self) -> bool:
        return self.type in (
            "operation.completed",
            "operation.failed",
            "operation.cancelled",
            "operation.timeout",
        )


class BatchStarted(Model):
    """The 202 answer of POST /async/batch."""

    batchId: str
    batchName: str
    status: str
    operations: list[dict[str, Any]] = []
    totalOperations: int = 0
    estimatedBatchDuration: str | None = None
    estimatedBatchCompletion: str | None = None
    batchStartTime: str | None = None
    trackingUrl: str | None = None
