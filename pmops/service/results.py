"""Results documents and artifact files of finished operations."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from analysis.phases import PHASES
from pmops.service.errors import Problem
from pmops.service.operations import iso, results_document, tracking_url
from pmops.service.scope import Scope
from pmops.service.views import TERMINAL

# the seed's fields per phase: what `format=summary` keeps
SUMMARY_KEYS: dict[str, Any] = {
    "recordsLoaded": None,
    "validRecords": None,
    "errorRecords": None,
    "dataQualityScore": None,
    "validationErrors": None,
    "processModel": ("activities", "transitions", "variants", "complexity"),
    "performanceMetrics": (
        "averageCycleTime",
        "medianCycleTime",
        "bottleneckActivities",
        "efficiency",
    ),
    "anomalies": (
        "detected",
        "highSeverity",
        "mediumSeverity",
        "lowSeverity",
        "falsePositiveRate",
    ),
    "predictions": None,
    "patterns": ("frequentPatterns", "rarePatterns", "criticalPaths"),
    "rulesApplied": None,
    "recordsIn": None,
    "recordsOut": None,
    "reportsCreated": None,
}


def _summarise(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, keep in SUMMARY_KEYS.items():
        if key not in results:
            continue
        value = results[key]
        if keep is not None and isinstance(value, dict):
            value = {k: value[k] for k in keep if k in value}
        elif key == "predictions" and isinstance(value, dict):
            value = {
                name: {
                    k: v
                    for k, v in pred.items()
                    if k in ("accuracy", "meanAbsoluteError", "confidence")
                }
                for name, pred in value.items()
            }
        out[key] = value
    return out


def artifact_url(scope: Scope, operation_id: str, path: str) -> str:
    return f"{tracking_url(scope, operation_id)}/artifacts/{Path(path).name}"


def results_view(
    row: dict[str, Any],
    scope: Scope,
    fmt: str,
    include_artifacts: bool,
    phase: str | None,
) -> dict[str, Any]:
    if row["status"] not in TERMINAL:
        raise Problem(
            409,
            f"operation {row['operation_id']} is {row['status']}; results come "
            "when it has finished",
            headers={"Retry-After": "5"},
        )
    doc = results_document(row)
    phases = doc.get("phaseResults") or []
    if phase is not None:
        names = PHASES[row["operation_type"]]
        if phase not in names:
            raise Problem(
                400,
                f"phase must be one of: {', '.join(names)}",
                errors=[{"field": "phase", "message": "unknown phase"}],
            )
        phases = [p for p in phases if p.get("phaseName") == phase]
    if fmt == "summary":
        phases = [
            {
                "phaseName": p.get("phaseName"),
                "status": p.get("status"),
                "results": _summarise(p.get("results") or {}),
            }
            for p in phases
        ]
    view: dict[str, Any] = {
        "operationId": row["operation_id"],
        "operationType": row["operation_type"],
        "operationName": row["operation_name"],
        "status": row["status"],
        "completionTime": iso(row.get("ended_at")),
        "totalDuration": doc.get("totalDuration"),
        "success": row["status"] == "Completed",
        "summary": doc.get("summary") or {},
        "phaseResults": phases,
    }
    if include_artifacts:
        view["artifacts"] = [
            {
                **{k: v for k, v in a.items() if k != "path"},
                "downloadUrl": artifact_url(scope, row["operation_id"], a["path"]),
            }
            for a in doc.get("artifacts") or []
        ]
    if phase is None:
        view["performance"] = doc.get("performance")
        view["recommendations"] = doc.get("recommendations") or []
    if row.get("error"):
        view["error"] = row["error"]
    return view


def artifact_file(row: dict[str, Any], name: str) -> tuple[Path, dict[str, Any]]:
    """Only files the document lists can be fetched: no path from the request reaches the disk."""
    doc = row.get("results") or {}
    for artifact in doc.get("artifacts") or []:
        if Path(artifact["path"]).name == name and row.get("result_dir"):
            path = Path(row["result_dir"]) / artifact["path"]
            if path.is_file():
                return path, artifact
    raise Problem(404, f"artifact {name} not found")


MEDIA_TYPES = {
    "PDF": "application/pdf",
    "SVG": "image/svg+xml",
    "CSV": "text/csv",
    "PKL": "application/octet-stream",
    "JSON": "application/json",
    "PPTX": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "PARQUET": "application/vnd.apache.parquet",
    "XES": "application/xml",
}


def results_zip(row: dict[str, Any]) -> bytes:
    doc = row.get("results") or {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        result_dir = Path(row.get("result_dir") or ".")
        results_json = result_dir / "results.json"
        if results_json.is_file():
            zf.write(results_json, "results.json")
        for artifact in doc.get("artifacts") or []:
            path = result_dir / artifact["path"]
            if path.is_file():
                zf.write(path, Path(artifact["path"]).name)
    return buffer.getvalue()
