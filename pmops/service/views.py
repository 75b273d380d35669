"""An operation's status as the API shows it, computed from its store row.

The API answers GET /async/operation/{id} with it, and every event (webhooks, callbacks, the
event stream) carries it as `data`, computed in the transaction that changed the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from analysis.formatting import seconds_text
from analysis.phases import PHASE_WEIGHTS, PHASES
from pmops.contract.enums import TERMINAL_STATUSES
from pmops.service.bounds import bounded
from pmops.settings import Settings
from pmops.store.engine import utc_now

TERMINAL: frozenset[str] = frozenset(TERMINAL_STATUSES)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration_range(seconds: float) -> str:
    """'10-15 seconds', '45-60 minutes': the estimate -20 % / +25 %."""
    low, high = seconds * 0.8, seconds * 1.25
    for unit, size in (("hours", 3600.0), ("minutes", 60.0)):
        if low >= 2 * size:
            return f"{low / size:.0f}-{max(high / size, low / size + 1):.0f} {unit}"
    return f"{max(1, round(low))}-{max(2, round(high))} seconds"


def elapsed_seconds(row: Mapping[str, Any], now: datetime) -> float:
    start: datetime | None = row.get("started_at")
    if start is None:
        return 0.0
    end: datetime = row.get("ended_at") or now
    return max(0.0, (end - start).total_seconds())


def remaining_seconds(row: Mapping[str, Any], elapsed: float) -> float:
    if row["status"] in TERMINAL:
        return 0.0
    pct = float(row.get("percentage") or 0.0)
    estimated = float(row.get("estimated_seconds") or 0.0)
    if row["status"] == "Running" and pct >= 5.0:
        # extrapolate the measured pace; blend with the start estimate while progress is small
        pace = elapsed * (100.0 - pct) / pct
        weight = min(1.0, pct / 30.0)
        return weight * pace + (1 - weight) * max(0.0, estimated - elapsed)
    return max(0.0, estimated - elapsed)


def estimated_completion(row: Mapping[str, Any], now: datetime) -> datetime | None:
    """The one rule: a finished operation's end; otherwise now + what remains."""
    if row["status"] in TERMINAL:
        ended: datetime | None = row.get("ended_at")
        return ended
    return now + timedelta(seconds=remaining_seconds(row, elapsed_seconds(row, now)))


def current_phase(phases: Sequence[Mapping[str, Any]]) -> str | None:
    """The phase the run is in, never one still Pending: the running phase, else the one where
    the run stopped, else (between two phases) the last completed one; None before the first
    phase starts and once every phase has completed."""
    for status in ("Running", "Cancelled", "Failed"):
        for phase in phases:
            if phase.get("status") == status:
                return str(phase["phaseName"])
    completed = [p for p in phases if p.get("status") == "Completed"]
    if not completed or len(completed) == len(phases):
        return None
    return str(completed[-1]["phaseName"])


def processed_records(records_analysed: int | None, fraction_done: float) -> int:
    """The running total the seed shows (125,430 of 187,250 at 67 %): the records to analyse
    times the share of the run done. It only grows with the share, and a completed run (share 1)
    has processed exactly the records its results count as analysed. 0 until loading knows them."""
    if not records_analysed:
        return 0
    return round(records_analysed * min(1.0, max(0.0, fraction_done)))


def total_duration(started: datetime | None, completed: datetime | None) -> str | None:
    """The seed's totalDuration: completion - start of the operation (not the phases' sum)."""
    if started is None or completed is None:
        return None
    return seconds_text(max(0.0, (completed - started).total_seconds()))


NO_CALLBACKS = {
    "progressCallbacksSent": 0,
    "lastProgressCallback": None,
    "callbacksSuccessful": 0,
    "callbacksFailed": 0,
}


def _overview(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """What the status view and a list item both show, computed once (one projection)."""
    elapsed = elapsed_seconds(row, now)
    remaining = remaining_seconds(row, elapsed)
    progress = row.get("progress") or {}
    usage = row["resource_usage"] if "resource_usage" in row else progress.get("resourceUsage")
    return {
        "operationId": row["operation_id"],
        "operationType": row["operation_type"],
        "operationName": row["operation_name"],
        "status": row["status"],
        "percentage": round(float(row.get("percentage") or 0.0)),
        "currentPhase": row.get("current_phase"),
        "startTime": iso(row.get("started_at")),
        "endTime": iso(row.get("ended_at")),
        "elapsed": elapsed,
        "remaining": remaining,
        "estimatedRemaining": (
            duration_range(remaining) if remaining and row["status"] not in TERMINAL else None
        ),
        "estimatedCompletion": iso(estimated_completion(row, now)),
        "resourceUsage": usage,
        "processedRecords": int(row.get("processed_records") or 0),
        "dateCreated": iso(row["created_at"]),
        "priority": row["priority"],
    }


def list_item(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """An operation as GET /async/operations lists it: the status view's figures, in short."""
    o = _overview(row, now or utc_now())
    return {
        "operationId": o["operationId"],
        "operationType": o["operationType"],
        "operationName": o["operationName"],
        "status": o["status"],
        "progress": o["percentage"],
        "priority": o["priority"],
        "startTime": o["startTime"],
        "endTime": o["endTime"],
        "duration": seconds_text(o["elapsed"]) if o["startTime"] else None,
        "estimatedCompletion": o["estimatedCompletion"],
        "currentPhase": o["currentPhase"],
        "resourceUsage": o["resourceUsage"],
        "recordsProcessed": o["processedRecords"],
        "dateCreated": o["dateCreated"],
    }


def _pending_estimates(
    row: Mapping[str, Any], phases: list[dict[str, Any]], remaining: float, now: datetime
) -> None:
    """The pending phases come one after the other at the end of what remains, each with its
    measured share of the run (PHASE_WEIGHTS)."""
    weights = PHASE_WEIGHTS[row["operation_type"]]
    whole = sum(weights.values()) or 1.0
    estimated_total = float(row.get("estimated_seconds") or 0.0)
    pending = [p for p in phases if p.get("status") == "Pending"]
    shares = [estimated_total * weights.get(p["phaseName"], 1.0) / whole for p in pending]
    start = now + timedelta(seconds=max(0.0, remaining - sum(shares)))
    for p, share in zip(pending, shares, strict=True):
        p["estimatedStartTime"] = iso(start)
        p["estimatedDuration"] = duration_range(share)
        start += timedelta(seconds=share)


def status_view(
    row: Mapping[str, Any], settings: Settings, callbacks: dict[str, Any] | None = None
) -> dict[str, Any]:
    now = utc_now()
    o = _overview(row, now)
    progress = row.get("progress") or {}
    phases: list[dict[str, Any]] = [dict(p) for p in progress.get("phases") or []] or [
        {"phaseName": name, "status": "Pending"} for name in PHASES[row["operation_type"]]
    ]
    if row["status"] not in TERMINAL:
        _pending_estimates(row, phases, o["remaining"], now)
    elapsed = o["elapsed"]
    rate = o["processedRecords"] / (elapsed / 60) if elapsed > 0 else 0.0
    view: dict[str, Any] = {
        "operationId": o["operationId"],
        "operationType": o["operationType"],
        "operationName": o["operationName"],
        "status": o["status"],
        "progress": {
            "percentage": o["percentage"],
            "currentPhase": o["currentPhase"],
            "phasesCompleted": sum(1 for p in phases if p.get("status") == "Completed"),
            "totalPhases": len(phases),
            "startTime": o["startTime"],
            "elapsedTime": seconds_text(elapsed),
            "estimatedRemaining": o["estimatedRemaining"],
            "estimatedCompletion": o["estimatedCompletion"],
        },
        "execution": {
            "executionId": row.get("execution_id"),
            "workerNode": row.get("worker_node"),
            "resourceUsage": o["resourceUsage"],
            "processedRecords": o["processedRecords"],
            "totalRecords": int(progress.get("totalRecords") or 0),
            "processingRate": f"{rate:.0f} records/minute",
            "heartbeatAt": iso(row.get("heartbeat_at")),
        },
        "phases": phases,
        "callbacks": callbacks or dict(NO_CALLBACKS),
        "dateCreated": o["dateCreated"],
        "timeoutAt": iso(row["timeout_at"]),
        "priority": o["priority"],
    }
    if row.get("error"):
        view["error"] = row["error"]
    if row.get("cancellation"):
        view["cancellation"] = row["cancellation"]
    if row.get("flow_run_id"):
        ui = settings.resolved_prefect_api_url.removesuffix("/api")
        view["prefect"] = {
            "flowRunId": row["flow_run_id"],
            "uiUrl": f"{ui}/runs/flow-run/{row['flow_run_id']}",
        }
    return bounded(view)  # at most MAX_STATUS_BYTES: a log's huge figures stay in the results
