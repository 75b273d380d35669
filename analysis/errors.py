"""Typed errors of the analysis engine: each carries a message a user understands.

`field` names the offending input (a parameter path such as "parameters.algorithm", or "file")
so the API can answer with an RFC 9457 problem naming the field.
"""

from __future__ import annotations


class AnalysisError(Exception):
    code = "analysis_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidParameter(AnalysisError):
    code = "invalid_parameter"


class EventLogError(AnalysisError):
    """The event log cannot be read or has nothing usable (empty, corrupt, hostile, wrong type)."""

    code = "invalid_event_log"
