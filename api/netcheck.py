"""The URLs that will receive deliveries (webhook, callbacks, Slack), checked as they arrive.

Each must be http(s) to a public host, or to a network PMOPS_WEBHOOK_ALLOW_NETWORKS allows: not
private, loopback, link-local, CGNAT, multicast or metadata addresses (`pmops.delivery.netguard`;
the deliverer checks again at send time, against what the name resolves to then). A host that
does not resolve right now is accepted: each failed resolution is then a failed delivery attempt.
A refused URL is a 422 naming its field.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

from pmops.contract.requests import OperationCreate
from pmops.delivery.netguard import NetGuard, UnsafeUrl, parse_networks
from pmops.service.errors import Problem
from pmops.settings import Settings


@lru_cache
def guard(allow: str) -> NetGuard:
    return NetGuard(parse_networks(allow))


def check_url(settings: Settings, url: str, field: str) -> str:
    """422 naming `field` unless url is http(s) to a public host (or an allowed network)."""
    try:
        guard(settings.webhook_allow_networks).check_registration(url, field)
    except UnsafeUrl as exc:
        raise Problem(422, exc.message, errors=[{"field": field, "message": exc.message}]) from None
    return url


def check_callbacks(settings: Settings, body: OperationCreate) -> None:
    check_urls(settings, body.callbacks, "callbacks")


def check_urls(settings: Settings, urls: BaseModel | None, prefix: str) -> None:
    """Each URL of a callbacks object, checked as check_url does."""
    for name, url in (urls.model_dump() if urls else {}).items():
        if url is not None:
            check_url(settings, str(url), f"{prefix}.{name}")
