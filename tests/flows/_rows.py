"""Store rows the flow tests seed directly (no API in front of them)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def dataset_row(dataset_id: str, log: Path, created_at: datetime | None = None) -> dict[str, Any]:
    """An uploaded XES log of tenant t-1, project p-1, read in place."""
    return {
        "dataset_id": dataset_id,
        "tenant_id": "t-1",
        "project_id": "p-1",
        "file_name": log.name,
        "path": str(log),
        "size_bytes": log.stat().st_size,
        "format": "xes",
        "summary": {},
        "created_at": created_at or datetime.now(UTC),
    }
