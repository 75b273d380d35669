"""Serve one deployment per operation type from this process (`python -m deployments.serve`).

The API creates flow runs from these deployments; the runner polls every 0.2 s (Prefect's default
of 10 s would add ~12 s between submit and Running) and runs at most PMOPS_WORKER_LIMIT at once.
"""

from __future__ import annotations

from typing import cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.analyze_process import analyze_process
from flows.enrich_dataset import enrich_dataset
from flows.generate_report import generate_report
from pmops.settings import get_settings

DEPLOYMENT_NAME = "pmops"
FLOWS = {
    "ProcessMiningAnalysis": analyze_process,
    "DataEnrichment": enrich_dataset,
    "ReportGeneration": generate_report,
}


def deployment_path(operation_type: str) -> str:
    """'<flow name>/<deployment name>', as the Prefect client looks deployments up."""
    return f"{FLOWS[operation_type].name}/{DEPLOYMENT_NAME}"


def main() -> None:
    settings = get_settings()
    deployments = [
        cast(RunnerDeployment, f.to_deployment(name=DEPLOYMENT_NAME, tags=["pmops", op_type]))
        for op_type, f in FLOWS.items()
    ]
    serve(
        *deployments,
        limit=settings.worker_limit,
        query_seconds=0.2,
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
