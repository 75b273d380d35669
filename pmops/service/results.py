"""Results documents and artifact files of finished operations, and their download links.

Download links (`artifacts[].downloadUrl`, `partialResults.downloadUrls`) are absolute and signed,
so a client GETs them without its bearer token:

    {base}/api/{tenantId}/{projectId}/async/operation/{operationId}/artifacts/{name}
        ?expires={unix seconds}&signature={hex HMAC-SHA256}
    {base}/api/{tenantId}/{projectId}/async/operation/{operationId}/results
        ?format=download&expires={unix seconds}&signature={hex HMAC-SHA256}   (the zip)

`base` is PMOPS_PUBLIC_URL, else the base URL of the request that lists the link. The HMAC is
over "{path}[?format=download]\n{expires}" (the path from /api on, so a proxy prefix in the
public URL does not matter), keyed by the installation's random secret "download-links" (table
installation_secrets, made on first use). A link lives PMOPS_DOWNLOAD_LINK_SECONDS (4 hours by
default); an expired or altered one is refused 403. The same URLs with a bearer token and no
signature still work as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from analysis.phases import PHASES
from pmops.service.errors import Problem
from pmops.service.operations import results_document, tracking_url
from pmops.service.scope import Scope
from pmops.service.storage import Storage, join
from pmops.service.views import TERMINAL, iso
from pmops.settings import Settings
from pmops.store.keys import read_or_create_secret

LINK_SECRET = "download-links"
LINK_EXPIRED = "the download link has expired"
LINK_INVALID = "the download link's signature does not match it (altered or not ours)"
_keys: dict[str, bytes] = {}


def cached_link_key(engine: Engine) -> bytes | None:
    """The key if this process has read it already (no database, no thread hop)."""
    return _keys.get(str(engine.url))


def link_key(engine: Engine) -> bytes:
    """The installation's key for download links (read once per process and database)."""
    url = str(engine.url)
    key = _keys.get(url)
    if key is None:
        key = _keys[url] = bytes.fromhex(read_or_create_secret(engine, LINK_SECRET))
    return key


def link_resource(
    tenant_id: str, project_id: str, operation_id: str, name: str | None, fmt: str | None = None
) -> str:
    """What a link's signature covers: an artifact, or (name None) the results in `fmt`."""
    path = f"/api/{tenant_id}/{project_id}/async/operation/{operation_id}"
    return f"{path}/artifacts/{name}" if name is not None else f"{path}/results?format={fmt}"


def link_signature(key: bytes, resource: str, expires: int) -> str:
    return hmac.new(key, f"{resource}\n{expires}".encode(), hashlib.sha256).hexdigest()


def check_link(key: bytes, resource: str, expires: str, signature: str, now: float) -> None:
    """Nothing if the link is genuine and alive; Problem(403) saying which it is not."""
    if not expires.isdigit() or len(expires) > 12:
        raise Problem(403, LINK_INVALID)
    wanted = link_signature(key, resource, int(expires))
    if not hmac.compare_digest(wanted, signature.lower()):
        raise Problem(403, LINK_INVALID)
    if now >= int(expires):
        raise Problem(403, LINK_EXPIRED)


@dataclass(frozen=True)
class DownloadLinks:
    """Makes the signed absolute download URLs of one answer."""

    base_url: str
    key: bytes
    seconds: float

    def _signed(self, resource: str, now: float | None = None) -> str:
        expires = math.ceil((time.time() if now is None else now) + self.seconds)
        query = f"expires={expires}&signature={link_signature(self.key, resource, expires)}"
        return f"{self.base_url}{resource}{'&' if '?' in resource else '?'}{query}"

    def artifact(self, scope: Scope, operation_id: str, name: str) -> str:
        return self._signed(link_resource(scope.tenant_id, scope.project_id, operation_id, name))

    def results_zip(self, scope: Scope, operation_id: str) -> str:
        resource = link_resource(scope.tenant_id, scope.project_id, operation_id, None, "download")
        return self._signed(resource)


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


def artifact_url(
    scope: Scope, operation_id: str, path: str, links: DownloadLinks | None = None
) -> str:
    """The artifact's signed absolute URL (relative and bearer-only without `links`)."""
    if links is not None:
        return links.artifact(scope, operation_id, Path(path).name)
    return f"{tracking_url(scope, operation_id)}/artifacts/{Path(path).name}"


def partial_download_urls(row: dict[str, Any], scope: Scope, links: DownloadLinks) -> list[str]:
    """What a cancelled (or stopped) operation kept, to download: its artifacts, and the zip of
    its results document and artifacts whenever a phase completed."""
    if not (row.get("cancel_request") or {}).get("preservePartialResults", True):
        return []
    doc = results_document(row)
    urls = [
        links.artifact(scope, row["operation_id"], Path(a["path"]).name)
        for a in doc.get("artifacts") or []
    ]
    completed = [p for p in doc.get("phaseResults") or [] if p.get("status") == "Completed"]
    if completed or urls:
        urls.append(links.results_zip(scope, row["operation_id"]))
    return urls


def results_view(
    row: dict[str, Any],
    scope: Scope,
    fmt: str,
    include_artifacts: bool,
    phase: str | None,
    links: DownloadLinks | None = None,
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
                "downloadUrl": artifact_url(scope, row["operation_id"], a["path"], links),
            }
            for a in doc.get("artifacts") or []
        ]
    if phase is None:
        view["performance"] = doc.get("performance")
        view["recommendations"] = doc.get("recommendations") or []
    if row.get("error"):
        view["error"] = row["error"]
    return view


def artifact_file(row: dict[str, Any], name: str, storage: Storage) -> tuple[str, dict[str, Any]]:
    """The artifact's storage key. Only files the document lists can be fetched: no path from
    the request reaches the storage."""
    doc = row.get("results") or {}
    for artifact in doc.get("artifacts") or []:
        inside = not ({"..", ""} & set(str(artifact["path"]).split("/")))
        if Path(artifact["path"]).name == name and row.get("result_dir") and inside:
            ref = join(row["result_dir"], artifact["path"])
            if storage.exists(ref):
                return ref, artifact
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


class _Sink:
    """Where the streamed zip is written: unseekable (zipfile then writes data descriptors), and
    emptied by the generator after every write."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def results_zip(row: dict[str, Any], storage: Storage) -> Iterator[bytes]:
    """results.json and the artifacts, zipped as they stream from the storage (never built in
    memory: at most one chunk of a file at a time); a run killed before it wrote its document
    gets the one the store keeps (what its completed phases reported)."""
    doc = row.get("results") or {}
    result_dir = row.get("result_dir")
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        refs = [("results.json", join(result_dir, "results.json") if result_dir else None)]
        refs += [
            (Path(a["path"]).name, join(result_dir, a["path"]) if result_dir else None)
            for a in doc.get("artifacts") or []
        ]
        for name, ref in refs:
            if ref is None or not storage.exists(ref):
                if name == "results.json":
                    zf.writestr("results.json", json.dumps(results_document(row), default=str))
                continue
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = storage.size(ref)  # zip64 headers when it needs them
            with zf.open(info, "w") as member:
                for chunk in storage.iter_bytes(ref):
                    member.write(chunk)
                    if data := sink.take():
                        yield data
    if data := sink.take():
        yield data


def signed_artifact_links(
    engine: Engine,
    settings: Settings,
    tenant_id: str,
    project_id: str,
    operation_id: str,
    names: list[str],
) -> dict[str, str]:
    """Signed absolute download URLs of these artifacts at PMOPS_PUBLIC_URL (a flow run's link
    artifacts in the Prefect UI: they open without a token until they expire)."""
    links = DownloadLinks(
        settings.resolved_public_url, link_key(engine), settings.download_link_seconds
    )
    return {
        name: links._signed(link_resource(tenant_id, project_id, operation_id, name))
        for name in names
    }
