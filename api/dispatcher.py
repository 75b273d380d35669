"""Starts queued operations as Prefect flow runs, and sweeps operations nobody will finish.

The API keeps its own queue (the operations table): a flow run is created only when a worker
slot is free, highest priority first, then oldest. So Prefect's SQLite server never sees a burst,
and priority decides what starts next. Flow runs are created with the operation id as
idempotency key: after a crash between "created" and "recorded", the next attempt gets the same
flow run back instead of a second one.

The sweep marks Failed a Running operation whose flow-run process stopped writing heartbeats
(killed), and Timeout an operation still waiting at its timeoutAt.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from pmops.settings import Settings
from pmops.store import operations, transaction, utc_now

log = logging.getLogger("pmops.dispatcher")
DEPLOYMENT_NAME = "pmops"


def deployment_path(operation_type: str) -> str:
    """Flows are named after their operation type; deployments/serve.py serves them as 'pmops'."""
    return f"{operation_type}/{DEPLOYMENT_NAME}"


class PrefectGateway:
    """The few Prefect calls the API makes, through one synchronous client."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self._client: Any = None
        self._deployments: dict[str, UUID] = {}
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: self.api_url}):
                self._client = get_client(sync_client=True)
                self._client.__enter__()
        return self._client

    def deployment_id(self, operation_type: str) -> UUID:
        if operation_type not in self._deployments:
            dep = self.client().read_deployment_by_name(deployment_path(operation_type))
            self._deployments[operation_type] = dep.id
        return self._deployments[operation_type]

    def create_run(self, row: dict[str, Any]) -> str:
        with self._lock:
            run = self.client().create_flow_run_from_deployment(
                self.deployment_id(row["operation_type"]),
                parameters={"operation_id": row["operation_id"]},
                name=row["operation_name"][:200],
                tags=[
                    f"tenant:{row['tenant_id']}",
                    f"project:{row['project_id']}",
                    f"type:{row['operation_type']}",
                    f"operation:{row['operation_id']}",
                    f"priority:{row['priority']}",
                ],
                idempotency_key=row["operation_id"],
            )
        return str(run.id)

    def cancel_run(self, flow_run_id: str) -> bool:
        """Ask Prefect to cancel (the runner SIGTERMs the process); False if Prefect refused."""
        with self._lock:
            client = self.client()
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return True
            result = client.set_flow_run_state(
                UUID(flow_run_id), Cancelling(message="cancelled through the pmops API"), force=True
            )
        # a run that has not started is answered REJECT with state Cancelled: that is success
        state = getattr(result, "state", None)
        return result.status.value in ("ACCEPT", "REJECT") and (
            state is None or state.type in (StateType.CANCELLED, StateType.CANCELLING)
        )

    def healthy(self) -> bool:
        try:
            with self._lock:
                self.client().api_healthcheck()
            return True
        except Exception:
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, gateway: PrefectGateway) -> None:
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0

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
        import time

        while not self._stop.is_set():
            try:
                self.dispatch_once()
                if time.monotonic() - self._last_sweep > 1.0:
                    self._last_sweep = time.monotonic()
                    self.sweep_once()
            except Exception:
                log.exception("dispatch failed; retrying")
                self._stop.wait(1.0)
            self._wake.wait(self.settings.dispatch_interval_seconds)
            self._wake.clear()

    def dispatch_once(self) -> int:
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
        started = 0
        for row in rows:
            flow_run_id = self.gateway.create_run(dict(row))
            with transaction(self.engine) as conn:
                conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == row["operation_id"])
                    .where(operations.c.flow_run_id.is_(None))
                    .values(flow_run_id=flow_run_id)
                )
            started += 1
        return started

    def sweep_once(self) -> None:
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
                conn.execute(
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
            expired = conn.execute(
                select(operations.c.operation_id, operations.c.flow_run_id).where(
                    operations.c.status == "Initiated", operations.c.timeout_at < now
                )
            ).all()
            for op_id, _ in expired:
                conn.execute(
                    update(operations)
                    .where(operations.c.operation_id == op_id, operations.c.status == "Initiated")
                    .values(status="Timeout", ended_at=now)
                )
        for _, flow_run_id, *_ in [*dead, *expired]:
            if flow_run_id:
                try:
                    self.gateway.cancel_run(flow_run_id)
                except Exception:
                    log.warning("could not cancel flow run %s", flow_run_id)
