"""Start flow-run processes from a pre-imported forkserver instead of a cold interpreter.

Prefect 3.9.1's Runner starts a run of a flow it holds in memory (Runner.add_flow) through
prefect.runner._starter_direct.DirectSubprocessStarter ->
prefect.flow_engine.run_flow_in_subprocess, which uses multiprocessing.get_context("spawn"): a new
interpreter that imports prefect, this serve module (re-run as __mp_main__) and the flows before
the flow body can claim its operation, about 1.7 s of the ~2 s from submit to Running.

install() gives that function a "forkserver" context instead. Python's forkserver is a small
single-Python-threaded process, started by the runner, that imports PRELOAD once; each flow run is
then a fork() of it, with every module already imported. Prefect's own code still does everything
else: the pickled call, env and settings hand-off (run_flow_with_env re-reads Settings from the
runner's environment), the control channel and SIGTERM bridge, pid tracking, kill on Cancelling,
and Crashed on a non-zero exit. If the forkserver dies, multiprocessing starts a new one on the
next run. PMOPS_WARM_START=false turns it off (plain spawn, as Prefect ships it).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import sys
from types import ModuleType
from typing import Any

ANALYSIS_MODULES = [
    "analysis.dfg",
    "analysis.discovery",
    "analysis.performance",
    "analysis.anomalies",
    "analysis.prediction",
    "analysis.patterns",
    "analysis.recommendations",
    "analysis.process_map",
    "analysis.charts",
    "analysis.report_pdf",
    "analysis.executive",
    "analysis.enrichment",
    "analysis.warm",  # the report fonts, parsed once here (analysis/warm.py)
]

# imported once in the forkserver; a flow-run child inherits them. Nothing here may open a
# connection or start a thread at import time (the fork copies neither correctly).
PRELOAD = [
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.runner",
    "deployments.serve",  # the flows, analysis, pandas; also the child's __mp_main__
    "deployments.shared_tls",  # one CA store for a flow run's Prefect clients on http://
    # what the phases import on first use (pm4py, scikit-learn, matplotlib, reportlab): ~2.3
    # CPU-seconds a flow run would otherwise spend importing them, 43 % of a quick analysis's
    # flow-run CPU (py-spy, bench/notes/load.md). pm4py's import starts polars' and jemalloc's
    # idle background threads; fork() copies only the forkserver's one Python thread and
    # jemalloc takes its own locks around a fork (pthread_atfork); polars itself is not used here.
    *ANALYSIS_MODULES,
    # imported on first use in every flow run otherwise (py-spy over 40 quick analyses, 3-4 % of
    # their CPU): the XES reader (r4pm's Rust binding; no thread at import), the task engine,
    # anyio's asyncio backend, the store's SQLite driver and schema check, the IDNA codec a
    # first getaddrinfo loads
    "r4pm.df",
    "prefect.task_engine",
    "anyio._backends._asyncio",
    "sqlite3",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "pmops.store.schema",
    "encodings.idna",
]

PREFECT_VERSION = "3.9.1"  # the internals below are checked against this version (tests)


class _ForkserverForSpawn(ModuleType):
    """`multiprocessing` as prefect.flow_engine sees it: get_context("spawn") is the forkserver."""

    def __init__(self, ctx: multiprocessing.context.BaseContext) -> None:
        super().__init__("multiprocessing")
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)

    def get_context(self, method: str | None = None) -> Any:
        return self._ctx if method == "spawn" else multiprocessing.get_context(method)


def available() -> bool:
    return sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods()


def install(preload: list[str] | None = None, *, start: bool = True) -> bool:
    """Route run_flow_in_subprocess through a preloaded forkserver; False where there is none."""
    if not available():
        return False
    import prefect.flow_engine as flow_engine

    if isinstance(flow_engine.multiprocessing, _ForkserverForSpawn):  # type: ignore[attr-defined]
        return True
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD if preload is None else preload)
    flow_engine.multiprocessing = _ForkserverForSpawn(ctx)  # type: ignore[attr-defined]
    if start:
        # start it and let it import PRELOAD now, while the runner registers its deployments,
        # rather than on the first flow run
        multiprocessing.forkserver.ensure_running()
    return True
