"""Workpool execution (PMOPS_EXECUTION=workpool): `pmops up` deploys the flows to a Prefect
`process` work pool with queues High/Normal/Low and starts a real `prefect worker start` instead
of the runner. Operations submitted through the API complete, each run in its priority's queue.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.service_stack import eventually, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("stack-aux")]  # a stack of its own

POOL = "pmops-test-pool"


@pytest.fixture(scope="module")
def workpool_stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path):
    with running_stack(
        tmp_path_factory.mktemp("stack-workpool"),
        prefect_template,
        execution="workpool",
        work_pool=POOL,
    ) as stack:
        yield stack


def test_operations_run_on_the_work_pools_worker_in_their_prioritys_queue(
    workpool_stack, datasets: Path
) -> None:
    stack = workpool_stack
    api = stack.dev()
    with pytest.raises(LookupError):
        stack.child("deployments.serve")  # no runner
    ds = api.upload(datasets / "receipt.xes.gz")
    quick = {"datasetId": ds["datasetId"], "analysisType": "quick"}
    high = api.start(None, "on the pool, High", priority="High", parameters=quick)
    low = api.start(None, "on the pool, Low", priority="Low", parameters=quick)
    critical = api.start(None, "on the pool, Critical", priority="Critical", parameters=quick)
    for op, queue in ((high, "High"), (low, "Low"), (critical, "High")):
        final = api.wait(op["operationId"], deadline=240)
        assert final["status"] == "Completed", final
        # the operation is Completed in the store just before its flow returns: the run's own
        # COMPLETED follows (a moment later on a busy machine)
        assert eventually(
            lambda op=op: stack.flow_runs_of(op["operationId"])[0]["state_type"] == "COMPLETED",
            deadline=120,
        ), stack.flow_runs_of(op["operationId"])
        (run,) = stack.flow_runs_of(op["operationId"])
        assert run["work_queue_name"] == queue, run
        deployment = stack.prefect_api("GET", f"/deployments/{run['deployment_id']}").json()
        assert deployment["work_pool_name"] == POOL
        assert deployment["name"] == "pmops"
        waited = datetime.fromisoformat(run["start_time"]) - datetime.fromisoformat(run["created"])
        # a figure for README "Scaling out" (not asserted: the machine's load decides it)
        print(f"workpool: {queue} run created -> Running in {waited.total_seconds():.1f} s")
    # deployments.workpool registered everything, then became `prefect worker start`
    worker = stack.child("prefect worker start")
    assert worker.cmdline()[1:10] == [
        *("-m", "prefect", "worker", "start"),
        *("--pool", POOL, "--type", "process", "--limit"),
    ]
    pool = stack.prefect_api("GET", f"/work_pools/{POOL}").json()
    assert pool["type"] == "process"
    listed = stack.prefect_api("POST", f"/work_pools/{POOL}/queues/filter", json={}).json()
    priorities = {q["name"]: q["priority"] for q in listed}
    assert priorities["High"] < priorities["Normal"] < priorities["Low"], priorities
    api.close()
