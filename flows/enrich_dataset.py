"""DataEnrichment: read the log, apply the cleaning rules, write a new dataset."""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from sqlalchemy.engine import Engine

from analysis.phases import CLEANING, EXPORT, LOAD
from analysis.runs import DataEnrichmentRun
from flows.lifecycle import run_operation
from pmops.service.registration import register_dataset
from pmops.service.storage import join, result_key


@task(name=LOAD, cache_policy=NONE)
def read_log(run: DataEnrichmentRun) -> dict[str, Any]:
    return run.run_load()


@task(name=CLEANING, cache_policy=NONE)
def clean_events(run: DataEnrichmentRun) -> dict[str, Any]:
    return run.run_cleaning()


@task(name=EXPORT, cache_policy=NONE)
def export_dataset(run: DataEnrichmentRun) -> dict[str, Any]:
    return run.run_export()


def register_output(engine: Engine, row: dict[str, Any], run: DataEnrichmentRun) -> None:
    """The enriched file becomes a dataset of the same tenant and project: its key is the
    artifact's (stored when the export phase completed)."""
    artifact = run.artifacts[-1]
    dataset_id = str(uuid.uuid4())
    summary = register_dataset(
        engine,
        dataset_id=dataset_id,
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        path=run.out_dir / artifact.path,
        key=join(result_key(row["operation_id"]), artifact.path),
        file_name=f"{row['operation_name']} (enriched){run.out_dir.joinpath(artifact.path).suffix}",
        source_operation_id=row["operation_id"],
    )
    run.enriched_dataset = {"datasetId": dataset_id, **summary}


@flow(name="DataEnrichment", persist_result=False, validate_parameters=False)
def enrich_dataset(operation_id: str) -> Any:
    return run_operation(
        operation_id,
        DataEnrichmentRun,
        [read_log, clean_events, export_dataset],
        on_complete=register_output,
    )
