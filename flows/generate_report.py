"""ReportGeneration: collect the source figures, write the executive summary."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from analysis.phases import COLLECT, REPORTS
from analysis.runs import ReportGenerationRun
from flows.lifecycle import run_operation


@task(name=COLLECT, cache_policy=NONE)
def collect_source(run: ReportGenerationRun) -> dict[str, Any]:
    return run.run_collect()


@task(name=REPORTS, cache_policy=NONE)
def write_reports(run: ReportGenerationRun) -> dict[str, Any]:
    return run.run_reports()


@flow(name="ReportGeneration", persist_result=False, validate_parameters=False)
def generate_report(operation_id: str) -> Any:
    return run_operation(operation_id, ReportGenerationRun, [collect_source, write_reports])
