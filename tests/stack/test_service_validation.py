"""Who may see a finished run's things, on a real `pmops up`. Everything that needs no run
(bad input, auth, tenancy of waiting operations and datasets, idempotency, uploads) is tested in
process: tests/api/test_validation.py."""

from __future__ import annotations

import pytest

from tests.service_stack import assert_problem

pytestmark = pytest.mark.xdist_group("stack")


@pytest.fixture(scope="module")
def tenant_b(stack):
    other = stack.create_token()
    yield other
    other.close()


def test_another_tenant_sees_nothing_of_a_finished_run(api, tenant_b, completed_analysis) -> None:
    op_id = completed_analysis["operationId"]
    # the bearer path of the artifact (its signed link would be 403 once altered)
    artifact = api.results(op_id).json()["artifacts"][0]["downloadUrl"].split("?")[0]
    # through B's own path: A's things do not exist there
    assert_problem(tenant_b.get(f"/async/operation/{op_id}"), 404)
    assert_problem(tenant_b.results(op_id), 404)
    assert_problem(tenant_b.results(op_id, format="download"), 404)
    assert_problem(tenant_b.get(artifact.replace(api.base, tenant_b.base)), 404)
    assert_problem(tenant_b.get(artifact), 404)
    assert_problem(tenant_b.delete(f"/async/operation/{op_id}"), 404)
    r = tenant_b.post(
        "/async/operation",
        json={
            "operationType": "ReportGeneration",
            "operationName": "steal",
            "parameters": {"sourceOperationId": op_id},
        },
    )
    assert_problem(r, 422, "parameters.sourceOperationId")
    assert api.status(op_id)["status"] == "Completed"
