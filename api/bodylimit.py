"""413 for a JSON request body past PMOPS_MAX_JSON_BYTES, before it is read.

Every endpoint but the upload (POST .../datasets, multipart, with its own larger limit in
api/routes/datasets.py) takes JSON or nothing. A Content-Length past the limit is answered at
once, without reading a byte of the body; a body without one (chunked) is counted as it streams
in and stopped where it passes the limit, so a 64 MB body never reaches memory whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from api.problems import problem_response
from pmops.service.errors import Problem
from pmops.settings import get_settings


def too_large(limit: int, field: str = "body", what: str = "the request body") -> Problem:
    """The 413 of a body past `limit` bytes; `field` names what was too large."""
    setting = " (PMOPS_MAX_JSON_BYTES)" if field == "body" else ""
    return Problem(
        413,
        f"{what} is larger than the limit of {limit:,} bytes{setting}",
        errors=[{"field": field, "message": "too large"}],
        headers={"Connection": "close"},
    )


class BodyTooLarge(StarletteHTTPException):
    """Raised from the body stream: FastAPI passes an HTTPException from body parsing through
    (anything else becomes a 400), and the problem handler answers with `problem`."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.status, problem.detail, headers=problem.headers)
        self.problem = problem


def counted(receive: Receive, most: int, problem: Problem) -> Receive:
    """`receive`, stopped with `problem` once more than `most` body bytes have come in."""
    received = 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > most:
                raise BodyTooLarge(problem)
        return message

    return counting


def is_upload(scope: ASGIScope) -> bool:
    return bool(scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/datasets"))


class JsonBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_upload(scope):
            await self.app(scope, receive, send)
            return
        # the app's own settings when it was made with some (create_app(settings=...))
        limit = (getattr(scope["app"].state, "settings", None) or get_settings()).max_json_bytes
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await problem_response(Request(scope), too_large(limit))(scope, receive, send)
            return
        await self.app(scope, counted(receive, limit, too_large(limit)), send)
