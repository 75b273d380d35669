"""A flow-run process's logs (docs/observability.md): pmops's JSON or text lines on its output
in place of Prefect's console handler, run-logger lines at INFO (they reach the Prefect UI
whatever PREFECT_LOGGING_LEVEL says for Prefect's own loggers), and the run's ids bound to every
line it logs. The runner process (deployments/serve.py) uses `process_logs` too."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import runtime
from prefect.logging.handlers import PrefectConsoleHandler

from pmops import logs
from pmops.settings import Settings

# what get_run_logger writes to: sent to the Prefect UI by Prefect's API handler
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def process_logs(settings: Settings) -> None:
    """This process's lines in PMOPS_LOG_FORMAT; the run loggers from PMOPS_LOG_LEVEL on."""
    logs.configure(settings.log_format, settings.log_level, replace=(PrefectConsoleHandler,))
    for name in RUN_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level.upper())


def flow_run_id() -> str | None:
    found = runtime.flow_run.id
    return str(found) if found else None


@contextmanager
def run_logs(settings: Settings, **ids: Any) -> Iterator[None]:
    """The process's logs configured, and this run's ids (the flow run's and `ids`) bound while
    the block runs."""
    process_logs(settings)
    with logs.bound(flowRunId=flow_run_id(), **ids):
        yield
