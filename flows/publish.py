"""What an operation's flow run shows in the Prefect UI (docs/observability.md, "In the Prefect
UI"): a line per phase start and end (its figures and warnings) through the run logger, a
progress artifact moved at phase boundaries (at most once per heartbeat interval), and when it
ends a markdown summary, tables of the top variants and the bottlenecks, and links to the report
and the process map.

Nothing here may fail the operation: a Prefect call that fails is logged and left out (the store
is the operation's truth; these are views of it).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy.engine import Engine

from analysis.pipeline import OperationRun, PhaseRecord
from pmops.service.results import signed_artifact_links
from pmops.settings import Settings

T = TypeVar("T")
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
TOP_VARIANTS = 10
# the downloads linked from the run: the reports and the process map
LINKED_TYPES = ("Report", "Visualization")


def artifact_key(operation_id: str, what: str) -> str:
    """A key Prefect accepts (lowercase letters, digits, dashes): the Artifacts page lists it."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{operation_id}-{what}".lower()).strip("-")


def figures_text(results: Mapping[str, Any], most: int = 8) -> str:
    """A phase's scalar figures as `name=value`, the first `most` of them."""
    shown = [
        f"{k}={v}"
        for k, v in results.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool) and len(str(v)) <= 60
    ]
    return ", ".join(shown[:most]) or "no figures"


def phase_warnings(record: PhaseRecord | None) -> list[str]:
    """What a phase's end is worth a warning for: records it refused, validation errors."""
    if record is None:
        return []
    found = []
    results = record.results or {}
    errors = results.get("errorRecords")
    if isinstance(errors, int) and errors > 0:
        found.append(f"{errors} records were refused by validation")
    for item in (results.get("validationErrors") or [])[:5]:
        found.append(f"validation: {item}")
    if record.status not in ("Completed",):
        found.append(f"the phase ended {record.status}")
    return found


class RunPublisher:
    """The flow run's logs and artifacts for one operation.

    Only the summary is keyed (one entry per operation on the Prefect UI's Artifacts page); the
    progress, tables and links are the run's own (its Artifacts tab). Each key is a collection
    that Prefect versions and announces with an event of its own: keyed per operation, the five
    others were five more rows and events per run and five more entries per operation on that
    page, for nothing a later version would update.

    The progress artifact moves at a phase's start or end at most once per `every` seconds
    (the heartbeat interval, the cadence of the API's own figure), and always to its last
    figure when the run ends: a quick analysis's four phases would otherwise be four updates
    (each a request and an event) inside a second.
    """

    def __init__(self, row: Mapping[str, Any], logger: Logger, every: float = 0.0) -> None:
        self.row, self.log = row, logger
        self.operation_id = str(row["operation_id"])
        self.progress_id: UUID | None = None
        self.shown = 0.0  # the percentage the progress artifact shows
        self.wanted = 0.0  # the latest percentage asked for
        self.every = every
        self.moved = time.monotonic()  # when the artifact was made or last moved

    def _safely(self, what: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as exc:  # a view of the run; never the operation's failure
            self.log.warning("could not publish the %s artifact: %s", what, exc)
            return None

    def started(self) -> None:
        made = self._safely(
            "progress",
            lambda: create_progress_artifact(
                0.0, description=f"{self.row['operation_name']}: share of its phases done"
            ),
        )
        self.progress_id = made if isinstance(made, UUID) else None  # sync: never a coroutine
        self.moved = time.monotonic()

    def progress(self, percentage: float, final: bool = False) -> None:
        """Move the progress artifact to `percentage`: when `final`, or when `every` seconds
        passed since it last moved; never when it shows `percentage` already (a phase starts at
        the share the one before ended at)."""
        self.wanted = percentage
        if self.progress_id is None or percentage == self.shown:
            return
        if not final and time.monotonic() - self.moved < self.every:
            return
        found = self.progress_id
        self._safely("progress", lambda: update_progress_artifact(found, percentage))
        self.shown, self.moved = percentage, time.monotonic()

    def phase_started(self, name: str, percentage: float) -> None:
        self.log.info("phase %s started", name)
        self.progress(percentage)

    def phase_ended(self, name: str, record: PhaseRecord | None, percentage: float) -> None:
        took = f" in {record.usage.wall_seconds:.1f} s" if record and record.usage else ""
        status = record.status if record is not None else "ended"
        records = f", {record.records} records" if record is not None else ""
        figures = figures_text(record.results) if record is not None else "no figures"
        self.log.info("phase %s %s%s%s: %s", name, status, took, records, figures)
        for warning in phase_warnings(record):
            self.log.warning("phase %s: %s", name, warning)
        self.progress(percentage)

    def finished(
        self, status: str, document: Mapping[str, Any] | None, run: OperationRun | None
    ) -> None:
        self.log.info("operation %s ended %s", self.operation_id, status)
        self.progress(100.0 if status == "Completed" else self.wanted, final=True)
        markdown = summary_markdown(self.row, status, document)
        self._safely(
            "summary",
            lambda: create_markdown_artifact(
                markdown,
                key=artifact_key(self.operation_id, "summary"),
                description=f"{self.row['operation_name']}: {status}",
            ),
        )
        if run is not None:
            self._tables(run)

    def _tables(self, run: OperationRun) -> None:
        variants = top_variants(run)
        tables = (
            ("variants", variants, f"the {len(variants)} most frequent variants"),
            ("bottlenecks", bottleneck_rows(run), "activities with the longest waits before them"),
        )
        for what, rows, description in tables:
            if rows:
                self._safely(what, partial(create_table_artifact, rows, description=description))

    def links(self, engine: Engine, settings: Settings, run: OperationRun) -> None:
        """Link artifacts to the report and process map downloads (signed URLs: they open
        without a token until PMOPS_DOWNLOAD_LINK_SECONDS pass)."""
        files = {Path(a.path).name: a.name for a in run.artifacts if a.type in LINKED_TYPES}
        if not files:
            return
        row = self.row
        urls = self._safely(
            "link",
            lambda: signed_artifact_links(
                engine, settings, row["tenant_id"], row["project_id"], self.operation_id, [*files]
            ),
        )
        for file_name, url in (urls or {}).items():
            self._link(file_name, files[file_name], url, settings.download_link_seconds)

    def _link(self, file_name: str, title: str, url: str, seconds: float) -> None:
        self._safely(
            "link",
            lambda: create_link_artifact(
                url,
                link_text=f"{title} ({file_name})",
                description=f"download {file_name} (a signed link, valid for {seconds:.0f} s "
                "from the run's end)",
            ),
        )


def top_variants(run: OperationRun, most: int = TOP_VARIANTS) -> list[dict[str, Any]]:
    """The most frequent variants: rank, cases, share of cases, the activities in order."""
    discovery = getattr(run, "discovery", None)
    counts = getattr(discovery, "variant_counts", None) or []
    total = sum(int(n) for _, n in counts) or 1
    return [
        {
            "rank": i,
            "cases": int(n),
            "sharePercent": round(100 * int(n) / total, 1),
            "activities": " → ".join(map(str, variant)),
        }
        for i, (variant, n) in enumerate(counts[:most], start=1)
    ]


def bottleneck_rows(run: OperationRun) -> list[dict[str, Any]]:
    """The bottlenecks of the results (performanceMetrics.bottlenecks of a phase's results)."""
    for record in run.records.values():
        metrics = (record.results or {}).get("performanceMetrics") or {}
        found = metrics.get("bottlenecks")
        if found:
            return [dict(b) for b in found if isinstance(b, Mapping)]
    return []


def summary_markdown(
    row: Mapping[str, Any], status: str, document: Mapping[str, Any] | None
) -> str:
    """The run's results in markdown: what, how it ended, the summary figures, the phases."""
    doc = document or {}
    lines = [
        f"# {row['operation_name']}",
        "",
        f"**{row['operation_type']}** `{row['operation_id']}`: **{status}**",
        "",
    ]
    summary = {k: v for k, v in (doc.get("summary") or {}).items() if not k.endswith("Method")}
    if summary:
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in summary.items()]
        lines.append("")
    phases = doc.get("phaseResults") or []
    if phases:
        lines += ["| phase | status | duration | records |", "|---|---|---|---|"]
        lines += [
            f"| {p.get('phaseName')} | {p.get('status')} | {p.get('duration', '')} | "
            f"{p.get('recordsProcessed', '')} |"
            for p in phases
        ]
        lines.append("")
    artifacts = doc.get("artifacts") or []
    if artifacts:
        lines.append("Artifacts: " + ", ".join(f"`{a.get('name')}`" for a in artifacts))
    return "\n".join(lines)
