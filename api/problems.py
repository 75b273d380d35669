"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from analysis.errors import AnalysisError
from pmops.service.errors import TITLES, Problem, analysis_problem

log = logging.getLogger("pmops.api")
PROBLEM = "application/problem+json"


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": str(request.url.path),
    }
    if problem.errors:
        body["errors"] = problem.errors
    for key, value in problem.extensions.items():
        body.setdefault(key, value)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM, headers=problem.headers
    )


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def allowed_methods(request: Request) -> str:
    """Every method of the path: Starlette's 405 names only those of the first route matching
    it, and FastAPI makes one route per method (GET and DELETE .../batch/{batchId})."""
    methods: set[str] = set()
    for route in (r for router in request.app.state.routers for r in router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                # a body that is not JSON at all: loc is ("body", <offset>)
                "field": "body"
                if e.get("type") == "json_invalid"
                else field_name(e.get("loc", ())),
                "message": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        status = (
            400
            if malformed
            or all((e.get("loc") or ("",))[0] in ("query", "path", "header") for e in exc.errors())
            else 422
        )
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(request, Problem(status, detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = getattr(exc, "problem", None)
        if isinstance(problem, Problem):  # a Problem raised where only HTTPException gets through
            return problem_response(request, problem)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return problem_response(request, Problem(exc.status_code, str(exc.detail), headers=headers))

    @app.exception_handler(AnalysisError)
    async def _analysis(request: Request, exc: AnalysisError) -> JSONResponse:
        return problem_response(request, analysis_problem(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(request, Problem(500, "internal error; it has been logged"))
