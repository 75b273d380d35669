"""Status and events stay within 64 KB through the API, in process: a run reports a phase whose
figures hold a 1,000,000-character variant (one 200,000-event case); the status and every event
are cut with a marker, the results document keeps it whole."""

from __future__ import annotations

from typing import Any

from analysis.phases import PHASES
from pmops.service.lifecycle import Announcer, claim, finish, report
from tests.api.conftest import Client, Served

NAMES = PHASES["ProcessMiningAnalysis"]
VARIANT = ",".join(f"activity {i % 7}" for i in range(100_000))
LIMIT = 64 * 1024


def snapshot(done: int) -> dict[str, Any]:
    figures = {"topVariants": [{"variant": VARIANT, "cases": 1}]}
    phases = [
        {"phaseName": n, "status": "Completed" if i < done else "Pending"}
        | ({"results": figures} if i == 1 and done > 1 else {})
        for i, n in enumerate(NAMES)
    ]
    return {
        "phases": phases,
        "percentage": 25.0 * done,
        "currentPhase": None,
        "processedRecords": 200_000,
        "totalRecords": 200_000,
    }


def test_status_and_events_are_bounded_results_are_whole(
    served: Served, api: Client, receipt_dataset: dict[str, Any]
) -> None:
    op_id = str(api.start(receipt_dataset["datasetId"], "one huge case")["operationId"])
    assert claim(served.engine, op_id, None, "host:1") is not None
    announcer = Announcer(op_id)
    assert report(served.engine, op_id, snapshot(2), announcer)

    r = api.get(f"/async/operation/{op_id}")
    assert r.status_code == 200 and len(r.content) <= LIMIT, len(r.content)
    shown = r.json()["phases"][1]["results"]["topVariants"][0]["variant"]
    assert shown.endswith("more characters; full data in results]") and len(shown) < 5000

    document = {
        "summary": {"recordsAnalyzed": 200_000},
        "phaseResults": [
            {
                "phaseName": NAMES[1],
                "status": "Completed",
                "results": snapshot(2)["phases"][1]["results"],
            }
        ],
        "artifacts": [],
    }
    assert finish(
        served.engine, op_id, "Completed", document, progress=snapshot(4), announcer=announcer
    )

    stream = api.get(f"/async/operation/{op_id}/events")
    events = [line for line in stream.text.splitlines() if line.startswith("data: ")]
    assert len(events) >= 3  # started, progress, phase completed ..., completed
    assert all(len(line.encode()) <= LIMIT for line in events), max(map(len, events))

    results = api.results(op_id, format="detailed")
    assert results.status_code == 200, results.text
    assert VARIANT in results.text  # the full data
