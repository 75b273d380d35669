"""Webhooks, delivery logs, redelivery, and a project's signing secret and notification settings.

Route handlers call these, having checked every URL that will receive deliveries (webhook,
callback, Slack) with api/netcheck.py (`pmops.delivery.netguard`; again at send time by the
deliverer).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.engine import Connection, Engine

from pmops.contract.headers import TOKEN, webhook_header_error
from pmops.contract.requests import (
    NotificationSettingsUpdate,
    WebhookCreate,
    WebhookUpdate,
)
from pmops.service import projects
from pmops.service.errors import Problem
from pmops.service.limits import check_webhooks
from pmops.service.operations import _idempotent_replay, _remember, request_hash
from pmops.service.scope import Scope
from pmops.service.views import iso
from pmops.settings import Settings
from pmops.store import webhooks as hook_store
from pmops.store.deliveries import (
    NO_SLACK,
    OPEN,
    close_open_deliveries,
    list_deliveries,
    read_delivery,
    redeliver_delivery,
)
from pmops.store.engine import transaction, utc_now

CREATE_SCOPE = "POST /async/webhooks"


# -- webhooks ---------------------------------------------------------------------------------
def _check_headers(headers: dict[str, str]) -> None:
    """The sender's own rule (pmops.contract.headers): refused now, never at each delivery."""
    for name, value in headers.items():
        error = webhook_header_error(name, value)
        if error is not None:
            shown = name if TOKEN.fullmatch(name) else repr(name)[:80]
            raise Problem(
                422,
                f"header {shown}: {error}",
                errors=[_err(f"headers.{name}", error)],
            )


def _err(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def create_webhook(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    body: WebhookCreate,
    idempotency_key: str | None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    payload = body.model_dump(mode="json")
    digest = request_hash(payload)
    if idempotency_key:
        replay = _idempotent_replay(engine, scope, CREATE_SCOPE, idempotency_key, digest)
        if replay is not None:
            return replay
    _check_headers(body.headers)
    if body.retryPolicy.maxDelay < body.retryPolicy.retryDelay:
        raise Problem(
            422,
            "retryPolicy.maxDelay must be at least retryPolicy.retryDelay",
            errors=[_err("retryPolicy.maxDelay", "below retryDelay")],
        )
    row = {
        "webhook_id": f"wh-{uuid.uuid4()}",
        "tenant_id": scope.tenant_id,
        "project_id": scope.project_id,
        "url": body.webhookUrl,
        "name": body.webhookName,
        "events": list(dict.fromkeys(e.value for e in body.events)),
        "filters": payload["filters"],
        "secret": body.authentication.secret if body.authentication else None,
        "retry_policy": payload["retryPolicy"],
        "headers": body.headers,
        "status": "Active",
        "disabled_reason": None,
        "created_at": utc_now(),
        "total_deliveries": 0,
        "successful_deliveries": 0,
        "failed_deliveries": 0,
        "response_ms_total": 0.0,
        "responses": 0,
        "last_delivery": None,
        "consecutive_failures": 0,
        "failing_since": None,
    }
    view = webhook_view(row)
    location = f"/api/{scope.tenant_id}/{scope.project_id}/async/webhooks/{row['webhook_id']}"
    headers = {"Location": location}
    with transaction(engine) as conn:
        check_webhooks(conn, settings, scope)
        hook_store.insert_webhook(conn, row)
        if idempotency_key:
            _remember(conn, scope, CREATE_SCOPE, idempotency_key, digest, 201, view, headers)
    return 201, view, headers


def webhook_view(row: dict[str, Any]) -> dict[str, Any]:
    answered = row["responses"]
    return {
        "webhookId": row["webhook_id"],
        "webhookUrl": row["url"],
        "webhookName": row["name"],
        "status": row["status"],
        "eventsSubscribed": row["events"],
        "filters": row["filters"],
        "createdAt": iso(row["created_at"]),
        "lastDelivery": row["last_delivery"],
        "deliveryStats": {
            # attempts: each try of each event counts once
            "totalDeliveries": row["total_deliveries"],
            "successfulDeliveries": row["successful_deliveries"],
            "failedDeliveries": row["failed_deliveries"],
            # milliseconds, over the attempts that got an answer
            "averageResponseTime": (
                round(row["response_ms_total"] / answered, 1) if answered else None
            ),
        },
        "retryPolicy": row["retry_policy"],
        # values may be credentials: only the names are shown
        "headerNames": sorted(row["headers"] or {}),
        "authentication": {
            "type": "hmac-sha256",
            "secretSource": "webhook" if row["secret"] else "project",
        },
        "disabledReason": row["disabled_reason"],
        "consecutiveFailures": row["consecutive_failures"],
    }


def get_webhook_or_404(conn: Connection, scope: Scope, webhook_id: str) -> dict[str, Any]:
    row = hook_store.read_webhook(conn, scope.tenant_id, scope.project_id, webhook_id)
    if row is None:
        raise Problem(404, f"webhook {webhook_id} not found")
    return row


def read_webhook(engine: Engine, scope: Scope, webhook_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return webhook_view(get_webhook_or_404(conn, scope, webhook_id))


def list_webhooks(engine: Engine, scope: Scope, page: int, page_size: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = hook_store.list_webhooks(
            conn, scope.tenant_id, scope.project_id, (page - 1) * page_size, page_size + 1
        )
    return {
        "webhooks": [webhook_view(r) for r in rows[:page_size]],
        "page": page,
        "pageSize": page_size,
        "hasNextPage": len(rows) > page_size,
    }


def delete_webhook(engine: Engine, scope: Scope, webhook_id: str) -> None:
    """Gone at once: nothing more is sent to it; its open deliveries end Cancelled."""
    with transaction(engine) as conn:
        get_webhook_or_404(conn, scope, webhook_id)
        hook_store.delete_webhook(conn, webhook_id)
        close_open_deliveries(conn, "Cancelled", "the webhook was deleted", webhook_id=webhook_id)


def update_webhook(
    engine: Engine, scope: Scope, webhook_id: str, body: WebhookUpdate
) -> dict[str, Any]:
    with transaction(engine) as conn:
        row = get_webhook_or_404(conn, scope, webhook_id)
        if body.status == row["status"]:
            return webhook_view(row)
        if body.status == "Active":
            values: dict[str, Any] = {
                "status": "Active",
                "disabled_reason": None,
                "consecutive_failures": 0,
                "failing_since": None,
            }
        else:
            values = {
                "status": "Disabled",
                "disabled_reason": f"disabled by {scope.principal.name}",
            }
            close_open_deliveries(conn, "Failed", values["disabled_reason"], webhook_id=webhook_id)
        hook_store.update_webhook(conn, webhook_id, **values)
    return webhook_view({**row, **values})


# -- delivery logs ----------------------------------------------------------------------------
def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    target = row["target"]
    if row["kind"] == "slack" and "://" in target:
        target = target.split("/")[2]  # the incoming-webhook URL is a credential
    attempts = row["attempts"] or []
    return {
        "deliveryId": row["delivery_id"],
        "eventId": row["message_id"],
        "eventType": row["event_type"],
        "operationId": row["operation_id"],
        "kind": row["kind"],
        "webhookId": row["webhook_id"],
        "callback": row["callback"],
        "target": target,
        "status": row["status"],
        "attemptCount": row["attempt_count"],
        "attempts": attempts,
        "nextAttemptAt": iso(row["next_attempt_at"]),
        "lastError": row["last_error"],
        "createdAt": iso(row["created_at"]),
        "finishedAt": iso(row["finished_at"]),
    }


def _deliveries_page(
    conn: Connection, scope: Scope, status: str | None, page: int, page_size: int, **which: str
) -> dict[str, Any]:
    """A page of the scope's deliveries of `which` (webhook_id= or operation_id=)."""
    rows = list_deliveries(
        conn,
        scope.tenant_id,
        scope.project_id,
        status=status,
        offset=(page - 1) * page_size,
        limit=page_size + 1,
        **which,
    )
    return {
        "deliveries": [delivery_view(r) for r in rows[:page_size]],
        "page": page,
        "pageSize": page_size,
        "hasNextPage": len(rows) > page_size,
    }


def webhook_deliveries(
    engine: Engine, scope: Scope, webhook_id: str, status: str | None, page: int, page_size: int
) -> dict[str, Any]:
    with engine.connect() as conn:
        get_webhook_or_404(conn, scope, webhook_id)
        return _deliveries_page(conn, scope, status, page, page_size, webhook_id=webhook_id)


def operation_deliveries(
    engine: Engine, scope: Scope, operation_id: str, status: str | None, page: int, page_size: int
) -> dict[str, Any]:
    """Every delivery of the operation's events: callbacks, email, Slack and webhooks."""
    with engine.connect() as conn:
        return _deliveries_page(conn, scope, status, page, page_size, operation_id=operation_id)


def redeliver(
    engine: Engine,
    scope: Scope,
    delivery_id: str,
    *,
    webhook_id: str | None = None,
    operation_id: str | None = None,
) -> dict[str, Any]:
    """Send a delivery again (a dead letter, or one already delivered) with the same event id."""
    with transaction(engine) as conn:
        hook = get_webhook_or_404(conn, scope, webhook_id) if webhook_id else None
        row = read_delivery(
            conn,
            scope.tenant_id,
            scope.project_id,
            delivery_id,
            webhook_id=webhook_id,
            operation_id=operation_id,
        )
        if row is None:
            raise Problem(404, f"delivery {delivery_id} not found")
        if row["status"] in OPEN:
            raise Problem(409, f"delivery {delivery_id} is already waiting to be sent")
        if hook is not None and hook["status"] != "Active":
            raise Problem(
                409,
                f"webhook {webhook_id} is disabled ({hook['disabled_reason']}); "
                'PATCH it with {"status": "Active"} first',
            )
        if row["kind"] == "slack" and not row["target"]:
            raise Problem(409, NO_SLACK)
        redeliver_delivery(conn, delivery_id, utc_now())
        fresh = read_delivery(conn, scope.tenant_id, scope.project_id, delivery_id)
    assert fresh is not None
    return delivery_view(fresh)


# -- the project's secret and notification settings --------------------------------------------
def reveal_secret(engine: Engine, scope: Scope) -> dict[str, Any]:
    try:
        return projects.reveal_secret(engine, scope.tenant_id, scope.project_id)
    except projects.AlreadyRevealed:
        raise Problem(
            409,
            "this project's signing secret was already shown once; "
            "POST .../async/signing-secret/rotate makes a new one",
        ) from None


def rotate_secret(engine: Engine, settings: Settings, scope: Scope) -> dict[str, Any]:
    return projects.rotate_secret(engine, settings, scope.tenant_id, scope.project_id)


def update_notification_settings(
    engine: Engine, settings: Settings, scope: Scope, body: NotificationSettingsUpdate
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if body.slackWebhookUrl is not None:
        url = body.slackWebhookUrl.strip()
        changes["slack_webhook_url"] = url or None  # checked by the route (api/netcheck.py)
    if body.ownerEmails is not None:
        changes["owner_emails"] = list(body.ownerEmails)
    return projects.update_notification_settings(engine, scope.tenant_id, scope.project_id, changes)
