"""Starts queued operations as Prefect flow runs, and sweeps operations nobody will finish.

The API keeps its own queue (the operations table): a flow run is created only when a worker
slot is free, highest priority first, then oldest. So Prefect's SQLite server never sees a burst,
and priority decides what starts next. Flow runs are created with the operation id as
idempotency key: after a crash between "created" and "recorded", the next attempt gets the same
flow run back instead of a second one.

The sweep marks Failed a Running operation whose flow-run process stopped writing heartbeats
(killed), and Timeout an operation still waiting at its timeoutAt. It also watches dispatched
operations that no flow run has claimed yet: when their flow run ended without starting them
(Crashed, Cancelled, Failed: e.g. its process could not reach a restarting Prefect server), or
sits Pending/Running in Prefect without claiming them for `PMOPS_UNCLAIMED_RUN_SECONDS` (its runner
died between taking it and starting its process), the operation is dispatched once more as a new
flow run, and marked Failed (`run_not_started`) when that one does not start it either.

Prefect calls never hold up the API: each call gives up after one retry (Prefect's client
otherwise retries 5 times, sleeping 2 + 4 + 8 + 16 + 32 s, while its server restarts), the
dispatcher and the request handlers use separate clients and no lock is held across a call, and
the health check is one plain request with a 2 s timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from pmops.service.batch_progress import advance
from pmops.service.batches import take_submissions
from pmops.service.events import emit
from pmops.service.retries import run_due_retries
from pmops.settings import Settings
from pmops.store.tables import batches, checkpoint, operations, transaction, utc_now

log = logging.getLogger("pmops.dispatcher")
T = TypeVar("T")
DEPLOYMENT_NAME = "pmops"

# Prefect's client retries a 503 (its SQLite server's "database is locked", which clears within
# ~0.1 s) after 2, 4, 8... s; measured here, that 2 s sleep was the whole p95 of submit ->
# Running. So the client does not retry (PREFECT_CLIENT_MAX_RETRIES=0) and each call is retried
# here after 0.05, 0.1, 0.2... s for up to BUSY_RETRY_SECONDS; an unreachable server fails the
# call and the dispatcher tries again on its next round (the idempotency key makes that safe).
CLIENT_MAX_RETRIES = 0
BUSY_RETRY_SECONDS = 4.0
CLIENT_TIMEOUT_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 2.0
# how many flow runs one operation gets when its flow runs end without starting it
MAX_DISPATCH_ATTEMPTS = 2

DISPATCH, REQUESTS = "dispatch", "requests"
WAITING_FOR_RUNNER = (StateType.SCHEDULED,)


def deployment_path(operation_type: str) -> str:
    """Flows are named after their operation type; deployments/serve.py serves them as 'pmops'."""
    return f"{operation_type}/{DEPLOYMENT_NAME}"


class NotServed(RuntimeError):
    """The runner has not registered this operation type's deployment (yet: it is starting)."""


def prefect_unavailable(exc: BaseException) -> bool:
    """Prefect is down or restarting, or the runner not registered yet: not a bug of ours."""
    if isinstance(exc, (httpx.TransportError, NotServed)):
        return True
    if isinstance(exc, (PrefectHTTPStatusError, httpx.HTTPStatusError)):
        return exc.response.status_code >= 500
    return False


def _retry_busy(fn: Callable[[], T]) -> T:
    """fn(), again after 0.05, 0.1, 0.2 ... 0.5 s while Prefect answers 503, for up to
    BUSY_RETRY_SECONDS."""
    delay, deadline = 0.05, time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return fn()
        except (PrefectHTTPStatusError, httpx.HTTPStatusError) as exc:
            if exc.response.status_code != 503 or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.5)


class PrefectGateway:
    """The few Prefect calls the API makes, through synchronous clients with bounded retries.

    The dispatcher thread uses its own client (lane DISPATCH) and request handlers share another
    (lane REQUESTS; httpx clients are thread-safe), so a slow create never delays a cancel. The
    lock only guards creating a client; no call is made while holding it.
    """

    def __init__(
        self,
        api_url: str,
        max_retries: int = CLIENT_MAX_RETRIES,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
    ) -> None:
        self.api_url = api_url
        self.max_retries = max_retries
        self.timeout = timeout
        self._settings: Any = None
        self._clients: dict[str, Any] = {}
        self._deployments: dict[str, UUID] = {}
        self._lock = threading.Lock()
        self._health = httpx.Client(timeout=HEALTH_TIMEOUT_SECONDS)
        self._http = httpx.Client(timeout=timeout)

    # -- clients ------------------------------------------------------------------------------
    @contextmanager
    def _prefect_settings(self) -> Iterator[None]:
        """This gateway's Prefect settings (API URL, retries) for the calls made inside."""
        from prefect.context import SettingsContext, get_settings_context
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_CLIENT_MAX_RETRIES,
            PREFECT_CLIENT_RETRY_JITTER_FACTOR,
        )

        context = get_settings_context()
        if self._settings is None:
            self._settings = context.settings.copy_with_update(
                updates={
                    PREFECT_API_URL: self.api_url,
                    PREFECT_CLIENT_MAX_RETRIES: self.max_retries,
                    PREFECT_CLIENT_RETRY_JITTER_FACTOR: 0.2,
                }
            )
        with SettingsContext(profile=context.profile, settings=self._settings):
            yield

    @contextmanager
    def _client(self, lane: str) -> Iterator[Any]:
        with self._prefect_settings():
            client = self._clients.get(lane)
            if client is None:
                with self._lock:
                    client = self._clients.get(lane)
                    if client is None:
                        client = get_client(
                            httpx_settings={"timeout": httpx.Timeout(self.timeout)},
                            sync_client=True,
                        )
                        client.__enter__()
                        self._clients[lane] = client
            yield client

    def deployment_id(self, operation_type: str) -> UUID:
        if operation_type not in self._deployments:
            with self._client(DISPATCH) as client:
                try:
                    dep = client.read_deployment_by_name(deployment_path(operation_type))
                except ObjectNotFound as exc:
                    raise NotServed(
                        f"Prefect has no deployment {deployment_path(operation_type)} yet "
                        "(is the runner, deployments/serve.py, running?)"
                    ) from exc
            self._deployments[operation_type] = dep.id
        return self._deployments[operation_type]

    def _call(self, lane: str, fn: Callable[[Any], T]) -> T:
        """fn(the lane's Prefect client), retried while Prefect answers 503 (busy)."""

        def once() -> T:
            with self._client(lane) as client:
                return fn(client)

        return _retry_busy(once)

    # -- calls --------------------------------------------------------------------------------
    def create_run(
        self, row: dict[str, Any], attempt: int = 1, parent_flow_run_id: str | None = None
    ) -> str:
        """The flow run for this operation; attempt n > 1 is a new run (key '<id>:<n>').
        A batch member's run is a subflow of the batch's parent run (`parent_flow_run_id`)."""
        op_id = row["operation_id"]
        member = (row.get("request") or {}).get("batch") or {}
        batch = member.get("batchId")
        tags = [
            f"tenant:{row['tenant_id']}",
            f"project:{row['project_id']}",
            f"type:{row['operation_type']}",
            f"operation:{op_id}",
            f"priority:{row['priority']}",
            *([f"attempt:{attempt}"] if attempt > 1 else []),
            *([f"batch:{batch}"] if batch else []),
        ]
        key = op_id if attempt == 1 else f"{op_id}:{attempt}"
        parent_task = None
        if parent_flow_run_id:
            parent_task = self._subflow_task(parent_flow_run_id, member.get("operationKey"), key)
        return self._create(
            row["operation_type"],
            {"operation_id": op_id},
            row["operation_name"],
            tags,
            key,
            parent_task,
        )

    def _subflow_task(self, parent_flow_run_id: str, name: str | None, key: str) -> str:
        """The task run in the parent run that stands for a child flow run, as Prefect's own
        run_deployment(as_subflow=True) makes it; the same key gives the same task run back."""
        body = {
            "name": name or key,
            "flow_run_id": parent_flow_run_id,
            "task_key": "pmops.batch.operation",
            "dynamic_key": key,
            "state": {"type": "PENDING", "message": "a batch operation (a subflow)"},
        }
        url = f"{self.api_url.rstrip('/')}/task_runs/"
        response = _retry_busy(lambda: self._http.post(url, json=body).raise_for_status())
        return str(response.json()["id"])

    def create_batch_run(self, batch: dict[str, Any]) -> str:
        """The batch's parent flow run (flows/run_batch.py)."""
        tags = [
            f"tenant:{batch['tenant_id']}",
            f"project:{batch['project_id']}",
            f"batch:{batch['batch_id']}",
        ]
        params = {"batch_id": batch["batch_id"]}
        return self._create("Batch", params, batch["batch_name"], tags, batch["batch_id"])

    def _create(
        self,
        flow: str,
        parameters: dict[str, Any],
        name: str,
        tags: list[str],
        key: str,
        parent_task_run_id: str | None = None,
    ) -> str:
        body: dict[str, Any] = {
            "parameters": parameters,
            "name": name[:200],
            "tags": tags,
            "idempotency_key": key,
            "state": {"type": "SCHEDULED", "message": "dispatched by pmops"},
        }
        if parent_task_run_id:
            body["parent_task_run_id"] = parent_task_run_id
        # a plain request: Prefect's client sleeps 2 s after a 503 even with retries off
        # (prefect/client/base.py), and this call is on every operation's way to Running
        deployment = self.deployment_id(flow)
        url = f"{self.api_url.rstrip('/')}/deployments/{deployment}/create_flow_run"
        response = _retry_busy(lambda: self._http.post(url, json=body).raise_for_status())
        return str(response.json()["id"])

    def read_runs(self, flow_run_ids: list[str]) -> dict[str, FlowRun]:
        """The flow runs Prefect knows of these ids, by id."""
        runs = self._call(
            DISPATCH,
            lambda client: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids])
                ),
                limit=len(flow_run_ids),
            ),
        )
        return {str(run.id): run for run in runs}

    def runs_of(self, operation_id: str) -> list[FlowRun]:
        """Every flow run created for this operation (they carry the tag operation:<id>)."""
        return list(
            self._call(
                DISPATCH,
                lambda client: client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        tags=FlowRunFilterTags(all_=[f"operation:{operation_id}"])
                    ),
                    limit=50,
                ),
            )
        )

    def abandon_run(self, flow_run_id: str, message: str) -> None:
        """Mark a flow run that never started its operation Cancelled, so it never starts it
        later (a late process is refused when it proposes Running)."""
        self._call(
            DISPATCH,
            lambda client: client.set_flow_run_state(
                UUID(flow_run_id), Cancelled(message=message), force=True
            ),
        )

    def cancel_run(self, flow_run_id: str, lane: str = REQUESTS) -> bool:
        """Ask Prefect to cancel (the runner SIGTERMs the process); False if Prefect refused or
        is unavailable: the operation's row is cancelled already, and its flow-run process reads
        that at its next heartbeat and stops by itself."""
        try:
            run = self._call(lane, lambda client: client.read_flow_run(UUID(flow_run_id)))
            if run.state is not None and run.state.is_final():
                return True
            result = self._call(
                lane,
                lambda client: client.set_flow_run_state(
                    UUID(flow_run_id),
                    Cancelling(message="cancelled through the pmops API"),
                    force=True,
                ),
            )
        except Exception as exc:
            if not prefect_unavailable(exc):
                raise
            log.warning("could not cancel flow run %s: %s", flow_run_id, exc)
            return False
        # a run that has not started is answered REJECT with state Cancelled: that is success
        state = getattr(result, "state", None)
        return result.status.value in ("ACCEPT", "REJECT") and (
            state is None or state.type in (StateType.CANCELLED, StateType.CANCELLING)
        )

    def healthy(self) -> bool:
        """Prefect's /health answered within 2 s (no retries: a health check must not wait)."""
        try:
            return self._health.get(f"{self.api_url.rstrip('/')}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.__exit__(None, None, None)
            except Exception:
                log.debug("closing a Prefect client failed", exc_info=True)
        self._health.close()
        self._http.close()


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, gateway: PrefectGateway) -> None:
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.unclaimed_run_seconds = settings.unclaimed_run_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._prefect_down = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pmops-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            failed = False
            for step in (self.dispatch_once, self._sweep_due):
                try:
                    step()
                except Exception as exc:
                    failed = True
                    self._report(exc)
            if not failed and self._prefect_down:
                self._prefect_down = False
                log.warning("Prefect answers again: dispatching resumes")
            if failed:
                self._stop.wait(1.0)
            self._wake.wait(self.settings.dispatch_interval_seconds)
            self._wake.clear()

    def _report(self, exc: Exception) -> None:
        if not prefect_unavailable(exc):
            log.exception("dispatch failed; retrying")
        elif not self._prefect_down:
            self._prefect_down = True
            log.warning("dispatching waits for Prefect (%s: %s)", type(exc).__name__, exc)

    def _sweep_due(self) -> None:
        if time.monotonic() - self._last_sweep > 1.0:
            self._last_sweep = time.monotonic()
            checkpoint(self.engine)  # off the request path (store.checkpoint_in_background)
            # store-only steps first: they go on while Prefect is down
            made = take_submissions(self.engine, self.settings)
            if made + run_due_retries(self.engine, self.settings) + self.advance_batches():
                self._wake.set()
            self.sweep_once()

    def dispatch_once(self) -> int:
        self.start_batch_runs()  # a batch's parent run first: its operations are its subflows
        with self.engine.connect() as conn:
            active = conn.execute(
                select(func.count()).where(
                    operations.c.status.in_(("Initiated", "Running")),
                    operations.c.flow_run_id.is_not(None),
                )
            ).scalar_one()
            free = self.settings.worker_limit - active
            if free <= 0:
                return 0
            rows = (
                conn.execute(
                    select(operations)
                    .where(operations.c.status == "Initiated", operations.c.flow_run_id.is_(None))
                    .order_by(operations.c.priority_rank.desc(), operations.c.created_at.asc())
                    .limit(free)
                )
                .mappings()
                .all()
            )
            parents = self._batch_parents(conn, rows)
        started = 0
        for row in rows:
            flow_run_id = self.gateway.create_run(
                dict(row), parent_flow_run_id=parents.get(row["operation_id"])
            )
            with transaction(self.engine) as conn:
                conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == row["operation_id"])
                    .where(operations.c.flow_run_id.is_(None))
                    .values(flow_run_id=flow_run_id)
                )
            started += 1
        return started

    @staticmethod
    def _batch_parents(conn: Any, rows: Any) -> dict[str, str]:
        """operation id -> the flow run id of its batch's parent run, for batch members."""
        wanted = {
            r["operation_id"]: ((r["request"] or {}).get("batch") or {}).get("batchId")
            for r in rows
        }
        ids = {b for b in wanted.values() if b}
        if not ids:
            return {}
        found = dict(
            conn.execute(
                select(batches.c.batch_id, batches.c.flow_run_id).where(
                    batches.c.batch_id.in_(ids), batches.c.flow_run_id.is_not(None)
                )
            ).all()
        )
        return {op: found[b] for op, b in wanted.items() if b in found}

    def advance_batches(self) -> int:
        """Move unfinished batches on (their parent runs do too; this covers a lost one)."""
        with self.engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(batches.c.batch_id).where(batches.c.status.in_(("Initiated", "Running")))
                ).scalars()
            )
        for batch_id in ids:
            advance(self.engine, batch_id)
        return len(ids)

    def start_batch_runs(self) -> None:
        """A parent flow run for each unfinished batch that has none yet."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(batches).where(
                        batches.c.status.in_(("Initiated", "Running")),
                        batches.c.flow_run_id.is_(None),
                    )
                )
                .mappings()
                .all()
            )
        for row in rows:
            flow_run_id = self.gateway.create_batch_run(dict(row))
            with transaction(self.engine) as conn:
                conn.execute(
                    update(batches)
                    .where(batches.c.batch_id == row["batch_id"])
                    .values(flow_run_id=flow_run_id)
                )

    def sweep_once(self) -> None:
        """Store-only checks first (they work while Prefect is down), then Prefect's side."""
        now = utc_now()
        stale = now - timedelta(seconds=self.settings.heartbeat_stale_seconds)
        with transaction(self.engine) as conn:
            dead = conn.execute(
                select(
                    operations.c.operation_id, operations.c.flow_run_id, operations.c.heartbeat_at
                ).where(operations.c.status == "Running", operations.c.heartbeat_at < stale)
            ).all()
            for op_id, _, beat in dead:
                silent = (now - beat).total_seconds()
                failed = conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == op_id, operations.c.status == "Running")
                    .values(
                        status="Failed",
                        ended_at=now,
                        error={
                            "code": "worker_lost",
                            "message": (
                                f"the flow-run process stopped sending heartbeats {silent:.0f} s "
                                "ago (it was killed or its machine stopped); the run was marked "
                                "Failed"
                            ),
                            "field": None,
                        },
                    )
                )
                if failed.rowcount:
                    emit(conn, op_id, "operation.failed")
        # a transaction of its own: on PostgreSQL the status counters' rows are then always
        # locked in the order statuses move (Initiated, Running, terminal), so never in a cycle
        with transaction(self.engine) as conn:
            expired = conn.execute(
                select(operations.c.operation_id, operations.c.flow_run_id).where(
                    operations.c.status == "Initiated", operations.c.timeout_at < now
                )
            ).all()
            for op_id, _ in expired:
                timed_out = conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == op_id, operations.c.status == "Initiated")
                    .values(status="Timeout", ended_at=now)
                )
                if timed_out.rowcount:
                    emit(conn, op_id, "operation.timeout")
        for _, flow_run_id, *_ in [*dead, *expired]:
            if flow_run_id:
                try:
                    self.gateway.cancel_run(flow_run_id, lane=DISPATCH)
                except Exception:
                    log.warning("could not cancel flow run %s", flow_run_id)
        self.sweep_unstarted(now)

    # -- dispatched, never started --------------------------------------------------------------
    def sweep_unstarted(self, now: datetime | None = None) -> int:
        """Dispatch again (or fail) operations whose flow run will never claim them."""
        with self.engine.connect() as conn:
            waiting = (
                conn.execute(
                    select(operations).where(
                        operations.c.status == "Initiated", operations.c.flow_run_id.is_not(None)
                    )
                )
                .mappings()
                .all()
            )
        if not waiting:
            return 0
        now = now or utc_now()
        runs = self.gateway.read_runs([row["flow_run_id"] for row in waiting])
        handled = 0
        for row in waiting:
            run = runs.get(row["flow_run_id"])
            why = self.why_not_starting(row["flow_run_id"], run, now)
            if why is not None:
                self.redispatch_or_fail(dict(row), run, why)
                handled += 1
        return handled

    def why_not_starting(self, flow_run_id: str, run: FlowRun | None, now: datetime) -> str | None:
        """Why this flow run will never claim its operation; None while it still may."""
        if run is None:
            return f"Prefect has no flow run {flow_run_id}"
        state = run.state
        if state is None or state.type in WAITING_FOR_RUNNER:
            return None  # the runner takes it when it has a slot (or once it is back)
        if state.is_final():
            said = f": {state.message}" if state.message else ""
            return f"its flow run {flow_run_id} ended {state.name} before it started{said}"
        waited = (now - state.timestamp).total_seconds()
        if waited > self.unclaimed_run_seconds:
            kind = state.type.value.capitalize()
            named = kind if state.name in (None, kind) else f"{kind} ({state.name})"
            return (
                f"its flow run {flow_run_id} has been {named} for {waited:.0f} s without "
                "starting (its runner or process died before the flow began)"
            )
        return None

    def redispatch_or_fail(self, row: dict[str, Any], run: FlowRun | None, why: str) -> None:
        op_id, old = row["operation_id"], row["flow_run_id"]
        with self.engine.connect() as conn:
            now = conn.execute(
                select(operations.c.status, operations.c.flow_run_id).where(
                    operations.c.operation_id == op_id
                )
            ).first()
        if now is None or tuple(now) != ("Initiated", old):
            return  # claimed, cancelled or moved on since the sweep read it
        if run is not None and run.state is not None and not run.state.is_final():
            self.gateway.abandon_run(old, f"pmops gave up on this flow run: {why}")
        runs = self.gateway.runs_of(op_id)
        # a run of a later attempt that was created but not recorded (the API stopped between)
        newer = [
            r for r in runs if str(r.id) != old and r.state is not None and not r.state.is_final()
        ]
        attempts = max(len(runs), 1)
        if newer:
            new = str(newer[0].id)
        elif attempts < MAX_DISPATCH_ATTEMPTS:
            new = self.gateway.create_run(row, attempt=attempts + 1)
        else:
            self._fail_unstarted(op_id, old, attempts, why)
            return
        with transaction(self.engine) as conn:
            moved = conn.execute(
                update(operations)
                .where(
                    operations.c.operation_id == op_id,
                    operations.c.status == "Initiated",
                    operations.c.flow_run_id == old,
                )
                .values(flow_run_id=new)
            ).rowcount
        if moved:
            log.warning("%s: %s; dispatched again as flow run %s", op_id, why, new)
        else:  # cancelled or claimed meanwhile: the new run must not linger
            self.gateway.cancel_run(new, lane=DISPATCH)

    def _fail_unstarted(self, op_id: str, flow_run_id: str, attempts: int, why: str) -> None:
        runs = "flow run" if attempts == 1 else f"{attempts} flow runs"
        with transaction(self.engine) as conn:
            failed = conn.execute(
                update(operations)
                .where(
                    operations.c.operation_id == op_id,
                    operations.c.status == "Initiated",
                    operations.c.flow_run_id == flow_run_id,
                )
                .values(
                    status="Failed",
                    ended_at=utc_now(),
                    error={
                        "code": "run_not_started",
                        "message": (
                            f"the operation was dispatched to {runs} and none of them started "
                            f"it; the last: {why}. The operation was marked Failed"
                        ),
                        "field": None,
                    },
                )
            )
            if failed.rowcount:
                emit(conn, op_id, "operation.failed")
        log.warning("%s: %s; no attempt left, marked Failed", op_id, why)
