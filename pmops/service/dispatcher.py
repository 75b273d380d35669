"""Starts queued operations as runs of the orchestrator, and sweeps operations nobody will finish.

The API keeps its own queue (the operations table, pmops/store/queue.py): a run is created only
when a worker slot is free. Slots are shared fairly across projects (round robin: the project
holding the fewest slots, then the one whose last dispatch is oldest) and, within the project,
go to the highest priority, then the oldest (pmops/service/fair.py). So Prefect's SQLite server
(which answers 503 under bursts) never sees a burst, priority decides what starts next in a
project, and a flood in one project delays another's operation by at most one slot turn. The
orchestrator (pmops/service/orchestrator.py; Prefect in api/prefect_orchestrator.py) creates runs
idempotently per operation, so a crash between "created" and "recorded" is harmless.

While every slot is held it also starts the run of the operation that would get the next one
(PMOPS_STANDBY_RUNS, pmops/store/standby.py): that run's process waits until a slot is granted to
it here (its standby row deleted), so a freed slot is taken again without waiting for a run to be
created and started; a standby run does not count as holding a slot.

The sweep marks Failed a Running operation whose flow-run process stopped writing heartbeats
(killed: the orchestrator may still show its run Running, the service trusts its own heartbeat;
`resource_exhausted` when the OOM killer ended it in its memory-limited cgroup, else
`worker_lost`),
and Timeout an operation still waiting at its timeoutAt. It also watches dispatched operations
that no run has claimed yet: when their run ended without starting them (Crashed, Cancelled,
Failed: e.g. its process could not reach a restarting Prefect server), or sits Pending/Running
without claiming them for `PMOPS_UNCLAIMED_RUN_SECONDS` (its runner died between taking it and
starting its process), the operation is dispatched once more as a new run, and marked Failed
(`run_not_started`) when that one does not start it either.

While the orchestrator is unavailable (`OrchestratorUnavailable`) the store-only steps go on and
dispatching resumes once it answers again.

Several API processes on one PostgreSQL store: each runs this thread, but only the leader
(pmops/service/leader.py: an advisory lock held on a session of its own) dispatches and sweeps;
the others wait to take over. Each dispatch round also runs in the dispatch section (a
transaction lock), counting the worker slots held across the cluster in the store, so two
dispatchers at once (a stuck leader that was replaced) cannot exceed `PMOPS_WORKER_LIMIT`.
On SQLite every process leads, as before (one machine).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pmops import logs
from pmops.service import runlimits
from pmops.service.batch_progress import advance
from pmops.service.batches import take_submissions
from pmops.service.events import emit
from pmops.service.fair import FairQueue
from pmops.service.leader import Leadership, progress_watch
from pmops.service.orchestrator import (
    BatchRunSpec,
    OperationRunSpec,
    Orchestrator,
    OrchestratorUnavailable,
    Run,
    RunStateType,
)
from pmops.service.outside import cancelled_outside, watched_runs
from pmops.service.retries import run_due_retries
from pmops.settings import Settings
from pmops.store import queue, standby
from pmops.store.engine import as_utc
from pmops.store.locks import dispatch_section
from pmops.store.tables import checkpoint, transaction, utc_now

log = logging.getLogger("pmops.dispatcher")

# how many runs one operation gets when its runs end without starting it
MAX_DISPATCH_ATTEMPTS = 2
WAITING_FOR_RUNNER = (RunStateType.SCHEDULED,)
# a leader whose dispatch round has not finished for this long gives the lead up (it is stuck,
# e.g. on a call to Prefect that does not return)
STUCK_SECONDS = 120.0
# while every worker slot is held the dispatcher looks this often (one count of the slots held,
# read from an index): a slot frees when a run's process writes its end to the store, which
# wakes nothing here, and each slot stood idle for half the interval on average
FULL_SLOTS_POLL_SECONDS = 0.05
# a standby row whose run was not made this long after it was written is dropped (the creating
# process stopped; a create gives up well before: Prefect's client timeout and busy retries)
STANDBY_CREATE_SECONDS = 60.0
# after a standby run could not be created, the next one is tried this much later
STANDBY_RETRY_SECONDS = 1.0


def worker_lost(silent_seconds: float) -> dict[str, Any]:
    return {
        "code": "worker_lost",
        "message": (
            f"the flow-run process stopped sending heartbeats {silent_seconds:.0f} s "
            "ago (it was killed or its machine stopped); the run was marked "
            "Failed"
        ),
        "field": None,
    }


def run_not_started(attempts: int, why: str) -> dict[str, Any]:
    runs = "flow run" if attempts == 1 else f"{attempts} flow runs"
    return {
        "code": "run_not_started",
        "message": (
            f"the operation was dispatched to {runs} and none of them started "
            f"it; the last: {why}. The operation was marked Failed"
        ),
        "field": None,
    }


def operation_ids(row: dict[str, Any]) -> dict[str, Any]:
    """An operation row's ids as log lines carry them (pmops.logs)."""
    return {
        "tenantId": row.get("tenant_id"),
        "projectId": row.get("project_id"),
        "operationId": row.get("operation_id"),
        "flowRunId": row.get("flow_run_id"),
    }


class Dispatcher:
    cgroup_root: Path = runlimits.CGROUP_ROOT  # where the run cgroups are read (tests: a copy)

    def __init__(self, engine: Engine, settings: Settings, orchestrator: Orchestrator) -> None:
        self.engine, self.settings, self.orchestrator = engine, settings, orchestrator
        self.unclaimed_run_seconds = settings.unclaimed_run_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._orchestrator_down = False
        self.fair = FairQueue()
        self._progress, healthy = progress_watch(STUCK_SECONDS)
        self.leadership = Leadership(engine, healthy)
        self._led = 0  # leadership.changes when this dispatcher last led
        self._slots_full = False  # every worker slot held at the last look
        self._standby_failed = -math.inf  # when the last standby run could not be created
        # told (operation type, seconds from submission to its run's creation) at each first
        # dispatch: the API's /metrics (api/metrics.py) observes it
        self.on_dispatched: Callable[[str, float], None] | None = None

    @property
    def leading(self) -> bool:
        """Whether this process dispatches (always on SQLite; the leader's on PostgreSQL)."""
        return self.leadership.leading

    def start(self) -> None:
        self.leadership.start()
        self._thread = threading.Thread(target=self._loop, name="pmops-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.leadership.stop()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._progress()
            if not self.leading:  # another process dispatches: wait to take over
                self._wake.wait(self.leadership.retry_seconds)
                self._wake.clear()
                continue
            if self._led != self.leadership.changes:  # led again: every project starts even
                self._led = self.leadership.changes
                self.fair = FairQueue()
            failed = False
            for step in (self.dispatch_once, self._sweep_due):
                try:
                    step()
                except Exception as exc:
                    failed = True
                    self._report(exc)
            if not failed and self._orchestrator_down:
                self._orchestrator_down = False
                log.warning("Prefect answers again: dispatching resumes")
            if failed:
                self._stop.wait(1.0)
            self._wake.wait(self.next_wait(failed))
            self._wake.clear()

    def next_wait(self, failed: bool = False) -> float:
        """Seconds to the next look when not woken: shorter while every worker slot is held."""
        interval = self.settings.dispatch_interval_seconds
        if self._slots_full and not failed:
            return min(interval, FULL_SLOTS_POLL_SECONDS)
        return interval

    def _report(self, exc: Exception) -> None:
        if not isinstance(exc, OrchestratorUnavailable):
            log.exception("dispatch failed; retrying")
        elif not self._orchestrator_down:
            self._orchestrator_down = True
            log.warning("dispatching waits for Prefect (%s)", exc)

    def _sweep_due(self) -> None:
        if time.monotonic() - self._last_sweep > 1.0:
            self._last_sweep = time.monotonic()
            checkpoint(self.engine)  # off the request path (store.checkpoint_in_background)
            # store-only steps first: they go on while Prefect is down
            made = take_submissions(self.engine, self.settings)
            if made + run_due_retries(self.engine, self.settings) + self.advance_batches():
                self._wake.set()
            self.sweep_once()

    # -- dispatch -----------------------------------------------------------------------------
    def dispatch_once(self) -> int:
        """Create runs for queued operations while worker slots are free: in the dispatch
        section (PostgreSQL: 0 when another dispatcher is in it), the slots counted in the
        store, so across the cluster."""
        with dispatch_section(self.engine) as mine:
            return self._dispatch() if mine else 0

    def _dispatch(self) -> int:
        self.start_batch_runs()  # a batch's parent run first: its operations are its subflows
        with self.engine.connect() as conn:
            slots = standby.count_slots_by_project(conn)  # runs held, not those standing by
            standing = standby.list_standby_operations(conn)
            free = self.settings.worker_limit - sum(slots.values())
            rows = self.fair.select(conn, slots, free, standing)  # round robin over projects
            specs = [OperationRunSpec.from_row(row) for row in rows]
            parents = queue.read_batch_runs(conn, {s.batch_id for s in specs if s.batch_id})
        self._slots_full = free <= len(rows)
        for row, spec in zip(rows, specs, strict=True):
            if row.get("standby_since") is not None:
                self._grant(row)
            else:
                self._create(row, spec, parents, standing_by=False)
            self.fair.dispatched(row)
        self._fill_standby()
        return len(rows)

    def _fill_standby(self) -> None:
        """Start a standby run (PMOPS_STANDBY_RUNS) for the operation fair dispatch would give
        the next slot to, picked from a fresh read (a pick made before a slow create could be
        outranked by then). Every run held counts as its project's; the turn is recorded when
        the operation gets its slot, not now. The standby row is written before the run is
        created, so the run never claims before it is granted a slot.

        It is created here, in the dispatch round (0.1-0.5 s while Prefect's SQLite is busy),
        although a slot that frees meanwhile then waits for it: creating it on a thread of its
        own was measured (bench/notes/load.md) and did no better, its creates meeting the
        others' in Prefect's SQLite."""
        for _ in range(self.settings.standby_runs):
            if time.monotonic() - self._standby_failed < STANDBY_RETRY_SECONDS:
                return  # the last one could not be created (Prefect away): not in a tight loop
            with self.engine.connect() as conn:
                if standby.count_standby(conn) >= self.settings.standby_runs:
                    return
                held = queue.count_active_runs_by_project(conn)
                picked = self.fair.select(conn, held, 1)
                if not picked:
                    return
                row = picked[0]
                spec = OperationRunSpec.from_row(row)
                parents = queue.read_batch_runs(conn, {spec.batch_id} if spec.batch_id else set())
            with transaction(self.engine) as conn:
                standby.add_standby(
                    conn, spec.operation_id, row["tenant_id"], row["project_id"], utc_now()
                )
            if not self._create_ahead(row, spec, parents):
                return

    def _create_ahead(
        self, row: dict[str, Any], spec: OperationRunSpec, parents: dict[str, str]
    ) -> bool:
        """The standby run's creation. When it fails the row goes, so the operation waits in
        the queue as before, and standby runs are tried again STANDBY_RETRY_SECONDS later."""
        try:
            self._create(row, spec, parents, standing_by=True)
        except Exception as exc:
            self._standby_failed = time.monotonic()
            with transaction(self.engine) as conn:
                standby.delete_unstarted_standby(conn, spec.operation_id)
            self._report(exc)
            return False
        return True

    def _grant(self, row: dict[str, Any]) -> None:
        """Give a standby run the worker slot: it claims its operation at its next look."""
        with transaction(self.engine) as conn:
            standby.delete_standby(conn, row["operation_id"])

    def _create(
        self,
        row: dict[str, Any],
        spec: OperationRunSpec,
        parents: dict[str, str],
        standing_by: bool,
    ) -> None:
        """Create and record the operation's run; a standby one's row is written before
        (`_fill_standby`), so the run never claims before it is granted a slot."""
        op_id = spec.operation_id
        parent = parents.get(spec.batch_id) if spec.batch_id else None
        run_id = self.orchestrator.create_run(spec, parent_run_id=parent)
        with transaction(self.engine) as conn:
            recorded = queue.set_operation_run(conn, op_id, run_id)
            if not standing_by:
                standby.delete_standby(conn, op_id)  # one left by a failed create
        if recorded:
            self._observe_dispatch(row)

    def _observe_dispatch(self, row: dict[str, Any]) -> None:
        submitted = as_utc(row.get("created_at"))
        if self.on_dispatched is not None and submitted is not None:
            waited = (utc_now() - submitted).total_seconds()
            self.on_dispatched(str(row["operation_type"]), max(0.0, waited))

    def advance_batches(self) -> int:
        """Move unfinished batches on (their parent runs do too; this covers a lost one)."""
        with self.engine.connect() as conn:
            ids = queue.list_unfinished_batch_ids(conn)
        for batch_id in ids:
            advance(self.engine, batch_id)
        return len(ids)

    def start_batch_runs(self) -> None:
        """A parent run for each unfinished batch that has none yet."""
        with self.engine.connect() as conn:
            rows = queue.list_batches_without_run(conn)
        for row in rows:
            run_id = self.orchestrator.create_batch_run(BatchRunSpec.from_row(row))
            with transaction(self.engine) as conn:
                queue.set_batch_run(conn, row["batch_id"], run_id)

    # -- sweep --------------------------------------------------------------------------------
    def sweep_once(self) -> None:
        """Store-only checks first (they work while Prefect is down), then Prefect's side."""
        now = utc_now()
        stale = now - timedelta(seconds=self.settings.heartbeat_stale_seconds)
        with transaction(self.engine) as conn:
            dead = queue.list_silent_operations(conn, stale)
            for op_id, _, beat in dead:
                error = self.lost_error(op_id, (now - beat).total_seconds())
                if queue.fail_operation(conn, op_id, error, now, expect_status="Running"):
                    emit(conn, op_id, "operation.failed")
        with self.engine.connect() as conn:
            rows = standby.any_standby(conn)
        if rows:  # no write transaction a second for an empty table
            with transaction(self.engine) as conn:
                standby.delete_ended_standby(conn, now - timedelta(seconds=STANDBY_CREATE_SECONDS))
        # a transaction of its own: on PostgreSQL the status counters' rows are then always
        # locked in the order statuses move (Initiated, Running, terminal), so never in a cycle
        with transaction(self.engine) as conn:
            expired = queue.list_expired_operations(conn, now)
            for op_id, _ in expired:
                if queue.time_out_operation(conn, op_id, now):
                    emit(conn, op_id, "operation.timeout")
        for run_id in [d[1] for d in dead] + [e[1] for e in expired]:
            if run_id:
                try:
                    self.orchestrator.cancel_run(run_id, caller="dispatcher")
                except Exception:
                    log.warning("could not cancel flow run %s", run_id)
        # Prefect's side: one read of the watched runs (Initiated or Running with a run) serves
        # both checks, since the unstarted ones are among them: one request a second, not two
        watched = watched_runs(self.engine)
        ids = [row["flow_run_id"] for row in watched]
        runs = self.orchestrator.read_runs(ids) if ids else {}
        self.sweep_outside(watched, runs)
        self.sweep_unstarted(now, (set(ids), runs))

    def lost_error(self, operation_id: str, silent_seconds: float) -> dict[str, Any]:
        """worker_lost, or resource_exhausted when the OOM killer ended the run in its cgroup
        (its memory limit, pmops.service.runlimits); the run's cgroup is removed either way."""
        if self.settings.run_limits not in ("auto", "cgroup"):
            return worker_lost(silent_seconds)
        found = runlimits.hierarchy(self.settings, self.cgroup_root)
        if found is None:
            return worker_lost(silent_seconds)
        kills, limit_gb = (
            runlimits.oom_kills(found, operation_id),
            runlimits.cgroup_limit_gb(found, operation_id),
        )
        runlimits.remove_cgroup(found, operation_id)
        if kills and limit_gb is not None:
            limits = runlimits.RunLimits(memory_gb=limit_gb, cpu_units=self.settings.cpu_units)
            return runlimits.exhausted_error(limits, True, killed=True)
        return worker_lost(silent_seconds)

    # -- cancelled in Prefect by someone else (pmops.service.outside) ---------------------------
    def sweep_outside(
        self, rows: list[dict[str, Any]] | None = None, runs: dict[str, Run] | None = None
    ) -> int:
        """Cancel the operations whose runs someone cancelled in Prefect (the UI). `rows` and
        `runs` when the sweep has read them already."""
        rows = watched_runs(self.engine) if rows is None else rows
        if not rows:
            return 0
        if runs is None:
            runs = self.orchestrator.read_runs([row["flow_run_id"] for row in rows])
        return cancelled_outside(self.engine, rows, runs)

    # -- dispatched, never started --------------------------------------------------------------
    def sweep_unstarted(
        self, now: datetime | None = None, read: tuple[set[str], dict[str, Run]] | None = None
    ) -> int:
        """Dispatch again (or fail) operations whose run will never claim them. `read`: the run
        ids the sweep has just asked Prefect about and what it answered; an operation whose run
        was not among them (dispatched since) waits for the next sweep."""
        now = now or utc_now()
        with self.engine.connect() as conn:
            waiting = queue.list_unclaimed_operations(conn)
            # a standby run's process that beats is alive, waiting for its slot (as long as
            # the slots stay busy): not a run that will never start
            stale = now - timedelta(seconds=self.settings.heartbeat_stale_seconds)
            alive = standby.list_standby_alive(conn, stale) if waiting else set()
        waiting = [row for row in waiting if row["operation_id"] not in alive]
        if read is None:
            ids = [row["flow_run_id"] for row in waiting]
            read = (set(ids), self.orchestrator.read_runs(ids) if ids else {})
        asked, runs = read
        waiting = [row for row in waiting if row["flow_run_id"] in asked]
        if not waiting:
            return 0
        handled = 0
        for row in waiting:
            run = runs.get(row["flow_run_id"])
            why = self.why_not_starting(row["flow_run_id"], run, now)
            if why is not None:
                with logs.bound(**operation_ids(row)):
                    self.redispatch_or_fail(row, run, why)
                handled += 1
        return handled

    def why_not_starting(self, run_id: str, run: Run | None, now: datetime) -> str | None:
        """Why this run will never claim its operation; None while it still may."""
        if run is None:
            return f"Prefect has no flow run {run_id}"
        state = run.state
        if state is None or state.type in WAITING_FOR_RUNNER:
            return None  # the runner takes it when it has a slot (or once it is back)
        if state.final:
            said = f": {state.message}" if state.message else ""
            return f"its flow run {run_id} ended {state.name} before it started{said}"
        waited = (now - state.timestamp).total_seconds()
        if waited > self.unclaimed_run_seconds:
            kind = state.type.value.capitalize()
            named = kind if state.name in (None, kind) else f"{kind} ({state.name})"
            return (
                f"its flow run {run_id} has been {named} for {waited:.0f} s without "
                "starting (its runner or process died before the flow began)"
            )
        return None

    def redispatch_or_fail(self, row: dict[str, Any], run: Run | None, why: str) -> None:
        op_id, old = row["operation_id"], row["flow_run_id"]
        with self.engine.connect() as conn:
            current = queue.read_operation_run(conn, op_id)
        if current != ("Initiated", old):
            return  # claimed, cancelled or moved on since the sweep read it
        if run is not None and run.state is not None and not run.state.final:
            self.orchestrator.abandon_run(old, f"pmops gave up on this flow run: {why}")
        runs = self.orchestrator.runs_of(op_id)
        # a run of a later attempt that was created but not recorded (the API stopped between)
        newer = [r for r in runs if r.run_id != old and r.state is not None and not r.state.final]
        attempts = max(len(runs), 1)
        if newer:
            new = newer[0].run_id
        elif attempts < MAX_DISPATCH_ATTEMPTS:
            new = self.orchestrator.create_run(OperationRunSpec.from_row(row), attempt=attempts + 1)
        else:
            self._fail_unstarted(op_id, old, attempts, why)
            return
        with transaction(self.engine) as conn:
            moved = queue.move_operation_run(conn, op_id, old, new)
        if moved:
            log.warning("%s: %s; dispatched again as flow run %s", op_id, why, new)
        else:  # cancelled or claimed meanwhile: the new run must not linger
            self.orchestrator.cancel_run(new, caller="dispatcher")

    def _fail_unstarted(self, op_id: str, run_id: str, attempts: int, why: str) -> None:
        error = run_not_started(attempts, why)
        with transaction(self.engine) as conn:
            failed = queue.fail_operation(
                conn, op_id, error, utc_now(), expect_status="Initiated", expect_run=run_id
            )
            if failed:
                emit(conn, op_id, "operation.failed")
        log.warning("%s: %s; no attempt left, marked Failed", op_id, why)
