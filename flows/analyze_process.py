"""ProcessMiningAnalysis: load and validate, discover, machine learning, reports."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from analysis.phases import DISCOVERY, LOAD, MACHINE_LEARNING, REPORTS
from analysis.runs import ProcessMiningRun
from flows.lifecycle import run_operation


@task(name=LOAD, cache_policy=NONE)
def load_and_validate(run: ProcessMiningRun) -> dict[str, Any]:
    return run.run_load()


@task(name=DISCOVERY, cache_policy=NONE)
def discover_process(run: ProcessMiningRun) -> dict[str, Any]:
    return run.run_discovery()


@task(name=MACHINE_LEARNING, cache_policy=NONE)
def analyse_with_ml(run: ProcessMiningRun) -> dict[str, Any]:
    return run.run_machine_learning()


@task(name=REPORTS, cache_policy=NONE)
def generate_reports(run: ProcessMiningRun) -> dict[str, Any]:
    return run.run_reports()


# validate_parameters=False on every operation flow: the one parameter is the operation id the API
# wrote, and Prefect builds a pydantic model of the signature on every call (~4 % of a quick
# analysis's flow-run CPU; bench/notes/load.md)
@flow(name="ProcessMiningAnalysis", persist_result=False, validate_parameters=False)
def analyze_process(operation_id: str) -> Any:
    return run_operation(
        operation_id,
        ProcessMiningRun,
        [load_and_validate, discover_process, analyse_with_ml, generate_reports],
    )
