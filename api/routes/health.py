"""Liveness and readiness of the API, the store and Prefect (no auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import EngineDep
from api.routes.answers import typed
from pmops.contract.responses import Health
from pmops.store.engine import ping

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request, engine: EngineDep) -> Response:
    checks = {"api": "ok"}
    try:
        ping(engine)
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"error: {type(exc).__name__}"
    orchestrator = getattr(request.app.state, "orchestrator", None)
    checks["prefect"] = (
        "ok" if orchestrator is not None and orchestrator.healthy() else "unavailable"
    )
    ok = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ok" if ok else "degraded", "checks": checks}
    feed = getattr(request.app.state, "feed", None)
    if feed is not None:  # one store read per poll, whatever the number of streams
        body["eventFeed"] = feed.stats()
    return typed(Health, body, 200 if ok else 503)
