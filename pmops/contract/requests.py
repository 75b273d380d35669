"""Request models mirroring the contract (camelCase, the seed's enum values)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Header, Query
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
PhaseQuery = Annotated[str | None, Query(pattern=f"^({'|'.join(_PHASE_NAMES)})$")]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")]

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
    onProgress: HttpUrl | None = None
    onCompletion: HttpUrl | None = None
    onError: HttpUrl | None = None


class Slack(Strict):
    channel: str = Field(min_length=1, max_length=200)
    mentionUsers: list[str] = Field(default_factory=list, max_length=50)


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
    email: list[EmailAddress] = Field(default_factory=list, max_length=50)
    slack: Slack | None = None


class RetryPolicy(Strict):
    maxRetries: Int = Field(default=0, ge=0, le=20)
    retryDelay: Float = Field(default=60, ge=0, le=86_400)
    backoffMultiplier: Float = Field(default=2.0, ge=1.0, le=10.0)


class OperationCreate(Strict):
    operationType: OperationType
    operationName: str = Field(min_length=1, max_length=500)
    operationDescription: str | None = Field(default=None, max_length=5000)
    priority: Priority = Priority.Normal
    # validated per operation type by the engine's own parameter parser (names the field)
    parameters: dict[str, Any] = Field(default_factory=dict)
    callbacks: Callbacks | None = None
    notifications: Notifications | None = None
    timeout: Int = Field(default=3600, ge=1, le=7 * 86_400)
    retryPolicy: RetryPolicy | None = None


class CancelRequest(Strict):
    reason: str | None = Field(default=None, max_length=2000)
    preservePartialResults: Bool = True
    forceTermination: Bool = False
    notifyCallbacks: Bool = True


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
    operationTypes: list[OperationType] = Field(default_factory=list)
    priorities: list[Priority] = Field(default_factory=list)
    minProgressIncrement: Float = Field(default=0, ge=0, le=100)


class WebhookAuthentication(Strict):
    type: Literal["hmac-sha256"] = "hmac-sha256"
    secret: str = Field(min_length=8, max_length=512)


class WebhookRetryPolicy(Strict):
    maxRetries: Int = Field(default=5, ge=0, le=20)
    retryDelay: Float = Field(default=60, ge=0.1, le=86_400)
    backoffMultiplier: Float = Field(default=2.0, ge=1.0, le=10.0)
    maxDelay: Float = Field(default=3600, ge=0.1, le=7 * 86_400)


class WebhookCreate(Strict):
    webhookUrl: str = Field(min_length=1, max_length=2000)
    webhookName: str = Field(min_length=1, max_length=500)
    events: list[SubscribableEvent] = Field(min_length=1, max_length=20)
    filters: WebhookFilters = Field(default_factory=WebhookFilters)
    authentication: WebhookAuthentication | None = None
    retryPolicy: WebhookRetryPolicy = Field(default_factory=WebhookRetryPolicy)
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)


class WebhookUpdate(Strict):
    status: WebhookStatus


class NotificationSettingsUpdate(Strict):
    # an incoming-webhook URL (https://hooks.slack.com/services/...); "" removes it
    slackWebhookUrl: str | None = Field(default=None, max_length=2000)
    ownerEmails: list[EmailAddress] | None = Field(default=None, max_length=50)


# -- retry ---------------------------------------------------------------------------------------
class ResourceAllocation(Strict):
    cpuUnits: Float | None = Field(default=None, gt=0, le=1024)
    memoryGB: Float | None = Field(default=None, gt=0, le=4096)
    priority: Priority | None = None


class RetryCreate(Strict):
    retryMode: RetryMode = RetryMode.resume
    retryReason: str | None = Field(default=None, max_length=2000)
    modifyParameters: Bool = False
    # merged into the original parameters (objects key by key; null removes a key);
    # `resourceAllocation` inside it sets the priority
    updatedParameters: dict[str, Any] = Field(default_factory=dict)
    retryPolicy: RetryPolicy | None = None
    newTimeout: Int | None = Field(default=None, ge=1, le=7 * 86_400)
    preserveOriginalResults: Bool = True


# -- batch ---------------------------------------------------------------------------------------
class BatchOperation(Strict):
    operationName: str = Field(min_length=1, max_length=500)
    operationType: OperationType
    priority: Priority = Priority.Normal
    operationKey: str = Field(min_length=1, max_length=100)
    dependencies: list[str] = Field(default_factory=list, max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)
    # beside the seed's fields, what a single start accepts
    operationDescription: str | None = Field(default=None, max_length=5000)
    callbacks: Callbacks | None = None
    notifications: Notifications | None = None
    timeout: Int = Field(default=3600, ge=1, le=7 * 86_400)
    retryPolicy: RetryPolicy | None = None


class BatchCallbacks(Strict):
    onBatchStart: HttpUrl | None = None
    onOperationComplete: HttpUrl | None = None
    onBatchComplete: HttpUrl | None = None


class FailurePolicy(Strict):
    stopOnFirstFailure: Bool = False
    continueIndependentOperations: Bool = True
    retryFailedOperations: Bool = False


class BatchCreate(Strict):
    batchName: str = Field(min_length=1, max_length=500)
    batchDescription: str | None = Field(default=None, max_length=5000)
    operations: list[BatchOperation] = Field(min_length=1, max_length=100)
    batchCallbacks: BatchCallbacks | None = None
    failurePolicy: FailurePolicy = Field(default_factory=FailurePolicy)
