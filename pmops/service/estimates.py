"""Duration and cost estimates from the throughput of earlier runs.

estimatedDuration at start = events of the dataset / median throughput (events per second of
phase wall time) of the last 20 completed operations of the same type whose dataset size is
within a factor of 4, plus their median start-up time. Both come from the run_throughput table
(one row per completed run, written when it finishes), so an estimate never parses results
documents. With fewer than 3 such runs the fallback uses the throughput measured in
BENCHMARKS.md for the type (bpic2012 on 2 cores) plus the measured ~4 s process start.
The range shown is the estimate -20 % / +25 %.
"""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from pmops.settings import Settings
from pmops.store.operations import list_throughput

# events per second of phase wall time, and process start-up seconds (BENCHMARKS.md)
FALLBACK_THROUGHPUT = {
    "ProcessMiningAnalysis": 33_000.0,
    "DataEnrichment": 150_000.0,
    "ReportGeneration": 60_000.0,
}
FALLBACK_STARTUP_SECONDS = 4.0
SAMPLE = 20


def estimate_seconds(engine: Engine, operation_type: str, events: int) -> tuple[float, str]:
    """(seconds, method) for an operation of this type over `events` events."""
    with engine.connect() as conn:
        rows = list_throughput(conn, operation_type, 200)
    rates, startups = [], []
    for n, phases, startup in rows:
        if n <= 0 or phases <= 0 or not (events / 4 <= n <= events * 4 or events == 0):
            continue
        rates.append(n / phases)
        startups.append(startup)
        if len(rates) >= SAMPLE:
            break
    if len(rates) >= 3:
        rate, startup = statistics.median(rates), statistics.median(startups)
        method = f"median throughput of the last {len(rates)} comparable {operation_type} runs"
    else:
        rate, startup = FALLBACK_THROUGHPUT[operation_type], FALLBACK_STARTUP_SECONDS
        method = "benchmark throughput of this operation type (too few comparable runs yet)"
    return startup + events / rate, method


def cost_text(seconds: float, settings: Settings) -> str:
    usd = (
        seconds / 3600 * settings.cpu_units * settings.price_cpu_hour
        + seconds / 3600 * settings.memory_gb * settings.price_gb_hour
    )
    return f"${usd:.2f}" if usd >= 0.1 else f"${usd:.4f}"


def resources(seconds: float, settings: Settings) -> dict[str, Any]:
    return {
        "cpuUnits": settings.cpu_units,
        "memoryGB": settings.memory_gb,
        "estimatedCost": cost_text(seconds, settings),
    }


def later(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
