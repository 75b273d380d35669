"""Workpool execution (PMOPS_EXECUTION=workpool): the flows deployed to a Prefect `process` work
pool, run by `prefect worker start --pool <pool>` on any machine (`python -m deployments.workpool`).

register() makes, idempotently (every worker's start runs it; two machines at once are fine):
- the work pool PMOPS_WORK_POOL (type `process`),
- its queues High, Normal and Low (Prefect queue priorities 1, 2, 3: a worker takes High's
  runs first). The API creates each operation's run in its priority's queue (Critical -> High,
  pmops.contract.enums.Priority.work_queue), a batch's parent run in High;
- one deployment per operation type, named 'pmops' as deployments/serve.py serves them, with a
  module-path entrypoint (`flows.analyze_process.analyze_process`): a worker's flow-run process
  imports it from the installed package, so no code is copied anywhere,
- the monthly pipelines (deployments/monthly.py) on their cron, in the Normal queue.

main() then becomes `prefect worker start` (exec: the supervisor's child is the worker itself),
taking at most PMOPS_WORKER_LIMIT + PMOPS_BATCH_PARENT_LIMIT runs at once and asking for runs
every PREFECT_WORKER_QUERY_SECONDS (pmops up sets it to PMOPS_RUNNER_POLL_SECONDS; Prefect's 10 s
default puts 12-21 s between submit and Running). Each run is a fresh `python -m prefect.engine`
process: slower to start than the runner's forked warm processes (deployments/warmstart.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import suppress

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from deployments import monthly
from deployments.serve import DEPLOYMENT_NAME, FLOWS
from flows.monthly_pipeline import monthly_pipeline
from pmops.contract.enums import WORK_QUEUES
from pmops.settings import Settings, get_settings

DEFAULT_QUEUE = "Normal"


async def ensure_pool(pool: str) -> None:
    """The process work pool and its High/Normal/Low queues (priorities 1, 2, 3)."""
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another machine's worker was first
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        queues = {q.name: q for q in await client.read_work_queues(work_pool_name=pool)}
        for priority, name in enumerate(WORK_QUEUES, start=1):
            if name not in queues:
                with suppress(ObjectAlreadyExists):
                    await client.create_work_queue(
                        name=name, work_pool_name=pool, priority=priority
                    )
            elif queues[name].priority != priority:
                await client.update_work_queue(queues[name].id, priority=priority)


async def register(settings: Settings) -> list[str]:
    """Pool, queues and deployments (see the module's doc); the deployments' full names."""
    pool = settings.work_pool
    await ensure_pool(pool)
    names = []
    for op_type, f in FLOWS.items():
        deployment = await f.ato_deployment(
            name=DEPLOYMENT_NAME,
            work_pool_name=pool,
            work_queue_name=DEFAULT_QUEUE,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["pmops", op_type],
        )
        await deployment.aapply()
        names.append(deployment.full_name)
    for pipeline in monthly.configured(settings):
        deployment = await monthly_pipeline.ato_deployment(
            name=pipeline.deployment_name,
            work_pool_name=pool,
            work_queue_name=DEFAULT_QUEUE,
            entrypoint_type=EntrypointType.MODULE_PATH,
            schedule=Cron(settings.monthly_cron, timezone=settings.monthly_timezone),
            parameters=pipeline.parameters(),
            tags=["pmops", "monthly", f"tenant:{pipeline.tenant_id}"],
            description="DataEnrichment, ProcessMiningAnalysis, ReportGeneration per dataset",
        )
        await deployment.aapply()
        names.append(deployment.full_name)
    return names


def worker_argv(settings: Settings) -> list[str]:
    """`prefect worker start` for the pool, as many runs at once as the runner would take."""
    limit = settings.worker_limit + settings.batch_parent_limit
    return [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        settings.work_pool,
        "--type",
        "process",
        "--limit",
        str(limit),
    ]


def main() -> None:
    settings = get_settings()
    asyncio.run(register(settings))
    # as the runner does: pyarrow's system allocator (deployments/serve.py)
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    argv = worker_argv(settings)
    sys.stdout.flush()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
