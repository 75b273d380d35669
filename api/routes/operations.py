"""Routes of the seed's endpoints 1-5 plus artifacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from api import netcheck
from api.deps import (
    DownloadScopeDep,
    EngineDep,
    LastEventId,
    LinksDep,
    PhaseQuery,
    ScopeDep,
    SettingsDep,
)
from api.downloads import stored_file
from api.routes.answers import typed
from api.stream import event_response, last_seq
from pmops.contract.enums import (
    TERMINAL_STATUSES,
    OperationStatus,
    OperationType,
    PhaseName,
    Priority,
)
from pmops.contract.requests import (
    MAX_PAGE,
    CancelRequest,
    IsoDateTime,
    OperationCreate,
    RetryCreate,
)
from pmops.contract.responses import (
    Cancellation,
    OperationList,
    OperationStarted,
    OperationStatusView,
    Results,
    RetryStarted,
)
from pmops.service import operations as ops
from pmops.service import results
from pmops.service.retries import create_retry, retry_links
from pmops.service.storage import storage_for
from pmops.service.views import elapsed_seconds, remaining_seconds, status_view

router = APIRouter(prefix="/api/{tenantId}/{projectId}/async", tags=["operations"])


@router.post("/operation", status_code=202, response_model=OperationStarted)
def start_operation(
    request: Request,
    body: OperationCreate,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    netcheck.check_callbacks(settings, body)
    status, payload, headers = ops.start_operation(engine, settings, scope, body, idempotency_key)
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
    return typed(OperationStarted, payload, status, headers)


@router.get("/operation/{operationId}", response_model=OperationStatusView)
def get_operation(
    operationId: str,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    row = ops.get_operation_or_404(engine, scope, operationId, status_only=True)
    view = status_view(row, settings, ops.callback_stats(engine, operationId))
    view.update(retry_links(engine, operationId))
    headers = {}
    if row["status"] not in TERMINAL_STATUSES:
        remaining = remaining_seconds(row, elapsed_seconds(row, datetime.now(UTC)))
        headers["Retry-After"] = str(ops.retry_after(remaining or 0))
    return typed(OperationStatusView, view, headers=headers)


@router.get("/operations", response_model=OperationList)
def list_operations(
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    status: OperationStatus | None = None,
    operationType: OperationType | None = None,
    priority: Priority | None = None,
    dateFrom: IsoDateTime | None = None,
    dateTo: IsoDateTime | None = None,
    includeDetails: bool = False,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    view = ops.list_operations(
        engine,
        settings,
        scope,
        status=status.value if status else None,
        operation_type=operationType.value if operationType else None,
        priority=priority.value if priority else None,
        date_from=dateFrom,
        date_to=dateTo,
        include_details=includeDetails,
        page=page,
        page_size=pageSize,
    )
    return typed(OperationList, view)


@router.delete("/operation/{operationId}", response_model=Cancellation)
def cancel_operation(
    request: Request,
    operationId: str,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    links: LinksDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Response:
    orchestrator = getattr(request.app.state, "orchestrator", None)
    row, before = ops.cancel_operation(
        engine, scope, operationId, body or CancelRequest(), orchestrator
    )
    view = ops.cancellation_view(row, before, scope, settings)
    view["partialResults"]["downloadUrls"] = results.partial_download_urls(row, scope, links)
    return typed(Cancellation, view)


BINARY = {"schema": {"type": "string", "format": "binary"}}
# one Server-Sent Event as a client's parser sees it (OpenAPI has no finer way to say it yet):
# `data` is the JSON of an Event (#/components/schemas/Event), `id` its sequence number
SSE_EVENT = {
    "type": "object",
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "event": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


@router.get(
    "/operation/{operationId}/results",
    response_model=Results,
    responses={200: {"content": {"application/zip": BINARY}}},
)
def get_results(
    operationId: str,
    scope: DownloadScopeDep,
    engine: EngineDep,
    links: LinksDep,
    settings: SettingsDep,
    format: Annotated[str, Query(pattern="^(summary|detailed|download)$")] = "summary",
    includeArtifacts: bool = True,
    phase: PhaseQuery = None,
) -> Response:
    row = ops.get_operation_or_404(engine, scope, operationId)
    if format == "download":
        results.results_view(row, scope, "detailed", True, None)  # 409 while running
        return StreamingResponse(
            results.results_zip(row, storage_for(settings)),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{operationId}.zip"'},
        )
    # the seed's Japanese phase names are aliases of the English ones the service knows
    english = PhaseName(phase).value if phase is not None else None
    view = results.results_view(row, scope, format, includeArtifacts, english, links)
    return typed(Results, view)


@router.get(
    "/operation/{operationId}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file, of the media type its format has (streamed from the storage)",
            "content": {media: BINARY for media in sorted(set(results.MEDIA_TYPES.values()))},
        },
        307: {
            "description": "PMOPS_STORAGE_REDIRECT on s3:// storage: the object store's presigned "
            "URL of the file, in Location (valid PMOPS_DOWNLOAD_LINK_SECONDS)",
        },
    },
)
def get_artifact(
    operationId: str,
    name: str,
    scope: DownloadScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    row = ops.get_operation_or_404(engine, scope, operationId)
    storage = storage_for(settings)
    ref, artifact = results.artifact_file(row, name, storage)
    media_type = results.MEDIA_TYPES.get(artifact.get("format", ""), "application/octet-stream")
    return stored_file(storage, settings, ref, media_type)


@router.post("/operation/{operationId}/retry", status_code=202, response_model=RetryStarted)
def retry_operation(
    operationId: str,
    request: Request,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    body: Annotated[RetryCreate | None, Body()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    status, payload, headers = create_retry(
        engine, settings, scope, operationId, body or RetryCreate(), idempotency_key
    )
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
    return typed(RetryStarted, payload, status, headers)


@router.get(
    "/operation/{operationId}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events; each `data:` line is an Event "
            "(#/components/schemas/Event), its `id:` the event's sequence",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        }
    },
)
async def operation_events(
    operationId: str,
    request: Request,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Server-Sent Events: each status change of the operation (id = its sequence number),
    resumable with Last-Event-ID, closed after the terminal event."""
    row = await run_in_threadpool(
        ops.get_operation_or_404, engine, scope, operationId, status_only=True
    )
    after = last_seq(last_event_id)
    keepalive = settings.stream_keepalive_seconds
    return event_response(request, row, after, keepalive, scope.principal.token_key)
