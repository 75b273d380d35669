"""GET /async/operations: filters, pagination, the summary, the order. In process: the
operations are made through the API and left where the fake orchestrator leaves them (two waiting
for their run, one cancelled while queued, one timed out by the dispatcher's sweep). The list row
of a finished run is checked on the real stack (tests/stack/test_service_list.py).

The operations live in a tenant of their own, so the expected lists are exact."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Client, Served


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def listing(served: Served, datasets: Path) -> tuple[Client, dict[str, str], dict[str, str]]:
    """Four operations of a fresh tenant: Initiated x2, Cancelled, Timeout (oldest first)."""
    tenant = served.tenant()
    ds = tenant.upload(datasets / "running-example.xes")["datasetId"]
    marks = {"t0": now_iso()}
    time.sleep(0.05)  # distinct timestamps for the date filters
    a = tenant.start(ds, "a: analysis", parameters={"analysisType": "quick"})
    b = tenant.start(ds, "b: enrichment", "DataEnrichment", priority="High")
    time.sleep(0.05)
    marks["mid"] = now_iso()
    time.sleep(0.05)
    c = tenant.start(ds, "c: cancelled", priority="Low")
    r = tenant.delete(f"/async/operation/{c['operationId']}", json={"forceTermination": True})
    assert r.status_code == 200, r.text
    d = tenant.start(ds, "d: too short", priority="Critical", timeout=1)
    assert tenant.wait(d["operationId"])["status"] == "Timeout"
    assert tenant.wait(c["operationId"])["status"] == "Cancelled"
    time.sleep(0.05)
    marks["end"] = now_iso()
    ids = {k: op["operationId"] for k, op in zip("abcd", (a, b, c, d), strict=True)}
    return tenant, ids, marks


def names(page: dict[str, Any]) -> list[str]:
    return [o["operationName"][0] for o in page["operations"]]


def listed(tenant: Client, **params: Any) -> dict[str, Any]:
    r = tenant.get("/async/operations", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_newest_first_and_the_summary(listing) -> None:
    tenant, ids, _ = listing
    page = listed(tenant)
    assert names(page) == ["d", "c", "b", "a"]
    assert page["summary"] == {
        "totalOperations": 4,
        "initiated": 2,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
        "timeout": 1,
    }
    assert (page["page"], page["pageSize"], page["hasNextPage"]) == (1, 20, False)
    by_name = {o["operationName"][0]: o for o in page["operations"]}
    waiting = by_name["a"]
    assert waiting["operationId"] == ids["a"] and waiting["status"] == "Initiated"
    assert waiting["progress"] == 0 and waiting["priority"] == "Normal"
    assert waiting["startTime"] is None and waiting["endTime"] is None
    assert by_name["b"]["operationType"] == "DataEnrichment" and by_name["b"]["priority"] == "High"
    assert by_name["c"]["status"] == "Cancelled" and by_name["d"]["status"] == "Timeout"
    assert by_name["c"]["endTime"] and by_name["d"]["endTime"]
    assert "details" not in waiting


def test_pagination(listing) -> None:
    tenant, _, _ = listing
    pages = [listed(tenant, page=p, pageSize=3) for p in (1, 2, 3)]
    assert [names(p) for p in pages] == [["d", "c", "b"], ["a"], []]
    assert [p["hasNextPage"] for p in pages] == [True, False, False]
    # the summary is over the whole filtered set, whatever the page
    assert {p["summary"]["totalOperations"] for p in pages} == {4}
    two = [listed(tenant, page=p, pageSize=2) for p in (1, 2)]
    assert [names(p) for p in two] == [["d", "c"], ["b", "a"]]
    assert [p["hasNextPage"] for p in two] == [True, False]
    one = listed(tenant, status="Initiated", pageSize=1)
    assert names(one) == ["b"] and one["hasNextPage"] is True
    assert one["summary"]["totalOperations"] == 2 and one["summary"]["initiated"] == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "Initiated"}, ["b", "a"]),
        ({"status": "Cancelled"}, ["c"]),
        ({"status": "Timeout"}, ["d"]),
        ({"status": "Running"}, []),
        ({"status": "Completed"}, []),
        ({"operationType": "DataEnrichment"}, ["b"]),
        ({"operationType": "ProcessMiningAnalysis"}, ["d", "c", "a"]),
        ({"operationType": "ReportGeneration"}, []),
        ({"priority": "Low"}, ["c"]),
        ({"priority": "Critical"}, ["d"]),
        ({"priority": "Normal", "status": "Initiated"}, ["a"]),
        ({"status": "Cancelled", "priority": "High"}, []),
    ],
)
def test_filters(listing, params, expected) -> None:
    tenant, _, _ = listing
    page = listed(tenant, **params)
    assert names(page) == expected
    assert page["summary"]["totalOperations"] == len(expected)
    if "status" in params:
        key = params["status"].lower()
        assert page["summary"][key] == len(expected)


def test_date_filters(listing) -> None:
    tenant, _, marks = listing
    assert names(listed(tenant, dateFrom=marks["mid"])) == ["d", "c"]
    assert names(listed(tenant, dateTo=marks["mid"])) == ["b", "a"]
    assert names(listed(tenant, dateFrom=marks["t0"], dateTo=marks["end"])) == ["d", "c", "b", "a"]
    assert names(listed(tenant, dateFrom=marks["end"])) == []
    assert names(listed(tenant, dateTo=marks["t0"])) == []
    # a date without a time is midnight UTC; an offset is honoured
    assert names(listed(tenant, dateFrom="2000-01-01")) == ["d", "c", "b", "a"]
    assert names(listed(tenant, dateTo="2000-01-01T00:00:00+01:00")) == []
    summary = listed(tenant, dateFrom=marks["mid"], status="Cancelled")["summary"]
    assert summary["totalOperations"] == 1 and summary["cancelled"] == 1


def test_include_details(listing) -> None:
    tenant, ids, _ = listing
    page = listed(tenant, includeDetails="true", status="Cancelled")
    details = {o["operationId"]: o["details"] for o in page["operations"]}
    assert details[ids["c"]] == tenant.status(ids["c"])
