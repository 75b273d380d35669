"""Typed models of every body the API answers (../shared/api-contract.md, the seed's shapes).

The routes declare them as `response_model` (the OpenAPI document is generated from them) and
the SDK parses answers with the same classes. Every model accepts fields it does not name
(`extra="allow"`): the contract only ever adds fields, so a newer server never breaks an older
client. Field names are the seed's; fields the seed does not have are marked "pmops addition".
Integral numbers serialise as JSON integers (`memoryGB: 2`, not `2.0`), see `Number`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pmops.contract.enums import (
    BATCH_TERMINAL_STATUSES,
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    BatchStatus,
    DeliveryKind,
    DeliveryStatus,
    OperationStatus,
    OperationType,
    Priority,
    RetryMode,
    WebhookStatus,
)
from pmops.contract.types import Number, Percent

_ID = "operation id (op-<uuid>)"
_TYPE = "ProcessMiningAnalysis, DataEnrichment or ReportGeneration"
_STATUS = "Initiated, Pending (in a batch, waiting), Running, Completed, Failed, Cancelled, Timeout"
_TIME = "ISO 8601 UTC time"
_PRIORITY = "Low, Normal, High or Critical"
_ADDED = "(pmops addition)"


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Page(Model):
    """The paging fields of every list."""

    page: int = Field(description="page number, from 1")
    pageSize: int = Field(description="items per page (at most 100)")
    hasNextPage: bool = Field(description="whether another page follows")


# -- datasets --------------------------------------------------------------------------------
class Dataset(Model):
    datasetId: str = Field(description="what parameters.datasetId names")
    fileName: str | None = Field(default=None, description="the uploaded file's name")
    format: str | None = Field(default=None, description="csv, xes, xes.gz or parquet")
    sizeBytes: int | None = Field(default=None, description="size of the stored file")
    cases: int | None = Field(default=None, description="distinct cases in the log")
    events: int | None = Field(default=None, description="events in the log")
    activities: int | None = Field(default=None, description="distinct activities")
    timeRange: dict[str, Any] | None = Field(default=None, description="first and last event time")
    columnMapping: dict[str, Any] | None = Field(
        default=None, description="which columns are case, activity, timestamp and resource"
    )
    sourceOperationId: str | None = Field(
        default=None, description="the DataEnrichment that produced it, if any"
    )
    createdAt: str | None = Field(default=None, description=_TIME)
    url: str | None = Field(
        default=None, description="this dataset's URL (also the Location header)"
    )


class DatasetList(Page):
    datasets: list[Dataset] = Field(description="the project's datasets, newest first")
    totalDatasets: int | None = Field(
        default=None, description="datasets of the project (all pages)"
    )


# -- operations: start -------------------------------------------------------------------------
class ResourcesAllocated(Model):
    cpuUnits: Number | None = Field(
        default=None, description="CPU units a run gets (PMOPS_CPU_UNITS)"
    )
    memoryGB: Number | None = Field(default=None, description="memory a run gets (PMOPS_MEMORY_GB)")
    estimatedCost: str | None = Field(
        default=None, description="estimated hours x the configured prices, e.g. $2.45"
    )


class OperationStarted(Model):
    """The 202 answer of POST /async/operation."""

    operationId: str = Field(description=_ID)
    operationType: OperationType = Field(description=_TYPE)
    operationName: str = Field(description="as given")
    status: OperationStatus = Field(description="Initiated (Pending for a batch member)")
    estimatedDuration: str | None = Field(
        default=None, description="range from the throughput of earlier comparable runs"
    )
    estimatedDurationMethod: str | None = Field(
        default=None, description=f"how estimatedDuration was computed {_ADDED}"
    )
    estimatedCompletion: str | None = Field(
        default=None, description="now + the wait for a worker + the estimated duration"
    )
    trackingUrl: str = Field(description="the status URL (also Location and Operation-Location)")
    webhooksRegistered: int = Field(
        default=0, description="callbacks of the request plus webhooks that will hear about it"
    )
    priority: Priority | None = Field(default=None, description=_PRIORITY)
    dateCreated: str | None = Field(default=None, description=_TIME)
    timeoutAt: str | None = Field(
        default=None, description="when the run will be stopped as Timeout"
    )
    resourcesAllocated: ResourcesAllocated | None = Field(
        default=None, description="what the run gets, and its estimated cost"
    )


# -- operations: status ------------------------------------------------------------------------
class Progress(Model):
    percentage: Number = Field(
        default=0, description="phases' measured weights x their done fraction"
    )
    currentPhase: str | None = Field(
        default=None, description="the phase running now (or where the run stopped)"
    )
    phasesCompleted: int = Field(default=0, description="phases done")
    totalPhases: int = Field(default=0, description="phases of this operation type")
    startTime: str | None = Field(
        default=None, description="when the flow run claimed the operation"
    )
    elapsedTime: str | None = Field(
        default=None, description="since the start (until the end once done)"
    )
    estimatedRemaining: str | None = Field(
        default=None, description="from the measured pace, blended with the start estimate"
    )
    estimatedCompletion: str | None = Field(
        default=None, description="now + remaining (the end time once finished)"
    )


class ResourceUsage(Model):
    cpuUsage: Number | None = Field(
        default=None, description="% of one core used by the flow-run process since the last sample"
    )
    memoryUsage: str | None = Field(
        default=None, description="resident memory of the flow-run process"
    )
    memoryBytes: int | None = Field(default=None, description=f"memoryUsage in bytes {_ADDED}")
    diskUsage: str | None = Field(default=None, description="bytes the process read and wrote")
    diskBytes: int | None = Field(default=None, description=f"diskUsage in bytes {_ADDED}")
    networkIO: str | None = Field(
        default=None,
        description="bytes in and out on the machine's interfaces since the run started",
    )
    networkBytes: int | None = Field(default=None, description=f"networkIO in bytes {_ADDED}")
    averageCpuUsage: Number | None = Field(
        default=None, description=f"mean of the cpuUsage samples of the run so far {_ADDED}"
    )


class Execution(Model):
    executionId: str | None = Field(default=None, description="exec-<flow run id>")
    workerNode: str | None = Field(default=None, description="host:pid of the flow-run process")
    resourceUsage: ResourceUsage | None = Field(
        default=None, description="measured at every heartbeat"
    )
    processedRecords: int = Field(default=0, description="records processed so far")
    totalRecords: int = Field(default=0, description="events loaded")
    processingRate: str | None = Field(
        default=None, description="records done over all phases per elapsed minute"
    )
    heartbeatAt: str | None = Field(
        default=None,
        description=f"when the flow run last reported (a stalled run stops here) {_ADDED}",
    )


class Phase(Model):
    """A phase in a status (its live state) or in results (its figures)."""

    phaseName: str = Field(description="the phase (English name)")
    status: str = Field(description="Pending, Running, Completed, Failed or Cancelled")
    startTime: str | None = Field(default=None, description=_TIME)
    endTime: str | None = Field(default=None, description=_TIME)
    duration: str | None = Field(default=None, description="measured wall time")
    progress: Number | None = Field(default=None, description="% done of a running phase")
    currentActivity: str | None = Field(default=None, description="what the running phase is doing")
    modelsTraining: int | None = Field(
        default=None, description="models of the ML phase in training"
    )
    modelsCompleted: int | None = Field(default=None, description="models of the ML phase trained")
    recordsProcessed: int | None = Field(default=None, description="records the phase processed")
    recordsDone: int | None = Field(
        default=None,
        description=f"units the running phase has done (records, models, files) {_ADDED}",
    )
    recordsTotal: int | None = Field(
        default=None, description=f"units the running phase has to do {_ADDED}"
    )
    validationResults: dict[str, Any] | None = Field(
        default=None, description="validRecords, errorRecords, dataQualityScore (loading)"
    )
    results: dict[str, Any] | None = Field(default=None, description="the phase's figures")
    resourceUsage: dict[str, Any] | None = Field(
        default=None, description=f"wall and CPU seconds, peak memory of the phase {_ADDED}"
    )
    preservedFrom: str | None = Field(
        default=None, description=f"the operation a resume retry restored this phase from {_ADDED}"
    )
    estimatedStartTime: str | None = Field(default=None, description="for a pending phase")
    estimatedDuration: str | None = Field(
        default=None, description="for a pending phase, its measured share of the estimate"
    )


class CallbacksInfo(Model):
    progressCallbacksSent: int = Field(default=0, description="onProgress deliveries attempted")
    lastProgressCallback: str | None = Field(
        default=None, description="when the last of them was attempted"
    )
    callbacksSuccessful: int = Field(default=0, description="callback deliveries delivered")
    callbacksFailed: int = Field(
        default=0, description="callback deliveries that became dead letters"
    )
    callbacksPending: int | None = Field(
        default=None, description=f"callback deliveries not yet delivered or given up {_ADDED}"
    )


class OperationError(Model):
    code: str | None = Field(
        default=None, description="what kind of failure, e.g. invalid_parameters"
    )
    message: str | None = Field(default=None, description="what went wrong, for people")
    field: str | None = Field(default=None, description="the parameter at fault, if any")


class PrefectRun(Model):
    flowRunId: str = Field(description="the Prefect flow run")
    uiUrl: str = Field(description="the flow run in the Prefect UI")


class RetryOf(Model):
    originalOperationId: str = Field(description="the operation this one retries")
    lineage: str | None = Field(default=None, description="the first operation of the chain")
    retryNumber: int | None = Field(default=None, description="its place in the retry chain")
    retryMode: RetryMode | None = Field(default=None, description="resume or restart")
    preservedPhases: list[str] | None = Field(
        default=None, description="phases a resume may restore"
    )
    reason: str | None = Field(default=None, description="the retry's reason")
    automatic: bool | None = Field(default=None, description="started by a retryPolicy")
    retriedAt: str | None = Field(default=None, description=_TIME)


class OperationStatusView(Model):
    """GET /async/operation/{id}; also the `data` of every operation event."""

    operationId: str = Field(description=_ID)
    operationType: OperationType = Field(description=_TYPE)
    operationName: str = Field(description="as given")
    status: OperationStatus = Field(description=_STATUS)
    progress: Progress = Field(description="how far it is")
    execution: Execution | None = Field(default=None, description="where and how it runs")
    phases: list[Phase] = Field(default_factory=list, description="each phase's state and figures")
    callbacks: CallbacksInfo | None = Field(
        default=None, description="deliveries to the operation's callbacks"
    )
    dateCreated: str | None = Field(default=None, description=_TIME)
    timeoutAt: str | None = Field(
        default=None, description="when the run will be stopped as Timeout"
    )
    priority: Priority | None = Field(default=None, description=_PRIORITY)
    error: OperationError | None = Field(
        default=None, description="code, message and field of a failure"
    )
    cancellation: dict[str, Any] | None = Field(
        default=None, description=f"reason, cancelledBy, requestedAt of a cancellation {_ADDED}"
    )
    prefect: PrefectRun | None = Field(default=None, description=f"the Prefect flow run {_ADDED}")
    retryOf: RetryOf | None = Field(
        default=None, description=f"the operation this one retries {_ADDED}"
    )
    retries: list[str] | None = Field(
        default=None, description=f"ids of this one's retries {_ADDED}"
    )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


# -- operations: list --------------------------------------------------------------------------
class OperationListItem(Model):
    operationId: str = Field(description=_ID)
    operationType: OperationType = Field(description=_TYPE)
    operationName: str = Field(description="as given")
    status: OperationStatus = Field(description=_STATUS)
    progress: Number = Field(default=0, description="% done")
    priority: Priority | None = Field(default=None, description=_PRIORITY)
    startTime: str | None = Field(default=None, description=_TIME)
    endTime: str | None = Field(default=None, description=_TIME)
    duration: str | None = Field(default=None, description="elapsed wall time")
    estimatedCompletion: str | None = Field(default=None, description="estimated or actual end")
    currentPhase: str | None = Field(default=None, description="the phase running now")
    resourceUsage: ResourceUsage | None = Field(default=None, description="last measured usage")
    recordsProcessed: int | None = Field(default=None, description="records done")
    dateCreated: str | None = Field(default=None, description=f"{_TIME} {_ADDED}")
    details: OperationStatusView | None = Field(
        default=None, description=f"the full status, with includeDetails=true {_ADDED}"
    )


class ListSummary(Model):
    totalOperations: int = Field(
        default=0, description="operations matching the filters (all pages)"
    )
    initiated: int | None = Field(default=None, description=f"of them Initiated {_ADDED}")
    running: int = Field(default=0, description="of them Running")
    completed: int = Field(default=0, description="of them Completed")
    failed: int = Field(default=0, description="of them Failed")
    cancelled: int = Field(default=0, description="of them Cancelled")
    timeout: int | None = Field(default=None, description=f"of them Timeout {_ADDED}")


class OperationList(Page):
    operations: list[OperationListItem] = Field(description="this page, newest first")
    summary: ListSummary = Field(description="counts over the whole filtered set")


# -- operations: cancel ------------------------------------------------------------------------
class PartialResults(Model):
    available: bool = Field(default=False, description="completed work can be downloaded")
    completedPhases: int = Field(default=0, description="phases completed before the cancellation")
    completedPhaseNames: list[str] | None = Field(default=None, description=f"their names {_ADDED}")
    downloadUrls: list[str] = Field(
        default_factory=list, description="artifact URLs of the completed phases"
    )


class ResourcesReleased(Model):
    cpuUnits: Number | None = Field(default=None, description="CPU units freed")
    memoryGB: Number | None = Field(default=None, description="memory freed")
    costSaved: str | None = Field(default=None, description="cost of the estimated time not used")


class Cancellation(Model):
    operationId: str = Field(description=_ID)
    status: OperationStatus = Field(description="Cancelled")
    cancellationTime: str | None = Field(default=None, description=_TIME)
    reason: str | None = Field(default=None, description="as given")
    progressAtCancellation: Number | None = Field(default=None, description="% done when cancelled")
    phaseAtCancellation: str | None = Field(default=None, description="the phase it stopped in")
    partialResults: PartialResults | None = Field(
        default=None, description="what stays downloadable"
    )
    resourcesReleased: ResourcesReleased | None = Field(
        default=None, description="resources freed and the cost of the time not used"
    )
    cancelledBy: str | None = Field(default=None, description="the token's principal")


# -- operations: results -----------------------------------------------------------------------
class Artifact(Model):
    name: str = Field(description="what it is")
    type: str = Field(description="Report, Visualization, Dataset or Model")
    format: str = Field(description="PDF, SVG, CSV, PKL, JSON, PPTX, PARQUET or XES")
    size: str | None = Field(default=None, description="file size, e.g. 2.4 MB")
    sizeBytes: int | None = Field(default=None, description=f"file size in bytes {_ADDED}")
    downloadUrl: str | None = Field(default=None, description="where to get it")
    description: str | None = Field(default=None, description="its content")


class Results(Model):
    operationId: str = Field(description=_ID)
    operationType: OperationType | None = Field(default=None, description=_TYPE)
    operationName: str | None = Field(default=None, description="as given")
    status: OperationStatus = Field(description="Completed, Failed, Cancelled or Timeout")
    completionTime: str | None = Field(default=None, description=_TIME)
    totalDuration: str | None = Field(
        default=None, description="wall time from start to completion"
    )
    success: bool | None = Field(default=None, description="whether it completed")
    summary: dict[str, Any] = Field(
        default_factory=dict,
        description="records analysed, variants, anomalies, models, reports, quality, confidence",
    )
    phaseResults: list[Phase] = Field(
        default_factory=list, description="each phase's figures (see docs/analysis.md)"
    )
    artifacts: list[Artifact] = Field(default_factory=list, description="files made by the run")
    performance: dict[str, Any] | None = Field(
        default=None, description="measured time, CPU, memory, cost, throughput, efficiency"
    )
    recommendations: list[dict[str, Any]] = Field(
        default_factory=list, description="improvements derived from the figures"
    )
    error: OperationError | None = Field(default=None, description=f"why it failed {_ADDED}")


# -- operations: retry -------------------------------------------------------------------------
class PreservedResults(Model):
    phasesPreserved: int = Field(default=0, description="completed phases a resume restores")
    preservedPhaseNames: list[str] | None = Field(default=None, description=f"their names {_ADDED}")
    recordsProcessed: int = Field(default=0, description="records those phases processed")
    progressSaved: Percent | None = Field(
        default=None, description="their share of the phase weights, %"
    )


class RetryStarted(Model):
    originalOperationId: str = Field(description="the operation retried")
    newOperationId: str = Field(description="the retry (a new operation)")
    retryMode: RetryMode = Field(description="resume or restart")
    retryNumber: int = Field(description="its place in the retry chain")
    resumeFromPhase: str | None = Field(default=None, description="the first phase that will run")
    status: OperationStatus = Field(description="Initiated")
    estimatedDuration: str | None = Field(default=None, description="for what is left")
    estimatedCompletion: str | None = Field(default=None, description=_TIME)
    preservedResults: PreservedResults | None = Field(
        default=None, description="what a resume keeps"
    )
    resourcesAllocated: ResourcesAllocated | None = Field(
        default=None, description="what the run gets, and its estimated cost"
    )
    retryAttemptDate: str | None = Field(default=None, description=_TIME)
    trackingUrl: str | None = Field(default=None, description=f"the retry's status URL {_ADDED}")
    automatic: bool | None = Field(default=None, description=f"started by a retryPolicy {_ADDED}")


# -- webhooks ---------------------------------------------------------------------------------
class DeliveryStats(Model):
    totalDeliveries: int = Field(default=0, description="delivery attempts made")
    successfulDeliveries: int = Field(default=0, description="attempts answered 2xx")
    failedDeliveries: int = Field(default=0, description="attempts that failed")
    averageResponseTime: Number | None = Field(
        default=None, description="mean ms of the attempts that got an answer"
    )


class WebhookFiltersView(Model):
    operationTypes: list[OperationType] = Field(
        default_factory=list, description="only operations of these types (all if empty)"
    )
    priorities: list[Priority] = Field(
        default_factory=list, description="only operations of these priorities (all if empty)"
    )
    minProgressIncrement: Number = Field(
        default=0, description="send a progress event only when progress grew this many points"
    )


class WebhookRetryPolicyView(Model):
    maxRetries: int | None = Field(default=None, description="retries before a dead letter")
    retryDelay: Number | None = Field(default=None, description="seconds before the first retry")
    backoffMultiplier: Number | None = Field(
        default=None, description="each later wait this many times"
    )
    maxDelay: Number | None = Field(default=None, description="the longest wait, seconds")


class WebhookAuthenticationView(Model):
    type: str = Field(default="hmac-sha256", description="hmac-sha256")
    secretSource: str | None = Field(
        default=None,
        description="webhook (its own secret) or project (the project's signing secret)",
    )


class DeliveryAttempt(Model):
    attempt: int | None = Field(default=None, description="1 for the first attempt")
    at: str | None = Field(default=None, description=_TIME)
    success: bool | None = Field(default=None, description="answered 2xx")
    statusCode: int | None = Field(default=None, description="the receiver's HTTP status")
    responseTimeMs: Number | None = Field(default=None, description="ms until the answer")
    error: str | None = Field(default=None, description="why it failed")
    address: str | None = Field(default=None, description="the IP address connected to")


class LastDelivery(Model):
    deliveryId: str | None = Field(default=None, description="dlv-<uuid>")
    eventType: str | None = Field(default=None, description="the event's type")
    attemptedAt: str | None = Field(default=None, description=_TIME)
    success: bool | None = Field(default=None, description="answered 2xx")
    statusCode: int | None = Field(default=None, description="the receiver's HTTP status")
    responseTimeMs: Number | None = Field(default=None, description="ms until the answer")
    error: str | None = Field(default=None, description="why it failed")


class Webhook(Model):
    webhookId: str = Field(description="wh-<uuid>")
    webhookUrl: str = Field(description="where deliveries go")
    webhookName: str = Field(description="as given")
    status: WebhookStatus = Field(description="Active or Disabled")
    eventsSubscribed: list[str] = Field(default_factory=list, description="event types it gets")
    filters: WebhookFiltersView = Field(
        default_factory=lambda: WebhookFiltersView(),
        description="operationTypes, priorities, minProgressIncrement",
    )
    createdAt: str | None = Field(default=None, description=_TIME)
    lastDelivery: LastDelivery | None = Field(
        default=None, description="the last attempt: time, status code, latency, error"
    )
    deliveryStats: DeliveryStats | None = Field(
        default=None, description="counts over all attempts"
    )
    retryPolicy: WebhookRetryPolicyView | None = Field(
        default=None, description=f"retries of a failed delivery {_ADDED}"
    )
    headerNames: list[str] | None = Field(
        default=None, description=f"names of the extra headers (values are not shown) {_ADDED}"
    )
    authentication: WebhookAuthenticationView | None = Field(
        default=None, description=f"how deliveries are signed {_ADDED}"
    )
    disabledReason: str | None = Field(default=None, description=f"why it was disabled {_ADDED}")
    consecutiveFailures: int | None = Field(
        default=None, description=f"deliveries failed in a row {_ADDED}"
    )


class WebhookList(Page):
    webhooks: list[Webhook] = Field(description="this page")


class Delivery(Model):
    deliveryId: str = Field(description="dlv-<uuid>")
    eventId: str = Field(description="the event's id, also its webhook-id header")
    eventType: str = Field(description="the event's type")
    operationId: str | None = Field(default=None, description="the operation the event is about")
    kind: DeliveryKind = Field(description="webhook, callback, email or slack")
    webhookId: str | None = Field(default=None, description="the webhook, for kind webhook")
    callback: str | None = Field(
        default=None, description="onProgress, onCompletion or onError ..."
    )
    target: str | None = Field(default=None, description="URL, address or (Slack) host it goes to")
    status: DeliveryStatus = Field(
        description="Pending, Retrying, Delivered, Failed (dead letter) or Cancelled"
    )
    attemptCount: int = Field(default=0, description="attempts made")
    attempts: list[DeliveryAttempt] = Field(
        default_factory=list, description="each attempt: time, status code, ms, error, address"
    )
    nextAttemptAt: str | None = Field(default=None, description="when it is tried again")
    lastError: str | None = Field(default=None, description="why the last attempt failed")
    createdAt: str | None = Field(default=None, description=_TIME)
    finishedAt: str | None = Field(default=None, description=_TIME)


class DeliveryList(Page):
    deliveries: list[Delivery] = Field(description="this page, newest first")


class SigningSecret(Model):
    secret: str = Field(description="the project's signing secret (whsec_<base64>)")
    createdAt: str | None = Field(default=None, description=_TIME)
    previousSecretValidUntil: str | None = Field(
        default=None, description="after a rotation, until when the previous secret still signs"
    )
    algorithm: str = Field(default="hmac-sha256", description="hmac-sha256 (Standard Webhooks)")


class NotificationSettings(Model):
    slackWebhookConfigured: bool = Field(description="a Slack incoming webhook is set")
    slackWebhookHost: str | None = Field(
        default=None, description="its host (the URL is a credential and is not shown)"
    )
    ownerEmails: list[str] = Field(
        default_factory=list, description="people told when a webhook gets disabled"
    )


# -- batches ----------------------------------------------------------------------------------
class BatchMember(Model):
    operationKey: str = Field(description="its key in the batch")
    operationId: str = Field(description="its latest attempt")
    operationType: OperationType | None = Field(default=None, description=_TYPE)
    operationName: str | None = Field(default=None, description="as given")
    status: str = Field(description=_STATUS + ", or Retrying")
    dependencies: list[str] = Field(default_factory=list, description="keys it waits for")
    progress: Number | None = Field(default=None, description="% done")
    estimatedDuration: str | None = Field(
        default=None, description="for an operation that starts now"
    )
    estimatedStartTime: str | None = Field(default=None, description="for one that waits")
    trackingUrl: str | None = Field(default=None, description="its status URL")
    originalOperationId: str | None = Field(
        default=None, description=f"the first attempt, when it was retried {_ADDED}"
    )
    reason: str | None = Field(default=None, description=f"why it was cancelled {_ADDED}")
    error: OperationError | None = Field(default=None, description=f"why it failed {_ADDED}")


class Batch(Model):
    batchId: str = Field(description="batch-<uuid>")
    batchName: str = Field(description="as given")
    batchDescription: str | None = Field(default=None, description="as given")
    status: BatchStatus = Field(description="Initiated, Running, Completed, Failed or Cancelled")
    operations: list[BatchMember] = Field(
        default_factory=list, description="each operation's state"
    )
    totalOperations: int = Field(default=0, description="operations in the batch")
    operationCounts: dict[str, int] | None = Field(
        default=None, description=f"operations per status {_ADDED}"
    )
    failurePolicy: dict[str, Any] | None = Field(default=None, description="as given")
    createdAt: str | None = Field(default=None, description=_TIME)
    batchStartTime: str | None = Field(default=None, description=_TIME)
    batchEndTime: str | None = Field(default=None, description=_TIME)
    trackingUrl: str | None = Field(default=None, description="this view's URL")

    @property
    def finished(self) -> bool:
        return self.status in BATCH_TERMINAL_STATUSES


class BatchSummary(Model):
    batchId: str = Field(description="batch-<uuid>")
    batchName: str = Field(description="as given")
    status: BatchStatus = Field(description="Initiated, Running, Completed, Failed or Cancelled")
    createdAt: str | None = Field(default=None, description=_TIME)
    batchEndTime: str | None = Field(default=None, description=_TIME)
    trackingUrl: str | None = Field(default=None, description="the batch's URL")


class BatchList(Page):
    batches: list[BatchSummary] = Field(description="this page, newest first")


class BatchStarted(Model):
    """The 202 answer of POST /async/batch."""

    batchId: str = Field(description="batch-<uuid>")
    batchName: str = Field(description="as given")
    status: BatchStatus = Field(description="Initiated")
    operations: list[BatchMember] = Field(
        default_factory=list,
        description="key, id, status, dependencies, estimatedDuration or estimatedStartTime",
    )
    totalOperations: int = Field(default=0, description="operations in the batch")
    estimatedBatchDuration: str | None = Field(
        default=None, description="along the longest dependency chain"
    )
    estimatedBatchCompletion: str | None = Field(default=None, description=_TIME)
    batchStartTime: str | None = Field(default=None, description=_TIME)
    trackingUrl: str | None = Field(default=None, description="GET it for every operation's status")


# -- events -----------------------------------------------------------------------------------
class Event(Model):
    """One event: of the live stream, or the body of a webhook delivery."""

    id: str = Field(description="the event's id (also the webhook-id header)")
    type: str = Field(description="the event type, e.g. operation.progress")
    timestamp: str = Field(description=_TIME)
    sequence: int | None = Field(default=None, description="numbers an operation's events from 1")
    operationId: str | None = Field(default=None, description="the operation it is about")
    data: dict[str, Any] = Field(
        default_factory=dict, description="the operation's status (or the batch) at that moment"
    )

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS.values()


# -- health -----------------------------------------------------------------------------------
class EventFeedStats(Model):
    streams: int = Field(description="open event streams")
    polls: int = Field(description="store reads of the feed so far")
    eventsSent: int = Field(description="events sent to streams")


class Health(Model):
    status: str = Field(description="ok, or degraded (then the answer is 503)")
    checks: dict[str, str] = Field(description="api, store, prefect: ok or what failed")
    eventFeed: EventFeedStats | None = Field(
        default=None, description="the shared event feed's counters"
    )
