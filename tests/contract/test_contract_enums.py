"""The contract's enums: one list of each vocabulary, the seed's spellings."""

from __future__ import annotations

import pytest

from analysis import phases as analysis_phases
from pmops.contract import requests
from pmops.contract.enums import (
    OPERATION_EVENTS,
    PHASES,
    SUBSCRIBABLE_EVENTS,
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    EventType,
    OperationStatus,
    OperationType,
    PhaseName,
    Priority,
)
from pmops.delivery import outbox
from pmops.service import events, views

SEED_JAPANESE = {
    "データの読み込みと検証": "Data Loading and Validation",
    "プロセス発見": "Process Discovery",
    "機械学習分析": "Machine Learning Analysis",
    "レポート生成": "Report Generation",
}


@pytest.mark.parametrize(("japanese", "english"), sorted(SEED_JAPANESE.items()))
def test_a_phase_is_found_by_its_japanese_name_from_the_seed(japanese: str, english: str) -> None:
    assert PhaseName(japanese) is PhaseName(english)
    assert PhaseName(english).ja == japanese


def test_every_phase_has_a_distinct_japanese_name_and_unknown_names_are_refused() -> None:
    assert len({p.ja for p in PhaseName}) == len(PhaseName)
    for phase in PhaseName:
        assert PhaseName(phase.ja) is phase
    with pytest.raises(ValueError):
        PhaseName("Warp Drive")


def test_phases_and_weights_are_the_analysis_table() -> None:
    assert {str(k): tuple(v) for k, v in PHASES.items()} == analysis_phases.PHASES
    for kind, names in PHASES.items():
        weights = [p.weight(kind) for p in names]
        assert weights == [analysis_phases.PHASE_WEIGHTS[kind][p] for p in names]
        assert sum(weights) == pytest.approx(1.0)


def test_priority_rank_orders_the_queue_and_the_old_table_still_works() -> None:
    assert [p.rank for p in Priority] == [0, 1, 2, 3]
    assert sorted(Priority, key=lambda p: p.rank)[-1] is Priority.Critical
    assert requests.PRIORITY_RANK == {"Low": 0, "Normal": 1, "High": 2, "Critical": 3}


def test_statuses_equal_their_strings() -> None:
    assert OperationStatus.Completed == "Completed"
    assert "Completed" in TERMINAL_STATUSES and "Running" not in TERMINAL_STATUSES
    assert {"Completed", "Failed", "Cancelled", "Timeout"} == views.TERMINAL
    assert requests.Status is OperationStatus
    assert [t.value for t in OperationType] == list(analysis_phases.OPERATION_TYPES)


def test_event_types_are_listed_once() -> None:
    assert events.OPERATION_EVENTS == OPERATION_EVENTS
    assert events.TERMINAL_EVENT == TERMINAL_EVENTS
    assert events.WEBHOOK_DISABLED is EventType.webhook_disabled
    assert set(outbox.NOTIFY_EVENTS) | {outbox.NOTIFY_CANCELLED} == set(TERMINAL_EVENTS.values())
    assert set(events.CALLBACK_FOR) == set(OPERATION_EVENTS)
    assert set(outbox.BATCH_CALLBACK_FOR) == {e for e in EventType if e.startswith("batch.")}
    assert requests.EventType is EventType
    assert EventType.webhook_disabled not in SUBSCRIBABLE_EVENTS
    assert all(e.terminal for e in TERMINAL_EVENTS.values())
    assert not EventType.progress.terminal


def test_a_webhook_cannot_subscribe_to_a_project_event() -> None:
    body = {"webhookUrl": "https://example.com/h", "webhookName": "h"}
    requests.WebhookCreate.model_validate({**body, "events": list(SUBSCRIBABLE_EVENTS)})
    with pytest.raises(ValueError, match="not an event a webhook can subscribe to"):
        requests.WebhookCreate.model_validate({**body, "events": ["webhook.disabled"]})
