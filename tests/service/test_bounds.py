"""Bounded answers (pmops/service/bounds.py): a status (and so every event's data) stays within
64 KB whatever the log held; long strings end with a marker, the full data stays in the results.
The same through the API in process: tests/api/test_bounded_answers.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from analysis.phases import PHASES
from pmops.service.bounds import MAX_ANSWER_BYTES, bounded, json_size
from pmops.service.views import status_view
from pmops.settings import Settings

NAMES = PHASES["ProcessMiningAnalysis"]
NOW = datetime.now(UTC)
VARIANT = ",".join(f"activity {i % 7}" for i in range(100_000))  # about 1,000,000 characters


def row(results: dict[str, Any]) -> dict[str, Any]:
    phases = [
        {"phaseName": NAMES[0], "status": "Completed", "results": {"recordsLoaded": 200_000}},
        {"phaseName": NAMES[1], "status": "Completed", "results": results},
        {"phaseName": NAMES[2], "status": "Running"},
        {"phaseName": NAMES[3], "status": "Pending"},
    ]
    return {
        "operation_id": "op-1",
        "operation_type": "ProcessMiningAnalysis",
        "operation_name": "huge case",
        "status": "Running",
        "percentage": 60.0,
        "priority": "Normal",
        "created_at": NOW - timedelta(minutes=5),
        "started_at": NOW - timedelta(minutes=4),
        "ended_at": None,
        "timeout_at": NOW + timedelta(hours=1),
        "estimated_seconds": 600.0,
        "current_phase": NAMES[2],
        "processed_records": 120_000,
        "progress": {"phases": phases, "totalRecords": 200_000},
    }


def test_a_million_character_variant_is_cut_with_a_marker() -> None:
    assert len(VARIANT) > 999_000
    figures = {"topVariants": [{"variant": VARIANT, "cases": 1}], "variants": 1}
    view = status_view(row(figures), Settings())
    size = json_size(view)
    assert size <= MAX_ANSWER_BYTES - 4096, size
    shown = view["phases"][1]["results"]["topVariants"][0]["variant"]
    assert shown.startswith(VARIANT[:1000])
    more = len(VARIANT) - shown.index("…")
    assert shown.endswith(f"… [truncated, {more:,} more characters; full data in results]")
    # the rest of the status is untouched
    assert view["operationId"] == "op-1" and view["status"] == "Running"
    assert view["phases"][0]["results"] == {"recordsLoaded": 200_000}
    assert figures["topVariants"][0]["variant"] == VARIANT  # the caller's data is not changed


def test_many_items_are_cut_too() -> None:
    figures = {
        "activities": {f"activity {i}": i for i in range(100_000)},
        "paths": [f"a{i} -> b{i}" for i in range(100_000)],
    }
    view = status_view(row(figures), Settings())
    assert json_size(view) <= MAX_ANSWER_BYTES - 4096
    results = view["phases"][1]["results"]
    assert results["paths"][-1].endswith("more items; full data in results]")
    assert results["activities"]["…"].endswith("more entries; full data in results]")


def test_a_small_status_is_the_same_object() -> None:
    view = {"operationId": "op-1", "phases": [{"phaseName": "x", "results": {"a": "b" * 100}}]}
    assert bounded(view) is view


def test_event_bodies_stay_within_the_bound() -> None:
    figures = {"topVariants": [{"variant": VARIANT, "cases": 1}] * 50}
    view = status_view(row(figures), Settings())
    body = {"id": "msg_x", "type": "operation.progress", "sequence": 9, "data": view}
    assert len(json.dumps(body).encode()) <= MAX_ANSWER_BYTES
