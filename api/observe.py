"""Each HTTP request, observed: its ids bound to the lines logged while it is handled, its
latency in /metrics (api/metrics.py), and one access line when it is answered
(docs/observability.md).

The ids come from the path (`/api/{tenantId}/{projectId}/...`, and the operation, batch or
webhook id after it), bound before the app runs: every line logged while the request is handled,
in its task or in the threads it starts, carries them. The route template (not the raw path)
labels the latency, once the router has matched it.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from pmops import logs

access = logging.getLogger("pmops.api.access")
UNMATCHED = "unmatched"
SCOPED = re.compile(r"^/api/(?P<tenant>[^/]+)/(?P<project>[^/]+)(?P<rest>/.*)?$")
NAMED = re.compile(r"^/async/(?P<kind>operation|batch|webhooks)/(?P<id>[^/]+)")
ID_OF = {"operation": "operationId", "batch": "batchId", "webhooks": "webhookId"}


def route_template(scope: ASGIScope) -> str:
    """The path template of the route that took the request (set by the router)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def path_ids(path: str) -> dict[str, str]:
    """The tenant, project and operation (batch, webhook) ids a path names."""
    scoped = SCOPED.match(path)
    if scoped is None:
        return {}
    ids = {"tenantId": scoped["tenant"], "projectId": scoped["project"]}
    named = NAMED.match(scoped["rest"] or "")
    if named is not None:
        ids[ID_OF[named["kind"]]] = named["id"]
    return ids


class Observe:
    """ASGI middleware: binds the request's ids, times it into the app's `Metrics`
    (app.state.metrics; before start-up there is none and nothing is counted), and logs
    `pmops.api.access` at INFO once the response's headers are sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
        began, status = time.perf_counter(), 500
        took: float | None = None

        async def timed(message: Message) -> None:
            nonlocal status, took
            if message["type"] == "http.response.start":
                status, took = message["status"], time.perf_counter() - began
            await send(message)

        with logs.bound(**path_ids(scope["path"])):
            try:
                await self.app(scope, receive, timed)
            finally:
                seconds = took if took is not None else time.perf_counter() - began
                route = route_template(scope)
                if metrics is not None:
                    metrics.requests.labels(scope["method"], route, str(status)).observe(seconds)
                if access.isEnabledFor(logging.INFO):
                    access.info(
                        "%s %s %s %.1f ms",
                        scope["method"],
                        route,
                        status,
                        seconds * 1000,
                        extra={
                            "status": status,
                            "route": route,
                            "durationMs": round(seconds * 1000, 1),
                        },
                    )
