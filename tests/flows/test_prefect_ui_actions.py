"""The Prefect UI's actions on an operation's flow run, on a real Prefect server
(prefect_test_harness) and a SQLite store (pmops/service/outside.py): Cancel (the run set
Cancelling by someone other than pmops, then Cancelled) cancels the operation and keeps its
completed phase; Retry (an ended run set back to Scheduled "AwaitingRetry" and run again) becomes
a pmops retry, or is refused with the reason in the run's state message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Cancelling, Running, Scheduled
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy.engine import Engine

from analysis.phases import PHASES
from analysis.runs import ProcessMiningRun
from api.prefect_orchestrator import PrefectOrchestrator
from flows.analyze_process import (
    analyse_with_ml,
    discover_process,
    generate_reports,
    load_and_validate,
)
from flows.lifecycle import run_operation
from pmops.service.dispatcher import Dispatcher
from pmops.service.operations import results_document
from pmops.settings import Settings
from pmops.store.datasets import insert_dataset
from pmops.store.engine import make_engine, transaction
from pmops.store.events import list_operation_events
from pmops.store.operations import insert_operation, read_operation_by_id
from pmops.store.retries import list_retry_pairs
from tests.flows._rows import dataset_row

LOAD, DISCOVERY = PHASES["ProcessMiningAnalysis"][:2]
DS = "5f0e8c1a-4a5b-4c6d-8e7f-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def prefect() -> Iterator[SyncPrefectClient]:
    with prefect_test_harness(server_startup_timeout=120), get_client(sync_client=True) as c:
        yield c


def seed(engine: Engine, op_id: str, status: str, run_id: str | None) -> None:
    now = datetime.now(UTC)
    phases = [
        {"phaseName": LOAD, "status": "Completed", "recordsProcessed": 10, "results": {}},
        {"phaseName": DISCOVERY, "status": "Running"},
    ]
    with transaction(engine) as conn:
        insert_operation(
            conn,
            {
                "operation_id": op_id,
                "tenant_id": "t-1",
                "project_id": "p-1",
                "operation_type": "ProcessMiningAnalysis",
                "operation_name": op_id,
                "priority": "Normal",
                "priority_rank": 1,
                "status": status,
                "request": {
                    "operationType": "ProcessMiningAnalysis",
                    "operationName": op_id,
                    "parameters": {"datasetId": DS},
                },
                "dataset_id": DS,
                "created_at": now,
                "timeout_at": now + timedelta(hours=1),
                "started_at": now if status != "Initiated" else None,
                "ended_at": now if status not in ("Initiated", "Running") else None,
                "heartbeat_at": now,
                "flow_run_id": run_id,
                "progress": {"phases": phases, "percentage": 30.0},
            },
        )


def seed_dataset(engine: Engine, log: Path) -> None:
    with transaction(engine) as conn:
        insert_dataset(conn, dataset_row(DS, log))


def row(engine: Engine, op_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = read_operation_by_id(conn, op_id)
    assert found is not None
    return dict(found)


def events(engine: Engine, op_id: str) -> list[str]:
    with engine.connect() as conn:
        return [e.event_type for e in list_operation_events(conn, op_id, 0)]


@flow(name="ui-actions-placeholder", persist_result=False)
def placeholder(operation_id: str) -> None:
    return None


def test_cancel_in_the_prefect_ui_cancels_the_operation(
    prefect: SyncPrefectClient, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.resolved_database_url, upgrade=True)
    running = prefect.create_flow_run(placeholder, parameters={"operation_id": "op-run"})
    waiting = prefect.create_flow_run(placeholder, parameters={"operation_id": "op-wait"})
    prefect.set_flow_run_state(running.id, Running(), force=True)
    seed(engine, "op-run", "Running", str(running.id))
    seed(engine, "op-wait", "Initiated", str(waiting.id))
    orchestrator = PrefectOrchestrator(PREFECT_API_URL.value())
    try:
        dispatcher = Dispatcher(engine, settings, orchestrator)
        assert dispatcher.sweep_outside() == 0  # Running and Scheduled: nothing to do
        # the UI's Cancel: the state Cancelling, set by someone other than pmops
        for run in (running, waiting):
            prefect.set_flow_run_state(run.id, Cancelling(message="from the UI"), force=True)
        assert dispatcher.sweep_outside() == 2
        # the waiting one never started: Cancelled at once
        assert row(engine, "op-wait")["status"] == "Cancelled"
        assert "operation.cancelled" in events(engine, "op-wait")
        # the running one is asked to stop at its next checkpoint (graceful) ...
        asked = row(engine, "op-run")
        assert asked["status"] == "Running" and asked["cancel_requested"]
        assert "Cancelling in Prefect: from the UI" in asked["cancel_request"]["reason"]
        # ... and is Cancelled once its run is (the runner stopped the process)
        prefect.set_flow_run_state(running.id, Cancelled(), force=True)
        assert dispatcher.sweep_outside() == 1
        ended = row(engine, "op-run")
        assert ended["status"] == "Cancelled"
        assert events(engine, "op-run").count("operation.cancelled") == 1
        kept = results_document(ended)["phaseResults"]
        assert [p["status"] for p in kept] == ["Completed", "Cancelled"]
        assert dispatcher.sweep_outside() == 0  # nothing left to do
    finally:
        orchestrator.close()


def _run_again(prefect: SyncPrefectClient, the_flow: Any, run_id: UUID, op_id: str) -> Any:
    """The UI's Retry: the ended run back to Scheduled (AwaitingRetry), then run again."""
    prefect.set_flow_run_state(run_id, Scheduled(name="AwaitingRetry"), force=True)
    again = prefect.read_flow_run(run_id)
    return run_flow(the_flow, again, {"operation_id": op_id}, return_type="state")


def test_retry_in_the_prefect_ui(
    prefect: SyncPrefectClient, tmp_path: Path, datasets: Path
) -> None:
    settings = Settings(data_dir=tmp_path, run_limits="off")
    engine = make_engine(settings.resolved_database_url, upgrade=True)
    seed_dataset(engine, datasets / "receipt.xes.gz")
    tasks = [load_and_validate, discover_process, analyse_with_ml, generate_reports]

    @flow(name="ui-actions-operation", persist_result=False)
    def operation(operation_id: str) -> Any:
        return run_operation(operation_id, ProcessMiningRun, tasks, settings=settings)

    runs = {}
    for op_id, status in (("op-failed", "Failed"), ("op-done", "Completed")):
        run = prefect.create_flow_run(operation, parameters={"operation_id": op_id})
        seed(engine, op_id, status, str(run.id))
        first = run_flow(operation, run, {"operation_id": op_id}, return_type="state")
        assert first.is_cancelled() and "not waiting" in (first.message or "")  # its first run
        runs[op_id] = run.id

    # a Failed operation: a pmops retry, named in the run's state message
    state = _run_again(prefect, operation, runs["op-failed"], "op-failed")
    assert state.is_completed(), state.message
    with engine.connect() as conn:
        pairs = list_retry_pairs(conn, ["op-failed"])
    assert len(pairs) == 1
    retry_id = next(p for p in pairs[0] if p != "op-failed")
    assert f"retried in pmops as operation {retry_id}" in (state.message or "")
    assert row(engine, retry_id)["status"] == "Initiated"
    assert prefect.read_flow_run(runs["op-failed"]).state.message == state.message

    # a Completed operation: refused, the reason in the run's state message
    refused = _run_again(prefect, operation, runs["op-done"], "op-done")
    assert refused.is_cancelled()
    message = prefect.read_flow_run(runs["op-done"]).state.message or ""
    assert message.startswith("not retried in pmops: ") and "is Completed" in message
    with engine.connect() as conn:
        assert list_retry_pairs(conn, ["op-done"]) == []
