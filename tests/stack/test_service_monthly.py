"""The scheduled monthly pipeline: registered by `pmops up`, shown with its next runs in
Prefect, and, triggered by hand as a person does from the UI, run as a batch of its tenant."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.receivers import wait_until
from tests.service_stack import Tenant

pytestmark = pytest.mark.xdist_group("stack")


def deployment(stack: Any, api: Tenant) -> dict[str, Any]:
    """The dev project's monthly deployment, once the runner has registered it."""
    name = f"MonthlyPipeline/monthly-{api.project[:8]}"
    found = wait_until(
        lambda: (
            (r := stack.prefect_api("GET", f"/deployments/name/{name}")).status_code == 200
            and r.json()
        ),
        deadline=60,
    )
    assert found, f"no deployment {name}"
    return dict(found)


def test_the_monthly_deployment_is_scheduled(stack: Any, api: Tenant) -> None:
    dep = deployment(stack, api)
    (schedule,) = dep["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 1 * *"
    assert schedule["schedule"]["timezone"] == "Europe/Amsterdam"
    assert dep["parameters"]["tenant_id"] == api.tenant
    assert dep["parameters"]["project_id"] == api.project

    def upcoming() -> list[dict[str, Any]]:
        r = stack.prefect_api(
            "POST",
            "/flow_runs/filter",
            json={
                "flow_runs": {
                    "deployment_id": {"any_": [dep["id"]]},
                    "state": {"type": {"any_": ["SCHEDULED"]}},
                }
            },
        )
        r.raise_for_status()
        return list(r.json())

    runs = wait_until(upcoming, deadline=60)
    assert runs, "Prefect's scheduler made no upcoming runs"
    for run in runs:
        when = datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00"))
        local = when.astimezone(ZoneInfo("Europe/Amsterdam"))
        assert (local.day, local.hour, local.minute) == (1, 2, 0)


def test_a_run_by_hand_is_a_batch_of_the_tenant(
    stack: Any, api: Tenant, receipt_dataset: dict
) -> None:
    dep = deployment(stack, api)

    r = stack.prefect_api(
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        json={"parameters": {"dataset_ids": [receipt_dataset["datasetId"]]}},
    )
    assert r.status_code == 201, r.text
    flow_run_id = r.json()["id"]

    def batch() -> dict[str, Any] | None:
        for item in api.get("/async/batches").json()["batches"]:
            view = api.get(f"/async/batch/{item['batchId']}").json()
            if view.get("prefect", {}).get("flowRunId") == flow_run_id:
                return dict(view)
        return None

    found = wait_until(batch, deadline=60)
    assert found, "the monthly run made no batch"
    assert found["batchName"].startswith("Monthly pipeline ")
    deadline = time.monotonic() + 240
    while found["status"] not in ("Completed", "Failed", "Cancelled"):
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
        found = api.get(f"/async/batch/{found['batchId']}").json()
    assert found["status"] == "Completed", found
    types = [o["operationType"] for o in found["operations"]]
    assert types == ["DataEnrichment", "ProcessMiningAnalysis", "ReportGeneration"]
    assert all(o["status"] == "Completed" for o in found["operations"])
    run = wait_until(
        lambda: (s := stack.flow_run(flow_run_id))["state_type"] == "COMPLETED" and s, deadline=30
    )
    assert run, stack.flow_run(flow_run_id)
