"""GET /async/operations on the real service: filters, pagination, the summary, the order.

The operations live in a tenant of their own, so the expected lists are exact."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("stack")


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def listing(stack, datasets: Path):
    """Four operations of a fresh tenant: Completed x2, Cancelled, Timeout (oldest first)."""
    tenant = stack.create_token()
    ds = tenant.upload(datasets / "running-example.xes")["datasetId"]
    marks = {"t0": now_iso()}
    time.sleep(0.05)
    a = tenant.start(ds, "a: analysis", parameters={"analysisType": "quick"})
    b = tenant.start(ds, "b: enrichment", "DataEnrichment", priority="High")
    for op in (a, b):
        assert tenant.wait(op["operationId"])["status"] == "Completed"
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
    yield tenant, ids, marks
    tenant.close()


def names(page: dict) -> list[str]:
    return [o["operationName"][0] for o in page["operations"]]


def listed(tenant, **params) -> dict:
    r = tenant.get("/async/operations", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_newest_first_and_the_summary(listing) -> None:
    tenant, ids, _ = listing
    page = listed(tenant)
    assert names(page) == ["d", "c", "b", "a"]
    assert page["summary"] == {
        "totalOperations": 4,
        "initiated": 0,
        "running": 0,
        "completed": 2,
        "failed": 0,
        "cancelled": 1,
        "timeout": 1,
    }
    assert (page["page"], page["pageSize"], page["hasNextPage"]) == (1, 20, False)
    by_name = {o["operationName"][0]: o for o in page["operations"]}
    done = by_name["a"]
    assert done["operationId"] == ids["a"] and done["status"] == "Completed"
    assert done["progress"] == 100 and done["priority"] == "Normal"
    assert done["startTime"] and done["endTime"] and done["duration"]
    assert done["recordsProcessed"] == 42
    assert done["resourceUsage"]["memoryUsage"]
    assert by_name["b"]["operationType"] == "DataEnrichment" and by_name["b"]["priority"] == "High"
    assert by_name["c"]["status"] == "Cancelled" and by_name["d"]["status"] == "Timeout"
    assert "details" not in done


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
    one = listed(tenant, status="Completed", pageSize=1)
    assert names(one) == ["b"] and one["hasNextPage"] is True
    assert one["summary"]["totalOperations"] == 2 and one["summary"]["completed"] == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "Completed"}, ["b", "a"]),
        ({"status": "Cancelled"}, ["c"]),
        ({"status": "Timeout"}, ["d"]),
        ({"status": "Running"}, []),
        ({"operationType": "DataEnrichment"}, ["b"]),
        ({"operationType": "ProcessMiningAnalysis"}, ["d", "c", "a"]),
        ({"operationType": "ReportGeneration"}, []),
        ({"priority": "Low"}, ["c"]),
        ({"priority": "Critical"}, ["d"]),
        ({"priority": "Normal", "status": "Completed"}, ["a"]),
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
    page = listed(tenant, includeDetails="true", status="Completed")
    details = {o["operationId"]: o["details"] for o in page["operations"]}
    assert details[ids["a"]] == tenant.status(ids["a"])
