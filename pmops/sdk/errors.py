"""Typed exceptions carrying the API's RFC 9457 problem."""

from __future__ import annotations

from typing import Any


class PmopsError(Exception):
    """An error answer of the API; `problem` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        self.errors: list[dict[str, str]] = list(problem.get("errors") or [])
        fields = ", ".join(e.get("field", "") for e in self.errors if e.get("field"))
        super().__init__(f"{status}: {self.detail}" + (f" ({fields})" if fields else ""))


class BadRequest(PmopsError):
    pass


class Unauthorized(PmopsError):
    pass


class NotFound(PmopsError):
    pass


class Conflict(PmopsError):
    pass


class ValidationFailed(PmopsError):
    """422: the body names the offending fields in `errors`."""


class TooLarge(PmopsError):
    pass


class ServerError(PmopsError):
    pass


class WebhookVerificationError(Exception):
    """A delivery whose signature or timestamp does not check out."""


BY_STATUS: dict[int, type[PmopsError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: ValidationFailed,
}


def error_for(status: int, problem: dict[str, Any]) -> PmopsError:
    kind = BY_STATUS.get(status, ServerError if status >= 500 else PmopsError)
    return kind(status, problem)
