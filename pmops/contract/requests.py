"""Request models mirroring the contract (camelCase, the seed's enum values)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic import Strict as StrictType

from pmops.contract.enums import (
    SUBSCRIBABLE_EVENTS,
    EventType,
    OperationType,
    PhaseName,
    Priority,
    RetryMode,
    WebhookStatus,
)
from pmops.contract.enums import OperationStatus as Status
from pmops.contract.types import integral

__all__ = [  # the enums are re-exported under the names this module had
    "PRIORITY_RANK",
    "EventType",
    "OperationType",
    "PhaseName",
    "Priority",
    "Status",
]

PRIORITY_RANK: dict[str, int] = {p.value: p.rank for p in Priority}


# The query and header parameters the OpenAPI document can state precisely (found by
# tests/stack/test_fuzz_openapi.py): a phase name; an ISO 8601 time, where pydantic alone would also
# read "0.5" as seconds since 1970; a Last-Event-ID the store's 64-bit sequence numbers can hold.
def _iso8601(value: object) -> object:
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("not an ISO 8601 date or date-time")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso8601)]
# a phase by its English name or the seed's Japanese one (PhaseName parses both)
_PHASE_NAMES = sorted({*PhaseName, *(p.ja for p in PhaseName)})
PHASE_NAME_PATTERN = f"^({'|'.join(_PHASE_NAMES)})$"
LAST_EVENT_ID_PATTERN = r"^[0-9]{1,18}$"

# list pages: the offset (page - 1) x pageSize must stay a 64-bit integer in the store
MAX_PAGE = 10_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# JSON's types as the OpenAPI document states them: pydantic's lax mode would take `false` or
# "5" for a number and 1 or "yes" for a boolean (found by tests/stack/test_fuzz_openapi.py)
Int = Annotated[int, StrictType()]
# an integral float is stored and echoed as an integer (retryDelay: 60, not 60.0)
Float = Annotated[float, StrictType(), PlainSerializer(integral, when_used="json")]
Bool = Annotated[bool, StrictType()]


class Callbacks(Strict):
    onProgress: HttpUrl | None = Field(
        default=None, description="receives operation.started, .progress and .phase.completed"
    )
    onCompletion: HttpUrl | None = Field(
        default=None, description="receives operation.completed and .cancelled"
    )
    onError: HttpUrl | None = Field(
        default=None, description="receives operation.failed and .timeout"
    )


class Slack(Strict):
    channel: str = Field(min_length=1, max_length=200, description="e.g. #process-mining")
    mentionUsers: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Slack member ids (U…) are mentioned; @here, @channel work too",
    )


def _email_address(value: str) -> str:
    """One mailbox (local@domain); what email.utils would accept as a header line only."""
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(value) > 254
        or any(c.isspace() or c in '<>,;:"()[]\\' for c in value)
    ):
        raise ValueError("not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


class Notifications(Strict):
    email: list[EmailAddress] = Field(
        default_factory=list,
        max_length=50,
        description="addresses emailed when the operation completes, fails, times out or is "
        "cancelled",
    )
    slack: Slack | None = Field(
        default=None,
        description="channel and people to mention, through the project's Slack incoming webhook",
    )


class RetryPolicy(Strict):
    maxRetries: Int = Field(
        default=0, ge=0, le=20, description="how many retries at most in the chain"
    )
    retryDelay: Float = Field(
        default=60, ge=0, le=86_400, description="seconds before the first retry"
    )
    backoffMultiplier: Float = Field(
        default=2.0, ge=1.0, le=10.0, description="each later retry waits this many times longer"
    )


class OperationCreate(Strict):
    operationType: OperationType = Field(
        description="ProcessMiningAnalysis, DataEnrichment or ReportGeneration"
    )
    operationName: str = Field(
        min_length=1, max_length=500, description="a name people recognise the operation by"
    )
    operationDescription: str | None = Field(
        default=None, max_length=5000, description="free text kept with the operation"
    )
    priority: Priority = Field(
        default=Priority.Normal,
        description="Low, Normal (default), High or Critical: higher starts first when workers "
        "are busy",
    )
    # validated per operation type by the engine's own parameter parser (names the field)
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="per operation type: datasetId (required unless a ReportGeneration names "
        "sourceOperationId), analysisType, timeWindow, algorithm, algorithmSettings, "
        "outputOptions, cleaningRules, reportType, exportFormats, timestampFormat, timezone, "
        "removeDuplicates, reportLanguage (see the contract)",
    )
    callbacks: Callbacks | None = Field(
        default=None,
        description="URLs told about this operation: onProgress, onCompletion, onError",
    )
    notifications: Notifications | None = Field(
        default=None, description="email addresses and a Slack channel told when it ends"
    )
    timeout: Int = Field(
        default=3600,
        ge=1,
        le=7 * 86_400,
        description="seconds from start until the run is stopped as Timeout (default 3600)",
    )
    retryPolicy: RetryPolicy | None = Field(
        default=None, description="automatic resume retries of a failed run"
    )


class CancelRequest(Strict):
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="why; shown in the status and the cancellation answer",
    )
    preservePartialResults: Bool = Field(
        default=True, description="keep completed phases' artifacts downloadable (default true)"
    )
    forceTermination: Bool = Field(
        default=False, description="stop now (true) or at the next checkpoint (false, default)"
    )
    notifyCallbacks: Bool = Field(
        default=True, description="tell the callbacks, email and Slack (default true)"
    )


# -- webhooks ------------------------------------------------------------------------------------
def _subscribable(value: EventType) -> EventType:
    if not value.subscribable:
        raise ValueError(f"{value.value} is not an event a webhook can subscribe to")
    return value


# an event type a webhook may subscribe to (webhook.disabled is told to the project's owners)
SubscribableEvent = Annotated[
    EventType,
    AfterValidator(_subscribable),
    WithJsonSchema({"type": "string", "enum": [e.value for e in SUBSCRIBABLE_EVENTS]}),
]


class WebhookFilters(Strict):
    operationTypes: list[OperationType] = Field(
        default_factory=list, description="only operations of these types (all if empty)"
    )
    priorities: list[Priority] = Field(
        default_factory=list, description="only operations of these priorities (all if empty)"
    )
    minProgressIncrement: Float = Field(
        default=0,
        ge=0,
        le=100,
        description="send a progress event only when progress grew this many points",
    )


class WebhookAuthentication(Strict):
    type: Literal["hmac-sha256"] = Field(default="hmac-sha256", description="hmac-sha256")
    secret: str = Field(
        min_length=8,
        max_length=512,
        description="a whsec_<base64> secret or any string of 8+ characters (its UTF-8 bytes)",
    )


class WebhookRetryPolicy(Strict):
    maxRetries: Int = Field(
        default=5,
        ge=0,
        le=20,
        description="retries after the first attempt before the delivery is a dead letter",
    )
    retryDelay: Float = Field(
        default=60, ge=0.1, le=86_400, description="seconds before the first retry"
    )
    backoffMultiplier: Float = Field(
        default=2.0, ge=1.0, le=10.0, description="each later retry waits this many times longer"
    )
    maxDelay: Float = Field(
        default=3600,
        ge=0.1,
        le=7 * 86_400,
        description="the longest wait between attempts, seconds",
    )


class WebhookCreate(Strict):
    webhookUrl: str = Field(
        min_length=1,
        max_length=2000,
        description="http(s) URL of a public host; private and metadata addresses are refused",
    )
    webhookName: str = Field(min_length=1, max_length=500, description="a name for people")
    events: list[SubscribableEvent] = Field(
        min_length=1, max_length=20, description="event types to receive"
    )
    filters: WebhookFilters = Field(
        default_factory=WebhookFilters,
        description="which operations: operationTypes, priorities, minProgressIncrement",
    )
    authentication: WebhookAuthentication | None = Field(
        default=None,
        description="type hmac-sha256 and the secret that signs deliveries (never shown again); "
        "without it the project's signing secret signs",
    )
    retryPolicy: WebhookRetryPolicy = Field(
        default_factory=WebhookRetryPolicy, description="retries of a failed delivery"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=20, description="extra headers sent with every delivery"
    )


class WebhookUpdate(Strict):
    status: WebhookStatus = Field(description="Active (re-enable) or Disabled (pause)")


class NotificationSettingsUpdate(Strict):
    # an incoming-webhook URL (https://hooks.slack.com/services/...); "" removes it
    slackWebhookUrl: str | None = Field(
        default=None,
        max_length=2000,
        description="the project's Slack incoming-webhook URL; empty removes it",
    )
    ownerEmails: list[EmailAddress] | None = Field(
        default=None,
        max_length=50,
        description="people told when one of the project's webhooks gets disabled",
    )


# -- retry ---------------------------------------------------------------------------------------
class ResourceAllocation(Strict):
    cpuUnits: Float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="accepted; the server allocates its configured resources",
    )
    memoryGB: Float | None = Field(
        default=None,
        gt=0,
        le=4096,
        description="accepted; the server allocates its configured resources",
    )
    priority: Priority | None = Field(default=None, description="the retry's priority")


class RetryCreate(Strict):
    retryMode: RetryMode = Field(
        default=RetryMode.resume,
        description="resume (reuse completed phases whose inputs did not change) or restart",
    )
    retryReason: str | None = Field(
        default=None, max_length=2000, description="why; kept with the retry"
    )
    modifyParameters: Bool = Field(
        default=False, description="informative: updatedParameters are applied whenever given"
    )
    # merged into the original parameters (objects key by key; null removes a key);
    # `resourceAllocation` inside it sets the priority
    updatedParameters: dict[str, Any] = Field(
        default_factory=dict,
        description="merged into the original parameters (null removes a key); "
        "resourceAllocation.priority sets the priority",
    )
    retryPolicy: RetryPolicy | None = Field(
        default=None, description="automatic retries of this retry"
    )
    newTimeout: Int | None = Field(
        default=None, ge=1, le=7 * 86_400, description="seconds, replacing the original timeout"
    )
    preserveOriginalResults: Bool = Field(
        default=True, description="the original is always kept; accepted for the seed's clients"
    )


# -- batch ---------------------------------------------------------------------------------------
class BatchOperation(Strict):
    operationName: str = Field(
        min_length=1, max_length=500, description="a name people recognise the operation by"
    )
    operationType: OperationType = Field(
        description="ProcessMiningAnalysis, DataEnrichment or ReportGeneration"
    )
    priority: Priority = Field(default=Priority.Normal, description="Low, Normal, High or Critical")
    operationKey: str = Field(
        min_length=1, max_length=100, description="unique in the batch; what dependencies name"
    )
    dependencies: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="keys of operations that must complete first",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="as for a single start; without datasetId the input comes from a dependency "
        "(the enriched dataset, or for a report the analysis)",
    )
    # beside the seed's fields, what a single start accepts
    operationDescription: str | None = Field(default=None, max_length=5000, description="free text")
    callbacks: Callbacks | None = Field(default=None, description="as for a single start")
    notifications: Notifications | None = Field(default=None, description="as for a single start")
    timeout: Int = Field(
        default=3600, ge=1, le=7 * 86_400, description="seconds from when it may start"
    )
    retryPolicy: RetryPolicy | None = Field(
        default=None, description="used when the batch's failurePolicy.retryFailedOperations is on"
    )


class BatchCallbacks(Strict):
    onBatchStart: HttpUrl | None = Field(default=None, description="receives batch.started")
    onOperationComplete: HttpUrl | None = Field(
        default=None, description="receives batch.operation.completed"
    )
    onBatchComplete: HttpUrl | None = Field(default=None, description="receives batch.completed")


class FailurePolicy(Strict):
    stopOnFirstFailure: Bool = Field(
        default=False, description="cancel everything unfinished at the first failure"
    )
    continueIndependentOperations: Bool = Field(
        default=True,
        description="let branches that do not depend on a failure finish (default true)",
    )
    retryFailedOperations: Bool = Field(
        default=False, description="retry failed operations (their retryPolicy, else once) first"
    )


class BatchCreate(Strict):
    batchName: str = Field(min_length=1, max_length=500, description="a name for people")
    batchDescription: str | None = Field(default=None, max_length=5000, description="free text")
    operations: list[BatchOperation] = Field(
        min_length=1,
        max_length=100,
        description="the operations, each with a key unique in the batch and the keys it depends "
        "on",
    )
    batchCallbacks: BatchCallbacks | None = Field(
        default=None,
        description="URLs told when the batch starts, each operation ends, the batch ends",
    )
    failurePolicy: FailurePolicy = Field(
        default_factory=FailurePolicy, description="what a failure does to the rest"
    )
