"""Dataset upload and listing."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from analysis.errors import AnalysisError
from analysis.eventlog import ColumnMapping
from api.bodylimit import counted
from api.bodylimit import too_large as body_too_large
from api.deps import EngineDep, ScopeDep, SettingsDep
from api.problems import problem_response
from api.routes.answers import typed
from pmops.contract.requests import MAX_PAGE
from pmops.contract.responses import Dataset, DatasetList
from pmops.service import datasets as ds
from pmops.service.errors import Problem, analysis_problem
from pmops.service.inspection import Inspector
from pmops.service.limits import hold_upload
from pmops.service.operations import idempotent_lookup, store_idempotent
from pmops.service.registration import inspect_here
from pmops.settings import get_settings

router = APIRouter(prefix="/api/{tenantId}/{projectId}", tags=["datasets"])
UPLOAD_SCOPE = "POST /datasets"


# the multipart framing and the mapping fields around the file
MULTIPART_SLACK = 1 << 20


class UploadSizeGuard:
    """413 for an upload past the limit, before its body is spooled to disk.

    The route can only count the file once Starlette has parsed the whole multipart body into a
    temporary file, so without this a 100 GB upload was spooled to disk before it was refused.
    A Content-Length past the limit is answered before the body is read; a body without one
    (chunked) is counted as it streams in and stopped where it passes the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/").endswith("/datasets")
        ):
            length = dict(scope["headers"]).get(b"content-length", b"")
            # the app's own settings when it was made with some (create_app(settings=...))
            limit = (
                getattr(scope["app"].state, "settings", None) or get_settings()
            ).max_upload_bytes
            if length.isdigit() and int(length) > limit + MULTIPART_SLACK:
                await problem_response(Request(scope), too_large(limit))(scope, receive, send)
                return
            await self.app(scope, counted(receive, limit + MULTIPART_SLACK, too_large(limit)), send)
            return
        await self.app(scope, receive, send)


def too_large(limit: int) -> Problem:
    return body_too_large(limit, "file", "the file")


def upload_name(raw: str | None) -> str:
    """The client's file name as a bare file name: the last part of any path (either slash),
    without control characters, at most 200 bytes keeping its end (the extension). Each of these
    was a 500: a NUL fails open(), '..' opened for writing is the folder above, and a name
    longer than the file system's 255 bytes cannot be created."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    while len(name.encode()) > 200:
        name = name[1:]
    return "upload" if name in ("", ".", "..") else name


@router.post("/datasets", status_code=201, response_model=Dataset)
def upload_dataset(
    request: Request,
    scope: ScopeDep,
    engine: EngineDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    caseColumn: Annotated[str | None, Form()] = None,
    activityColumn: Annotated[str | None, Form()] = None,
    timestampColumn: Annotated[str | None, Form()] = None,
    resourceColumn: Annotated[str | None, Form()] = None,
    lifecycleColumn: Annotated[str | None, Form()] = None,
    startTimestampColumn: Annotated[str | None, Form()] = None,
    timestampFormat: Annotated[
        str | None,
        Form(
            description="how to read the timestamps (strftime, e.g. %d.%m.%Y %H:%M:%S); "
            "stored with the dataset; needed when day and month cannot be told apart"
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        Form(
            description="IANA zone of timestamps without a UTC offset (default UTC); stored "
            "with the dataset"
        ),
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    try:
        mapping = ColumnMapping.from_dict(
            {
                "caseColumn": caseColumn,
                "activityColumn": activityColumn,
                "timestampColumn": timestampColumn,
                "resourceColumn": resourceColumn,
                "lifecycleColumn": lifecycleColumn,
                "startTimestampColumn": startTimestampColumn,
                "timestampFormat": timestampFormat,
                "timezone": timezone,
            }
        )
    except AnalysisError as exc:
        raise analysis_problem(exc) from None
    digest = None
    if idempotency_key:
        hasher = hashlib.sha256()
        while chunk := file.file.read(1 << 20):
            hasher.update(chunk)
        file.file.seek(0)
        hasher.update(repr((file.filename, mapping)).encode())
        digest = hasher.hexdigest()
        replay = idempotent_lookup(engine, scope, UPLOAD_SCOPE, idempotency_key, digest)
        if replay is not None:
            return typed(Dataset, replay[1], replay[0], replay[2])
    name = upload_name(file.filename)
    state = request.app.state
    release = hold_upload(getattr(state, "limits", None), f"{scope.tenant_id}/{scope.project_id}")
    try:
        inspector: Inspector | None = getattr(state, "inspector", None)
        inspect = inspector.inspect if inspector is not None else inspect_here
        view = ds.create_dataset(engine, settings, scope, file.file, name, mapping, inspect)
    finally:
        release()
    headers = {"Location": view["url"]}
    if idempotency_key and digest:
        mine = view["datasetId"]
        status, view, headers = store_idempotent(
            engine, scope, UPLOAD_SCOPE, idempotency_key, digest, 201, view, headers
        )
        if view.get("datasetId") != mine:  # a concurrent upload with this key won
            ds.delete_dataset(engine, settings, scope, mine)
        return typed(Dataset, view, status, headers)
    return typed(Dataset, view, 201, headers)


@router.get("/datasets", response_model=DatasetList)
def list_datasets(
    scope: ScopeDep,
    engine: EngineDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    return typed(DatasetList, ds.list_datasets(engine, scope, page, pageSize))


@router.get("/datasets/{datasetId}", response_model=Dataset)
def get_dataset(datasetId: str, scope: ScopeDep, engine: EngineDep) -> Response:
    return typed(Dataset, ds.get_dataset_or_404(engine, scope, datasetId))


@router.delete("/datasets/{datasetId}", status_code=204, response_class=Response)
def delete_dataset(
    datasetId: str, scope: ScopeDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Remove the dataset and its file; 409 while a queued or running operation reads it."""
    ds.remove_dataset(engine, settings, scope, datasetId)
    return Response(status_code=204)
