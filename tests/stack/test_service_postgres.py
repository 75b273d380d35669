"""The app store on PostgreSQL: a small lifecycle on a stack whose PMOPS_DATABASE_URL is a fresh
database (created here, dropped after). Needs PostgreSQL on 127.0.0.1:5432 with trust auth."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.service_stack import assert_problem, concurrently, running_stack

pytestmark = pytest.mark.xdist_group("stack-aux")  # a stack of its own


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path, pg_url: str):
    with running_stack(
        tmp_path_factory.mktemp("stack-pg"), prefect_template, database_url=pg_url
    ) as stack:
        yield stack


def test_lifecycle_on_postgresql(pg_stack, pg_url, datasets: Path) -> None:
    import psycopg

    api = pg_stack.dev()
    ds = api.upload(datasets / "receipt.xes.gz")
    assert ds["events"] == 8577
    key = f"pg-{uuid.uuid4()}"
    body = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "on postgres",
        "priority": "High",
        "parameters": {"datasetId": ds["datasetId"], "analysisType": "quick"},
    }
    first = api.post("/async/operation", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    again = api.post("/async/operation", json=body, headers={"Idempotency-Key": key})
    assert again.json() == first.json()
    # a race on one key: PostgreSQL lets every request through the first check
    raced = concurrently(
        api,
        8,
        lambda c: c.post(
            f"{api.base}/async/operation",
            json=dict(body, operationName="raced"),
            headers={"Idempotency-Key": key + "-race"},
        ),
    )
    assert [r.status_code for r in raced] == [202] * 8, [r.text for r in raced]
    assert len({r.json()["operationId"] for r in raced}) == 1
    raced_id = raced[0].json()["operationId"]
    api.delete(f"/async/operation/{raced_id}", json={"forceTermination": True})
    op_id = first.json()["operationId"]
    seen: list[dict] = []
    final = api.wait(op_id, seen=seen, every=0.1)
    assert final["status"] == "Completed", final
    pct = [s["progress"]["percentage"] for s in seen]
    assert pct == sorted(pct) and pct[-1] == 100
    assert final["execution"]["resourceUsage"]["memoryUsage"]
    doc = api.results(op_id).json()
    assert doc["success"] is True and doc["summary"]["recordsAnalyzed"] == 8577
    for artifact in doc["artifacts"]:
        assert api.get(artifact["downloadUrl"]).status_code == 200
    page = api.get("/async/operations", params={"status": "Completed", "priority": "High"}).json()
    assert [o["operationId"] for o in page["operations"]] == [op_id]
    named = api.get("/async/operations", params={"pageSize": 100}).json()["operations"]
    assert [o["operationId"] for o in named if o["operationName"] == "raced"] == [raced_id]
    assert_problem(api.delete(f"/async/operation/{op_id}"), 409)
    other = pg_stack.create_token()
    assert_problem(other.get(f"/async/operation/{op_id}"), 404)
    # the rows really are in PostgreSQL, not in a SQLite file beside it
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        status = conn.execute(
            "SELECT status FROM operations WHERE operation_id = %s", (op_id,)
        ).fetchone()
    assert status == ("Completed",)
    assert not (pg_stack.data_dir / "pmops.db").exists()
    api.close()
    other.close()
