"""Verifying a delivery on the receiving side (Standard Webhooks, as pmops signs them)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pmops.contract.responses import Event
from pmops.contract.signing import verify
from pmops.sdk.errors import WebhookVerificationError

TOLERANCE_SECONDS = 300


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    tolerance: float = TOLERANCE_SECONDS,
) -> Event:
    """The delivered event if its signature is valid and its timestamp recent; else
    WebhookVerificationError. `secret`: the webhook's own, or the project's signing secret."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        stamp = int(lower["webhook-timestamp"])
        ok = verify(lower, body, secret)
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError(f"missing or malformed signature headers: {exc}") from None
    if abs(time.time() - stamp) > tolerance:
        raise WebhookVerificationError("the webhook-timestamp is too old or in the future")
    if not ok:
        raise WebhookVerificationError("no webhook-signature matches the secret")
    return Event.model_validate_json(body)
