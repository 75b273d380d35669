"""A real flow run (prefect_test_harness) with its storage on s3:// (a real S3-compatible server
on loopback: moto's, tests/s3server.py): the run reads a scratch copy of its dataset, its
checkpoints and artifacts land in the bucket by key, a resume retry restores the completed
phases from the bucket's checkpoints, and no scratch copy is left on the machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import select

from analysis.eventlog import ColumnMapping
from analysis.phases import DISCOVERY, LOAD, MACHINE_LEARNING, REPORTS
from flows.analyze_process import analyze_process
from flows.enrich_dataset import enrich_dataset
from flows.generate_report import generate_report
from pmops.contract.requests import OperationCreate, RetryCreate
from pmops.service.datasets import create_dataset
from pmops.service.operations import start_operation
from pmops.service.retries import create_retry
from pmops.service.scope import Principal, Scope
from pmops.settings import Settings, get_settings
from pmops.store.tables import datasets as datasets_table
from pmops.store.tables import engine_for, operations
from tests.s3server import S3

TENANT, PROJECT = "tenant-s3", "project-s3"
SCOPE = Scope(TENANT, PROJECT, Principal(TENANT, PROJECT, "flow test"))


@pytest.fixture
def settings(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """What the flow run reads (get_settings): s3:// storage, no limits or niceness applied to
    the test process itself, fault injection on."""
    monkeypatch.setenv("PMOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PMOPS_STORAGE_URL", s3.url("flows"))
    monkeypatch.setenv("PMOPS_RUN_LIMITS", "off")
    monkeypatch.setenv("PMOPS_RUN_NICENESS", "0")
    monkeypatch.setenv("PMOPS_FAULT_INJECTION", "true")
    (tmp_path / "data").mkdir()
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _row(settings: Settings, operation_id: str) -> dict[str, Any]:
    engine = engine_for(settings.resolved_database_url)
    with engine.connect() as conn:
        found = conn.execute(
            select(operations).where(operations.c.operation_id == operation_id)
        ).mappings()
        return dict(found.one())


def test_an_analysis_on_s3_storage(settings: Settings, s3: S3, datasets: Path) -> None:
    engine = engine_for(settings.resolved_database_url)
    with (datasets / "receipt.xes.gz").open("rb") as upload:
        dataset = create_dataset(engine, settings, SCOPE, upload, "receipt.xes.gz", ColumnMapping())
    body = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "on s3",
        "parameters": {
            "datasetId": dataset["datasetId"],
            "analysisType": "comprehensive",
            "faultInjection": {"failPhase": REPORTS},
        },
    }
    _, started, _ = start_operation(
        engine, settings, SCOPE, OperationCreate.model_validate(body), None
    )
    first = started["operationId"]
    scratch = settings.data_dir.resolve() / "scratch"

    with prefect_test_harness(server_startup_timeout=120):
        analyze_process(first, return_state=True)
        failed = _row(settings, first)
        assert failed["status"] == "Failed" and failed["result_dir"] == f"operations/{first}"
        # the completed phases' checkpoints are in the bucket, the scratch copy is gone
        stored = s3.keys(f"flows/operations/{first}")
        assert {"state/1.pkl", "state/2.pkl", "state/3.pkl", "results.json"} <= set(stored)
        assert list(scratch.iterdir()) == []

        _, retry, _ = create_retry(
            engine,
            settings,
            SCOPE,
            first,
            RetryCreate.model_validate(
                {"retryMode": "resume", "updatedParameters": {"faultInjection": None}}
            ),
        )
        assert retry["preservedResults"]["phasesPreserved"] == 3  # seen in the bucket
        second = retry["newOperationId"]
        analyze_process(second)

    done = _row(settings, second)
    assert done["status"] == "Completed", done["error"]
    document = done["results"]
    assert isinstance(document, dict)
    phases = {p["phaseName"]: p for p in document["phaseResults"]}
    for name in (LOAD, DISCOVERY, MACHINE_LEARNING):  # restored from the bucket's checkpoints
        assert phases[name].get("preservedFrom") == first, name
    assert phases[REPORTS]["status"] == "Completed" and not phases[REPORTS].get("preservedFrom")
    # every artifact and the document are in the bucket; the checkpoints of a completed run not
    stored = s3.keys(f"flows/operations/{second}")
    artifacts = [a["path"] for a in document["artifacts"]]
    assert artifacts and set(artifacts) | {"results.json"} <= set(stored)
    assert "report.pdf" in artifacts
    assert not [k for k in stored if k.startswith("state/")]
    assert list(scratch.iterdir()) == []  # nothing of either run left on the machine
    assert not (settings.data_dir / "operations").exists()


def _start(settings: Settings, operation_type: str, parameters: dict[str, object]) -> str:
    body = {
        "operationType": operation_type,
        "operationName": operation_type,
        "parameters": parameters,
    }
    engine = engine_for(settings.resolved_database_url)
    create = OperationCreate.model_validate(body)
    return str(start_operation(engine, settings, SCOPE, create, None)[1]["operationId"])


def test_enrichment_and_a_report_on_s3_storage(settings: Settings, s3: S3, datasets: Path) -> None:
    """An enriched dataset is its operation's artifact, by key in the bucket; a report reads the
    analysis it follows (its results.json and process map) from the bucket."""
    engine = engine_for(settings.resolved_database_url)
    with (datasets / "sepsis.csv").open("rb") as upload:
        dataset = create_dataset(engine, settings, SCOPE, upload, "sepsis.csv", ColumnMapping())
    enrich = _start(
        settings,
        "DataEnrichment",
        {
            "datasetId": dataset["datasetId"],
            "cleaningRules": ["remove_duplicates"],
            "outputFormat": "processed_csv",
        },
    )
    analysis = _start(settings, "ProcessMiningAnalysis", {"datasetId": dataset["datasetId"]})
    with prefect_test_harness(server_startup_timeout=120):
        enrich_dataset(enrich)
        analyze_process(analysis)
        report = _start(
            settings,
            "ReportGeneration",
            {
                "sourceOperationId": analysis,
                "exportFormats": ["PDF"],
                "includeVisualizations": True,
            },
        )
        generate_report(report)
    enriched = _row(settings, enrich)
    assert enriched["status"] == "Completed", enriched["error"]
    made = enriched["results"]["summary"]["enrichedDataset"]
    with engine.connect() as conn:
        path = conn.execute(
            select(datasets_table.c.path).where(datasets_table.c.dataset_id == made["datasetId"])
        ).scalar_one()
    assert path.startswith(f"operations/{enrich}/") and path.endswith(".csv")
    assert path.split("/", 2)[2] in s3.keys(f"flows/operations/{enrich}")
    done = _row(settings, report)
    assert done["status"] == "Completed", done["error"]
    artifacts = [a["path"] for a in done["results"]["artifacts"]]
    assert "executive_summary.pdf" in artifacts
    assert set(artifacts) <= set(s3.keys(f"flows/operations/{report}"))
    assert list((settings.data_dir.resolve() / "scratch").iterdir()) == []
