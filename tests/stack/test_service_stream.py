"""The live event stream (Server-Sent Events) read by a real HTTP client while runs progress."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.service_stack import Tenant, assert_problem

pytestmark = pytest.mark.xdist_group("stack")

TERMINAL_TYPES = {
    "operation.completed",
    "operation.failed",
    "operation.cancelled",
    "operation.timeout",
}


def read_stream(
    api: Tenant, op_id: str, last_id: int | None = None, deadline: float = 180
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event of the stream until the server closes it, and the comment lines."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    found: list[dict[str, Any]] = []
    comments: list[str] = []
    current: dict[str, Any] = {}
    with api.http.stream(
        "GET", f"{api.base}/async/operation/{op_id}/events", headers=headers, timeout=deadline
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith(("id:", "event:", "data:")):
                name, _, value = line.partition(":")
                current[name] = value.strip()
            elif not line and current:
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    found.append(current)
                current = {}
    return found, comments


def test_a_stream_follows_a_run_to_its_end(api: Tenant, receipt_dataset: dict) -> None:
    op = api.start(
        receipt_dataset["datasetId"], "streamed", parameters={"analysisType": "standard"}
    )
    events, _ = read_stream(api, op["operationId"])
    ids = [int(e["id"]) for e in events]
    assert ids == list(range(1, len(ids) + 1))
    types = [e["event"] for e in events]
    assert types[0] == "operation.started" and types[-1] == "operation.completed"
    assert "operation.progress" in types and "operation.phase.completed" in types
    for e in events:
        assert e["data"]["type"] == e["event"] and e["data"]["sequence"] == int(e["id"])
    assert events[-1]["data"]["data"]["status"] == "Completed"
    percentages = [e["data"]["data"]["progress"]["percentage"] for e in events]
    assert percentages == sorted(percentages)
    # resumed after event 3: the rest only, then closed
    rest, _ = read_stream(api, op["operationId"], last_id=3)
    assert [int(e["id"]) for e in rest] == ids[3:]


def test_streams_keep_alive_and_share_one_feed(api: Tenant, stack: Any, bpic_dataset: dict) -> None:
    ds = bpic_dataset["datasetId"]
    batch = api.post(
        "/async/batch",
        json={
            "batchName": "a waiting operation",
            "operations": [
                {
                    "operationKey": "long",
                    "operationName": "long",
                    "operationType": "ProcessMiningAnalysis",
                    "parameters": {"datasetId": ds, "analysisType": "comprehensive"},
                },
                {
                    "operationKey": "waits",
                    "operationName": "waits",
                    "operationType": "ProcessMiningAnalysis",
                    "dependencies": ["long"],
                    "parameters": {"datasetId": ds},
                },
            ],
        },
    ).json()
    waiting = batch["operations"][1]["operationId"]
    url = f"{api.base}/async/operation/{waiting}/events"

    def feed() -> dict[str, int]:
        return dict(httpx.get(f"{stack.url}/health", timeout=10).json()["eventFeed"])

    before = feed()
    time.sleep(2.0)
    idle = feed()
    seen: list[list[str]] = []

    def watch() -> None:
        lines: list[str] = []
        seen.append(lines)
        with api.http.stream("GET", url, timeout=30) as r:
            lines.extend(r.iter_lines())  # until the server ends the stream

    watchers = [threading.Thread(target=watch, daemon=True) for _ in range(25)]
    for t in watchers:
        t.start()
    time.sleep(1.0)
    start = feed()
    time.sleep(2.0)
    busy = feed()
    assert busy["streams"] >= 25
    # 25 streams read the store as often as none: one shared poll
    assert busy["polls"] - start["polls"] <= (idle["polls"] - before["polls"]) + 3
    time.sleep(1.5)
    assert all(any(line.startswith(": keep-alive") for line in lines) for lines in seen)
    r = api.delete(f"/async/batch/{batch['batchId']}")
    assert r.status_code == 200, r.text
    for t in watchers:
        t.join(30)
    # the cancellation ended every stream with its terminal event
    for lines in seen:
        assert "event: operation.cancelled" in lines


def test_streams_follow_auth_and_tenancy(api: Tenant, stack: Any, completed_analysis: dict) -> None:
    op_id = completed_analysis["operationId"]
    other = stack.create_token()
    try:
        assert_problem(other.get(f"{api.base}/async/operation/{op_id}/events"), 404)
    finally:
        other.close()
    r = httpx.get(f"{stack.url}{api.base}/async/operation/{op_id}/events", timeout=10)
    assert r.status_code == 401
    assert_problem(api.get("/async/operation/op-nope/events"), 404)
    bad = api.get(f"/async/operation/{op_id}/events", headers={"Last-Event-ID": "x"})
    assert_problem(bad, 400, "Last-Event-ID")
