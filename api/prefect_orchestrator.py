"""The `Orchestrator` (pmops/service/orchestrator.py) on Prefect: the few Prefect calls pmops makes.

Flows are named after their operation type; deployments/serve.py serves them as 'pmops'. Flow
runs are created with the operation id as idempotency key: after a crash between "created" and
"recorded", the next attempt gets the same flow run back instead of a second one.

Prefect calls never hold up the API: each call gives up after one retry (Prefect's client
otherwise retries 5 times, sleeping 2 + 4 + 8 + 16 + 32 s, while its server restarts), the
dispatcher and the request handlers use separate clients and no lock is held across a call, and
the health check is one plain request with a 2 s timeout. Prefect being down, restarting or not
serving the deployments yet is raised as `OrchestratorUnavailable`.

A deployment in a work pool (PMOPS_EXECUTION=workpool, deployments/workpool.py) gets each run in
its priority's work queue (Critical -> High, pmops.contract.enums.Priority.work_queue; a batch's
parent run in High), which its workers serve first to last; the deployment itself says so, so the
API needs no setting of its own for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import OrchestrationResult
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling

from pmops.contract.enums import Priority
from pmops.prefect_auth import basic_auth_header
from pmops.service.orchestrator import (
    BatchRunSpec,
    Caller,
    OperationRunSpec,
    OrchestratorUnavailable,
    Run,
    RunState,
    RunStateType,
)

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


def deployment_path(operation_type: str) -> str:
    """Flows are named after their operation type; deployments/serve.py serves them as 'pmops'."""
    return f"{operation_type}/{DEPLOYMENT_NAME}"


class NotServed(RuntimeError):
    """The runner has not registered this operation type's deployment (yet: it is starting)."""


def prefect_unavailable(exc: BaseException) -> bool:
    """Prefect is down or restarting, or the runner not registered yet: not a bug of ours."""
    if isinstance(exc, (httpx.TransportError, NotServed, OrchestratorUnavailable)):
        return True
    if isinstance(exc, (PrefectHTTPStatusError, httpx.HTTPStatusError)):
        # 401: our auth string is not the server's (a configuration to fix, not the operation's
        # fault): dispatching waits, as for a server that is down
        return exc.response.status_code >= 500 or exc.response.status_code == 401
    return False


@contextmanager
def unavailable_as_ours() -> Iterator[None]:
    """Prefect's and httpx's ways of saying "not now" raised as `OrchestratorUnavailable`."""
    try:
        yield
    except OrchestratorUnavailable:
        raise
    except Exception as exc:
        if prefect_unavailable(exc):
            raise OrchestratorUnavailable(
                f"Prefect: {type(exc).__name__}: {exc}{_hint(exc)}"
            ) from exc
        raise


def _hint(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) != 401:
        return ""
    return (
        " (Prefect refused pmops's auth string: PMOPS_PREFECT_AUTH_STRING, or DATA_DIR/"
        "prefect-auth, must be the server's PREFECT_SERVER_API_AUTH_STRING)"
    )


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


def as_run(flow_run: FlowRun) -> Run:
    state = flow_run.state
    if state is None:
        return Run(str(flow_run.id), None)
    return Run(
        str(flow_run.id),
        RunState(
            type=RunStateType(state.type.value),
            timestamp=state.timestamp,
            name=state.name,
            message=state.message,
        ),
    )


def operation_tags(operation: OperationRunSpec, attempt: int) -> list[str]:
    return [
        f"tenant:{operation.tenant_id}",
        f"project:{operation.project_id}",
        f"type:{operation.operation_type}",
        f"operation:{operation.operation_id}",
        f"priority:{operation.priority}",
        *([f"attempt:{attempt}"] if attempt > 1 else []),
        *([f"batch:{operation.batch_id}"] if operation.batch_id else []),
    ]


class PrefectOrchestrator:
    """The `Orchestrator` through synchronous Prefect clients with bounded retries.

    The dispatcher thread uses its own client (caller "dispatcher") and request handlers share
    another (caller "request"; httpx clients are thread-safe), so a slow create never delays a
    cancel. The lock only guards creating a client; no call is made while holding it.
    """

    def __init__(
        self,
        api_url: str,
        max_retries: int = CLIENT_MAX_RETRIES,
        timeout: float = CLIENT_TIMEOUT_SECONDS,
        auth_string: str | None = None,
    ) -> None:
        """`auth_string`: the Prefect API's basic-auth string (pmops/prefect_auth.py), sent on
        every call; None: Prefect's own setting (PREFECT_API_AUTH_STRING) if any."""
        from prefect.settings import PREFECT_API_AUTH_STRING

        self.api_url = api_url
        self.max_retries = max_retries
        self.timeout = timeout
        self.auth_string = auth_string or PREFECT_API_AUTH_STRING.value() or None
        self._settings: Any = None
        self._clients: dict[Caller, SyncPrefectClient] = {}
        # operation type -> (deployment id, its work pool: None when a runner serves it)
        self._deployments: dict[str, tuple[UUID, str | None]] = {}
        self._lock = threading.Lock()
        self._health = httpx.Client(timeout=HEALTH_TIMEOUT_SECONDS)
        self._http = httpx.Client(timeout=timeout, headers=basic_auth_header(self.auth_string))

    # -- clients ------------------------------------------------------------------------------
    @contextmanager
    def _prefect_settings(self) -> Iterator[None]:
        """This orchestrator's Prefect settings (API URL, retries) for the calls made inside."""
        from prefect.context import SettingsContext, get_settings_context
        from prefect.settings import (
            PREFECT_API_AUTH_STRING,
            PREFECT_API_URL,
            PREFECT_CLIENT_MAX_RETRIES,
            PREFECT_CLIENT_RETRY_JITTER_FACTOR,
        )

        context = get_settings_context()
        if self._settings is None:
            updates: dict[Any, Any] = {
                PREFECT_API_URL: self.api_url,
                PREFECT_CLIENT_MAX_RETRIES: self.max_retries,
                PREFECT_CLIENT_RETRY_JITTER_FACTOR: 0.2,
            }
            if self.auth_string:
                updates[PREFECT_API_AUTH_STRING] = self.auth_string
            self._settings = context.settings.copy_with_update(updates=updates)
        with SettingsContext(profile=context.profile, settings=self._settings):
            yield

    @contextmanager
    def _client(self, caller: Caller) -> Iterator[SyncPrefectClient]:
        with self._prefect_settings():
            client = self._clients.get(caller)
            if client is None:
                with self._lock:
                    client = self._clients.get(caller)
                    if client is None:
                        client = get_client(
                            httpx_settings={"timeout": httpx.Timeout(self.timeout)},
                            sync_client=True,
                        )
                        client.__enter__()
                        self._clients[caller] = client
            yield client

    def deployment_id(self, operation_type: str) -> UUID:
        return self._deployment(operation_type)[0]

    def _deployment(self, operation_type: str) -> tuple[UUID, str | None]:
        if operation_type not in self._deployments:
            with self._client("dispatcher") as client:
                try:
                    dep = client.read_deployment_by_name(deployment_path(operation_type))
                except ObjectNotFound as exc:
                    raise NotServed(
                        f"Prefect has no deployment {deployment_path(operation_type)} yet "
                        "(is the runner, deployments/serve.py, running?)"
                    ) from exc
            self._deployments[operation_type] = (dep.id, dep.work_pool_name)
        return self._deployments[operation_type]

    def _call(self, caller: Caller, fn: Callable[[SyncPrefectClient], T]) -> T:
        """fn(the caller's Prefect client), retried while Prefect answers 503 (busy)."""

        def once() -> T:
            with self._client(caller) as client:
                return fn(client)

        with unavailable_as_ours():
            return _retry_busy(once)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A plain POST to Prefect's API, retried while it answers 503 (busy)."""
        url = f"{self.api_url.rstrip('/')}{path}"
        with unavailable_as_ours():
            response = _retry_busy(lambda: self._http.post(url, json=body).raise_for_status())
        return dict(response.json())

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        """The flow run for this operation; attempt n > 1 is a new run (key '<id>:<n>').
        A batch member's run is a subflow of the batch's parent run (`parent_run_id`)."""
        op_id = operation.operation_id
        key = op_id if attempt == 1 else f"{op_id}:{attempt}"
        parent_task = None
        if parent_run_id:
            parent_task = self._subflow_task(parent_run_id, operation.operation_key, key)
        return self._create(
            operation.operation_type,
            {"operation_id": op_id},
            operation.operation_name,
            operation_tags(operation, attempt),
            key,
            parent_task,
            Priority(operation.priority).work_queue,
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
        return str(self._post("/task_runs/", body)["id"])

    def create_batch_run(self, batch: BatchRunSpec) -> str:
        """The batch's parent flow run (flows/run_batch.py)."""
        tags = [
            f"tenant:{batch.tenant_id}",
            f"project:{batch.project_id}",
            f"batch:{batch.batch_id}",
        ]
        params = {"batch_id": batch.batch_id}
        queue = Priority.High.work_queue  # a parent only moves its batch on: never behind others
        return self._create("Batch", params, batch.batch_name, tags, batch.batch_id, None, queue)

    def _create(
        self,
        flow: str,
        parameters: dict[str, Any],
        name: str,
        tags: list[str],
        key: str,
        parent_task_run_id: str | None = None,
        work_queue: str | None = None,
    ) -> str:
        """The flow run of this flow's deployment; in `work_queue` when the deployment is in a
        work pool (ignored when a runner serves it)."""
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
        with unavailable_as_ours():
            deployment, pool = self._deployment(flow)
        if pool is not None and work_queue is not None:
            body["work_queue_name"] = work_queue
        return str(self._post(f"/deployments/{deployment}/create_flow_run", body)["id"])

    def read_runs(self, run_ids: list[str]) -> dict[str, Run]:
        """The flow runs Prefect knows of these ids, by id."""
        runs = self._call(
            "dispatcher",
            lambda client: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in run_ids])),
                limit=len(run_ids),
            ),
        )
        return {str(run.id): as_run(run) for run in runs}

    def runs_of(self, operation_id: str) -> list[Run]:
        """Every flow run created for this operation (they carry the tag operation:<id>)."""
        runs = self._call(
            "dispatcher",
            lambda client: client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"operation:{operation_id}"])
                ),
                limit=50,
            ),
        )
        return [as_run(run) for run in runs]

    def abandon_run(self, run_id: str, message: str) -> None:
        """Mark a flow run that never started its operation Cancelled, so it never starts it
        later (a late process is refused when it proposes Running)."""
        self._call(
            "dispatcher",
            lambda client: client.set_flow_run_state(
                UUID(run_id), Cancelled(message=message), force=True
            ),
        )

    def cancel_run(self, run_id: str, caller: Caller = "request") -> bool:
        """Ask Prefect to cancel (the runner SIGTERMs the process); False if Prefect refused or
        is unavailable: the operation's row is cancelled already, and its flow-run process reads
        that at its next heartbeat and stops by itself."""
        try:
            run = self._call(caller, lambda client: client.read_flow_run(UUID(run_id)))
            if run.state is not None and run.state.is_final():
                return True
            result: OrchestrationResult[Any] = self._call(
                caller,
                lambda client: client.set_flow_run_state(
                    UUID(run_id),
                    Cancelling(message="cancelled through the pmops API"),
                    force=True,
                ),
            )
        except OrchestratorUnavailable as exc:
            log.warning("could not cancel flow run %s: %s", run_id, exc)
            return False
        # a run that has not started is answered REJECT with state Cancelled: that is success
        state = result.state
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
