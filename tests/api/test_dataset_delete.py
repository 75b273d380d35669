"""DELETE /datasets/{id}, in process: 409 naming the operation while a queued or running one
reads the dataset; else 204, and the row and the uploaded file are gone. Another tenant's
dataset is a 404 (and stays)."""

from __future__ import annotations

from pathlib import Path

from pmops.service.lifecycle import claim
from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem


def upload_folder(served: Served, api: Client, dataset_id: str) -> Path:
    return served.settings.uploads_dir.resolve() / api.tenant / dataset_id


def test_delete_waits_for_the_operations_that_read_it(
    served: Served, api: Client, tenant_b: Client, datasets: Path
) -> None:
    dataset_id = api.upload(datasets / "running-example.xes")["datasetId"]
    folder = upload_folder(served, api, dataset_id)
    assert folder.is_dir()
    queued = api.start(dataset_id, "queued reader")["operationId"]
    running = api.start(dataset_id, "running reader")["operationId"]
    assert claim(served.engine, running, None, "host:1") is not None

    # another tenant: not found, whatever the path's ids
    for path in (f"{api.base}/datasets/{dataset_id}", f"{tenant_b.base}/datasets/{dataset_id}"):
        assert_problem(tenant_b.delete(path), 404)

    for op_id in (queued, running):
        body = assert_problem(api.delete(f"/datasets/{dataset_id}"), 409, "datasetId")
        assert body["operationId"] in (queued, running) and body["operationId"] in body["detail"]
        cancel = api.delete(f"/async/operation/{op_id}", json={"forceTermination": True})
        assert cancel.status_code == 200, cancel.text

    r = api.delete(f"/datasets/{dataset_id}")
    assert r.status_code == 204 and r.content == b""
    assert_problem(api.get(f"/datasets/{dataset_id}"), 404)
    assert not folder.exists()
    assert dataset_id not in [d["datasetId"] for d in api.get("/datasets").json()["datasets"]]
    r = api.post(
        "/async/operation",
        json={
            "operationType": "ProcessMiningAnalysis",
            "operationName": "too late",
            "parameters": {"datasetId": dataset_id},
        },
    )
    assert_problem(r, 422, "parameters.datasetId")
    assert_problem(api.delete(f"/datasets/{dataset_id}"), 404)  # once


def test_unknown_ids_are_404(api: Client) -> None:
    assert_problem(api.delete("/datasets/not-a-uuid"), 404)
    assert_problem(api.delete("/datasets/00000000-0000-0000-0000-000000000000"), 404)


def test_a_finished_operation_does_not_hold_its_dataset(
    served: Served, api: Client, datasets: Path
) -> None:
    dataset_id = api.upload(datasets / "running-example.xes")["datasetId"]
    op_id = api.start(dataset_id, "done reader")["operationId"]
    assert api.delete(f"/async/operation/{op_id}").status_code == 200
    assert api.delete(f"/datasets/{dataset_id}").status_code == 204
    assert api.status(op_id)["status"] == "Cancelled"  # the operation's record stays
