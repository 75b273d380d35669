"""Request models mirroring the contract (camelCase, the seed's enum values)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class OperationType(StrEnum):
    ProcessMiningAnalysis = "ProcessMiningAnalysis"
    DataEnrichment = "DataEnrichment"
    ReportGeneration = "ReportGeneration"


class Priority(StrEnum):
    Low = "Low"
    Normal = "Normal"
    High = "High"
    Critical = "Critical"


PRIORITY_RANK = {"Low": 0, "Normal": 1, "High": 2, "Critical": 3}


class Status(StrEnum):
    Initiated = "Initiated"
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Cancelled = "Cancelled"
    Timeout = "Timeout"
    Pending = "Pending"


# list pages: the offset (page - 1) x pageSize must stay a 64-bit integer in the store
MAX_PAGE = 10_000_000

TERMINAL = {"Completed", "Failed", "Cancelled", "Timeout"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Callbacks(Strict):
    onProgress: HttpUrl | None = None
    onCompletion: HttpUrl | None = None
    onError: HttpUrl | None = None


class Slack(Strict):
    channel: str = Field(min_length=1, max_length=200)
    mentionUsers: list[str] = Field(default_factory=list, max_length=50)


class Notifications(Strict):
    email: list[str] = Field(default_factory=list, max_length=50)
    slack: Slack | None = None


class RetryPolicy(Strict):
    maxRetries: int = Field(default=0, ge=0, le=20)
    retryDelay: float = Field(default=60, ge=0, le=86_400)
    backoffMultiplier: float = Field(default=2.0, ge=1.0, le=10.0)


class OperationCreate(Strict):
    operationType: OperationType
    operationName: str = Field(min_length=1, max_length=500)
    operationDescription: str | None = Field(default=None, max_length=5000)
    priority: Priority = Priority.Normal
    # validated per operation type by the engine's own parameter parser (names the field)
    parameters: dict[str, Any] = Field(default_factory=dict)
    callbacks: Callbacks | None = None
    notifications: Notifications | None = None
    timeout: int = Field(default=3600, ge=1, le=7 * 86_400)
    retryPolicy: RetryPolicy | None = None


class CancelRequest(Strict):
    reason: str | None = Field(default=None, max_length=2000)
    preservePartialResults: bool = True
    forceTermination: bool = False
    notifyCallbacks: bool = True
