"""Batch: the parent flow run of a batch. Its children are the batch's operations, each its own
flow run (tagged `batch:<id>`), started by the API's dispatcher once
pmops.service.batch_progress.advance has
found their dependencies complete."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Cancelled, Completed, Failed

from flows.observe import run_logs
from pmops.service.batch_progress import BATCH_TERMINAL, advance
from pmops.settings import get_settings
from pmops.store.tables import engine_for


def follow_batch(batch_id: str) -> State:
    """Move the batch on until it ends; its end as this flow run's state."""
    settings = get_settings()
    engine = engine_for(settings.resolved_database_url)
    with run_logs(settings, batchId=batch_id):
        status = advance(engine, batch_id)
        while status not in BATCH_TERMINAL:
            time.sleep(settings.batch_poll_seconds)
            status = advance(engine, batch_id)
    message = f"batch {batch_id} ended {status}"
    if status == "Completed":
        return Completed(message=message)
    return Cancelled(message=message) if status == "Cancelled" else Failed(message=message)


@flow(name="Batch", persist_result=False, validate_parameters=False)
def run_batch(batch_id: str) -> Any:
    return follow_batch(batch_id)
