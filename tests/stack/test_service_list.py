"""GET /async/operations on the real service: the list row of a finished run. Filters,
pagination, the summary and the order are tested in process (tests/api/test_list.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("stack")


@pytest.fixture(scope="module")
def finished(stack, datasets: Path):
    """A quick analysis of the running example, run to completion in a tenant of its own."""
    tenant = stack.create_token()
    ds = tenant.upload(datasets / "running-example.xes")["datasetId"]
    op = tenant.start(ds, "a: analysis", parameters={"analysisType": "quick"})
    assert tenant.wait(op["operationId"])["status"] == "Completed"
    yield tenant, op["operationId"]
    tenant.close()


def test_a_finished_run_in_the_list(finished) -> None:
    tenant, op_id = finished
    page = tenant.get("/async/operations").json()
    assert page["summary"]["totalOperations"] == 1 and page["summary"]["completed"] == 1
    (done,) = page["operations"]
    assert done["operationId"] == op_id and done["status"] == "Completed"
    assert done["progress"] == 100 and done["priority"] == "Normal"
    assert done["startTime"] and done["endTime"] and done["duration"]
    assert done["recordsProcessed"] == 42
    assert done["resourceUsage"]["memoryUsage"]
    assert "details" not in done
    detailed = tenant.get("/async/operations", params={"includeDetails": "true"}).json()
    assert detailed["operations"][0]["details"] == tenant.status(op_id)
