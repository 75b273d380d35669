"""Batches (endpoints 8 and 8b) against the real service: a diamond, each failure policy, cycle
and graph errors, cancel, batch callbacks. Failures are injected with `parameters.faultInjection`
(the shared test stack allows it)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from tests.service.test_batch_graph import SEED_BATCH
from tests.service_stack import Tenant, assert_problem

pytestmark = pytest.mark.xdist_group("stack")

BATCH_TERMINAL = ("Completed", "Failed", "Cancelled")
FAIL = {"faultInjection": {"failPhase": "Process Discovery"}}


def submit(api: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/async/batch", json=body)
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == r.json()["trackingUrl"]
    return dict(r.json())


def wait_batch(api: Tenant, batch_id: str, deadline: float = 240) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while True:
        r = api.get(f"/async/batch/{batch_id}")
        assert r.status_code == 200, r.text
        view = r.json()
        if view["status"] in BATCH_TERMINAL or time.monotonic() > end:
            return dict(view)
        time.sleep(0.3)


def by_key(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["operationKey"]: o for o in view["operations"]}


def analysis(key: str, deps: list[str], **params: Any) -> dict[str, Any]:
    return {
        "operationKey": key,
        "operationName": f"analysis {key}",
        "operationType": "ProcessMiningAnalysis",
        "dependencies": deps,
        "parameters": {"analysisType": "quick", **params},
    }


def test_a_diamond_runs_in_dependency_order(api: Tenant, stack: Any, receipt_dataset: dict) -> None:
    body = {
        "batchName": "monthly receipts",
        "operations": [
            {
                "operationKey": "clean",
                "operationName": "clean the log",
                "operationType": "DataEnrichment",
                "parameters": {"datasetId": receipt_dataset["datasetId"]},
            },
            analysis("quick", ["clean"]),
            analysis("standard", ["clean"], analysisType="standard"),
            {
                "operationKey": "report",
                "operationName": "executive summary",
                "operationType": "ReportGeneration",
                "dependencies": ["quick", "standard"],
                "parameters": {"reportType": "executive_summary"},
            },
        ],
    }
    answer = submit(api, body)
    assert answer["batchId"].startswith("batch-") and answer["totalOperations"] == 4
    planned = {o["operationKey"]: o for o in answer["operations"]}
    assert "estimatedStartTime" in planned["report"] and planned["report"]["dependencies"]
    view = wait_batch(api, answer["batchId"])
    assert view["status"] == "Completed", view
    ops = by_key(view)
    statuses = {k: api.status(o["operationId"]) for k, o in ops.items()}
    assert all(s["status"] == "Completed" for s in statuses.values())

    def started(key: str) -> str:
        return str(statuses[key]["progress"]["startTime"])

    def ended(key: str) -> str:
        return str(statuses[key]["progress"]["estimatedCompletion"])

    # ISO seconds compare as text: each started no earlier than its dependencies ended
    assert started("quick") >= ended("clean") and started("standard") >= ended("clean")
    assert started("report") >= max(ended("quick"), ended("standard"))
    # inputs came from the dependencies: the enriched dataset, and the analysis for the report
    enriched = api.get("/datasets").json()
    clean_id = ops["clean"]["operationId"]
    made = [d for d in enriched["datasets"] if d.get("sourceOperationId") == clean_id]
    assert made, enriched
    results = api.results(ops["quick"]["operationId"], format="detailed").json()
    assert results["summary"]["recordsAnalyzed"] > 0
    # in Prefect, each operation's flow run is a subflow of the batch's parent run
    parent = view["prefect"]["flowRunId"]
    for op in ops.values():
        run = stack.flow_run(statuses[op["operationKey"]]["prefect"]["flowRunId"])
        task = stack.prefect_api("GET", f"/task_runs/{run['parent_task_run_id']}").json()
        assert task["flow_run_id"] == parent and task["name"] == op["operationKey"]
        assert f"batch:{view['batchId']}" in run["tags"]


def test_continue_independent_operations(api: Tenant, receipt_dataset: dict) -> None:
    ds = receipt_dataset["datasetId"]
    body = {
        "batchName": "one branch fails",
        "failurePolicy": {"continueIndependentOperations": True},
        "operations": [
            analysis("bad", [], datasetId=ds, **FAIL),
            {
                "operationKey": "after-bad",
                "operationName": "report of bad",
                "operationType": "ReportGeneration",
                "dependencies": ["bad"],
            },
            analysis("good", [], datasetId=ds),
        ],
    }
    view = wait_batch(api, submit(api, body)["batchId"])
    ops = by_key(view)
    assert view["status"] == "Failed"
    assert ops["bad"]["status"] == "Failed" and ops["good"]["status"] == "Completed"
    assert ops["after-bad"]["status"] == "Cancelled"
    assert ops["after-bad"]["reason"] == "dependency failed: bad"
    after = api.status(ops["after-bad"]["operationId"])
    assert after["status"] == "Cancelled" and after["progress"]["startTime"] is None


def test_stop_on_first_failure(api: Tenant, receipt_dataset: dict) -> None:
    ds = receipt_dataset["datasetId"]
    body = {
        "batchName": "stop at once",
        "failurePolicy": {"stopOnFirstFailure": True},
        "operations": [
            analysis("bad", [], datasetId=ds, **FAIL),
            analysis("later", ["bad"], datasetId=ds),
            analysis("waits", ["slow"], datasetId=ds),
            {**analysis("slow", [], datasetId=ds, analysisType="comprehensive"), "priority": "Low"},
        ],
    }
    view = wait_batch(api, submit(api, body)["batchId"])
    ops = by_key(view)
    assert view["status"] == "Failed"
    assert ops["bad"]["status"] == "Failed"
    assert ops["later"]["status"] == "Cancelled" and ops["waits"]["status"] == "Cancelled"
    assert ops["slow"]["status"] in ("Cancelled", "Completed")  # it may finish first
    assert "stopOnFirstFailure" in ops["waits"]["reason"] or "dependency" in ops["waits"]["reason"]


def test_retry_failed_operations_first(api: Tenant, receipt_dataset: dict) -> None:
    ds = receipt_dataset["datasetId"]
    body = {
        "batchName": "retried member",
        "failurePolicy": {"retryFailedOperations": True},
        "operations": [analysis("bad", [], datasetId=ds, **FAIL), analysis("next", ["bad"])],
    }
    body["operations"][1]["parameters"]["datasetId"] = ds
    view = wait_batch(api, submit(api, body)["batchId"])
    ops = by_key(view)
    # the member was retried once (its failure is in its parameters), then the dependent ended
    assert ops["bad"]["status"] == "Failed" and "originalOperationId" in ops["bad"]
    retried = api.status(ops["bad"]["operationId"])
    assert retried["retryOf"]["originalOperationId"] == ops["bad"]["originalOperationId"]
    assert ops["next"]["status"] == "Cancelled"


def test_graph_errors_are_422_naming_them(api: Tenant, receipt_dataset: dict) -> None:
    ds = receipt_dataset["datasetId"]

    def ops(*items: dict[str, Any]) -> dict[str, Any]:
        return {"batchName": "bad graph", "operations": list(items)}

    cycle = api.post(
        "/async/batch",
        json=ops(
            analysis("a", ["c"], datasetId=ds),
            analysis("b", ["a"], datasetId=ds),
            analysis("c", ["b"], datasetId=ds),
        ),
    )
    problem = assert_problem(cycle, 422, "operations")
    assert "cycle" in problem["detail"] and "a -> " in problem["detail"]
    unknown = api.post("/async/batch", json=ops(analysis("a", ["ghost"], datasetId=ds)))
    assert "ghost" in assert_problem(unknown, 422, "operations[0].dependencies[0]")["detail"]
    twice = api.post(
        "/async/batch", json=ops(analysis("a", [], datasetId=ds), analysis("a", [], datasetId=ds))
    )
    assert_problem(twice, 422, "operations[1].operationKey")
    no_input = api.post("/async/batch", json=ops(analysis("a", [])))
    assert_problem(no_input, 422, "operations[0].parameters.datasetId")
    bad_param = api.post(
        "/async/batch", json=ops(analysis("a", [], datasetId=ds, algorithm="nope"))
    )
    assert_problem(bad_param, 422, "operations[0].parameters.algorithm")
    # nothing of a refused batch was recorded
    listed = api.get("/async/operations", params={"pageSize": 100}).json()["operations"]
    assert not any(o["operationName"] == "analysis a" for o in listed)


def test_cancel_a_batch(api: Tenant, stack: Any, bpic_dataset: dict) -> None:
    ds = bpic_dataset["datasetId"]
    answer = submit(
        api,
        {
            "batchName": "to cancel",
            "operations": [
                analysis("first", [], datasetId=ds, analysisType="comprehensive"),
                analysis("second", ["first"], datasetId=ds),
            ],
        },
    )
    batch_id = answer["batchId"]
    first = answer["operations"][0]["operationId"]
    api.wait(first, until=lambda s: s["status"] == "Running", deadline=90)
    r = api.delete(f"/async/batch/{batch_id}")
    assert r.status_code == 200, r.text
    view = wait_batch(api, batch_id)
    ops = by_key(view)
    assert view["status"] == "Cancelled"
    assert ops["second"]["status"] == "Cancelled" and ops["first"]["status"] == "Cancelled"
    assert_problem(api.delete(f"/async/batch/{batch_id}"), 409)
    other = stack.create_token()
    try:
        assert_problem(other.get(f"{api.base}/async/batch/{batch_id}"), 404)
        assert_problem(other.delete(f"{api.base}/async/batch/{batch_id}"), 404)
    finally:
        other.close()


def test_the_seed_batch_example_completes(api: Tenant, receipt_dataset: dict) -> None:
    """The seed's batch example verbatim but for the dataset id (its batchCallbacks point at
    your-app.com, so they are left out): `performance` has no datasetId and depends on
    `discovery`, an analysis; it analyses what discovery analysed, data-prep's output."""
    body = copy.deepcopy(SEED_BATCH)
    body["operations"][0]["parameters"]["datasetId"] = receipt_dataset["datasetId"]
    answer = submit(api, body)
    assert [o["operationKey"] for o in answer["operations"]] == [
        "data-prep",
        "discovery",
        "performance",
    ]
    view = wait_batch(api, answer["batchId"])
    assert view["status"] == "Completed", view
    ops = by_key(view)
    made = [
        d
        for d in api.get("/datasets").json()["datasets"]
        if d.get("sourceOperationId") == ops["data-prep"]["operationId"]
    ]
    assert len(made) == 1, made
    analysed = {}
    for key in ("discovery", "performance"):
        status = api.status(ops[key]["operationId"])
        assert status["status"] == "Completed", status
        detailed = api.results(ops[key]["operationId"], format="detailed").json()
        analysed[key] = detailed["summary"]["recordsAnalyzed"]
    # both analysed the same (enriched) dataset
    assert analysed["discovery"] == analysed["performance"] > 0, analysed
