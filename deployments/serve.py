"""Serve one deployment per operation type from this process (`python -m deployments.serve`).

The API creates flow runs from these deployments; the runner polls every 0.2 s (Prefect's default
of 10 s would add ~12 s between submit and Running). The API starts at most PMOPS_WORKER_LIMIT
operations at once; batch parent runs (PMOPS_BATCH_PARENT_LIMIT) come on top.

The flows are added to the Runner in memory (Runner.add_flow, what Flow.serve does), so a run is
started by pickling the flow into a child process rather than `python -m prefect.engine`
re-importing it from its file; with PMOPS_WARM_START (default on) that child is forked from a
forkserver that already imported prefect and the flows (deployments/warmstart.py).

Several runners (one per machine, `pmops up --only runner`) serve the same deployments; the one
that stops leaves their schedules active (pause_on_shutdown=False). PMOPS_EXECUTION=workpool
replaces the runner with a Prefect work pool and its workers (deployments/workpool.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prefect import Flow
from prefect.exceptions import TerminationSignal
from prefect.logging import get_logger
from prefect.schedules import Cron

from deployments import monthly
from deployments.gate import GatedRunner, RunGate
from flows.analyze_process import analyze_process
from flows.enrich_dataset import enrich_dataset
from flows.generate_report import generate_report
from flows.lifecycle import runs_to_start
from flows.monthly_pipeline import monthly_pipeline
from flows.observe import process_logs
from flows.run_batch import run_batch
from pmops.settings import get_settings

DEPLOYMENT_NAME = "pmops"
FLOWS: dict[str, Flow[Any, Any]] = {
    "ProcessMiningAnalysis": analyze_process,
    "DataEnrichment": enrich_dataset,
    "ReportGeneration": generate_report,
    "Batch": run_batch,
}


def deployment_path(operation_type: str) -> str:
    """'<flow name>/<deployment name>', as the Prefect client looks deployments up."""
    return f"{FLOWS[operation_type].name}/{DEPLOYMENT_NAME}"


def main() -> None:
    settings = get_settings()
    process_logs(settings)
    # pyarrow's default pool (mimalloc) reserves 1 GiB of address space on first use: with the
    # flow runs' address-space limit (pmops/service/runlimits.py) that is memory they could not
    # use; the system allocator reserves only what it hands out. Read by pyarrow's C++ side when
    # the pool is first made, so set before any flow-run process starts.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if settings.warm_start:
        from deployments import warmstart

        warmstart.install()
    # the API starts at most worker_limit operations; batch parents come on top
    # and standby runs (PMOPS_STANDBY_RUNS) wait in their processes for a slot
    limit = settings.worker_limit + settings.batch_parent_limit + settings.standby_runs
    # pause_on_shutdown=False: Prefect's Runner otherwise pauses the schedules of every deployment
    # it served when it stops, and the deployments (the monthly pipelines' schedule too) are
    # shared by every runner of the service (README "Scaling out")
    # it asks Prefect for runs only when the store shows one it has not seen, or every 2 s
    # (deployments/gate.py)
    runner = GatedRunner(
        limit=limit,
        query_seconds=settings.runner_poll_seconds,
        pause_on_shutdown=False,
        gate=RunGate(lambda: runs_to_start(settings)),
    )
    for op_type, f in FLOWS.items():
        runner.add_flow(f, name=DEPLOYMENT_NAME, tags=["pmops", op_type])
    for pipeline in monthly.configured(settings):
        runner.add_flow(
            monthly_pipeline,
            name=pipeline.deployment_name,
            schedule=Cron(settings.monthly_cron, timezone=settings.monthly_timezone),
            parameters=pipeline.parameters(),
            tags=["pmops", "monthly", f"tenant:{pipeline.tenant_id}"],
            description="DataEnrichment, ProcessMiningAnalysis, ReportGeneration per dataset",
        )
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal) as exc:
        get_logger("pmops.serve").info("Received %s, shutting down...", type(exc).__name__)


if __name__ == "__main__":
    main()
