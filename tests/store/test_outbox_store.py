"""pmops.store.webhooks, deliveries, events and projects on SQLite and PostgreSQL, with the
PostgreSQL concurrency of the outbox: leases and fan-out taken by two transactions at once
(FOR UPDATE SKIP LOCKED) and projects made by two at once (ON CONFLICT)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pmops.store import deliveries as dl
from pmops.store import events as ev
from pmops.store import projects as pj
from pmops.store import webhooks as wh
from pmops.store.engine import transaction, utc_now
from pmops.store.tables import batches, deliveries
from tests.store.helpers import (
    add_deliveries,
    add_event,
    add_operation,
    add_webhook,
    delivery_row,
    scope,
)


def event_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r.event_id for r in ev.list_events_after(conn, 0, 1000)]


def delivery(engine: Engine, delivery_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(deliveries.select().where(deliveries.c.delivery_id == delivery_id))
        return dict(row.mappings().one())


# -- webhooks ------------------------------------------------------------------------------------
def test_webhooks_in_their_scope(engine: Engine) -> None:
    tenant, project = scope()
    older = add_webhook(engine, tenant, project, created_at=utc_now() - timedelta(minutes=1))
    newer = add_webhook(engine, tenant, project, filters={"priorities": ["High"]})
    off = add_webhook(engine, tenant, project, status="Disabled")
    with engine.connect() as conn:
        assert wh.read_webhook(conn, tenant, project, older) is not None
        assert wh.read_webhook(conn, tenant, str(uuid.uuid4()), older) is None
        listed = [r["webhook_id"] for r in wh.list_webhooks(conn, tenant, project, 0, 10)]
        active = wh.list_active_webhooks(conn, [(tenant, project)])[(tenant, project)]
        normal = {"operation_type": "ProcessMiningAnalysis", "priority": "Normal"}
        high = {**normal, "priority": "High"}
        events = ["operation.completed"]
        assert wh.matching_webhooks(conn, tenant, project, normal, events) == 1
        assert wh.matching_webhooks(conn, tenant, project, high, events) == 2
        assert wh.matching_webhooks(conn, tenant, project, high, ["operation.failed"]) == 0
    assert listed[0] in (newer, off) and listed[-1] == older and len(listed) == 3
    assert {h["webhook_id"] for h in active} == {older, newer}
    with transaction(engine) as conn:
        assert wh.update_webhook(conn, newer, status="Disabled", disabled_reason="x")
        assert wh.delete_webhook(conn, off)
        assert not wh.delete_webhook(conn, off)
    with engine.connect() as conn:
        assert set(wh.read_webhooks(conn, [older, newer, off])) == {older, newer}
        assert wh.read_webhooks(conn, []) == {}


def test_webhook_stats_add_up(engine: Engine) -> None:
    tenant, project = scope()
    hook = add_webhook(engine, tenant, project)
    change = {
        "b_id": hook,
        "b_total": 2,
        "b_ok": 1,
        "b_failed": 1,
        "b_ms": 30.0,
        "b_answered": 2,
        "b_last": {"success": False},
        "b_reset": False,
        "b_consecutive": 1,
        "b_since": utc_now(),
    }
    first = change["b_since"]
    with transaction(engine) as conn:
        wh.add_webhook_stats(conn, [change])
        # a run of failures goes on: counted on, since the first of them
        wh.add_webhook_stats(conn, [{**change, "b_since": utc_now()}])
    with engine.connect() as conn:
        failing = wh.read_webhook(conn, tenant, project, hook)
    assert failing is not None
    assert (failing["consecutive_failures"], failing["failing_since"]) == (2, first)
    with transaction(engine) as conn:
        # a success among them: the run restarts
        wh.add_webhook_stats(
            conn, [{**change, "b_reset": True, "b_consecutive": 0, "b_since": None}]
        )
        wh.add_webhook_stats(conn, [])  # nothing to do, no error
    with engine.connect() as conn:
        row = wh.read_webhook(conn, tenant, project, hook)
    assert row is not None
    assert (row["total_deliveries"], row["successful_deliveries"], row["failed_deliveries"]) == (
        6,
        3,
        3,
    )
    assert row["response_ms_total"] == 90.0 and row["responses"] == 6
    assert row["consecutive_failures"] == 0 and row["failing_since"] is None
    assert row["last_delivery"] == {"success": False}


# -- events --------------------------------------------------------------------------------------
def test_events_in_order_and_fanned_out(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    with engine.connect() as conn:
        assert ev.last_event_seq(conn, op_id) == 0
        assert ev.newest_event_id(conn) == 0
    for seq in (1, 2, 3):
        add_event(engine, tenant, project, op_id, seq)
    add_event(engine, tenant, project, None, None, "webhook.disabled")  # a project event
    with engine.connect() as conn:
        assert ev.last_event_seq(conn, op_id) == 3
        newest = ev.newest_event_id(conn)
        stream = ev.list_events_after(conn, 0, 100)
        replay = ev.list_operation_events(conn, op_id, 1)
    assert [r.seq for r in stream] == [1, 2, 3]  # operations' events only
    assert [r.seq for r in replay] == [2, 3]
    assert newest > stream[-1].event_id
    with transaction(engine) as conn:
        taken = ev.take_unfanned_events(conn, 2)
        ev.mark_events_fanned_out(conn, [r.event_id for r in taken])
    with transaction(engine) as conn:
        left = ev.take_unfanned_events(conn, 10)
        messages = ev.read_event_messages(conn, [r.event_id for r in left])
    assert [r.event_id for r in taken] == [stream[0].event_id, stream[1].event_id]
    assert len(left) == 2 and set(messages) == {r.event_id for r in left}


def test_batch_request_of_a_batch_event(engine: Engine) -> None:
    tenant, project = scope()
    batch_id = f"batch-{uuid.uuid4()}"
    with transaction(engine) as conn:
        conn.execute(
            batches.insert().values(
                batch_id=batch_id,
                tenant_id=tenant,
                project_id=project,
                batch_name="b",
                request={"batchCallbacks": {"onBatchStart": "https://x.example/"}},
                status="Running",
                created_at=utc_now(),
            )
        )
    add_event(
        engine, tenant, project, None, None, "batch.started", json.dumps({"batchId": batch_id})
    )
    add_event(engine, tenant, project, None, None, "batch.started", "{}")
    first, second = (r.event_id for r in _unfanned(engine))
    with engine.connect() as conn:
        assert ev.read_batch_request_of(conn, first) == {
            "batchCallbacks": {"onBatchStart": "https://x.example/"}
        }
        assert ev.read_batch_request_of(conn, second) is None


def _unfanned(engine: Engine) -> list[Any]:
    with transaction(engine) as conn:
        return ev.take_unfanned_events(conn, 100)


# -- deliveries ----------------------------------------------------------------------------------
def test_delivery_logs_in_scope_and_redelivery(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    hook = add_webhook(engine, tenant, project)
    add_event(engine, tenant, project, op_id, 1)
    event_id = event_ids(engine)[0]
    now = utc_now()
    first, second = add_deliveries(
        engine,
        [
            delivery_row(event_id, tenant, project, webhook_id=hook, operation_id=op_id),
            delivery_row(
                event_id,
                tenant,
                project,
                operation_id=op_id,
                kind="callback",
                callback="onProgress",
                status="Delivered",
                attempt_count=2,
                last_attempt_at=now,
                created_at=now + timedelta(seconds=1),
            ),
        ],
    )
    with engine.connect() as conn:
        found = dl.read_delivery(conn, tenant, project, first, webhook_id=hook)
        assert found is not None and found["message_id"].startswith("msg_")
        assert dl.read_delivery(conn, tenant, str(uuid.uuid4()), first) is None
        assert dl.read_delivery(conn, tenant, project, second, webhook_id=hook) is None
        by_op = dl.list_deliveries(conn, tenant, project, operation_id=op_id)
        by_hook = dl.list_deliveries(conn, tenant, project, webhook_id=hook)
        delivered = dl.list_deliveries(
            conn, tenant, project, operation_id=op_id, status="Delivered"
        )
        stats = dl.count_callback_deliveries(conn, [op_id])
    assert [r["delivery_id"] for r in by_op] == [second, first]
    assert [r["delivery_id"] for r in by_hook] == [first]
    assert [r["delivery_id"] for r in delivered] == [second]
    assert [tuple(r)[:4] for r in stats] == [(op_id, "onProgress", "Delivered", 1)]
    with transaction(engine) as conn:
        assert dl.redeliver_delivery(conn, second, utc_now())
    again = delivery(engine, second)
    assert again["status"] == "Pending" and again["retry_base"] == 2
    assert again["finished_at"] is None and again["next_attempt_at"] is not None


def test_close_open_deliveries(engine: Engine) -> None:
    tenant, project = scope()
    hook = add_webhook(engine, tenant, project)
    add_event(engine, tenant, project, None, None, "webhook.disabled")
    event_id = event_ids_all(engine)[0]
    open_one, done = add_deliveries(
        engine,
        [
            delivery_row(event_id, tenant, project, webhook_id=hook, lease_owner="d1"),
            delivery_row(event_id, tenant, project, webhook_id=hook, status="Delivered"),
        ],
    )
    with pytest.raises(ValueError), transaction(engine) as conn:
        dl.close_open_deliveries(conn, "Failed", "everything?")
    with transaction(engine) as conn:
        assert dl.close_open_deliveries(conn, "Failed", "gone", webhook_id=hook) == 1
    closed = delivery(engine, open_one)
    assert closed["status"] == "Failed" and closed["last_error"] == "gone"
    assert closed["next_attempt_at"] is None and closed["finished_at"] is not None
    assert closed["lease_owner"] == "d1"  # release_lease not asked for
    assert delivery(engine, done)["status"] == "Delivered"


def event_ids_all(engine: Engine) -> list[int]:
    return [r.event_id for r in _unfanned(engine)]


def test_leases_settle_and_release(engine: Engine) -> None:
    tenant, project = scope()
    add_event(engine, tenant, project, None, None, "webhook.disabled")
    event_id = event_ids_all(engine)[0]
    later = utc_now() + timedelta(hours=1)
    ids = add_deliveries(
        engine,
        [
            delivery_row(event_id, tenant, project, endpoint_key="a"),
            delivery_row(event_id, tenant, project, endpoint_key="b"),
            delivery_row(event_id, tenant, project, endpoint_key="c", next_attempt_at=later),
            delivery_row(event_id, tenant, project, endpoint_key="d", lease_owner="alive"),
            delivery_row(event_id, tenant, project, endpoint_key="e", lease_owner="dead"),
        ],
    )
    now = utc_now()
    with transaction(engine) as conn:
        live = dl.beat_deliverer(conn, "me", now, now - timedelta(seconds=10))
        dl.beat_deliverer(conn, "alive", now, now - timedelta(seconds=10))
        live = dl.beat_deliverer(conn, "me", now, now - timedelta(seconds=10))
        due = dl.list_due_deliveries(conn, now, live, ["b"], 10)
        dl.lease_deliveries(conn, [r["delivery_id"] for r in due], "me")
    assert live == {"me", "alive"}
    assert {r["endpoint_key"] for r in due} == {"a", "e"}  # b is full, c not due, d leased
    assert delivery(engine, ids[0])["lease_owner"] == "me"
    with transaction(engine) as conn:
        dl.settle_deliveries(
            conn,
            [
                {
                    "b_id": ids[0],
                    "status": "Delivered",
                    "attempt_count": 1,
                    "attempts": [{"attempt": 1}],
                    "next_attempt_at": None,
                    "last_attempt_at": now,
                    "last_error": None,
                    "finished_at": now,
                }
            ],
        )
        dl.settle_deliveries(conn, [])
        dl.release_leases(conn, "me")
        live = dl.beat_deliverer(conn, "alive", now, now - timedelta(seconds=10))
    settled = delivery(engine, ids[0])
    assert settled["status"] == "Delivered" and settled["lease_owner"] is None
    assert settled["attempts"] == [{"attempt": 1}]
    assert delivery(engine, ids[4])["lease_owner"] is None  # handed back
    assert live == {"alive"}


def test_progress_marks_upsert(engine: Engine) -> None:
    with transaction(engine) as conn:
        dl.set_progress_marks(conn, {("wh-1", "op-1"): 10.0, ("wh-2", "op-1"): 5.0})
        dl.set_progress_marks(conn, {("wh-1", "op-1"): 30.0})
    with engine.connect() as conn:
        assert dl.read_progress_marks(conn, ["op-1"]) == {
            ("wh-1", "op-1"): 30.0,
            ("wh-2", "op-1"): 5.0,
        }


def test_purge_keeps_open_deliveries_and_their_events(engine: Engine) -> None:
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project, status="Completed")
    old = utc_now() - timedelta(days=30)
    add_event(engine, tenant, project, op_id, 1, created_at=old)
    add_event(engine, tenant, project, op_id, 2, created_at=old)
    first, second = event_ids(engine)
    add_deliveries(
        engine,
        [
            delivery_row(first, tenant, project, status="Delivered", created_at=old),
            delivery_row(second, tenant, project, status="Retrying", created_at=old),
        ],
    )
    with transaction(engine) as conn:
        ev.mark_events_fanned_out(conn, [first, second])
        dl.set_progress_marks(conn, {("wh-1", op_id): 50.0})
    with transaction(engine) as conn:
        gone = dl.purge_outbox(conn, utc_now() - timedelta(days=7), ("Completed",))
    assert gone == 1
    assert event_ids(engine) == [second]
    with engine.connect() as conn:
        assert dl.read_progress_marks(conn, [op_id]) == {}


# -- projects ------------------------------------------------------------------------------------
def test_ensure_project_once(engine: Engine) -> None:
    tenant, project = scope()
    with transaction(engine) as conn:
        made = pj.ensure_project(conn, tenant, project)
        again = pj.ensure_project(conn, tenant, project)
        assert pj.update_project(conn, tenant, project, owner_emails=["a@example.com"])
        assert not pj.update_project(conn, tenant, str(uuid.uuid4()), owner_emails=[])
    assert made["signing_secret"] == again["signing_secret"]
    with engine.connect() as conn:
        rows = pj.read_projects(conn, [(tenant, project), (tenant, "none")])
        assert pj.read_projects(conn, []) == {}
    assert list(rows) == [(tenant, project)]
    assert rows[(tenant, project)]["owner_emails"] == ["a@example.com"]
    now = utc_now()
    project_row = {
        "signing_secret": "new",
        "previous_secret": "old",
        "previous_valid_until": now + timedelta(minutes=1),
    }
    assert pj.project_secrets(project_row, now) == ["new", "old"]
    assert pj.project_secrets(project_row, now + timedelta(minutes=2)) == ["new"]


# -- PostgreSQL concurrency ----------------------------------------------------------------------
def _together(engine: Engine, work: Any, n: int = 2, *, first: Any = None) -> list[Any]:
    """Run work(conn) in n transactions that are all open at once before any commits; with
    `first`, all run first(conn) before any runs work(conn) (which may then wait for another)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with transaction(engine) as conn:
                if first is not None:
                    first(conn)
                    barrier.wait(timeout=10)
                    results[i] = work(conn)
                else:
                    results[i] = work(conn)
                    barrier.wait(timeout=10)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def _postgres_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no two leases at once")


def test_concurrent_leases_are_disjoint(engine: Engine) -> None:
    _postgres_only(engine)
    tenant, project = scope()
    add_event(engine, tenant, project, None, None, "webhook.disabled")
    event_id = event_ids_all(engine)[0]
    add_deliveries(
        engine, [delivery_row(event_id, tenant, project, endpoint_key=f"e{i}") for i in range(6)]
    )

    def lease(conn: Any) -> set[str]:
        due = dl.list_due_deliveries(conn, utc_now(), set(), [], 3)
        return {r["delivery_id"] for r in due}

    a, b = _together(engine, lease)
    assert len(a) == 3 and len(b) == 3 and not a & b


def test_concurrent_fan_out_takes_disjoint_events(engine: Engine) -> None:
    _postgres_only(engine)
    tenant, project = scope()
    op_id = add_operation(engine, tenant, project)
    for seq in range(1, 5):
        add_event(engine, tenant, project, op_id, seq)
    a, b = _together(engine, lambda conn: {r.event_id for r in ev.take_unfanned_events(conn, 2)})
    assert len(a) == 2 and len(b) == 2 and not a & b


def test_concurrent_ensure_project_makes_one(engine: Engine) -> None:
    _postgres_only(engine)
    tenant, project = scope()
    seen: list[Any] = []

    def look(conn: Any) -> None:
        seen.append(pj.read_project(conn, tenant, project))

    a, b = _together(engine, lambda conn: pj.ensure_project(conn, tenant, project), first=look)
    assert seen == [None, None]  # both went on to make it; one insert waited for the other
    assert a["signing_secret"] == b["signing_secret"]


def test_a_lease_reads_the_backlog_in_order_without_sorting(engine: Engine) -> None:
    """Statistics taken while nearly every delivery was finished, then a flood of due ones (a
    service's store when a burst of events comes): each lease reads its rows in order from the
    due indexes (migration 0003) instead of sorting the whole backlog, and the rows are the
    first ones in lease order. The plan is the one the query ran with: PostgreSQL's auto_explain
    sends it to this connection as a notice; SQLite's is read with EXPLAIN QUERY PLAN."""
    tenant, project = scope()
    other = scope()
    add_event(engine, tenant, project, None, None, "webhook.disabled")
    event_id = event_ids_all(engine)[0]
    now = utc_now()
    add_deliveries(
        engine,
        [
            delivery_row(event_id, tenant, project, status="Delivered", next_attempt_at=None)
            for _ in range(2000)
        ],
    )
    if engine.dialect.name == "postgresql":
        with transaction(engine) as conn:
            conn.exec_driver_sql("ANALYZE deliveries")
    rows = [
        delivery_row(
            event_id + i % 7,
            *(other if i % 3 == 0 else (tenant, project)),
            endpoint_key=f"e{i % 50}",
            next_attempt_at=now - timedelta(seconds=i % 11),
        )
        for i in range(3000)
    ]
    add_deliveries(engine, rows)
    order = sorted(rows, key=lambda r: (r["next_attempt_at"], r["event_id"], r["delivery_id"]))
    mine = [r for r in order if (r["tenant_id"], r["project_id"]) == (tenant, project)]
    plans: list[str] = []
    with transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            raw = conn.connection.driver_connection

            def notice(diagnostic: Any) -> None:
                plans.append(diagnostic.message_primary or "")

            raw.add_notice_handler(notice)
            conn.exec_driver_sql("LOAD 'auto_explain'")
            conn.exec_driver_sql("SET LOCAL auto_explain.log_min_duration = 0")
            conn.exec_driver_sql("SET LOCAL auto_explain.log_level = notice")
        else:

            @event.listens_for(conn, "before_cursor_execute")
            def plan_of(c: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
                if sql.lstrip().startswith("SELECT deliveries.delivery_id"):
                    found = cursor.connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                    plans.append(" | ".join(str(r[3]) for r in found))

        due = dl.list_due_deliveries(conn, utc_now(), set(), [], 100)
        scoped = dl.list_due_deliveries(conn, utc_now(), set(), [], 100, (tenant, project))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL auto_explain.log_min_duration = -1")
            raw.remove_notice_handler(notice)
            assert conn.exec_driver_sql("SHOW enable_sort").scalar() == "on"  # for this one only
    assert [r["delivery_id"] for r in due] == [r["delivery_id"] for r in order[:100]]
    assert [r["delivery_id"] for r in scoped] == [r["delivery_id"] for r in mine[:100]]
    leases = [p for p in plans if "deliveries.delivery_id" in p or "SEARCH deliveries" in p]
    assert len(leases) == 2, plans
    assert "ix_deliveries_due" in leases[0] and "ix_deliveries_project_due" in leases[1], leases
    for plan in leases:
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
