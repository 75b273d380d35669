"""In-process API tests: the real app (routes, service, store on a temporary SQLite file, the
dispatcher thread and the event feed) served through httpx's ASGI transport, with a fake
orchestrator in place of Prefect. Nothing runs an analysis here: operations stay Initiated
(waiting for a run that never starts) unless a test cancels them or they time out. What needs a
real run (lifecycle, cancel of a running operation, durability, faults) is in tests/stack/.

The app runs on an event loop in a thread of its own, so the tests stay synchronous and read like
the stack tests (`api.get(...)`, `api.start(...)`). No xdist group: each worker makes its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from api.main import create_app
from pmops.service.orchestrator import (
    BatchRunSpec,
    Caller,
    OperationRunSpec,
    OrchestratorUnavailable,
    Run,
    RunState,
    RunStateType,
)
from pmops.settings import Settings
from pmops.store.tables import create_token, engine_for, utc_now
from tests.service_stack import TERMINAL

T = TypeVar("T")


# -- the fake orchestrator -------------------------------------------------------------------
@dataclass
class FakeOrchestrator:
    """The `Orchestrator` protocol in memory: runs are created Scheduled and stay so (no runner
    takes them) until cancelled. Records every call; `up = False` makes it unavailable."""

    up: bool = True
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    by_operation: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))
        if not self.up:
            raise OrchestratorUnavailable("the fake orchestrator is down")

    def _new_run(self, key: str) -> str:
        with self._lock:
            if key not in self.by_key:
                run_id = str(uuid.uuid4())
                self.by_key[key] = run_id
                self.runs[run_id] = Run(run_id, RunState(RunStateType.SCHEDULED, utc_now()))
            return self.by_key[key]

    def set_state(self, run_id: str, to: RunStateType, message: str | None = None) -> None:
        """Put a run in a state, as its runner (or an operator) would."""
        with self._lock:
            self.runs[run_id] = Run(run_id, RunState(to, utc_now(), to.value.title(), message))

    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        self._record("create_run", operation, attempt, parent_run_id)
        op_id = operation.operation_id
        run_id = self._new_run(op_id if attempt == 1 else f"{op_id}:{attempt}")
        with self._lock:
            if run_id not in self.by_operation[op_id]:
                self.by_operation[op_id].append(run_id)
        return run_id

    def create_batch_run(self, batch: BatchRunSpec) -> str:
        self._record("create_batch_run", batch)
        return self._new_run(batch.batch_id)

    def read_runs(self, run_ids: list[str]) -> dict[str, Run]:
        self._record("read_runs", run_ids)
        with self._lock:
            return {i: self.runs[i] for i in run_ids if i in self.runs}

    def runs_of(self, operation_id: str) -> list[Run]:
        self._record("runs_of", operation_id)
        with self._lock:
            return [self.runs[i] for i in self.by_operation.get(operation_id, [])]

    def abandon_run(self, run_id: str, message: str) -> None:
        self._record("abandon_run", run_id, message)
        self.set_state(run_id, RunStateType.CANCELLED, message)

    def cancel_run(self, run_id: str, caller: Caller = "request") -> bool:
        try:
            self._record("cancel_run", run_id, caller)
        except OrchestratorUnavailable:
            return False
        run = self.runs.get(run_id)
        if run is None:
            return False
        if run.state is None or not run.state.final:
            self.set_state(run_id, RunStateType.CANCELLED, "cancelled through the pmops API")
        return True

    def healthy(self) -> bool:
        return self.up

    def close(self) -> None:
        self.closed = True

    # -- for assertions ------------------------------------------------------------------------
    def called(self, name: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for n, args in self.calls if n == name]

    def created(self) -> list[str]:
        """The operation ids runs were created for, in order."""
        return [args[0].operation_id for args in self.called("create_run")]


# -- the app on a loop of its own ----------------------------------------------------------------
class Served:
    """The app with its lifespan entered, on an event loop in a thread; `run` awaits there."""

    def __init__(self, settings: Settings, orchestrator: FakeOrchestrator) -> None:
        self.settings, self.orchestrator = settings, orchestrator
        self.app = create_app(settings, orchestrator)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-loop", daemon=True)
        self.engine = engine_for(settings.resolved_database_url)
        self._lifespan: AbstractAsyncContextManager[Any] | None = None
        self.http: httpx.AsyncClient | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Served:
        self.thread.start()
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.run(self.http.aclose())
        if self._lifespan is not None:
            self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        assert self.http is not None
        return self.run(self.http.request(method, url, **kw))

    def tenant(
        self, tenant: str | None = None, project: str | None = None, max_priority: str = "Critical"
    ) -> Client:
        """A token for this (or a fresh) tenant and project; the tests' tokens may use every
        priority unless `max_priority` says otherwise."""
        tenant, project = tenant or str(uuid.uuid4()), project or str(uuid.uuid4())
        token = create_token(self.engine, tenant, project, "test", max_priority=max_priority)
        return Client(self, tenant, project, token)


class Client:
    """One token's calls, as tests/service_stack.Tenant makes them on a real stack."""

    def __init__(self, served: Served, tenant: str, project: str, token: str) -> None:
        self.served, self.tenant, self.project, self.token = served, tenant, project, token
        self.base = f"/api/{tenant}/{project}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.data_dir = served.settings.data_dir

    def _url(self, path: str) -> str:
        return path if path.startswith(("/api/", "/health", "http")) else self.base + path

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.served.request(method, self._url(path), headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def concurrently(self, n: int, method: str, path: str, **kw: Any) -> list[httpx.Response]:
        """The same request n times at once (the app's thread pool runs them in parallel)."""
        http, url = self.served.http, self._url(path)
        assert http is not None
        headers = {**self.headers, **kw.pop("headers", {})}

        async def all_at_once() -> list[httpx.Response]:
            calls = [http.request(method, url, headers=headers, **kw) for _ in range(n)]
            return list(await asyncio.gather(*calls))

        return self.served.run(all_at_once())

    def upload(self, path: Path, name: str | None = None, **headers: str) -> dict[str, Any]:
        content = path.read_bytes()
        r = self.post("/datasets", files={"file": (name or path.name, content)}, headers=headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def start(
        self,
        dataset_id: str | None,
        name: str = "test analysis",
        operation_type: str = "ProcessMiningAnalysis",
        **body: Any,
    ) -> dict[str, Any]:
        params = dict(body.pop("parameters", {}))
        if dataset_id is not None:
            params["datasetId"] = dataset_id
        payload = {"operationType": operation_type, "operationName": name, "parameters": params}
        r = self.post("/async/operation", json={**payload, **body})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def status(self, operation_id: str) -> dict[str, Any]:
        r = self.get(f"/async/operation/{operation_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(
        self,
        operation_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda s: s["status"] in TERMINAL,
        deadline: float = 30.0,
    ) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            s = self.status(operation_id)
            if until(s):
                return s
            assert time.monotonic() < end, f"{operation_id}: still {s['status']}"
            time.sleep(0.05)

    def results(self, operation_id: str, **params: Any) -> httpx.Response:
        return self.get(f"/async/operation/{operation_id}/results", params=params)


RELAXED_LIMITS: dict[str, Any] = {
    "token_requests_per_second": 1e6,
    "token_request_burst": 1_000_000,
    "auth_failures_per_address": 1_000_000,
}


@contextmanager
def served_app(data_dir: Path, **settings: Any) -> Iterator[Served]:
    """The app on a fresh store under `data_dir`, with these settings and a fake orchestrator."""
    # every test's requests come from one address, quickly: the rates per token and address are
    # relaxed unless a test sets them (tests/api/test_rate_limits.py)
    config = Settings(data_dir=data_dir, **{**RELAXED_LIMITS, **settings})
    with Served(config, FakeOrchestrator()) as served:
        yield served


# One app per session (per xdist worker) for most tests; each test module works in tenants of
# its own, so what one module creates never shows in another's lists.
@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(
        tmp_path_factory.mktemp("api"),
        fault_injection=True,
        webhook_allow_networks="127.0.0.0/8",
    ) as s:
        yield s


@pytest.fixture(scope="module")
def api(served: Served) -> Client:
    """Tenant A: a fresh tenant and project for the module."""
    return served.tenant()


@pytest.fixture(scope="module")
def tenant_b(served: Served) -> Client:
    """Tenant B: another tenant, to show A's things do not exist for it."""
    return served.tenant()


@pytest.fixture(scope="module")
def receipt_dataset(api: Client, datasets: Path) -> dict[str, Any]:
    return api.upload(datasets / "receipt.xes.gz")
