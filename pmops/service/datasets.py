"""Datasets: streamed upload with a size limit, inspection at upload, listing."""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from analysis.errors import AnalysisError
from analysis.eventlog import ColumnMapping
from pmops.service.errors import Problem, analysis_problem
from pmops.service.operations import base_path
from pmops.service.registration import Inspect, inspect_here, register_dataset
from pmops.service.scope import Scope
from pmops.service.storage import (
    Storage,
    dataset_key,
    dataset_prefix,
    is_legacy,
    make_scratch,
    refusal,
    storage_for,
)
from pmops.service.views import iso
from pmops.settings import Settings
from pmops.store import datasets as dataset_store
from pmops.store.engine import transaction

CHUNK = 1 << 20


def save_upload(source: BinaryIO, target: Path, limit: int) -> tuple[int, str]:
    """Copy in chunks, refusing past `limit` bytes; returns (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    out.close()
                    target.unlink(missing_ok=True)
                    raise Problem(
                        413,
                        f"the file is larger than the limit of {limit:,} bytes",
                        errors=[{"field": "file", "message": "too large"}],
                    )
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        if (reason := refusal(exc)) is None:
            raise
        target.unlink(missing_ok=True)
        # 507: the request was fine, the server cannot store it now
        raise Problem(
            507,
            f"the upload could not be stored: {reason}",
            errors=[{"field": "file", "message": "not stored"}],
        ) from None
    if size == 0:
        target.unlink(missing_ok=True)
        raise Problem(
            422, "the uploaded file is empty", errors=[{"field": "file", "message": "empty file"}]
        )
    return size, digest.hexdigest()


def dataset_view(row: dict[str, Any], scope: Scope) -> dict[str, Any]:
    summary = row["summary"] or {}
    return {
        "datasetId": row["dataset_id"],
        "fileName": row["file_name"],
        "format": row["format"],
        "sizeBytes": row["size_bytes"],
        "cases": summary.get("cases"),
        "events": summary.get("events"),
        "activities": summary.get("activities"),
        "timeRange": summary.get("timeRange"),
        "columnMapping": summary.get("columnMapping"),
        "sourceOperationId": row.get("source_operation_id"),
        "createdAt": iso(row["created_at"]),
        "url": f"{base_path(scope)}/datasets/{row['dataset_id']}",
    }


def create_dataset(
    engine: Engine,
    settings: Settings,
    scope: Scope,
    upload: BinaryIO,
    file_name: str,
    mapping: ColumnMapping,
    inspect: Inspect = inspect_here,
) -> dict[str, Any]:
    """Save the upload, read it (with `inspect`: the API's is a worker process) and record it;
    nothing is left behind when it cannot be read."""
    dataset_id = str(uuid.uuid4())
    name = Path(file_name or "").name[:200]
    safe_name = name if name.strip(".") else "upload"  # nothing of a path: ".." names no file
    storage = storage_for(settings)
    key = dataset_key(scope.tenant_id, dataset_id, safe_name)
    # file://: written in place, as always; elsewhere read from a scratch copy, then stored
    in_place = storage.local_path(key)
    scratch = None if in_place is not None else make_scratch(settings, "upload")
    target = in_place if in_place is not None else Path(str(scratch)) / safe_name
    try:
        save_upload(upload, target, settings.max_upload_bytes)
        register_dataset(
            engine,
            dataset_id=dataset_id,
            tenant_id=scope.tenant_id,
            project_id=scope.project_id,
            path=target,
            file_name=safe_name,
            mapping=mapping,
            inspect=inspect,
            key=key,
            store_file=lambda: _store(storage, target, key),
        )
    except AnalysisError as exc:
        _discard(storage, dataset_prefix(scope.tenant_id, dataset_id))
        if exc.field in (None, "file") or exc.field.endswith("Column"):
            raise analysis_problem(exc) from None
        raise
    except BaseException:
        _discard(storage, dataset_prefix(scope.tenant_id, dataset_id))
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return get_dataset_or_404(engine, scope, dataset_id)


def _discard(storage: Storage, prefix: str) -> None:
    """Remove what an upload left; a storage that fails here must not hide why it failed."""
    try:
        storage.delete_tree(prefix)
    except Exception:
        logging.getLogger(__name__).exception("could not remove %s from the storage", prefix)


def _store(storage: Storage, local: Path, key: str) -> None:
    """The upload into the storage (a no-op when it was written in place)."""
    try:
        storage.put_file(local, key)
    except OSError as exc:
        if (reason := refusal(exc)) is None:
            raise
        raise Problem(
            507,
            f"the upload could not be stored: {reason}",
            errors=[{"field": "file", "message": "not stored"}],
        ) from None


def delete_dataset(engine: Engine, settings: Settings, scope: Scope, dataset_id: str) -> None:
    """Remove a dataset and its file (the loser of a concurrent idempotent upload)."""
    with transaction(engine) as conn:
        dataset_store.delete_dataset(conn, scope.tenant_id, dataset_id)
    storage_for(settings).delete_tree(dataset_prefix(scope.tenant_id, dataset_id))


def remove_dataset(engine: Engine, settings: Settings, scope: Scope, dataset_id: str) -> None:
    """DELETE /datasets/{id}: the row and its uploaded file; 404 when not the scope's, 409
    naming the operation while a queued or running one reads it. An enriched dataset's file is
    its operation's artifact and stays with that operation's results."""
    dataset_id = _dataset_uuid(dataset_id)
    tenant_id, project_id = scope.tenant_id, scope.project_id
    with transaction(engine) as conn:
        row = dataset_store.read_dataset(conn, tenant_id, project_id, dataset_id)
        if row is None:
            raise Problem(404, f"dataset {dataset_id} not found")
        user = dataset_store.read_dataset_user(conn, tenant_id, project_id, dataset_id)
        if user is None and not dataset_store.delete_unused_dataset(
            conn, tenant_id, project_id, dataset_id
        ):  # an operation started on it meanwhile (PostgreSQL)
            user = dataset_store.read_dataset_user(conn, tenant_id, project_id, dataset_id)
            user = user or "(started meanwhile)"
        if user is not None:
            raise Problem(
                409,
                f"dataset {dataset_id} is used by operation {user}, which has not ended: "
                "cancel it or wait for it to end",
                errors=[{"field": "datasetId", "message": f"in use by {user}"}],
                extensions={"operationId": user},
            )
    prefix = dataset_prefix(scope.tenant_id, dataset_id)
    ref = str(row["path"])
    if is_legacy(ref):  # kept before keys: the upload's own folder under the data directory
        folder = settings.uploads_dir.resolve() / scope.tenant_id / dataset_id
        if Path(ref).resolve().is_relative_to(folder):
            shutil.rmtree(folder, ignore_errors=True)
    elif ref.startswith(prefix + "/"):
        storage_for(settings).delete_tree(prefix)


def _dataset_uuid(dataset_id: str) -> str:
    try:
        return str(uuid.UUID(dataset_id))
    except ValueError:
        raise Problem(404, f"dataset {dataset_id} not found") from None


def get_dataset_or_404(engine: Engine, scope: Scope, dataset_id: str) -> dict[str, Any]:
    dataset_id = _dataset_uuid(dataset_id)
    with engine.connect() as conn:
        row = dataset_store.read_dataset(conn, scope.tenant_id, scope.project_id, dataset_id)
    if row is None:
        raise Problem(404, f"dataset {dataset_id} not found")
    return dataset_view(row, scope)


def list_datasets(engine: Engine, scope: Scope, page: int, page_size: int) -> dict[str, Any]:
    tenant_id, project_id = scope.tenant_id, scope.project_id
    with engine.connect() as conn:
        total = dataset_store.count_datasets(conn, tenant_id, project_id)
        rows = dataset_store.list_datasets(
            conn, tenant_id, project_id, (page - 1) * page_size, page_size
        )
    return {
        "datasets": [dataset_view(r, scope) for r in rows],
        "totalDatasets": total,
        "page": page,
        "pageSize": page_size,
        "hasNextPage": page * page_size < total,
    }
