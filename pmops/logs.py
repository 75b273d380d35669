"""Structured logs for every pmops process (docs/observability.md, "Logs").

`configure()` puts one handler on the root logger that renders every standard-library record
(pmops's own loggers, and any library's that reaches the root) through structlog: with
PMOPS_LOG_FORMAT=json one JSON object per line, with `text` a readable line followed by the same
fields as key=value. Each line carries the ids bound in its context (`bind`, `bound`: contextvars,
so a request's or a flow run's ids follow it into the threads it starts with a copied context):
`tenantId`, `projectId`, `operationId`, `flowRunId`, `batchId`, `deliveryId`.

Used by the API (api/main.py, per request in api/metrics.py), the deliverer, the runner and each
flow run (flows/observe.py, which also gives Prefect's console lines the same form).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# the ids a line may carry, in the contract's spelling
IDS = ("tenantId", "projectId", "operationId", "flowRunId", "batchId", "deliveryId")
_MARK = "_pmops_handler"
EXTRAS = ("status", "route", "durationMs", "flow_run_id", "task_run_id", "task_run_name")


def _process_name(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    if record is not None:
        event.setdefault("process", record.processName)
        event.setdefault("pid", record.process)
    return event


def _drop_empty_ids(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in IDS:
        if key in event and event[key] is None:
            del event[key]
    return event


def _chain() -> list[Processor]:
    """What every record goes through before it is rendered."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _process_name,
        # what a line says beside its message: the access line's, and Prefect's run ids
        structlog.stdlib.ExtraAdder(allow=EXTRAS),
        _drop_empty_ids,
    ]


def formatter(fmt: str) -> logging.Formatter:
    """A logging.Formatter rendering records as `fmt` says (json | text)."""
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            renderer,
        ],
    )


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test runner swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(
    fmt: str, level: str = "INFO", stream: IO[str] | None = None, replace: tuple[type, ...] = ()
) -> logging.Handler:
    """The root logger's pmops handler, writing to `stream` (stderr by default), in place of one
    configured before in this process and of root handlers of the `replace` types (Prefect's
    console handler in a Prefect process). pmops's loggers log from `level` on, other
    libraries' from WARNING (or `level` if higher): httpx's line per request stays out. Returns
    the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False) or isinstance(h, replace)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or _Stderr())
    setattr(handler, _MARK, True)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    wanted = logging.getLevelName(level.upper())
    wanted = wanted if isinstance(wanted, int) else logging.INFO
    root.setLevel(max(wanted, logging.WARNING))
    logging.getLogger("pmops").setLevel(wanted)
    return handler


def adopt(*names: str) -> None:
    """Let these loggers' lines (a library's that has handlers of its own, e.g. uvicorn's) go to
    the root's pmops handler instead."""
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def bind(**ids: Any) -> None:
    """Bind these ids (None ones are left out) to the current context's lines."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """The ids bound while the block runs, the context's earlier ones back after it."""
    given = {k: v for k, v in ids.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**given):
        yield


def context_with(**ids: Any) -> contextvars.Context:
    """A copy of the current context with these ids (None ones left out) bound: for a task
    whose lines carry them (asyncio.create_task(..., context=)), the current context unchanged.
    What `bound` around create_task gives, without reading and restoring the context."""
    context = contextvars.copy_context()
    context.run(bind, **ids)
    return context


def current() -> dict[str, Any]:
    """The ids bound in the current context."""
    return dict(structlog.contextvars.get_contextvars())
