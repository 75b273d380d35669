"""Limits one tenant meets so that it cannot hurt another (docs/limits.md): the priority a token
may ask for, requests per token per second, failed authentications per client address, queued
operations per project, webhooks per project, event streams per token.

Each refusal is a `Problem` naming the field or limit at fault (429 with Retry-After, or 403).
The counters of requests, failed authentications and streams live in the API process's memory:
each API process counts for itself.
"""

from __future__ import annotations

from pmops.contract.requests import PRIORITY_RANK
from pmops.service.errors import Problem
from pmops.service.scope import Scope


def check_priority(scope: Scope, priority: str, field: str = "priority") -> None:
    """403 naming `field` when `priority` is above what the token may ask for."""
    allowed = scope.principal.max_priority
    if PRIORITY_RANK[priority] > PRIORITY_RANK.get(allowed, PRIORITY_RANK["High"]):
        raise Problem(
            403,
            f"{field} {priority} is above this token's max priority {allowed}: the operator "
            "grants more with `pmops tokens create --max-priority`",
            errors=[{"field": field, "message": f"at most {allowed} for this token"}],
        )
