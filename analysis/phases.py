"""The one table of operation types and their phases (names shown in status and results)."""

from __future__ import annotations

LOAD = "Data Loading and Validation"
DISCOVERY = "Process Discovery"
MACHINE_LEARNING = "Machine Learning Analysis"
REPORTS = "Report Generation"
CLEANING = "Data Cleaning"
EXPORT = "Enriched Dataset Export"
COLLECT = "Source Collection"

PHASES: dict[str, tuple[str, ...]] = {
    "ProcessMiningAnalysis": (LOAD, DISCOVERY, MACHINE_LEARNING, REPORTS),
    "DataEnrichment": (LOAD, CLEANING, EXPORT),
    "ReportGeneration": (COLLECT, REPORTS),
}

# Relative weight of each phase in the overall percentage, from measured wall-time shares on
# bpic2012 (BENCHMARKS.md); phases not listed weigh 1.
PHASE_WEIGHTS: dict[str, dict[str, float]] = {
    "ProcessMiningAnalysis": {LOAD: 0.15, DISCOVERY: 0.35, MACHINE_LEARNING: 0.3, REPORTS: 0.2},
    "DataEnrichment": {LOAD: 0.4, CLEANING: 0.4, EXPORT: 0.2},
    "ReportGeneration": {COLLECT: 0.4, REPORTS: 0.6},
}

OPERATION_TYPES = tuple(PHASES)
