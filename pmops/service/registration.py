"""Datasets: event-log files registered for a tenant and project, with their summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from analysis.eventlog import ColumnMapping, inspect_event_log
from pmops.store.datasets import insert_dataset
from pmops.store.engine import transaction, utc_now

Inspect = Callable[[Path, ColumnMapping | None], dict[str, Any]]


def inspect_here(path: Path, mapping: ColumnMapping | None) -> dict[str, Any]:
    """Read the file in this process (flows; the API reads uploads in pmops.service.inspection)."""
    return inspect_event_log(path, mapping).to_dict()


def register_dataset(
    engine: Engine,
    *,
    dataset_id: str,
    tenant_id: str,
    project_id: str,
    path: Path,
    file_name: str,
    mapping: ColumnMapping | None = None,
    source_operation_id: str | None = None,
    inspect: Inspect = inspect_here,
    key: str | None = None,
    store_file: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Inspect the local file `path` (cases, events, activities, time range) and record it under
    its storage `key` (pmops.service.storage); `store_file` puts it there, between the two.

    Raises analysis.errors.EventLogError when the file is not a usable event log; nothing is
    recorded then.
    """
    summary = inspect(path, mapping)
    if store_file is not None:
        store_file()
    with transaction(engine) as conn:
        insert_dataset(
            conn,
            {
                "dataset_id": dataset_id,
                "tenant_id": tenant_id,
                "project_id": project_id,
                "file_name": file_name,
                "path": key or str(Path(path).resolve()),
                "size_bytes": Path(path).stat().st_size,
                "format": summary.get("format", ""),
                "summary": summary,
                "source_operation_id": source_operation_id,
                "created_at": utc_now(),
            },
        )
    return summary
