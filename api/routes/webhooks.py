"""Routes of endpoint 6 (webhooks), delivery logs, and the project's delivery settings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from api.deps import EngineDep, ScopeDep, SettingsDep
from pmops.contract.requests import (
    MAX_PAGE,
    NotificationSettingsUpdate,
    WebhookCreate,
    WebhookUpdate,
)
from pmops.service import operations as ops
from pmops.service import projects
from pmops.service import webhooks as hooks

router = APIRouter(prefix="/api/{tenantId}/{projectId}/async", tags=["webhooks"])
DeliveryStatus = Literal["Pending", "Retrying", "Delivered", "Failed", "Cancelled"]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=100)]


@router.post("/webhooks", status_code=201)
def create_webhook(
    body: WebhookCreate,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse:
    status, view, headers = hooks.create_webhook(engine, settings, scope, body, idempotency_key)
    return JSONResponse(view, status_code=status, headers=headers)


@router.get("/webhooks")
def list_webhooks(
    scope: ScopeDep, engine: EngineDep, page: Page = 1, pageSize: PageSize = 20
) -> dict[str, Any]:
    return hooks.list_webhooks(engine, scope, page, pageSize)


@router.get("/webhooks/{webhookId}")
def get_webhook(webhookId: str, scope: ScopeDep, engine: EngineDep) -> dict[str, Any]:
    return hooks.read_webhook(engine, scope, webhookId)


@router.patch("/webhooks/{webhookId}")
def update_webhook(
    webhookId: str, body: WebhookUpdate, scope: ScopeDep, engine: EngineDep
) -> dict[str, Any]:
    return hooks.update_webhook(engine, scope, webhookId, body)


@router.delete("/webhooks/{webhookId}", status_code=204)
def delete_webhook(webhookId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    hooks.delete_webhook(engine, scope, webhookId)
    return Response(status_code=204)


@router.get("/webhooks/{webhookId}/deliveries")
def webhook_deliveries(
    webhookId: str,
    scope: ScopeDep,
    engine: EngineDep,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    pageSize: PageSize = 20,
) -> dict[str, Any]:
    return hooks.webhook_deliveries(engine, scope, webhookId, status, page, pageSize)


@router.post("/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", status_code=202)
def redeliver_webhook_delivery(
    webhookId: str, deliveryId: str, scope: ScopeDep, engine: EngineDep
) -> dict[str, Any]:
    return hooks.redeliver(engine, scope, deliveryId, webhook_id=webhookId)


@router.get("/operation/{operationId}/deliveries")
def operation_deliveries(
    operationId: str,
    scope: ScopeDep,
    engine: EngineDep,
    status: DeliveryStatus | None = None,
    page: Page = 1,
    pageSize: PageSize = 20,
) -> dict[str, Any]:
    ops.get_operation_or_404(engine, scope, operationId, status_only=True)
    return hooks.operation_deliveries(engine, scope, operationId, status, page, pageSize)


@router.post("/operation/{operationId}/deliveries/{deliveryId}/redeliver", status_code=202)
def redeliver_operation_delivery(
    operationId: str, deliveryId: str, scope: ScopeDep, engine: EngineDep
) -> dict[str, Any]:
    ops.get_operation_or_404(engine, scope, operationId, status_only=True)
    return hooks.redeliver(engine, scope, deliveryId, operation_id=operationId)


@router.get("/signing-secret")
def reveal_signing_secret(scope: ScopeDep, engine: EngineDep) -> dict[str, Any]:
    return hooks.reveal_secret(engine, scope)


@router.post("/signing-secret/rotate")
def rotate_signing_secret(
    scope: ScopeDep, engine: EngineDep, settings: SettingsDep
) -> dict[str, Any]:
    return hooks.rotate_secret(engine, settings, scope)


@router.get("/notification-settings")
def notification_settings(scope: ScopeDep, engine: EngineDep) -> dict[str, Any]:
    return projects.notification_settings(engine, scope.tenant_id, scope.project_id)


@router.put("/notification-settings")
def update_notification_settings(
    body: NotificationSettingsUpdate, scope: ScopeDep, engine: EngineDep, settings: SettingsDep
) -> dict[str, Any]:
    return hooks.update_notification_settings(engine, settings, scope, body)
