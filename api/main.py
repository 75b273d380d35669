"""The FastAPI application (`uvicorn api.main:app`)."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from api import docs_ui, metrics, openapi, problems
from api.bodylimit import JsonBodyLimit
from api.deps import settings_dep
from api.observe import Observe
from api.routes import batches, datasets, health, operations, ui, webhooks
from api.stream import EventFeed
from pmops import logs
from pmops.service.dispatcher import Dispatcher
from pmops.service.inspection import Inspector
from pmops.service.limits import Limits
from pmops.service.orchestrator import Orchestrator
from pmops.settings import Settings, get_settings
from pmops.store.tables import checkpoint_in_background, engine_for


def lifespan_with(
    settings: Settings | None, orchestrator: Orchestrator | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up and shutdown: the store, the orchestrator (Prefect unless one is given), the
    dispatcher and the event feed."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or get_settings()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if orchestrator is None:  # the real service (tests configure logging themselves)
            logs.configure(config.log_format, config.log_level)
            logs.adopt("uvicorn", "uvicorn.error", "uvicorn.access")
        engine = engine_for(config.resolved_database_url)
        checkpoint_in_background(engine)
        if orchestrator is None:
            from api.prefect_orchestrator import PrefectOrchestrator
            from pmops.prefect_auth import prefect_auth_string

            used: Orchestrator = PrefectOrchestrator(
                config.resolved_prefect_api_url, auth_string=prefect_auth_string(config)
            )
        else:
            used = orchestrator
        dispatcher = Dispatcher(engine, config, used)
        app.state.metrics = metrics.Metrics(engine)
        dispatcher.on_dispatched = app.state.metrics.dispatched
        feed = EventFeed(engine, config.stream_poll_seconds)
        app.state.orchestrator, app.state.dispatcher, app.state.feed = used, dispatcher, feed
        app.state.limits = Limits.from_settings(config)  # counted per API process
        # uploads are read in worker processes (pmops.service.inspection), not in this one
        inspector = Inspector(config.inspect_workers)
        app.state.inspector = inspector
        dispatcher.start()
        await feed.start()
        # what start-up created (Prefect, SQLAlchemy, pydantic: millions of objects) lives as
        # long as the process; out of the collector's sight, a full collection no longer stalls
        # requests (only for the real service: a test process makes many apps)
        if orchestrator is None:
            gc.collect()
            gc.freeze()
            threading.Thread(target=inspector.warm, name="inspector-warm", daemon=True).start()
        try:
            yield
        finally:
            await feed.stop()
            dispatcher.stop()
            used.close()
            inspector.close()

    return lifespan


def create_app(
    settings: Settings | None = None, orchestrator: Orchestrator | None = None
) -> FastAPI:
    """The application; `settings` default to the environment's (PMOPS_*), `orchestrator` to
    Prefect at the settings' URL (tests pass a fake)."""
    app = FastAPI(
        title="pmops",
        version="0.1.0",
        description="Long-running process-mining operations (the contract: docs/api-contract.md)",
        lifespan=lifespan_with(settings, orchestrator),
        docs_url=None,  # served by api/docs_ui.py with local assets
        redoc_url=None,
    )
    if settings is not None:

        async def given_settings() -> Settings:
            return settings

        app.dependency_overrides[settings_dep] = given_settings
        app.state.settings = settings
    problems.install(app)
    openapi.install(app)
    docs_ui.install(app)
    app.add_middleware(datasets.UploadSizeGuard)
    app.add_middleware(JsonBodyLimit)
    app.add_middleware(Observe)  # outermost: binds ids and times the limits' answers too
    routers = [health, datasets, operations, webhooks, batches, ui, metrics]
    for module in routers:
        app.include_router(module.router)
    # for the Allow header of a 405 (api/problems.py): FastAPI includes routers as units now
    app.state.routers = [module.router for module in routers]
    return app


app = create_app()
