"""The typed routes in process: answers validated against the contract's models, integral numbers
as JSON integers, and the results `phase` filter by the seed's Japanese phase names.

No Prefect and no lifespan: a SQLite store in a temporary folder holds the operations, and the
token check is replaced by a fixed scope (the auth itself is tested with the stack)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.deps import download_scope_dep, engine_dep, scope_dep
from api.main import create_app
from pmops.contract.enums import PhaseName
from pmops.contract.responses import OperationList, OperationStatusView, Results
from pmops.service.scope import Principal, Scope
from pmops.store.tables import make_engine, operations, transaction

TENANT, PROJECT = str(uuid.uuid4()), str(uuid.uuid4())
BASE = f"/api/{TENANT}/{PROJECT}/async"
NOW = datetime.now(UTC)


def _row(operation_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {
        "operation_id": operation_id,
        "tenant_id": TENANT,
        "project_id": PROJECT,
        "operation_type": "ProcessMiningAnalysis",
        "operation_name": "typed",
        "priority": "High",
        "priority_rank": 2,
        "status": status,
        "request": {},
        "created_at": NOW - timedelta(minutes=5),
        "timeout_at": NOW + timedelta(hours=1),
        "started_at": NOW - timedelta(minutes=4),
        "estimated_seconds": 600.0,
        **more,
    }


PHASE_RESULTS = [
    {"phaseName": "Data Loading and Validation", "status": "Completed", "results": {}},
    {"phaseName": "Process Discovery", "status": "Completed", "results": {"variants": 3}},
]
USAGE = {
    "cpuUsage": 50.0,
    "memoryUsage": "1.0 GB",
    "memoryBytes": 1_073_741_824,
    "averageCpuUsage": 40.0,
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder: Path = tmp_path_factory.mktemp("store")
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    with transaction(engine) as conn:
        for row in [
            _row(
                "op-done",
                "Completed",
                ended_at=NOW,
                percentage=100.0,
                results={"phaseResults": PHASE_RESULTS, "summary": {}, "artifacts": []},
            ),
            _row(
                "op-running",
                "Running",
                percentage=40.0,
                current_phase="Process Discovery",
                heartbeat_at=NOW,
                progress={"resourceUsage": USAGE, "processedRecords": 10},
            ),
        ]:
            conn.execute(operations.insert().values(**row))
    app = create_app()
    scope = Scope(TENANT, PROJECT, Principal(TENANT, PROJECT, "tester"))
    app.dependency_overrides[engine_dep] = lambda: engine
    app.dependency_overrides[scope_dep] = lambda: scope
    app.dependency_overrides[download_scope_dep] = lambda: scope
    yield TestClient(app)  # not entered: no lifespan, no Prefect
    engine.dispose()


@pytest.mark.parametrize("name", ["Process Discovery", "プロセス発見"])
def test_the_results_phase_filter_takes_the_seeds_japanese_names(
    client: TestClient, name: str
) -> None:
    answer = client.get(f"{BASE}/operation/op-done/results", params={"phase": name})
    assert answer.status_code == 200, answer.text
    results = Results.model_validate(answer.json())
    assert [p.phaseName for p in results.phaseResults] == [PhaseName.ProcessDiscovery]


def test_an_unknown_phase_is_refused(client: TestClient) -> None:
    answer = client.get(f"{BASE}/operation/op-done/results", params={"phase": "ワープ"})
    assert answer.status_code == 400


def test_the_status_is_typed_and_sends_integers(client: TestClient) -> None:
    answer = client.get(f"{BASE}/operation/op-running")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["Retry-After"]) >= 1
    body = answer.json()
    status = OperationStatusView.model_validate(body)
    assert status.status == "Running" and status.priority == "High"
    usage = body["execution"]["resourceUsage"]
    assert usage == {
        "cpuUsage": 50,
        "memoryUsage": "1.0 GB",
        "memoryBytes": 1_073_741_824,
        "averageCpuUsage": 40,
    }
    assert isinstance(body["progress"]["percentage"], int)
    assert body["execution"]["heartbeatAt"] is not None
    assert "error" not in body  # what the view leaves out stays out


def test_the_list_is_typed(client: TestClient) -> None:
    answer = client.get(f"{BASE}/operations", params={"status": "Completed"})
    assert answer.status_code == 200, answer.text
    listing = OperationList.model_validate(answer.json())
    assert [o.operationId for o in listing.operations] == ["op-done"]
    assert listing.summary.completed == 1 and listing.summary.totalOperations == 1
