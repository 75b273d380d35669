"""The results pages for people: sign-in, an operation's page, its live stream and artifacts.

Same auth and tenancy as the API (a bearer token, from the `pmops_token` cookie or the
Authorization header); the data each page shows is shaped in api/ui.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from api import ui
from api.deps import EXPIRED, EngineDep, LastEventId, SettingsDep
from api.downloads import stored_file
from api.stream import event_response, last_seq
from pmops.service.errors import Problem
from pmops.service.scope import Principal
from pmops.service.storage import storage_for

router = APIRouter(prefix="/ui", include_in_schema=False)

NextQuery = Annotated[str | None, Query(alias="next", max_length=2000)]


@router.get("/login")
async def login_form(next_page: NextQuery = None) -> Response:
    return ui.render("login.html", next=ui.safe_next(next_page), error=None)


@router.post("/login")
async def login(
    request: Request,
    engine: EngineDep,
    token: Annotated[str, Form(max_length=ui.MAX_TOKEN * 2)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    target = ui.safe_next(next_page)
    if not ui.same_origin(request):
        return ui.render(
            "message.html", 403, title="Forbidden", message="Sign in from this site's own page."
        )
    principal = await ui.check_token(engine, token.strip())
    if not isinstance(principal, Principal):
        return ui.render(
            "login.html",
            401,
            {"WWW-Authenticate": 'Bearer realm="pmops", error="invalid_token"'},
            next=target,
            error="That token has expired." if principal == EXPIRED else "That token is not valid.",
        )
    response = RedirectResponse(target, status_code=303)
    ui.sign_in(response, request, token.strip())
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not ui.same_origin(request):
        return ui.render(
            "message.html", 403, title="Forbidden", message="Sign out from this site's own page."
        )
    response = RedirectResponse(ui.LOGIN, status_code=303)
    ui.sign_out(response, request)
    return response


@router.get("/")
async def home(request: Request, engine: EngineDep) -> Response:
    principal = await ui.principal_of(request, engine)
    if principal is None:
        return ui.login_redirect(request)
    items = await run_in_threadpool(ui.recent_operations, engine, principal)
    return ui.render("home.html", principal=principal, operations=items)


@router.get("/operations/{operationId}")
async def operation_page(
    operationId: str, request: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    principal = await ui.principal_of(request, engine)
    if principal is None:
        return ui.login_redirect(request)
    page = await run_in_threadpool(ui.operation_page, engine, settings, principal, operationId)
    if page is None:
        return ui.not_found(principal)
    return ui.render("operation.html", principal=principal, page=page)


@router.get("/operations/{operationId}/artifacts/{name}")
async def artifact(
    operationId: str, name: str, request: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    principal = await ui.principal_of(request, engine)
    if principal is None:
        return ui.login_redirect(request)
    found = await run_in_threadpool(ui.artifact_of, engine, settings, principal, operationId, name)
    if found is None:
        return ui.not_found(principal)
    ref, media_type = found
    return await run_in_threadpool(
        stored_file,
        storage_for(settings),
        settings,
        ref,
        media_type,
        # the process map is shown in the page; everything else is a download
        "inline" if media_type == "image/svg+xml" else "attachment",
        {
            "Content-Security-Policy": ui.ARTIFACT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
        False,  # served here, under this CSP: never the object store's redirect
    )


@router.get("/operations/{operationId}/events", response_class=StreamingResponse)
async def operation_events(
    operationId: str,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """The API's event stream of the operation for the page's EventSource, which cannot send an
    Authorization header. `after`: the last event the page was drawn from; a reconnecting
    EventSource sends Last-Event-ID instead."""
    principal = await ui.principal_of(request, engine)
    if principal is None:
        raise Problem(401, "not signed in", headers={"WWW-Authenticate": 'Bearer realm="pmops"'})
    row = await run_in_threadpool(
        ui.find_operation, engine, principal, operationId, status_only=True
    )
    if row is None:
        raise Problem(404, f"operation {operationId} not found")
    last = last_seq(last_event_id, after)
    keepalive = settings.stream_keepalive_seconds
    return event_response(request, row, last, keepalive, principal.token_key)
