"""The status view and the list item are one projection of an operation's row
(pmops/service/views.py): one currentPhase rule, one estimatedCompletion rule, the seed's
totalDuration and a running total of processed records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analysis.phases import PHASES
from pmops.service.lifecycle import stamp_times
from pmops.service.views import (
    current_phase,
    estimated_completion,
    iso,
    list_item,
    processed_records,
    status_view,
    total_duration,
)
from pmops.settings import Settings

NAMES = PHASES["ProcessMiningAnalysis"]
NOW = datetime(2024, 1, 20, 11, 41, 15, tzinfo=UTC)


def phases(*statuses: str) -> list[dict[str, Any]]:
    return [{"phaseName": n, "status": s} for n, s in zip(NAMES, statuses, strict=True)]


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "operation_id": "op-1",
        "operation_type": "ProcessMiningAnalysis",
        "operation_name": "journey",
        "status": "Running",
        "percentage": 67.0,
        "priority": "High",
        "created_at": NOW - timedelta(minutes=26),
        "started_at": NOW - timedelta(minutes=23, seconds=15),
        "ended_at": None,
        "timeout_at": NOW + timedelta(hours=1),
        "estimated_seconds": 2700.0,
        "current_phase": NAMES[2],
        "processed_records": 125_430,
        "progress": {
            "phases": phases("Completed", "Completed", "Running", "Pending"),
            "totalRecords": 187_250,
            "resourceUsage": {"cpuUsage": 78, "memoryUsage": "6.2 GB"},
        },
    }
    return {**base, **changes}


# -- currentPhase ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("Pending", "Pending", "Pending", "Pending"), None),
        (("Running", "Pending", "Pending", "Pending"), NAMES[0]),
        (("Completed", "Running", "Pending", "Pending"), NAMES[1]),
        # between two phases: the one just completed, never the next one still Pending
        (("Completed", "Completed", "Pending", "Pending"), NAMES[1]),
        (("Completed", "Completed", "Cancelled", "Pending"), NAMES[2]),
        (("Completed", "Failed", "Pending", "Pending"), NAMES[1]),
        (("Completed", "Completed", "Completed", "Completed"), None),
    ],
)
def test_current_phase_is_never_pending(statuses: tuple[str, ...], expected: str | None) -> None:
    found = current_phase(phases(*statuses))
    assert found == expected
    pending = {p["phaseName"] for p in phases(*statuses) if p["status"] == "Pending"}
    assert found not in pending


def test_views_show_the_current_phase_written_with_the_progress() -> None:
    r = row()
    assert status_view(r, Settings())["progress"]["currentPhase"] == NAMES[2]
    assert list_item(r, NOW)["currentPhase"] == NAMES[2]


# -- processedRecords ------------------------------------------------------------------------
def test_processed_records_is_a_running_total_that_ends_at_the_records_analysed() -> None:
    assert processed_records(None, 0.4) == 0  # loading has not counted them yet
    assert processed_records(187_248, 0.67) == round(187_248 * 0.67)
    shares = [i / 100 for i in range(101)]
    totals = [processed_records(187_248, s) for s in shares]
    assert totals == sorted(totals)
    assert totals[-1] == 187_248
    assert processed_records(187_248, 1.3) == 187_248


def test_status_and_list_show_the_same_records_and_rate() -> None:
    r = row()
    view = status_view(r, Settings())
    assert view["execution"]["processedRecords"] == 125_430
    assert view["execution"]["totalRecords"] == 187_250
    assert list_item(r, NOW)["recordsProcessed"] == 125_430


# -- totalDuration ---------------------------------------------------------------------------
def test_total_duration_is_completion_minus_start() -> None:
    start = datetime(2024, 1, 20, 11, 18, tzinfo=UTC)
    assert total_duration(start, datetime(2024, 1, 20, 12, 3, tzinfo=UTC)) == "45 minutes"
    assert total_duration(start, start + timedelta(seconds=8.7)) == "8.7 seconds"
    assert total_duration(None, start) is None


def test_results_document_gets_the_operations_own_times() -> None:
    start = datetime(2024, 1, 20, 11, 18, tzinfo=UTC)
    end = start + timedelta(minutes=45)
    # the phases' sum (what the run measured) is replaced by completion - start
    doc: dict[str, Any] = {"totalDuration": "4.6 seconds", "completionTime": "x"}
    stamp_times(doc, start, end)
    assert doc == {
        "startTime": "2024-01-20T11:18:00Z",
        "completionTime": "2024-01-20T12:03:00Z",
        "totalDuration": "45 minutes",
    }


# -- estimatedCompletion ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "Initiated", "started_at": None, "percentage": 0.0, "current_phase": None},
        {"percentage": 2.0},
        {"status": "Completed", "percentage": 100.0, "ended_at": NOW - timedelta(minutes=1)},
        {"status": "Cancelled", "ended_at": NOW - timedelta(seconds=5)},
    ],
)
def test_status_and_list_compute_estimated_completion_by_one_rule(changes: dict[str, Any]) -> None:
    r = row(**changes)
    expected = iso(estimated_completion(r, NOW))
    assert list_item(r, NOW)["estimatedCompletion"] == expected
    # the status view reads the clock itself: equal to the rule within the seconds it shows
    shown = status_view(r, Settings())["progress"]["estimatedCompletion"]
    assert (shown is None) == (expected is None)
    if r["status"] in ("Completed", "Cancelled"):
        assert shown == expected == iso(r["ended_at"])


def test_estimated_completion_rule() -> None:
    done = row(status="Completed", ended_at=NOW - timedelta(minutes=1))
    assert estimated_completion(done, NOW) == NOW - timedelta(minutes=1)
    waiting = row(status="Initiated", started_at=None, percentage=0.0)
    assert estimated_completion(waiting, NOW) == NOW + timedelta(seconds=2700)
    # past 5 %: the measured pace, blended with the start estimate below 30 %
    running = row(percentage=50.0)
    elapsed = (23 * 60 + 15) * 1.0
    assert estimated_completion(running, NOW) == NOW + timedelta(seconds=elapsed)


def test_list_item_is_the_status_view_in_short() -> None:
    r = row()
    view, item = status_view(r, Settings()), list_item(r, NOW)
    assert item["progress"] == view["progress"]["percentage"] == 67
    assert item["startTime"] == view["progress"]["startTime"]
    assert item["resourceUsage"] == view["execution"]["resourceUsage"]
    assert item["operationId"] == view["operationId"] and item["priority"] == view["priority"]
    pending = [p for p in view["phases"] if p["status"] == "Pending"]
    assert pending and all("estimatedStartTime" in p for p in pending)
    # the row's progress is not changed by the view
    assert all("estimatedStartTime" not in p for p in r["progress"]["phases"])
