"""An operation's status as the API shows it, computed from its store row.

The API answers GET /async/operation/{id} with it, and every event (webhooks, callbacks, the
event stream) carries it as `data`, computed in the transaction that changed the row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analysis.formatting import seconds_text
from analysis.phases import PHASE_WEIGHTS, PHASES
from pmops.contract.enums import TERMINAL_STATUSES
from pmops.settings import Settings
from pmops.store.tables import utc_now

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


def elapsed_seconds(row: dict[str, Any], now: datetime) -> float:
    start = row.get("started_at")
    if start is None:
        return 0.0
    end = row.get("ended_at") or now
    return max(0.0, (end - start).total_seconds())


def remaining_seconds(row: dict[str, Any], elapsed: float) -> float | None:
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


NO_CALLBACKS = {
    "progressCallbacksSent": 0,
    "lastProgressCallback": None,
    "callbacksSuccessful": 0,
    "callbacksFailed": 0,
}


def status_view(
    row: dict[str, Any], settings: Settings, callbacks: dict[str, Any] | None = None
) -> dict[str, Any]:
    now = utc_now()
    progress = row.get("progress") or {}
    op_type = row["operation_type"]
    phases = progress.get("phases") or [
        {"phaseName": name, "status": "Pending"} for name in PHASES[op_type]
    ]
    elapsed = elapsed_seconds(row, now)
    remaining = remaining_seconds(row, elapsed)
    done_all = int(progress.get("recordsDoneAllPhases") or 0)
    rate = done_all / (elapsed / 60) if elapsed > 0 else 0.0
    completed = sum(1 for p in phases if p.get("status") == "Completed")
    estimated_total = float(row.get("estimated_seconds") or 0.0)
    if row["status"] not in TERMINAL:
        # the pending phases come one after the other at the end of what remains, each with
        # its measured share of the run (PHASE_WEIGHTS)
        weights = PHASE_WEIGHTS[op_type]
        whole = sum(weights.values()) or 1.0
        pending = [p for p in phases if p.get("status") == "Pending"]
        shares = [estimated_total * weights.get(p["phaseName"], 1.0) / whole for p in pending]
        start = now + timedelta(seconds=max(0.0, (remaining or 0.0) - sum(shares)))
        for p, share in zip(pending, shares, strict=True):
            p["estimatedStartTime"] = iso(start)
            p["estimatedDuration"] = duration_range(share)
            start += timedelta(seconds=share)
    completion = (
        row.get("ended_at")
        if row["status"] in TERMINAL
        else now + timedelta(seconds=remaining or 0.0)
    )
    view: dict[str, Any] = {
        "operationId": row["operation_id"],
        "operationType": op_type,
        "operationName": row["operation_name"],
        "status": row["status"],
        "progress": {
            "percentage": round(float(row.get("percentage") or 0.0)),
            "currentPhase": row.get("current_phase"),
            "phasesCompleted": completed,
            "totalPhases": len(phases),
            "startTime": iso(row.get("started_at")),
            "elapsedTime": seconds_text(elapsed),
            "estimatedRemaining": (
                duration_range(remaining) if remaining and row["status"] not in TERMINAL else None
            ),
            "estimatedCompletion": iso(completion),
        },
        "execution": {
            "executionId": row.get("execution_id"),
            "workerNode": row.get("worker_node"),
            "resourceUsage": progress.get("resourceUsage"),
            "processedRecords": int(progress.get("processedRecords") or 0),
            "totalRecords": int(progress.get("totalRecords") or 0),
            "processingRate": f"{rate:.0f} records/minute",
            "heartbeatAt": iso(row.get("heartbeat_at")),
        },
        "phases": phases,
        "callbacks": callbacks or dict(NO_CALLBACKS),
        "dateCreated": iso(row["created_at"]),
        "timeoutAt": iso(row["timeout_at"]),
        "priority": row["priority"],
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
    return view
