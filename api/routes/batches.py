"""Routes of endpoints 8 and 8b: submit, show and cancel a batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from api.deps import EngineDep, ScopeDep, SettingsDep
from api.netcheck import check_urls
from api.routes.answers import typed
from pmops.contract.requests import MAX_PAGE, BatchCreate
from pmops.contract.responses import Batch, BatchList, BatchStarted
from pmops.service import batches

router = APIRouter(prefix="/api/{tenantId}/{projectId}/async", tags=["batches"])


@router.post("/batch", status_code=202, response_model=BatchStarted)
def create_batch(
    request: Request,
    body: BatchCreate,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    for i, op in enumerate(body.operations):
        check_urls(settings, op.callbacks, f"operations[{i}].callbacks")
    check_urls(settings, body.batchCallbacks, "batchCallbacks")
    status, payload, headers = batches.create_batch(engine, settings, scope, body, idempotency_key)
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
    return typed(BatchStarted, payload, status, headers)


@router.get("/batch/{batchId}", response_model=Batch)
def get_batch(batchId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    return typed(Batch, batches.get_batch_or_404(engine, scope, batchId))


@router.delete("/batch/{batchId}", response_model=Batch)
def cancel_batch(batchId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    return typed(Batch, batches.cancel_batch(engine, scope, batchId))


@router.get("/batches", response_model=BatchList)
def list_batches(
    scope: ScopeDep,
    engine: EngineDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    return typed(BatchList, batches.list_batches(engine, scope, page, pageSize))
