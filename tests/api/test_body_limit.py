"""JSON bodies past PMOPS_MAX_JSON_BYTES are a 413 problem before they are read (api/bodylimit.py):
by Content-Length at once, or counted while a chunked body streams in. The upload keeps its own,
larger limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Client, Served, served_app
from tests.service_stack import assert_problem

LIMIT = 2000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(tmp_path_factory.mktemp("bodylimit"), max_json_bytes=LIMIT) as served:
        yield served


def start_body(size: int) -> bytes:
    """A start request of about `size` bytes (the padding in operationDescription)."""
    body = {"operationType": "ProcessMiningAnalysis", "operationName": "big", "parameters": {}}
    base = len(json.dumps({**body, "operationDescription": ""}).encode())
    return json.dumps({**body, "operationDescription": "x" * max(0, size - base)}).encode()


def test_default_limit_is_one_mebibyte(served: Served) -> None:
    api = served.tenant()
    assert served.settings.max_json_bytes == 1 << 20
    r = api.post(
        "/async/operation",
        content=start_body((1 << 20) + 1),
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(r, 413, "body")
    assert "1,048,576" in body["detail"]


def test_content_length_past_the_limit_is_413(small: Served) -> None:
    api = small.tenant()
    for path in ("/async/operation", "/async/webhooks", "/async/batch"):
        r = api.post(
            path, content=start_body(LIMIT + 1), headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 413, "body")
    # at the limit the body is read and judged on its content (here: no datasetId)
    r = api.post(
        "/async/operation", content=start_body(LIMIT), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text


def test_a_chunked_body_is_stopped_as_it_passes_the_limit(small: Served) -> None:
    api = small.tenant()
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        data = start_body(50 * LIMIT)
        for i in range(0, len(data), 500):
            sent.append(i)
            yield data[i : i + 500]

    r = api.post("/async/operation", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "body")
    assert len(sent) < 50 * LIMIT // 500 // 2, "the body was read to its end"


def test_the_upload_keeps_its_own_limit(small: Served, datasets: Path) -> None:
    api: Client = small.tenant()
    log = datasets / "running-example.xes"
    assert log.stat().st_size > LIMIT
    assert api.upload(log)["datasetId"]
