"""A stored file as an HTTP answer (pmops.service.storage): the file itself on file://, streamed
from the object store elsewhere, or a redirect to the object store's presigned URL
(PMOPS_STORAGE_REDIRECT)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import quote

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from pmops.service.storage import Storage
from pmops.settings import Settings


def stored_file(
    storage: Storage,
    settings: Settings,
    ref: str,
    media_type: str,
    disposition: Literal["inline", "attachment"] = "attachment",
    headers: Mapping[str, str] | None = None,
    redirect: bool = True,
) -> Response:
    """The file at `ref`, never read whole into memory."""
    name = PurePosixPath(ref).name
    local = storage.local_path(ref)
    if local is not None:  # as pmops always answered it (ranges, ETag)
        return FileResponse(
            local,
            media_type=media_type,
            filename=name,
            content_disposition_type=disposition,
            headers=dict(headers or {}),
        )
    if redirect and settings.storage_redirect:
        url = storage.presigned_url(ref, settings.download_link_seconds)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=dict(headers or {}))
    answer = {
        **(headers or {}),
        "Content-Length": str(storage.size(ref)),
        "Content-Disposition": f"{disposition}; filename*=utf-8''{quote(name)}",
    }
    return StreamingResponse(storage.iter_bytes(ref), media_type=media_type, headers=answer)
