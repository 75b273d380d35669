"""The deliverer outlives errors of the store: a deadlock, a restart or a lost connection fails
one transaction, and the loop pauses and goes on instead of ending the process (before, any
database error in fan-out, lease or settle ended it, and a bare `python -m
pmops.delivery.deliverer` stayed down). An attempt whose settling failed is settled on a later
turn, not sent again.

The real deliverer on a real SQLite store with a real loopback receiver; the errors are the
driver's own (sqlite3.OperationalError wrapped by SQLAlchemy), raised by the store calls the
loop makes, a few times each."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pmops.delivery import outbox
from pmops.delivery.deliverer import Deliverer
from pmops.store.engine import engine_for
from pmops.store.tables import deliveries
from tests.delivery.test_flood import (
    DEADLINE,
    add_operation,
    add_webhook,
    progress,
    running,
    settings_for,
)
from tests.receivers import HttpReceiver, always, wait_until


def failing(real: Callable[..., Any], times: int, calls: list[str], name: str) -> Any:
    """`real`, but its first `times` calls raise the driver's error, as a dropped store does."""

    def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if calls.count(name) <= times:
            raise OperationalError("store call", {}, sqlite3.OperationalError("database is locked"))
        return real(*args, **kwargs)

    return call


def test_the_loop_goes_on_after_store_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path)
    engine = engine_for(settings.resolved_database_url)
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    receiver = HttpReceiver()
    receiver.answer("/hook", always(200))
    calls: list[str] = []
    for name, times in (("fan_out", 3), ("lease_due", 2), ("settle", 2), ("heartbeat", 1)):
        monkeypatch.setattr(outbox, name, failing(getattr(outbox, name), times, calls, name))
    deliverer = Deliverer(settings, engine)
    try:
        with running(deliverer):
            add_webhook(engine, tenant, project, receiver.url("/hook"))
            op_id = add_operation(engine, tenant, project)
            for pct in (10.0, 20.0, 30.0):
                progress(engine, op_id, pct)

            def settled() -> list[str]:
                with engine.connect() as conn:
                    found = conn.execute(
                        select(deliveries.c.status).where(deliveries.c.tenant_id == tenant)
                    ).scalars()
                    statuses = list(found)
                return statuses if statuses == ["Delivered"] * 3 else []

            assert wait_until(settled, DEADLINE), settled()
    finally:
        receiver.close()
    # every kind of call failed and was made again; each event was sent once (the outcome
    # whose settling failed was kept and settled later, not attempted again)
    assert calls.count("fan_out") > 3 and calls.count("settle") > 2, calls
    sent = sorted(r.json()["sequence"] for r in receiver.at("/hook"))
    assert sent == [1, 2, 3]
