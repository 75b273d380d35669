"""The pmops Python SDK: typed sync and async clients for every endpoint, the live event stream,
`wait()`, artifact downloads, webhook verification, and typed errors."""

from pmops.sdk import models
from pmops.sdk.client import AsyncClient, Client
from pmops.sdk.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PmopsError,
    ServerError,
    Unauthorized,
    ValidationFailed,
    WebhookVerificationError,
)
from pmops.sdk.webhooks import verify_webhook

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "NotFound",
    "PmopsError",
    "ServerError",
    "Unauthorized",
    "ValidationFailed",
    "WebhookVerificationError",
    "models",
    "verify_webhook",
]
