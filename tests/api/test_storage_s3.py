"""The API on s3:// storage (PMOPS_STORAGE_URL) against a real S3-compatible server on loopback
(moto's, tests/s3server.py): an upload lands in the bucket by key (its scratch copy removed), an
artifact and the results zip stream back from it, or redirect to a presigned URL."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pmops.service.lifecycle import claim, finish, set_result_dir
from pmops.service.storage import join, result_key, storage_for
from tests.api.conftest import Client, Served, served_app
from tests.s3server import S3

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'


@pytest.fixture(scope="module")
def served_s3(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(tmp_path_factory.mktemp("api-s3"), storage_url=s3.url("pmops")) as served:
        yield served


@pytest.fixture(scope="module")
def client(served_s3: Served) -> Client:
    return served_s3.tenant()


def _completed(served: Served, client: Client, dataset_id: str) -> str:
    """An operation finished as a flow run finishes one: its files in the storage by key."""
    operation_id = str(client.start(dataset_id, "on s3")["operationId"])
    assert claim(served.engine, operation_id, None, "test:1") is not None
    key = result_key(operation_id)
    set_result_dir(served.engine, operation_id, key)
    storage = storage_for(served.settings)
    with storage.open(join(key, "process-map.svg"), "wb") as fh:
        fh.write(SVG)
    with storage.open(join(key, "results.json"), "wb") as fh:
        fh.write(b'{"written": "by the run"}')
    artifact: dict[str, Any] = {
        "name": "Process map",
        "type": "Visualization",
        "format": "SVG",
        "path": "process-map.svg",
        "description": "the map",
        "size": f"{len(SVG)} bytes",
    }
    document = {"summary": {}, "phaseResults": [], "artifacts": [artifact]}
    assert finish(served.engine, operation_id, "Completed", document)
    return operation_id


def test_upload_and_download_on_s3(
    served_s3: Served, client: Client, s3: S3, datasets: Path
) -> None:
    dataset = client.upload(datasets / "receipt.xes.gz")
    dataset_id = dataset["datasetId"]
    assert dataset["events"] > 0
    key = f"datasets/{client.tenant}/{dataset_id}/receipt.xes.gz"
    assert s3.keys(f"pmops/datasets/{client.tenant}") == [f"{dataset_id}/receipt.xes.gz"]
    data_dir = served_s3.settings.data_dir
    assert not (data_dir / "datasets").exists()  # nothing kept on this machine
    assert list((data_dir / "scratch").iterdir()) == []  # the copy read was removed
    stored = b"".join(storage_for(served_s3.settings).iter_bytes(key))
    assert stored == (datasets / "receipt.xes.gz").read_bytes()

    operation_id = _completed(served_s3, client, dataset_id)
    answer = client.results(operation_id, format="detailed").json()
    link = answer["artifacts"][0]["downloadUrl"]
    # streamed from the bucket through the API: with the bearer token, and by the signed link
    direct = client.get(f"/async/operation/{operation_id}/artifacts/process-map.svg")
    assert direct.status_code == 200, direct.text
    assert direct.content == SVG and direct.headers["content-type"].startswith("image/svg+xml")
    assert direct.headers["content-length"] == str(len(SVG))
    signed = served_s3.request("GET", link.replace("http://testserver", ""))
    assert signed.status_code == 200 and signed.content == SVG
    missing = client.get(f"/async/operation/{operation_id}/artifacts/nothing.pdf")
    assert missing.status_code == 404

    archive = client.results(operation_id, format="download")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.namelist() == ["results.json", "process-map.svg"]
        assert zf.read("results.json") == b'{"written": "by the run"}'
        assert zf.read("process-map.svg") == SVG

    # PMOPS_STORAGE_REDIRECT: the object store's own presigned URL answers instead
    served_s3.settings.storage_redirect = True
    try:
        moved = client.get(f"/async/operation/{operation_id}/artifacts/process-map.svg")
    finally:
        served_s3.settings.storage_redirect = False
    assert moved.status_code == 307
    location = moved.headers["location"]
    assert location.startswith(s3.endpoint) and "Signature=" in location
    assert httpx.get(location).content == SVG


def test_deleting_a_dataset_removes_its_object(client: Client, s3: S3, datasets: Path) -> None:
    dataset_id = client.upload(datasets / "running-example.xes")["datasetId"]
    assert s3.keys(f"pmops/datasets/{client.tenant}/{dataset_id}") == ["running-example.xes"]
    assert client.delete(f"/datasets/{dataset_id}").status_code == 204
    assert s3.keys(f"pmops/datasets/{client.tenant}/{dataset_id}") == []


def test_an_unreadable_upload_leaves_nothing_in_the_bucket(
    served_s3: Served, client: Client, s3: S3
) -> None:
    before = s3.keys("pmops/datasets")
    r = client.post("/datasets", files={"file": ("junk.csv", b"\x00\x01 not a log\n")})
    assert r.status_code == 422, r.text
    assert s3.keys("pmops/datasets") == before
    assert list((served_s3.settings.data_dir / "scratch").iterdir()) == []


@pytest.mark.parametrize("name", ["..", "../..", "."])
def test_a_file_name_of_dots_is_stored_as_upload(client: Client, s3: S3, name: str) -> None:
    log = b"case,activity,timestamp\n1,a,2024-01-01 10:00:00\n1,b,2024-01-01 11:00:00\n"
    r = client.post("/datasets", files={"file": (name, log)})
    assert r.status_code == 201, r.text
    dataset_id = r.json()["datasetId"]
    assert s3.keys(f"pmops/datasets/{client.tenant}/{dataset_id}") == ["upload"]
