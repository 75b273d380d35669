"""Request dependencies: settings, store engine, the authenticated principal."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.engine import Engine

from api.problems import Problem
from pmops.settings import Settings, get_settings
from pmops.store import engine_for, hash_token, tokens


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    project_id: str | None
    name: str


# The dependencies are `async def` because they do not block: FastAPI runs a sync dependency in
# the thread pool, and five hops per request cost more than the request's own work.
async def settings_dep() -> Settings:
    return get_settings()


async def engine_dep(settings: Annotated[Settings, Depends(settings_dep)]) -> Engine:
    return engine_for(settings.resolved_database_url)


SettingsDep = Annotated[Settings, Depends(settings_dep)]
EngineDep = Annotated[Engine, Depends(engine_dep)]


# token hash -> (principal, monotonic time it was read); a valid token is looked up once per
# PRINCIPAL_TTL seconds, an invalid one every time
PRINCIPAL_TTL = 30.0
_principals: dict[str, tuple[Principal, float]] = {}


def _lookup_principal(engine: Engine, digest: str) -> Principal | None:
    with engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.token_hash == digest)).first()
    return None if row is None else Principal(row.tenant_id, row.project_id, row.principal)


async def authenticate(request: Request, engine: EngineDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="pmops"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401, "missing bearer token (Authorization: Bearer <token>)", headers=challenge
        )
    digest = hash_token(token.strip())
    cached = _principals.get(digest)
    if cached is not None and time.monotonic() - cached[1] < PRINCIPAL_TTL:
        return cached[0]
    principal = await run_in_threadpool(_lookup_principal, engine, digest)
    if principal is None:
        raise Problem(401, "invalid bearer token", headers=challenge)
    if len(_principals) > 10_000:
        _principals.clear()
    _principals[digest] = (principal, time.monotonic())
    return principal


def _guid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(
            400, f"{name} must be a GUID", errors=[{"field": name, "message": "not a GUID"}]
        ) from None


@dataclass(frozen=True)
class Scope:
    """The tenant and project of the path, checked against the token."""

    tenant_id: str
    project_id: str
    principal: Principal


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
