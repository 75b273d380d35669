"""Request dependencies: settings, store engine, the authenticated principal."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from pmops.contract.requests import LAST_EVENT_ID_PATTERN, PHASE_NAME_PATTERN
from pmops.service.errors import Problem
from pmops.service.limits import Limits
from pmops.service.results import (
    DownloadLinks,
    cached_link_key,
    check_link,
    link_key,
    link_resource,
)
from pmops.service.scope import Principal, Scope
from pmops.settings import Settings, get_settings
from pmops.store.engine import as_utc, engine_for
from pmops.store.tokens import DEFAULT_MAX_PRIORITY, hash_token, read_token


# The dependencies are `async def` because they do not block: FastAPI runs a sync dependency in
# the thread pool, and five hops per request cost more than the request's own work.
async def settings_dep() -> Settings:
    return get_settings()


async def engine_dep(settings: Annotated[Settings, Depends(settings_dep)]) -> Engine:
    return engine_for(settings.resolved_database_url)


SettingsDep = Annotated[Settings, Depends(settings_dep)]
EngineDep = Annotated[Engine, Depends(engine_dep)]


# token hash -> (principal, monotonic time it was read, expiry as a Unix time or None); a valid
# token is looked up once per PRINCIPAL_TTL seconds, an invalid one every time. The expiry is
# checked on every request, so a cached token is refused the moment it expires.
PRINCIPAL_TTL = 30.0
_principals: dict[str, tuple[Principal, float, float | None]] = {}
CHALLENGE = 'Bearer realm="pmops"'
EXPIRED = "the bearer token has expired"


def _lookup_principal(engine: Engine, digest: str) -> tuple[Principal, float | None] | None:
    with engine.connect() as conn:
        row = read_token(conn, digest)
    if row is None:
        return None
    expires = as_utc(row["expires_at"])
    principal = Principal(
        row["tenant_id"],
        row["project_id"],
        row["principal"],
        row["max_priority"] or DEFAULT_MAX_PRIORITY,
        digest,
    )
    return principal, None if expires is None else expires.timestamp()


def _refused(detail: str) -> Problem:
    # RFC 6750 section 3.1: a token that was presented but is not (or no longer) valid
    challenge = f'{CHALLENGE}, error="invalid_token", error_description="{detail}"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def _limits(request: Request) -> Limits | None:
    """The API process's counters (api/main.py's lifespan); none for a request made up in code
    (the results pages' sign-in probe)."""
    app = request.scope.get("app")
    return getattr(app.state, "limits", None) if app is not None else None


def client_address(request: Request) -> str:
    """The TCP peer (behind a proxy: what uvicorn's --proxy-headers makes of X-Forwarded-For)."""
    return request.client.host if request.client is not None else "unknown"


async def authenticate(request: Request, engine: EngineDep) -> Principal:
    """The token's principal; 401 for a missing, unknown or expired token, 429 when this address
    has failed too often or this token has used up its requests (pmops.service.limits)."""
    limits = _limits(request)
    address = client_address(request)
    if limits is not None:
        limits.check_address(address)
    try:
        principal, digest = await _principal(request, engine)
    except Problem as refused:
        # counted when credentials were presented and refused (a request with none is not a try)
        if limits is not None and refused.status == 401 and "authorization" in request.headers:
            limits.auth_failures.failed(address)
        raise
    if limits is not None:
        limits.check_request(digest)
    return principal


async def _principal(request: Request, engine: Engine) -> tuple[Principal, str]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": CHALLENGE},
        )
    digest = hash_token(token.strip())
    cached = _principals.get(digest)
    if cached is None or time.monotonic() - cached[1] >= PRINCIPAL_TTL:
        found = await run_in_threadpool(_lookup_principal, engine, digest)
        if found is None:
            raise _refused("invalid bearer token")
        if len(_principals) > 10_000:
            _principals.clear()
        cached = _principals[digest] = (found[0], time.monotonic(), found[1])
    principal, _, expires = cached
    if expires is not None and time.time() >= expires:
        raise _refused(EXPIRED)
    return principal, digest


def _guid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(
            400, f"{name} must be a GUID", errors=[{"field": name, "message": "not a GUID"}]
        ) from None


async def scope_dep(
    tenant_id: Annotated[str, Path(alias="tenantId")],
    project_id: Annotated[str, Path(alias="projectId")],
    principal: Annotated[Principal, Depends(authenticate)],
) -> Scope:
    tenant, project = _guid(tenant_id, "tenantId"), _guid(project_id, "projectId")
    # another tenant's (or project's) things do not exist for this token
    if tenant != principal.tenant_id or (principal.project_id not in (None, project)):
        raise Problem(404, "not found")
    return Scope(tenant, project, principal)


ScopeDep = Annotated[Scope, Depends(scope_dep)]


# -- signed download links (pmops.service.results) ------------------------------------------
async def _link_key(engine: Engine) -> bytes:
    cached = cached_link_key(engine)
    return cached if cached is not None else await run_in_threadpool(link_key, engine)


async def links_dep(request: Request, engine: EngineDep, settings: SettingsDep) -> DownloadLinks:
    """Signs the download URLs an answer lists: absolute from PMOPS_PUBLIC_URL, else from the
    request's base URL."""
    key = await _link_key(engine)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return DownloadLinks(base, key, settings.download_link_seconds)


async def download_scope_dep(
    request: Request,
    tenant_id: Annotated[str, Path(alias="tenantId")],
    project_id: Annotated[str, Path(alias="projectId")],
    engine: EngineDep,
) -> Scope:
    """A download's scope: from a signed link (expires + signature in the query; 403 if expired
    or altered), else from the bearer token as for any other route."""
    query = request.query_params
    if "signature" not in query and "expires" not in query:
        return await scope_dep(tenant_id, project_id, await authenticate(request, engine))
    tenant, project = _guid(tenant_id, "tenantId"), _guid(project_id, "projectId")
    params = request.path_params
    resource = link_resource(
        tenant, project, params["operationId"], params.get("name"), query.get("format")
    )
    key = await _link_key(engine)
    check_link(key, resource, query.get("expires", ""), query.get("signature", ""), time.time())
    return Scope(tenant, project, Principal(tenant, project, "signed download link"))


LinksDep = Annotated[DownloadLinks, Depends(links_dep)]
DownloadScopeDep = Annotated[Scope, Depends(download_scope_dep)]


# query and header parameters the OpenAPI document states precisely (the contract's patterns)
PhaseQuery = Annotated[str | None, Query(pattern=PHASE_NAME_PATTERN)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", pattern=LAST_EVENT_ID_PATTERN)]
