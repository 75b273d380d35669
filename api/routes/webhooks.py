"""Routes of endpoint 6 (webhooks), delivery logs, and the project's delivery settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from api import netcheck
from api.deps import EngineDep, ScopeDep, SettingsDep
from api.routes.answers import typed
from pmops.contract.enums import DeliveryStatus
from pmops.contract.requests import (
    MAX_PAGE,
    NotificationSettingsUpdate,
    WebhookCreate,
    WebhookUpdate,
)
from pmops.contract.responses import (
    Delivery,
    DeliveryList,
    NotificationSettings,
    SigningSecret,
    Webhook,
    WebhookList,
)
from pmops.service import operations as ops
from pmops.service import projects
from pmops.service import webhooks as hooks

router = APIRouter(prefix="/api/{tenantId}/{projectId}/async", tags=["webhooks"])
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=100)]


@router.post("/webhooks", status_code=201, response_model=Webhook)
def create_webhook(
    body: WebhookCreate,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    netcheck.check_url(settings, body.webhookUrl, "webhookUrl")
    status, view, headers = hooks.create_webhook(engine, settings, scope, body, idempotency_key)
    return typed(Webhook, view, status, headers)


@router.get("/webhooks", response_model=WebhookList)
def list_webhooks(
    scope: ScopeDep, engine: EngineDep, page: Page = 1, pageSize: PageSize = 20
) -> Response:
    return typed(WebhookList, hooks.list_webhooks(engine, scope, page, pageSize))


@router.get("/webhooks/{webhookId}", response_model=Webhook)
def get_webhook(webhookId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    return typed(Webhook, hooks.read_webhook(engine, scope, webhookId))


@router.patch("/webhooks/{webhookId}", response_model=Webhook)
def update_webhook(
    webhookId: str, body: WebhookUpdate, scope: ScopeDep, engine: EngineDep
) -> Response:
    return typed(Webhook, hooks.update_webhook(engine, scope, webhookId, body))


@router.delete("/webhooks/{webhookId}", status_code=204)
def delete_webhook(webhookId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    hooks.delete_webhook(engine, scope, webhookId)
    return Response(status_code=204)


@router.get("/webhooks/{webhookId}/deliveries", response_model=DeliveryList)
def webhook_deliveries(
    webhookId: str,
    scope: ScopeDep,
    engine: EngineDep,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    pageSize: PageSize = 20,
) -> Response:
    view = hooks.webhook_deliveries(
        engine, scope, webhookId, status.value if status else None, page, pageSize
    )
    return typed(DeliveryList, view)


@router.post(
    "/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
    status_code=202,
    response_model=Delivery,
)
def redeliver_webhook_delivery(
    webhookId: str, deliveryId: str, scope: ScopeDep, engine: EngineDep
) -> Response:
    return typed(Delivery, hooks.redeliver(engine, scope, deliveryId, webhook_id=webhookId), 202)


@router.get("/operation/{operationId}/deliveries", response_model=DeliveryList)
def operation_deliveries(
    operationId: str,
    scope: ScopeDep,
    engine: EngineDep,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    pageSize: PageSize = 20,
) -> Response:
    ops.get_operation_or_404(engine, scope, operationId, status_only=True)
    view = hooks.operation_deliveries(
        engine, scope, operationId, status.value if status else None, page, pageSize
    )
    return typed(DeliveryList, view)


@router.post(
    "/operation/{operationId}/deliveries/{deliveryId}/redeliver",
    status_code=202,
    response_model=Delivery,
)
def redeliver_operation_delivery(
    operationId: str, deliveryId: str, scope: ScopeDep, engine: EngineDep
) -> Response:
    ops.get_operation_or_404(engine, scope, operationId, status_only=True)
    view = hooks.redeliver(engine, scope, deliveryId, operation_id=operationId)
    return typed(Delivery, view, 202)


@router.get("/signing-secret", response_model=SigningSecret)
def reveal_signing_secret(scope: ScopeDep, engine: EngineDep) -> Response:
    return typed(SigningSecret, hooks.reveal_secret(engine, scope))


@router.post("/signing-secret/rotate", response_model=SigningSecret)
def rotate_signing_secret(scope: ScopeDep, engine: EngineDep, settings: SettingsDep) -> Response:
    return typed(SigningSecret, hooks.rotate_secret(engine, settings, scope))


@router.get("/notification-settings", response_model=NotificationSettings)
def notification_settings(scope: ScopeDep, engine: EngineDep) -> Response:
    view = projects.notification_settings(engine, scope.tenant_id, scope.project_id)
    return typed(NotificationSettings, view)


@router.put("/notification-settings", response_model=NotificationSettings)
def update_notification_settings(
    body: NotificationSettingsUpdate, scope: ScopeDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    if body.slackWebhookUrl and body.slackWebhookUrl.strip():
        netcheck.check_url(settings, body.slackWebhookUrl.strip(), "slackWebhookUrl")
    view = hooks.update_notification_settings(engine, settings, scope, body)
    return typed(NotificationSettings, view)
