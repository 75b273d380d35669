"""Bounded resources per flow run (issue #16) on a real stack: a flow-run process is held to its
operation's memoryGB (pmops/service/runlimits.py: a cgroup where the machine has a writable
memory controller, v2 or v1 (this machine: v1), else RLIMIT_AS), a run that needs more ends
Failed `resource_exhausted` naming the limit (never `worker_lost`, never a 500), and a retry
with a larger `resourceAllocation.memoryGB` completes.

The stack runs with PMOPS_MEMORY_GB=0.1. In a cgroup the kernel's OOM killer ends the run when
it charges more than 0.1 GB, and the dispatcher's sweep reads the kill from the cgroup; under
RLIMIT_AS (0.1 + 1.25 GB of address space, below the ~1.46 GB a comprehensive analysis of the log
with 100,000 distinct activities (bench/wide_logs.py) maps) an allocation fails in a phase. Its
retry with memoryGB 2 (the default) completes. Every other stack test runs under the default
limit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmops.service import runlimits
from pmops.settings import Settings
from tests.service_stack import REPO, Stack, Tenant, running_stack

sys.path.insert(0, str(REPO / "bench"))
import wide_logs

pytestmark = [pytest.mark.fault, pytest.mark.xdist_group("stack-limits")]

LIMIT_GB = 0.1


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, prefect_template: Path
) -> Iterator[tuple[Stack, Tenant]]:
    with running_stack(
        tmp_path_factory.mktemp("stack-limits"), prefect_template, memory_gb=LIMIT_GB
    ) as stack:
        tenant = stack.dev()
        yield stack, tenant
        tenant.close()


@pytest.fixture(scope="module")
def wide_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wide_logs.many_activities(tmp_path_factory.mktemp("wide") / "activities.csv")


def _peak_gb(document: dict[str, Any]) -> float:
    """The run's peak resident memory: the largest of its phases' (kernel high-water mark)."""
    peaks = [
        (p.get("resourceUsage") or {}).get("peakMemoryBytes", 0) for p in document["phaseResults"]
    ]
    return float(max(peaks, default=0)) / 1024**3


def test_the_memory_limit_kill(limited, wide_log: Path, record_property) -> None:
    """A comprehensive analysis of the 100,000-activity CSV under memoryGB 0.1 (the run's own
    cgroup memory limit where the kernel lets pmops make one, v2 or v1; else RLIMIT_AS, the
    flow-run process's address space capped at memoryGB plus the reserve): Failed with code
    `resource_exhausted` and a message naming the 0.1 GB limit, not `worker_lost`; the results
    say so; a restart retry with resourceAllocation.memoryGB 2 completes within its limit."""
    _, api = limited
    dataset = api.upload(wide_log)
    op = api.start(dataset["datasetId"], "too wide", parameters={"analysisType": "comprehensive"})
    final = api.wait(op["operationId"], deadline=300)
    assert final["status"] == "Failed", final
    error = final["error"]
    assert error["code"] == "resource_exhausted", error
    assert "0.1 GB memory limit (memoryGB)" in error["message"]
    in_cgroup = runlimits.hierarchy(Settings()) is not None and os.geteuid() == 0
    how = "was stopped by the kernel's OOM killer at" if in_cgroup else "needed more than"
    assert how in error["message"], error
    assert "resourceAllocation.memoryGB" in error["message"]
    doc = api.results(op["operationId"])
    assert doc.status_code == 200
    assert doc.json()["error"]["code"] == "resource_exhausted"
    failed_in = [p["phaseName"] for p in doc.json()["phaseResults"] if p["status"] == "Failed"]

    r = api.post(
        f"/async/operation/{op['operationId']}/retry",
        json={
            "retryMode": "restart",
            "retryReason": "more memory",
            "updatedParameters": {"resourceAllocation": {"memoryGB": 2}},
        },
    )
    assert r.status_code == 202, r.text
    again = api.wait(r.json()["newOperationId"], deadline=300)
    assert again["status"] == "Completed", again
    assert r.json()["resourcesAllocated"]["memoryGB"] == 2
    assert again["retryOf"]["resourceAllocation"] == {"memoryGB": 2}
    peak = _peak_gb(api.results(again["operationId"], format="detailed").json())
    assert 0 < peak < 2  # within the retry's limit
    record_property("tried", 1)
    record_property(
        "observed",
        f"Failed ({error['code']}: {how} the limit) in {', '.join(failed_in) or 'no phase'} "
        f"under memoryGB "
        f"{LIMIT_GB:g}; the retry with memoryGB 2 completed, peak resident {peak:.2f} GB",
    )
