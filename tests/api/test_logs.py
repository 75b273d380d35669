"""The API's log lines (pmops.logs, api/observe.py): JSON objects carrying the tenant, project
and operation ids of the request being handled, in process."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmops import logs
from tests.api.conftest import Served, served_app

STATUS_ROUTE = "/api/{tenantId}/{projectId}/async/operation/{operationId}"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """pmops's handler on the root logger, writing JSON into a buffer; removed after."""
    stream = io.StringIO()
    handler = logs.configure("json", "INFO", stream)
    root, pmops_level = logging.getLogger(), logging.getLogger("pmops").level
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        logging.getLogger("pmops").setLevel(pmops_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_request_logs_json_with_its_tenant_and_project(
    served: Served, captured: io.StringIO, datasets: Path
) -> None:
    api = served.tenant()
    op = api.start(api.upload(datasets / "receipt.xes.gz")["datasetId"])
    api.status(op["operationId"])
    access = [
        line
        for line in lines(captured)
        if line["logger"] == "pmops.api.access" and line.get("route") == STATUS_ROUTE
    ]
    assert access, captured.getvalue()
    line = access[-1]
    assert line["tenantId"] == api.tenant and line["projectId"] == api.project
    assert line["operationId"] == op["operationId"]
    assert line["status"] == 200 and line["level"] == "info"
    assert line["durationMs"] >= 0 and line["timestamp"].endswith("Z")
    assert STATUS_ROUTE in line["message"]


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Served]:
    """An app of its own: its worker slots are free, so an operation is dispatched at once."""
    with served_app(tmp_path) as served:
        yield served


def test_lines_logged_inside_a_request_carry_its_ids(
    own: Served, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch, datasets: Path
) -> None:
    """A line logged by the code handling the request (here the orchestrator's cancel, in the
    route's worker thread) carries the ids bound for the request."""
    served = own
    api = served.tenant()
    op_id = api.start(api.upload(datasets / "receipt.xes.gz")["datasetId"])["operationId"]
    api.wait(op_id, until=lambda s: op_id in served.orchestrator.created())
    cancel_run = served.orchestrator.cancel_run

    def logging_cancel(run_id: str, caller: Any = "request") -> bool:
        logging.getLogger("pmops.test").info("cancelling run %s for %s", run_id, caller)
        return cancel_run(run_id, caller)

    monkeypatch.setattr(served.orchestrator, "cancel_run", logging_cancel)
    r = api.delete(f"/async/operation/{op_id}")
    assert r.status_code == 200, r.text
    inside = [line for line in lines(captured) if line["logger"] == "pmops.test"]
    by_request = [line for line in inside if "for request" in line["message"]]
    assert by_request, captured.getvalue()
    for line in by_request:
        assert line["tenantId"] == api.tenant and line["projectId"] == api.project
        assert line["operationId"] == op_id


def test_text_format(captured: io.StringIO) -> None:
    stream = io.StringIO()
    handler = logs.configure("text", "INFO", stream)
    try:
        with logs.bound(tenantId="t-1", operationId="op-1"):
            logging.getLogger("pmops.test").warning("plain %s", "words")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "plain words" in text and "tenantId=t-1" in text and "operationId=op-1" in text
