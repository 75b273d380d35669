"""Who is asking (the token's principal) and for which tenant and project (the path's scope)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    project_id: str | None
    name: str
    # the highest priority it may start operations at (the token's scope, granted by the
    # operator with `pmops tokens create --max-priority`)
    max_priority: str = "High"
    # what identifies its token to the limits per token (the token's hash); "" for none
    token_key: str = ""


@dataclass(frozen=True)
class Scope:
    """The tenant and project of the path, checked against the token."""

    tenant_id: str
    project_id: str
    principal: Principal
