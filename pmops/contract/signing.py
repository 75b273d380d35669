"""Signatures on every delivery, two ways (the contract's "Webhook and callback deliveries").

Standard Webhooks (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one `v1,` entry per
valid secret (during a rotation both the new and the previous secret sign). And GitHub's style,
`X-Signature-256: sha256=<hex HMAC-SHA256 of the body>` with the current secret.

The key is the secret's bytes: base64-decoded after the `whsec_` prefix when it has one (the
Standard Webhooks convention, and how our generated secrets look), its UTF-8 bytes otherwise
(what the seed's "your-webhook-secret-key" style secrets mean).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def key_bytes(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        return base64.b64decode(secret[len(PREFIX) :] + "==")
    return secret.encode()


def signature_headers(
    message_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]
) -> dict[str, str]:
    """Headers signing `body`; secrets_[0] is the current secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    keys = [key_bytes(s) for s in secrets_]
    standard = " ".join(
        "v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for k in keys
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard,
        "X-Signature-256": "sha256=" + hmac.new(keys[0], body, hashlib.sha256).hexdigest(),
    }


def verify(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """How a receiver checks the Standard Webhooks signature (docs; the SDK's verify_webhook)."""
    lower = {k.lower(): v for k, v in headers.items()}
    signed = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(
        hmac.new(key_bytes(secret), signed, hashlib.sha256).digest()
    ).decode()
    return any(
        hmac.compare_digest(part.partition(",")[2], expected)
        for part in lower["webhook-signature"].split()
        if part.startswith("v1,")
    )
