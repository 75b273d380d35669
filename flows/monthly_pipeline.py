"""MonthlyPipeline: each month, for a project's datasets, DataEnrichment, then
ProcessMiningAnalysis, then ReportGeneration, as one batch of that tenant.

The flow asks for the batch through the service (a `batch_submissions` row): the API's dispatcher
validates and creates it exactly as POST /async/batch does, with this flow run as its parent, and
this flow then moves it on until it ends (as flows/run_batch.py does). So the month's work shows
in the API as an ordinary batch, and in the Prefect UI under this deployment.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, runtime
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from sqlalchemy.engine import Engine

from flows.observe import run_logs
from flows.run_batch import follow_batch
from pmops.service.lifecycle import project_uploads, submission_outcome, submit_batch
from pmops.settings import Settings, get_settings
from pmops.store.tables import engine_for

SUBMISSION_WAIT_SECONDS = 120.0


def monthly_batch(dataset_ids: list[str], month: str, analysis_type: str) -> dict[str, Any]:
    """The batch body: per dataset, clean -> analyse -> report."""
    operations: list[dict[str, Any]] = []
    for n, dataset_id in enumerate(dataset_ids, start=1):
        clean, analyse = f"clean-{n}", f"analyse-{n}"
        operations += [
            {
                "operationKey": clean,
                "operationName": f"{month} cleaning of dataset {n}",
                "operationType": "DataEnrichment",
                "parameters": {"datasetId": dataset_id},
            },
            {
                "operationKey": analyse,
                "operationName": f"{month} analysis of dataset {n}",
                "operationType": "ProcessMiningAnalysis",
                "dependencies": [clean],
                "parameters": {"analysisType": analysis_type},
            },
            {
                "operationKey": f"report-{n}",
                "operationName": f"{month} executive report of dataset {n}",
                "operationType": "ReportGeneration",
                "dependencies": [analyse],
                "parameters": {"reportType": "executive_summary"},
            },
        ]
    return {
        "batchName": f"Monthly pipeline {month}",
        "batchDescription": "scheduled monthly pipeline: DataEnrichment, ProcessMiningAnalysis, "
        "ReportGeneration per dataset",
        "operations": operations,
        "failurePolicy": {"continueIndependentOperations": True},
    }


def _batch_of(engine: Engine, submission_id: str) -> tuple[str | None, Any]:
    deadline = time.monotonic() + SUBMISSION_WAIT_SECONDS
    while time.monotonic() < deadline:
        batch_id, error = submission_outcome(engine, submission_id)
        if batch_id or error:
            return batch_id, error
        time.sleep(0.5)
    return None, {"detail": f"the API did not take the batch in {SUBMISSION_WAIT_SECONDS:.0f} s"}


def _month(timezone: str) -> str:
    when = runtime.flow_run.scheduled_start_time or datetime.now(ZoneInfo(timezone))
    return when.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


@flow(name="MonthlyPipeline", persist_result=False)
def monthly_pipeline(
    tenant_id: str,
    project_id: str,
    dataset_ids: list[str] | None = None,
    analysis_type: str = "standard",
) -> State:
    settings = get_settings()
    with run_logs(settings, tenantId=tenant_id, projectId=project_id):
        return _monthly(settings, tenant_id, project_id, dataset_ids, analysis_type)


def _monthly(
    settings: Settings,
    tenant_id: str,
    project_id: str,
    dataset_ids: list[str] | None,
    analysis_type: str,
) -> State:
    engine = engine_for(settings.resolved_database_url)
    ids = dataset_ids or project_uploads(engine, tenant_id, project_id)
    if not ids:
        return Completed(message="the project has no datasets yet: nothing to do this month")
    body = monthly_batch(ids, _month(settings.monthly_timezone), analysis_type)
    parent = str(runtime.flow_run.id) if runtime.flow_run.id else None
    submission_id = submit_batch(engine, tenant_id, project_id, body, parent)
    batch_id, error = _batch_of(engine, submission_id)
    if batch_id is None:
        return Failed(message=f"the monthly batch was refused: {error}")
    return follow_batch(batch_id)
