"""The errors a use case raises: an HTTP-style status, a detail and the fields at fault.

The API turns them into RFC 9457 problem+json (api/problems.py); nothing here knows of HTTP
frameworks."""

from __future__ import annotations

from analysis.errors import AnalysisError

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors
        # RFC 9457 extension members, beside the standard ones (e.g. operationStatus)
        self.extensions = extensions or {}
        self.type = (
            type_
            or f"https://pmops.dev/problems/{TITLES.get(status, 'error').lower().replace(' ', '-')}"
        )
        self.headers = headers or {}


def analysis_problem(exc: AnalysisError, status: int = 422) -> Problem:
    field = exc.field or "parameters"
    return Problem(status, exc.message, errors=[{"field": field, "message": exc.message}])
