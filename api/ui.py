"""The results pages for people (`/ui/...`): who is signed in, and what each page shows.

The routes (api/routes/ui.py) stay thin; the data is shaped here, so the templates only lay it
out. Jinja2 autoescapes everything: operation names, activities and anomaly reasons come from
users' requests and event logs.
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from analysis.formatting import seconds_text
from api.deps import authenticate
from pmops.service.errors import Problem
from pmops.service.events import TERMINAL_EVENT
from pmops.service.operations import results_document, tracking_url
from pmops.service.results import MEDIA_TYPES, artifact_file
from pmops.service.scope import Principal, Scope
from pmops.service.storage import Storage, join, storage_for
from pmops.service.views import TERMINAL, iso, status_view
from pmops.settings import Settings
from pmops.store import events as event_store
from pmops.store.operations import list_recent_operations, read_operation

COOKIE = "pmops_token"
COOKIE_PATH = "/ui"
HOME = "/ui/"
LOGIN = "/ui/login"
# longer than any token `pmops tokens create` makes; a bigger form field is not a token
MAX_TOKEN = 512
ANOMALY_ROWS = 50
RECENT_OPERATIONS = 50
# the named events of an operation's stream (an EventSource hears only those it listens to)
LIVE_EVENTS = (
    "operation.started",
    "operation.progress",
    "operation.phase.completed",
    *TERMINAL_EVENT.values(),
)

ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    # a typo in a template fails the page instead of showing an empty field
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# -- who is signed in ------------------------------------------------------------------------
def token_of(request: Request) -> str | None:
    """The bearer token of a request: its Authorization header, else the sign-in cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(COOKIE) or None


async def principal_for_token(engine: Engine, token: str | None) -> Principal | None:
    """The principal of a token exactly as the API finds it: through `authenticate` itself (its
    cache, lookup and expiry), handed the token as the Authorization header it would have come
    in."""
    found = await check_token(engine, token)
    return found if isinstance(found, Principal) else None


async def check_token(engine: Engine, token: str | None) -> Principal | str:
    """The token's principal, or why it is refused (the API's problem detail)."""
    if not token or len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable():
        return "invalid bearer token"
    header = (b"authorization", b"Bearer " + token.encode())
    probe = Request({"type": "http", "method": "GET", "headers": [header]})
    try:
        return await authenticate(probe, engine)
    except Problem as refused:
        return refused.detail


async def principal_of(request: Request, engine: Engine) -> Principal | None:
    return await principal_for_token(engine, token_of(request))


def safe_next(value: str | None) -> str:
    """A page of this UI to go to after signing in; anything else (another site, `//host`, the
    API) is replaced by the home page, so a link cannot send a person elsewhere."""
    if not value or not value.startswith(HOME) or "\\" in value:
        return HOME
    if any(ord(c) < 0x20 for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or ".." in unquote(parts.path).split("/"):
        return HOME
    return value


def same_origin(request: Request) -> bool:
    """A form post from a page of this site. The cookie is SameSite=Strict, but signing in and out
    set and clear it: another site must not do either for a person (login CSRF)."""
    # set by the browser itself (no page can forge it); Origin is "null" under some policies
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:  # clients that are not browsers, and old browsers
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def sign_in(response: Response, request: Request, token: str) -> None:
    # a session cookie: closing the browser signs out; every request checks the token anew
    response.set_cookie(
        COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{LOGIN}?{urlencode({'next': here})}", status_code=303)
    if COOKIE in request.cookies:  # its token is no longer valid
        sign_out(response, request)
    return response


# -- responses -------------------------------------------------------------------------------
def security_headers(nonce: str) -> dict[str, str]:
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            # the page's <style> and the widths of its bars
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self'",
            "connect-src 'self'",  # the live progress stream
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        # the page's address names the operation: not for the Prefect UI or any other site
        # ("no-referrer" would also make a browser send `Origin: null` with the sign-in form)
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render(
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(18)
    context.setdefault("principal", None)
    html = ENV.get_template(f"ui/{template}").render(nonce=nonce, **context)
    return HTMLResponse(
        html, status_code=status_code, headers={**security_headers(nonce), **(headers or {})}
    )


def not_found(principal: Principal | None) -> HTMLResponse:
    # the same page for an operation of another tenant or project: it does not exist for them
    return render(
        "message.html",
        404,
        principal=principal,
        title="Not found",
        message="There is no such operation, or it is not one your token can see.",
    )


# an SVG opened on its own is a document: nothing in it may run or load anything
ARTIFACT_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


# -- reading ---------------------------------------------------------------------------------
def find_operation(
    engine: Engine, principal: Principal, operation_id: str, *, status_only: bool = False
) -> dict[str, Any] | None:
    """The operation in the token's tenant (and project, for a project's token), else None."""
    with engine.connect() as conn:
        return read_operation(
            conn, principal.tenant_id, principal.project_id, operation_id, status_only=status_only
        )


def last_event_seq(engine: Engine, operation_id: str) -> int:
    with engine.connect() as conn:
        return event_store.last_event_seq(conn, operation_id)


def artifact_of(
    engine: Engine, settings: Settings, principal: Principal, operation_id: str, name: str
) -> tuple[str, str] | None:
    """An artifact's file and media type, found as the API's artifact route finds it: only a
    file the results document lists, by its bare name; no part of the request reaches a path."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    row = find_operation(engine, principal, operation_id)
    if row is None:
        return None
    try:
        ref, artifact = artifact_file(row, name, storage_for(settings))
    except Problem:
        return None
    return ref, MEDIA_TYPES.get(artifact.get("format", ""), "application/octet-stream")


# -- shaping ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moment:
    iso: str
    text: str


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""
    method: str = ""  # how the figure is computed: a tooltip, too long to show


@dataclass(frozen=True)
class PhaseView:
    index: int
    name: str
    status: str
    percent: int
    detail: str
    activity: str


@dataclass(frozen=True)
class Bar:
    label: str
    short: str
    text: str
    y: int
    width: float
    colour: str


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    note: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int
    row_height: int


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    total: int


@dataclass(frozen=True)
class Recommendation:
    category: str
    priority: str
    text: str
    improvement: str
    basis: str


@dataclass(frozen=True)
class ArtifactLink:
    name: str
    description: str
    format: str
    size: str
    url: str | None


@dataclass(frozen=True)
class Notice:
    title: str
    message: str
    details: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OperationPage:
    id: str
    name: str
    type: str
    status: str
    priority: str
    created: Moment | None
    started: Moment | None
    ended: Moment | None
    prefect_url: str | None
    api_url: str
    terminal: bool
    percentage: int
    current_phase: str
    current_activity: str
    processed: str
    total: str
    elapsed: str
    remaining: str
    phases: tuple[PhaseView, ...]
    events_url: str
    live_events: tuple[str, ...]
    terminal_events: tuple[str, ...]
    notice: Notice | None
    completed_phases: tuple[str, ...]
    figures: tuple[Figure, ...]
    map_url: str | None
    charts: tuple[Chart, ...]
    anomalies: Table | None
    recommendations: tuple[Recommendation, ...]
    artifacts: tuple[ArtifactLink, ...]


def moment(value: datetime | None) -> Moment | None:
    shown = iso(value)
    if value is None or shown is None:
        return None
    return Moment(shown, shown.replace("T", " ").replace("Z", " UTC"))


def number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return str(value)


def ui_url(operation_id: str, *parts: str) -> str:
    return "/".join(quote(p, safe="") for p in ("", "ui", "operations", operation_id, *parts))


def _phase_views(phases: list[dict[str, Any]]) -> tuple[PhaseView, ...]:
    out = []
    for i, p in enumerate(phases):
        status = str(p.get("status") or "Pending")
        percent = 100 if status == "Completed" else int(p.get("progress") or 0)
        if status == "Completed":
            detail = f"Completed · {p['duration']}" if p.get("duration") else "Completed"
        elif status == "Running":
            detail = f"Running · {percent} %"
        else:
            detail = status
        out.append(
            PhaseView(
                i,
                str(p.get("phaseName") or ""),
                status,
                max(0, min(100, percent)),
                detail,
                str(p.get("currentActivity") or "") if status == "Running" else "",
            )
        )
    return tuple(out)


def _figures(doc: dict[str, Any]) -> tuple[Figure, ...]:
    summary = doc.get("summary") or {}
    performance = doc.get("performance") or {}
    usage = performance.get("resourceUtilization") or {}
    candidates = (
        ("Records analysed", summary.get("recordsAnalyzed"), "", ""),
        ("Cases", summary.get("cases"), "", ""),
        ("Process variants", summary.get("processVariants"), "", ""),
        ("Anomalies detected", summary.get("anomaliesDetected"), "anomalous cases", ""),
        ("Records written", summary.get("recordsOut"), "", ""),
        ("Data quality score", summary.get("dataQualityScore"), "of 100", ""),
        (
            "Overall confidence",
            summary.get("overallConfidenceScore"),
            "of 100",
            str(summary.get("overallConfidenceMethod") or ""),
        ),
        ("Duration", doc.get("totalDuration"), "measured time of the phases", ""),
        ("Cost", usage.get("totalCost"), "measured resources", str(usage.get("costMethod") or "")),
    )
    return tuple(
        Figure(label, number(value), note, method)
        for label, value, note, method in candidates
        if value is not None
    )


CHART_LABEL = 270
CHART_BARS = 300
CHART_TEXT = 250
CHART_ROW = 28


def bar_chart(
    key: str, title: str, note: str, items: list[tuple[str, float, str, str]]
) -> Chart | None:
    """A horizontal bar chart drawn by the template as inline SVG: (label, value, text, colour)
    per bar, scaled to the largest value."""
    items = [i for i in items if i[1] is not None]
    if not items:
        return None
    top = max(value for _, value, _, _ in items) or 1.0
    bars = tuple(
        Bar(
            label,
            label if len(label) <= 36 else label[:35] + "…",
            text,
            i * CHART_ROW,
            round(max(1.0, CHART_BARS * max(0.0, value) / top), 1),
            colour,
        )
        for i, (label, value, text, colour) in enumerate(items)
    )
    return Chart(
        key,
        title,
        note,
        bars,
        CHART_LABEL + CHART_BARS + CHART_TEXT,
        CHART_ROW * len(bars),
        CHART_LABEL,
        CHART_ROW,
    )


def _phase_results(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The first phase result holding `key` (phases are named per operation type)."""
    for phase in doc.get("phaseResults") or []:
        found = (phase.get("results") or {}).get(key)
        if isinstance(found, dict):
            return found
    return {}


def _charts(doc: dict[str, Any]) -> tuple[Chart, ...]:
    phases = [
        (
            str(p.get("phaseName")),
            float((p.get("resourceUsage") or {}).get("wallSeconds") or 0.0),
            str(p.get("duration") or ""),
            "#3182ce",
        )
        for p in doc.get("phaseResults") or []
        if (p.get("resourceUsage") or {}).get("wallSeconds") is not None
    ]
    anomalies = _phase_results(doc, "anomalies")
    severities = [
        (label, float(anomalies[key]), number(anomalies[key]), colour)
        for label, key, colour in (
            ("High", "highSeverity", "#c53030"),
            ("Medium", "mediumSeverity", "#dd6b20"),
            ("Low", "lowSeverity", "#d69e2e"),
        )
        if isinstance(anomalies.get(key), int | float)
    ]
    bottlenecks = [
        (
            str(b.get("activity")),
            100 * float(b.get("shareOfTotalWait") or 0.0),
            f"{100 * float(b.get('shareOfTotalWait') or 0.0):.1f} % · "
            f"mean wait {seconds_text(3600 * float(b.get('meanWaitHours') or 0.0))}",
            "#805ad5",
        )
        for b in (_phase_results(doc, "performanceMetrics").get("bottlenecks") or [])[:8]
        if isinstance(b, dict)
    ]
    charts = (
        bar_chart("phase-durations", "Phase durations", "measured wall time per phase", phases),
        bar_chart(
            "anomaly-severities",
            "Anomalies by severity",
            "anomalous cases per severity",
            severities,
        ),
        bar_chart(
            "bottlenecks",
            "Top bottleneck activities",
            "share of all waiting time spent before the activity",
            bottlenecks,
        ),
    )
    return tuple(c for c in charts if c is not None)


def _anomalies_table(row: dict[str, Any], storage: Storage) -> Table | None:
    try:
        ref, _ = artifact_file(row, "anomalies.csv", storage)
    except Problem:
        return None
    try:
        with io.TextIOWrapper(storage.open(ref), encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            rows: list[tuple[str, ...]] = []
            total = 0
            for record in reader:
                if len(rows) < ANOMALY_ROWS:
                    rows.append(tuple(record))
                total += 1
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return Table(header, tuple(rows), total) if header else None


def _recommendations(doc: dict[str, Any]) -> tuple[Recommendation, ...]:
    return tuple(
        Recommendation(
            str(r.get("category") or ""),
            str(r.get("priority") or ""),
            str(r.get("recommendation") or ""),
            str(r.get("expectedImprovement") or ""),
            str(r.get("basis") or ""),
        )
        for r in doc.get("recommendations") or []
        if isinstance(r, dict)
    )


def _artifacts(
    row: dict[str, Any], doc: dict[str, Any], storage: Storage
) -> tuple[ArtifactLink, ...]:
    links = []
    for a in doc.get("artifacts") or []:
        name = Path(str(a.get("path") or "")).name
        exists = bool(row.get("result_dir")) and storage.exists(join(row["result_dir"], a["path"]))
        links.append(
            ArtifactLink(
                str(a.get("name") or name),
                str(a.get("description") or ""),
                str(a.get("format") or ""),
                str(a.get("size") or ""),
                ui_url(row["operation_id"], "artifacts", name) if exists else None,
            )
        )
    return tuple(links)


def _map_url(row: dict[str, Any], doc: dict[str, Any], storage: Storage) -> str | None:
    for a in doc.get("artifacts") or []:
        name = Path(str(a.get("path") or "")).name
        if a.get("format") == "SVG" and name.endswith(".svg"):
            try:
                artifact_file(row, name, storage)
            except Problem:
                continue
            return ui_url(row["operation_id"], "artifacts", name)
    return None


def _notice(row: dict[str, Any], view: dict[str, Any]) -> Notice | None:
    status = row["status"]
    if status == "Failed":
        error = row.get("error") or {}
        details = tuple(
            (label, str(error[key]))
            for label, key in (("Code", "code"), ("Field", "field"))
            if error.get(key)
        )
        return Notice("The operation failed", str(error.get("message") or "no reason"), details)
    if status == "Cancelled":
        request = row.get("cancel_request") or {}
        details = tuple(
            (label, str(request[key]))
            for label, key in (("Cancelled by", "cancelledBy"), ("Requested at", "requestedAt"))
            if request.get(key)
        )
        reason = str(request.get("reason") or "cancelled")
        return Notice("The operation was cancelled", reason, details)
    if status == "Timeout":
        limit = view.get("timeoutAt") or "its time limit"
        return Notice("The operation timed out", f"It was stopped at {limit}.", ())
    return None


def operation_page(
    engine: Engine, settings: Settings, principal: Principal, operation_id: str
) -> OperationPage | None:
    row = find_operation(engine, principal, operation_id)
    if row is None:
        return None
    view = status_view(row, settings)
    storage = storage_for(settings)
    progress = view["progress"]
    execution = view["execution"]
    terminal = row["status"] in TERMINAL
    phases = _phase_views(view["phases"])
    activity = next((p.activity for p in phases if p.activity), "")
    doc = results_document(row) if terminal else {}
    after = 0 if terminal else last_event_seq(engine, operation_id)
    scope = Scope(row["tenant_id"], row["project_id"], principal)
    return OperationPage(
        id=row["operation_id"],
        name=row["operation_name"],
        type=row["operation_type"],
        status=row["status"],
        priority=row["priority"],
        created=moment(row.get("created_at")),
        started=moment(row.get("started_at")),
        ended=moment(row.get("ended_at")),
        prefect_url=(view.get("prefect") or {}).get("uiUrl"),
        api_url=tracking_url(scope, row["operation_id"]),
        terminal=terminal,
        percentage=int(progress.get("percentage") or 0),
        current_phase=str(progress.get("currentPhase") or "—"),
        current_activity=activity or "—",
        processed=number(int(execution.get("processedRecords") or 0)),
        total=number(int(execution.get("totalRecords") or 0)),
        elapsed=str(progress.get("elapsedTime") or "—"),
        remaining=str(progress.get("estimatedRemaining") or "—"),
        phases=phases,
        events_url=ui_url(row["operation_id"], "events") + f"?after={after}",
        live_events=LIVE_EVENTS,
        terminal_events=tuple(TERMINAL_EVENT.values()),
        notice=_notice(row, view),
        completed_phases=tuple(p.name for p in phases if p.status == "Completed"),
        figures=_figures(doc),
        map_url=_map_url(row, doc, storage) if terminal else None,
        charts=_charts(doc),
        anomalies=_anomalies_table(row, storage) if terminal else None,
        recommendations=_recommendations(doc),
        artifacts=_artifacts(row, doc, storage),
    )


@dataclass(frozen=True)
class OperationItem:
    url: str
    name: str
    type: str
    status: str
    percentage: int
    created: Moment | None


def recent_operations(engine: Engine, principal: Principal) -> tuple[OperationItem, ...]:
    with engine.connect() as conn:
        rows = list_recent_operations(
            conn, principal.tenant_id, principal.project_id, RECENT_OPERATIONS
        )
    return tuple(
        OperationItem(
            ui_url(r["operation_id"]),
            r["operation_name"],
            r["operation_type"],
            r["status"],
            round(float(r["percentage"] or 0.0)),
            moment(r["created_at"]),
        )
        for r in rows
    )
