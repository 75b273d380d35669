"""The FastAPI application (`uvicorn api.main:app`)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import openapi, problems
from api.routes import batches, datasets, health, operations, ui, webhooks
from api.stream import EventFeed
from pmops.service.dispatcher import Dispatcher, PrefectGateway
from pmops.settings import get_settings
from pmops.store.tables import checkpoint_in_background, engine_for


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.resolved_database_url)
    checkpoint_in_background(engine)
    gateway = PrefectGateway(settings.resolved_prefect_api_url)
    dispatcher = Dispatcher(engine, settings, gateway)
    feed = EventFeed(engine, settings.stream_poll_seconds)
    app.state.gateway, app.state.dispatcher, app.state.feed = gateway, dispatcher, feed
    dispatcher.start()
    await feed.start()
    # what start-up created (Prefect, SQLAlchemy, pydantic: millions of objects) lives as long
    # as the process; out of the collector's sight, a full collection no longer stalls requests
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await feed.stop()
        dispatcher.stop()
        gateway.close()


def create_app() -> FastAPI:
    app = FastAPI(
        title="pmops",
        version="0.1.0",
        description="Long-running process-mining operations (the contract: docs/api-contract.md)",
        lifespan=lifespan,
    )
    problems.install(app)
    openapi.install(app)
    app.add_middleware(datasets.UploadSizeGuard)
    routers = [health, datasets, operations, webhooks, batches, ui]
    for module in routers:
        app.include_router(module.router)
    # for the Allow header of a 405 (api/problems.py): FastAPI includes routers as units now
    app.state.routers = [module.router for module in routers]
    return app


app = create_app()
