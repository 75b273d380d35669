"""The batch graph without a service: ordering, graph errors, and where a member without its own
input takes it (the seed's pipeline: data-prep -> discovery -> performance)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine

from pmops.contract.requests import BatchCreate, BatchOperation
from pmops.service.batch_progress import taken_input
from pmops.service.batches import _source_of, check_graph, input_dependency
from pmops.service.errors import Problem

# the seed's batch example, verbatim but for the dataset id
SEED_BATCH: dict[str, Any] = {
    "batchName": "月次プロセスマイニングパイプライン",
    "batchDescription": "複数のデータセットを使った月次の完全分析ワークフロー",
    "operations": [
        {
            "operationName": "データ準備",
            "operationType": "DataEnrichment",
            "priority": "High",
            "operationKey": "data-prep",
            "parameters": {
                "datasetId": "dataset-1",
                "cleaningRules": ["remove_duplicates", "fix_timestamps"],
                "outputFormat": "processed_csv",
            },
        },
        {
            "operationName": "プロセス発見",
            "operationType": "ProcessMiningAnalysis",
            "priority": "High",
            "operationKey": "discovery",
            "dependencies": ["data-prep"],
            "parameters": {"algorithm": "alpha_miner_enhanced", "enableVariantAnalysis": True},
        },
        {
            "operationName": "パフォーマンス分析",
            "operationType": "ProcessMiningAnalysis",
            "priority": "Normal",
            "operationKey": "performance",
            "dependencies": ["discovery"],
            "parameters": {
                "enableBottleneckDetection": True,
                "generateOptimizationRecommendations": True,
            },
        },
    ],
    "failurePolicy": {
        "stopOnFirstFailure": False,
        "continueIndependentOperations": True,
        "retryFailedOperations": True,
    },
}


def op(key: str, kind: str, deps: list[str], **params: Any) -> BatchOperation:
    return BatchOperation(
        operationKey=key,
        operationName=key,
        operationType=kind,  # type: ignore[arg-type]
        dependencies=deps,
        parameters=params,
    )


def kinds(ops: list[BatchOperation]) -> dict[str, str]:
    return {o.operationKey: o.operationType.value for o in ops}


def test_the_seed_pipeline_orders_and_finds_every_input() -> None:
    body = BatchCreate.model_validate(SEED_BATCH)
    ops = body.operations
    assert [ops[i].operationKey for i in check_graph(ops)] == [
        "data-prep",
        "discovery",
        "performance",
    ]
    sources = [_source_of(i, o, kinds(ops)) for i, o in enumerate(ops)]
    # data-prep has its own dataset; discovery reads what data-prep makes; performance reads
    # what discovery read
    assert sources == [None, "data-prep", "discovery"]


def test_a_report_takes_an_analysis_first_then_a_report() -> None:
    ops = [
        op("clean", "DataEnrichment", [], datasetId="d"),
        op("analyze", "ProcessMiningAnalysis", ["clean"]),
        op("report", "ReportGeneration", ["analyze", "clean"]),
        op("again", "ReportGeneration", ["report"]),
    ]
    assert input_dependency(ops[2], kinds(ops)) == "analyze"
    assert input_dependency(ops[3], kinds(ops)) == "report"


def test_an_enrichment_does_not_take_an_analysis_input() -> None:
    ops = [
        op("a", "ProcessMiningAnalysis", [], datasetId="d"),
        op("e", "DataEnrichment", ["a"]),
    ]
    with pytest.raises(Problem) as caught:
        _source_of(1, ops[1], kinds(ops))
    assert caught.value.status == 422
    assert caught.value.errors == [
        {
            "field": "operations[1].parameters.datasetId",
            "message": "required, or a dependency that provides it",
        }
    ]


@pytest.mark.parametrize(
    ("ops", "field"),
    [
        (
            [op("a", "DataEnrichment", []), op("a", "DataEnrichment", [])],
            "operations[1].operationKey",
        ),
        ([op("a", "DataEnrichment", ["b"])], "operations[0].dependencies[0]"),
        ([op("a", "DataEnrichment", ["b"]), op("b", "DataEnrichment", ["a"])], "operations"),
    ],
)
def test_graph_errors_are_422_naming_the_field(ops: list[BatchOperation], field: str) -> None:
    with pytest.raises(Problem) as caught:
        check_graph(ops)
    assert caught.value.status == 422
    assert [e["field"] for e in caught.value.errors or []] == [field]


def test_taken_input_hands_on_the_dependency_input() -> None:
    engine = create_engine("sqlite://")  # the same-type cases read nothing from the store
    analysis = {
        "operation_id": "op-1",
        "operation_type": "ProcessMiningAnalysis",
        "dataset_id": "enriched-1",
        "request": {"parameters": {}},
    }
    report = {
        "operation_id": "op-2",
        "operation_type": "ReportGeneration",
        "dataset_id": None,
        "request": {"parameters": {"sourceOperationId": "op-1"}},
    }
    with engine.connect() as conn:
        assert taken_input(conn, {"operation_type": "ProcessMiningAnalysis"}, [analysis]) == {
            "datasetId": "enriched-1"
        }
        assert taken_input(conn, {"operation_type": "ReportGeneration"}, [analysis]) == {
            "sourceOperationId": "op-1"
        }
        assert taken_input(conn, {"operation_type": "ReportGeneration"}, [report]) == {
            "sourceOperationId": "op-1"
        }
        assert taken_input(conn, {"operation_type": "DataEnrichment"}, [analysis]) == {}
