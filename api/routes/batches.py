"""Routes of endpoints 8 and 8b: submit, show and cancel a batch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from api.deps import EngineDep, ScopeDep, SettingsDep
from pmops.contract.requests import MAX_PAGE, BatchCreate
from pmops.service import batches
from pmops.service.webhooks import check_urls

router = APIRouter(prefix="/api/{tenantId}/{projectId}/async", tags=["batches"])


@router.post("/batch", status_code=202)
def create_batch(
    request: Request,
    body: BatchCreate,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse:
    for i, op in enumerate(body.operations):
        check_urls(settings, op.callbacks, f"operations[{i}].callbacks")
    check_urls(settings, body.batchCallbacks, "batchCallbacks")
    status, payload, headers = batches.create_batch(engine, settings, scope, body, idempotency_key)
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
    return JSONResponse(payload, status_code=status, headers=headers)


@router.get("/batch/{batchId}")
def get_batch(batchId: str, scope: ScopeDep, engine: EngineDep) -> dict[str, Any]:
    return batches.get_batch_or_404(engine, scope, batchId)


@router.delete("/batch/{batchId}")
def cancel_batch(batchId: str, scope: ScopeDep, engine: EngineDep) -> dict[str, Any]:
    return batches.cancel_batch(engine, scope, batchId)


@router.get("/batches")
def list_batches(
    scope: ScopeDep,
    engine: EngineDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    return batches.list_batches(engine, scope, page, pageSize)
