"""What a real flow run of an operation shows in Prefect (flows/publish.py, flows/observe.py):
a run-logger line per phase start and end, read back from the Prefect server's logs, and the
progress, markdown, table and link artifacts, read back through the Prefect client. A
comprehensive analysis of a real log in prefect_test_harness, on a SQLite store of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker
from prefect.testing.utilities import prefect_test_harness

from analysis.phases import PHASES
from analysis.runs import ProcessMiningRun
from flows.analyze_process import (
    analyse_with_ml,
    discover_process,
    generate_reports,
    load_and_validate,
)
from flows.lifecycle import run_operation
from pmops.settings import Settings
from pmops.store.datasets import insert_dataset
from pmops.store.engine import make_engine, transaction
from pmops.store.operations import insert_operation, read_operation_by_id
from tests.flows._rows import dataset_row

OP = "op-observed-1"


def seed_store(settings: Settings, log: Path) -> None:
    engine = make_engine(settings.resolved_database_url, upgrade=True)
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        insert_dataset(conn, dataset_row("ds-1", log, now))
        params = {"datasetId": "ds-1", "analysisType": "comprehensive"}
        insert_operation(
            conn,
            {
                "operation_id": OP,
                "tenant_id": "t-1",
                "project_id": "p-1",
                "operation_type": "ProcessMiningAnalysis",
                "operation_name": "observed",
                "priority": "Normal",
                "priority_rank": 1,
                "status": "Initiated",
                "request": {"parameters": params},
                "dataset_id": "ds-1",
                "created_at": now,
                "timeout_at": now + timedelta(hours=1),
            },
        )


def test_phases_logged_and_artifacts_published(tmp_path: Path, datasets: Path) -> None:
    settings = Settings(data_dir=tmp_path, run_limits="off", heartbeat_interval_seconds=0.5)
    seed_store(settings, datasets / "receipt.xes.gz")

    @flow(name="observed-analysis", persist_result=False)
    def analysed(operation_id: str) -> Any:
        tasks = [load_and_validate, discover_process, analyse_with_ml, generate_reports]
        return run_operation(operation_id, ProcessMiningRun, tasks, settings=settings)

    with prefect_test_harness(server_startup_timeout=120):
        state = analysed(OP, return_state=True)
        run_id = state.state_details.flow_run_id
        APILogWorker.drain_all(timeout=30)  # the run logger's lines reach the server
        with get_client(sync_client=True) as client:
            messages = [
                log.message
                for log in client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                )
            ]
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        row = read_operation_by_id(conn, OP)
    assert row is not None and row["status"] == "Completed", row and row["error"]
    for phase in PHASES["ProcessMiningAnalysis"]:
        assert f"phase {phase} started" in messages, messages
        ended = [m for m in messages if m.startswith(f"phase {phase} Completed in ")]
        assert ended, messages
    assert f"operation {OP} ended Completed" in messages

    # only the summary is keyed (the Artifacts page lists it); the rest are the run's own
    assert [a.key for a in artifacts if a.key] == [f"{OP}-summary"], [a.key for a in artifacts]
    (progress,) = [a for a in artifacts if a.type == "progress"]
    assert float(progress.data) == 100.0
    (summary,) = [a for a in artifacts if a.key == f"{OP}-summary"]
    assert summary.type == "markdown" and "**Completed**" in summary.data
    assert "recordsAnalyzed" in summary.data
    tables = {a.description: a for a in artifacts if a.type == "table"}
    (variants,) = [a for d, a in tables.items() if d and d.endswith("most frequent variants")]
    bottlenecks = tables["activities with the longest waits before them"]
    assert "activities" in variants.data and "meanWaitHours" in bottlenecks.data
    # link artifacts are markdown links: to the report and to the process map
    links = [str(a.data) for a in artifacts if a.type == "markdown" and a.key is None]
    assert any(f"/async/operation/{OP}/artifacts/report.pdf?expires=" in d for d in links), links
    assert any(f"/async/operation/{OP}/artifacts/process-map.svg?expires=" in d for d in links)
