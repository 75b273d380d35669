"""What the API answers to bad input and to the wrong tenant: always a 4xx problem+json naming
the field, never a 500. In process (tests/api/conftest.py): no run is needed for any of it."""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from tests.api.conftest import Client, Served
from tests.service_stack import PROBLEM, assert_problem


def start_body(dataset_id: str, **extra) -> dict:
    return {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "validation",
        "parameters": {"datasetId": dataset_id, "analysisType": "quick"},
        **extra,
    }


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


# -- authentication and tenancy --------------------------------------------------------------
def test_missing_or_bad_token_is_401(served: Served, api: Client) -> None:
    url = f"{api.base}/async/operations"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = served.request("GET", url, headers=headers)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = served.request("POST", f"{api.base}/async/operation", json=start_body(str(uuid.uuid4())))
    assert_problem(r, 401)


def test_another_tenant_sees_nothing(api: Client, tenant_b: Client, receipt_dataset) -> None:
    """A's operation (waiting for its run) and dataset do not exist for B. An artifact's URL is
    in the stack's version (tests/stack/test_service_validation.py): it needs a finished run."""
    op_id = api.start(receipt_dataset["datasetId"], "tenancy")["operationId"]
    # through B's own path: A's things do not exist there
    assert_problem(tenant_b.get(f"/async/operation/{op_id}"), 404)
    assert_problem(tenant_b.results(op_id), 404)
    assert_problem(tenant_b.results(op_id, format="download"), 404)
    assert_problem(tenant_b.delete(f"/async/operation/{op_id}"), 404)
    assert_problem(tenant_b.get(f"/datasets/{receipt_dataset['datasetId']}"), 404)
    listed = tenant_b.get("/async/operations").json()
    assert listed["operations"] == [] and listed["summary"]["totalOperations"] == 0
    assert tenant_b.get("/datasets").json()["datasets"] == []
    # through A's path with B's token: not found either (no hint that it exists)
    for path in (
        f"{api.base}/async/operation/{op_id}",
        f"{api.base}/async/operation/{op_id}/results",
        f"{api.base}/datasets/{receipt_dataset['datasetId']}",
        f"{api.base}/async/operations",
        f"{api.base}/datasets",
    ):
        assert_problem(tenant_b.get(path), 404)
    assert_problem(tenant_b.delete(f"{api.base}/async/operation/{op_id}"), 404)
    # A's dataset cannot be the source of B's operation
    r = tenant_b.post("/async/operation", json=start_body(receipt_dataset["datasetId"]))
    assert_problem(r, 422, "parameters.datasetId")
    r = tenant_b.post(
        "/async/operation",
        json={
            "operationType": "ReportGeneration",
            "operationName": "steal",
            "parameters": {"sourceOperationId": op_id},
        },
    )
    assert_problem(r, 422, "parameters.sourceOperationId")
    # and B's attempts changed nothing of A's
    assert api.status(op_id)["status"] == "Initiated"


def test_project_scoped_token_stays_in_its_project(
    served: Served, api: Client, receipt_dataset
) -> None:
    same_tenant = served.tenant(tenant=api.tenant)  # another project of tenant A
    assert_problem(same_tenant.get(f"/datasets/{receipt_dataset['datasetId']}"), 404)
    assert_problem(same_tenant.get(f"{api.base}/datasets"), 404)
    r = same_tenant.post("/async/operation", json=start_body(receipt_dataset["datasetId"]))
    assert_problem(r, 422, "parameters.datasetId")


def test_non_guid_path_ids_are_400(api: Client) -> None:
    for tenant, project, field in (
        ("not-a-guid", api.project, "tenantId"),
        (api.tenant, "12345", "projectId"),
    ):
        r = api.get(f"/api/{tenant}/{project}/async/operations")
        assert_problem(r, 400, field)
        r = api.post(f"/api/{tenant}/{project}/async/operation", json=start_body(str(uuid.uuid4())))
        assert_problem(r, 400, field)


# -- start: bad bodies --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda b: b.update(operationType="DeepMining"), 422, "operationType"),
        (lambda b: b.update(priority="Urgent"), 422, "priority"),
        (lambda b: b.pop("operationName"), 422, "operationName"),
        (lambda b: b.update(operationName=""), 422, "operationName"),
        (lambda b: b.update(surprise=1), 422, "surprise"),
        (lambda b: b.update(timeout=0), 422, "timeout"),
        (lambda b: b.update(timeout="soon"), 422, "timeout"),
        (lambda b: b.update(callbacks={"onProgress": "not a url"}), 422, "callbacks.onProgress"),
        (lambda b: b.update(parameters="datasetId"), 422, "parameters"),
        (lambda b: b["parameters"].update(analysisType="deep"), 422, "parameters.analysisType"),
        (lambda b: b["parameters"].update(algorithm="x"), 422, "parameters.algorithm"),
        (
            lambda b: b["parameters"].update(datasetId=str(uuid.uuid4())),
            422,
            "parameters.datasetId",
        ),
        (lambda b: b["parameters"].update(datasetId="../../etc"), 422, "parameters.datasetId"),
        (lambda b: b["parameters"].update(datasetId=42), 422, "parameters.datasetId"),
        (lambda b: b["parameters"].pop("datasetId"), 422, "parameters.datasetId"),
        (
            lambda b: b["parameters"].update(timeWindow={"startDate": "yesterday"}),
            422,
            "parameters.timeWindow.startDate",
        ),
        (
            lambda b: b["parameters"].update(outputOptions={"exportFormats": ["DOCX"]}),
            422,
            "parameters.outputOptions.exportFormats",
        ),
    ],
)
def test_bad_start_bodies_name_the_field(api, receipt_dataset, mutate, status, field) -> None:
    body = start_body(receipt_dataset["datasetId"])
    mutate(body)
    before = api.get("/async/operations").json()["summary"]["totalOperations"]
    body_problem = assert_problem(api.post("/async/operation", json=body), status, field)
    assert body_problem["detail"]
    assert api.get("/async/operations").json()["summary"]["totalOperations"] == before


@pytest.mark.parametrize(
    "content",
    [b'{"operationType": "ProcessMiningAnalysis",', b"not json", b"", b"[1, 2]", b"null"],
)
def test_malformed_json_is_a_4xx_problem(api, content) -> None:
    r = api.post("/async/operation", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert_problem(r, r.status_code)


def test_truncated_json_is_400(api) -> None:
    r = api.post(
        "/async/operation",
        content=b'{"operationType": "ProcessMiningAnalysis",',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(r, 400)


def test_bad_enrichment_and_report_parameters(api, receipt_dataset) -> None:
    r = api.post(
        "/async/operation",
        json={
            "operationType": "DataEnrichment",
            "operationName": "bad rules",
            "parameters": {"datasetId": receipt_dataset["datasetId"], "cleaningRules": ["magic"]},
        },
    )
    assert_problem(r, 422, "parameters.cleaningRules")
    r = api.post(
        "/async/operation",
        json={
            "operationType": "ReportGeneration",
            "operationName": "bad type",
            "parameters": {"datasetId": receipt_dataset["datasetId"], "reportType": "poem"},
        },
    )
    assert_problem(r, 422, "parameters.reportType")


# -- list and cancel: bad queries and bodies ------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pageSize": 101}, "pageSize"),
        ({"pageSize": 0}, "pageSize"),
        ({"page": 0}, "page"),
        ({"page": "one"}, "page"),
        ({"page": 99999999999999999999}, "page"),
        ({"status": "Sleeping"}, "status"),
        ({"operationType": "Mining"}, "operationType"),
        ({"priority": "Urgent"}, "priority"),
        ({"dateFrom": "last week"}, "dateFrom"),
        ({"includeDetails": "perhaps"}, "includeDetails"),
    ],
)
def test_bad_list_queries_are_400(api, params, field) -> None:
    assert_problem(api.get("/async/operations", params=params), 400, field)


def test_dataset_list_limits(api) -> None:
    assert_problem(api.get("/datasets", params={"pageSize": 101}), 400, "pageSize")
    assert_problem(api.get("/datasets", params={"page": 10**20}), 400, "page")


def test_bad_cancel_body(api, receipt_dataset) -> None:
    op_id = api.start(receipt_dataset["datasetId"], "cancel body")["operationId"]
    r = api.delete(f"/async/operation/{op_id}", json={"forceTermination": "sure"})
    assert_problem(r, 422, "forceTermination")
    r = api.delete(f"/async/operation/{op_id}", json={"unknown": True})
    assert_problem(r, 422, "unknown")


# -- uploads --------------------------------------------------------------------------------
def assert_no_stray_upload_files(api) -> None:
    """Refused uploads leave nothing on disk: one folder per listed dataset."""
    folders = list((api.data_dir / "datasets" / api.tenant).iterdir())
    listed = api.get("/datasets", params={"pageSize": 100}).json()["datasets"]
    uploaded = [d for d in listed if d["sourceOperationId"] is None]  # not enrichment outputs
    assert len(folders) == len(uploaded)


def test_png_renamed_csv_is_422_naming_file(api, tmp_path: Path) -> None:
    for name in ("picture.csv", "picture.xes", "picture.xes.gz", "picture.parquet"):
        r = api.post("/datasets", files={"file": (name, png_bytes())})
        assert_problem(r, 422, "file")
    assert all(d["fileName"] != "picture.csv" for d in api.get("/datasets").json()["datasets"])
    assert_no_stray_upload_files(api)


def test_empty_and_missing_uploads(api) -> None:
    assert_problem(api.post("/datasets", files={"file": ("empty.csv", b"")}), 422, "file")
    assert_problem(api.post("/datasets", data={"caseColumn": "x"}), 422, "file")
    r = api.post("/datasets", content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
    assert r.status_code in (415, 422), r.text
    assert_problem(r, r.status_code)
    assert_no_stray_upload_files(api)


def test_csv_that_is_not_an_event_log(api) -> None:
    r = api.post("/datasets", files={"file": ("table.csv", b"a,b\n1,2\n3,4\n")})
    assert_problem(r, 422)
    r = api.post(
        "/datasets",
        files={"file": ("log.csv", b"case,act,time\n1,A,2024-01-01T00:00:00Z\n")},
        data={"caseColumn": "nope"},
    )
    assert_problem(r, 422, "caseColumn")


# -- idempotency ----------------------------------------------------------------------------
def test_idempotent_start(api, receipt_dataset) -> None:
    key = f"start-{uuid.uuid4()}"
    body = start_body(receipt_dataset["datasetId"], operationName="idempotent")
    first = api.post("/async/operation", json=body, headers={"Idempotency-Key": key})
    again = api.post("/async/operation", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["Location"] == first.headers["Location"]
    op_id = first.json()["operationId"]
    named = api.get("/async/operations", params={"pageSize": 100}).json()["operations"]
    assert [o["operationId"] for o in named if o["operationName"] == "idempotent"] == [op_id]
    other = dict(body, operationName="something else")
    r = api.post("/async/operation", json=other, headers={"Idempotency-Key": key})
    assert_problem(r, 422, "Idempotency-Key")
    # the key is the tenant's: a fresh key starts a new operation
    r = api.post("/async/operation", json=body, headers={"Idempotency-Key": key + "-2"})
    assert r.status_code == 202 and r.json()["operationId"] != op_id
    for o in (op_id, r.json()["operationId"]):
        api.delete(f"/async/operation/{o}", json={"forceTermination": True})


def test_idempotent_start_under_concurrency(api, receipt_dataset) -> None:
    for _ in range(3):
        key = f"race-{uuid.uuid4()}"
        body = start_body(receipt_dataset["datasetId"], operationName=key)
        responses = api.concurrently(
            12, "POST", "/async/operation", json=body, headers={"Idempotency-Key": key}
        )
        assert [r.status_code for r in responses] == [202] * 12, [r.text for r in responses]
        ids = {r.json()["operationId"] for r in responses}
        assert len(ids) == 1
        named = api.get("/async/operations", params={"pageSize": 100}).json()["operations"]
        assert [o["operationId"] for o in named if o["operationName"] == key] == list(ids)
        api.delete(f"/async/operation/{ids.pop()}", json={"forceTermination": True})


def test_idempotent_upload(api, datasets: Path) -> None:
    key = f"upload-{uuid.uuid4()}"
    path = datasets / "running-example.xes"
    first = api.upload(path, "idempotent.xes", **{"Idempotency-Key": key})
    again = api.upload(path, "idempotent.xes", **{"Idempotency-Key": key})
    assert first == again
    listed = api.get("/datasets", params={"pageSize": 100}).json()["datasets"]
    assert [d["datasetId"] for d in listed if d["fileName"] == "idempotent.xes"] == [
        first["datasetId"]
    ]
    r = api.post(
        "/datasets",
        files={"file": ("idempotent.xes", (datasets / "receipt.xes.gz").read_bytes())},
        headers={"Idempotency-Key": key},
    )
    assert_problem(r, 422, "Idempotency-Key")


def test_idempotent_upload_under_concurrency(api, datasets: Path) -> None:
    key = f"upload-race-{uuid.uuid4()}"
    content = (datasets / "running-example.xes").read_bytes()
    # four at once: as many uploads as a project may have read at once (PMOPS_UPLOADS_PER_PROJECT)
    responses = api.concurrently(
        4,
        "POST",
        "/datasets",
        files={"file": ("raced.xes", content)},
        headers={"Idempotency-Key": key},
    )
    assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
    ids = {r.json()["datasetId"] for r in responses}
    assert len(ids) == 1
    listed = api.get("/datasets", params={"pageSize": 100}).json()["datasets"]
    assert [d["datasetId"] for d in listed if d["fileName"] == "raced.xes"] == list(ids)


def test_problem_bodies_are_json(api) -> None:
    r = api.get("/async/operation/op-x/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = api.request("PUT", "/async/operations")
    assert_problem(r, 405)
    json.loads(r.text)
