"""A project's signing secret (read once, then rotate) and its notification settings.

The signing secret signs callbacks and webhooks registered without a secret of their own. Its
owner can read it once (GET .../async/signing-secret, or `pmops project secret`); after that only a
rotation shows a secret again. After a rotation the previous secret keeps signing beside the new
one for `PMOPS_SECRET_ROTATION_GRACE_SECONDS`, so receivers can switch without losing events.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from pmops.contract.signing import new_secret
from pmops.service.views import iso
from pmops.settings import Settings
from pmops.store.engine import transaction, utc_now
from pmops.store.projects import ensure_project, update_project


class AlreadyRevealed(Exception):
    """The secret was read before: rotate to see a new one."""


def _secret_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "secret": row["signing_secret"],
        "createdAt": iso(row["secret_created_at"]),
        "previousSecretValidUntil": iso(row.get("previous_valid_until")),
        "algorithm": "hmac-sha256",
    }


def reveal_secret(engine: Engine, tenant_id: str, project_id: str) -> dict[str, Any]:
    """The secret, the first time it is asked for; AlreadyRevealed after."""
    with transaction(engine) as conn:
        row = ensure_project(conn, tenant_id, project_id)
        if row["secret_revealed"]:
            raise AlreadyRevealed
        update_project(conn, tenant_id, project_id, secret_revealed=True)
    return _secret_view(row)


def rotate_secret(
    engine: Engine, settings: Settings, tenant_id: str, project_id: str
) -> dict[str, Any]:
    """A new secret, shown once; the previous one keeps signing during the grace period."""
    now = utc_now()
    with transaction(engine) as conn:
        old = ensure_project(conn, tenant_id, project_id)
        values = {
            "signing_secret": new_secret(),
            "secret_created_at": now,
            "secret_revealed": True,
            "previous_secret": old["signing_secret"],
            "previous_valid_until": now + timedelta(seconds=settings.secret_rotation_grace_seconds),
            "updated_at": now,
        }
        update_project(conn, tenant_id, project_id, **values)
    return _secret_view({**old, **values})


def notification_settings(engine: Engine, tenant_id: str, project_id: str) -> dict[str, Any]:
    with transaction(engine) as conn:
        row = ensure_project(conn, tenant_id, project_id)
    return _settings_view(row)


def update_notification_settings(
    engine: Engine, tenant_id: str, project_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """changes: slack_webhook_url and/or owner_emails (already validated)."""
    with transaction(engine) as conn:
        row = ensure_project(conn, tenant_id, project_id)
        update_project(conn, tenant_id, project_id, **changes, updated_at=utc_now())
    return _settings_view({**row, **changes})


def _settings_view(row: dict[str, Any]) -> dict[str, Any]:
    url = row.get("slack_webhook_url")
    return {
        # the URL is a credential (anyone holding it can post): only its origin is shown
        "slackWebhookConfigured": bool(url),
        "slackWebhookHost": url.split("/")[2] if url and "://" in url else None,
        "ownerEmails": row.get("owner_emails") or [],
    }
