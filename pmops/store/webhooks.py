"""Webhooks of a project: registration rows, their filters and their delivery statistics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from pmops.store.engine import json_rows, one_of, shared_json
from pmops.store.scoping import Scoped, in_scope, read_scoped
from pmops.store.tables import webhooks

DEFAULT_WEBHOOK_POLICY = {
    "maxRetries": 5,
    "retryDelay": 60.0,
    "backoffMultiplier": 2.0,
    "maxDelay": 3600.0,
}


def insert_webhook(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(webhooks.insert().values(**row))


def read_webhook(
    conn: Connection, tenant_id: str, project_id: str, webhook_id: str
) -> dict[str, Any] | None:
    return read_scoped(conn, webhooks, "webhook_id", webhook_id, Scoped(tenant_id, project_id))


def list_webhooks(
    conn: Connection, tenant_id: str, project_id: str, offset: int, limit: int
) -> list[dict[str, Any]]:
    """The project's webhooks, newest first."""
    rows = conn.execute(
        select(webhooks)
        .where(in_scope(webhooks, Scoped(tenant_id, project_id)))
        .order_by(webhooks.c.created_at.desc(), webhooks.c.webhook_id)
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def delete_webhook(conn: Connection, webhook_id: str) -> bool:
    return bool(conn.execute(delete(webhooks).where(webhooks.c.webhook_id == webhook_id)).rowcount)


def update_webhook(conn: Connection, webhook_id: str, **values: Any) -> bool:
    query = update(webhooks).where(webhooks.c.webhook_id == webhook_id).values(**values)
    return bool(conn.execute(query).rowcount)


# what deciding a webhook's deliveries needs (list_active_webhooks): which events it hears, where
# it goes and with what retry policy; not its statistics, last delivery or secret. The JSON ones
# as text, parsed once per distinct text (store.engine.shared_json): webhooks mostly hear the same
# events with the same filters and policy.
ROUTE_COLUMNS = (
    webhooks.c.webhook_id,
    webhooks.c.tenant_id,
    webhooks.c.project_id,
    webhooks.c.url,
    cast(webhooks.c.events, Text).label("events"),
    cast(webhooks.c.filters, Text).label("filters"),
    cast(webhooks.c.retry_policy, Text).label("retry_policy"),
)
_ROUTE_KEYS = tuple(c.name for c in ROUTE_COLUMNS)
_ROUTE_JSON = ("events", "filters", "retry_policy")


def list_active_webhooks(
    conn: Connection, scopes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The Active webhooks of each (tenant_id, project_id): their ROUTE_COLUMNS, the JSON ones
    shared by the webhooks that have them alike (read them only)."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for tenant_id, project_id in scopes:
        rows = conn.execute(
            select(*ROUTE_COLUMNS).where(
                in_scope(webhooks, Scoped(tenant_id, project_id)),
                webhooks.c.status == "Active",
            )
        )
        hooks = []
        for row in rows:
            hook = dict(zip(_ROUTE_KEYS, row, strict=True))
            for key in _ROUTE_JSON:
                hook[key] = shared_json(hook[key])
            hooks.append(hook)
        found[(tenant_id, project_id)] = hooks
    return found


def webhook_matches(hook: dict[str, Any], event_type: str, op: dict[str, Any]) -> bool:
    """Whether the webhook hears this event of an operation like `op` (its type and priority)."""
    if event_type not in hook["events"]:
        return False
    filters = hook["filters"] or {}
    types, priorities = filters.get("operationTypes"), filters.get("priorities")
    if types and op["operation_type"] not in types:
        return False
    return not (priorities and op["priority"] not in priorities)


def matching_webhooks(
    conn: Connection,
    tenant_id: str,
    project_id: str,
    op: dict[str, Any],
    event_types: Iterable[str],
) -> int:
    """Active webhooks of the scope that will hear one of `event_types` about an operation like
    `op`."""
    types = tuple(event_types)
    hooks = list_active_webhooks(conn, [(tenant_id, project_id)]).get((tenant_id, project_id), [])
    return sum(1 for h in hooks if any(webhook_matches(h, e, op) for e in types))


def read_webhooks(conn: Connection, webhook_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Webhooks by id (any scope): for the outbox, which works across tenants."""
    ids = list(webhook_ids)
    if not ids:
        return {}
    rows = conn.execute(select(webhooks).where(webhooks.c.webhook_id.in_(ids))).mappings()
    return {r["webhook_id"]: dict(r) for r in rows}


def read_webhook_signing(
    conn: Connection, webhook_ids: Iterable[str]
) -> dict[str, tuple[dict[str, str], str | None]]:
    """(headers, secret) of each webhook by id (any scope): what sending its deliveries needs.
    The headers are shared by the webhooks that have the same (store.engine.shared_json): read
    them only."""
    ids = list(webhook_ids)
    if not ids:
        return {}
    w = webhooks.c
    headers = cast(w.headers, Text)
    found = select(w.webhook_id, headers, w.secret).where(one_of(conn, w.webhook_id, ids))
    return {r[0]: (shared_json(r[1]) or {}, r[2]) for r in conn.execute(found)}


# PostgreSQL: the whole batch in one statement, its rows one JSON parameter (json_to_recordset)
_STATS_PG = text(
    """UPDATE webhooks AS w SET
    total_deliveries = w.total_deliveries + v.b_total,
    successful_deliveries = w.successful_deliveries + v.b_ok,
    failed_deliveries = w.failed_deliveries + v.b_failed,
    response_ms_total = w.response_ms_total + v.b_ms,
    responses = w.responses + v.b_answered,
    last_delivery = v.b_last,
    consecutive_failures = CASE WHEN v.b_reset THEN v.b_consecutive
        ELSE w.consecutive_failures + v.b_consecutive END,
    failing_since = CASE WHEN v.b_reset THEN v.b_since
        ELSE COALESCE(w.failing_since, v.b_since) END
    FROM json_to_recordset(CAST(:rows AS json)) AS v(b_id text, b_total integer,
        b_ok integer, b_failed integer, b_ms double precision, b_answered integer, b_last json,
        b_reset boolean, b_consecutive integer, b_since timestamptz)
    WHERE w.webhook_id = v.b_id"""
)


def add_webhook_stats(conn: Connection, changes: list[dict[str, Any]]) -> None:
    """Add each batch of attempts to its webhook's counters, in one statement, without reading
    the webhooks first: rows of b_id, b_total, b_ok, b_failed, b_ms, b_answered (sums to add),
    b_last (the last attempt), b_reset (one of them succeeded), b_consecutive and b_since (the
    failures after the last success, or all of them, and when the first of those was: the
    webhook's run of failures restarts from these when b_reset, else goes on with them). The
    webhooks are updated in webhook_id order (two deliverers settling at once lock them in the
    same order). A webhook deleted meanwhile is not there: nothing to count."""
    if not changes:  # an empty executemany is an error
        return
    changes = sorted(changes, key=lambda c: str(c["b_id"]))
    if conn.dialect.name == "postgresql":
        conn.execute(_STATS_PG, {"rows": json_rows(changes)})
        return
    w = webhooks.c
    since = bindparam("b_since", type_=w.failing_since.type)
    reset = bindparam("b_reset", type_=Boolean())
    conn.execute(
        update(webhooks)
        .where(w.webhook_id == bindparam("b_id"))
        .values(
            total_deliveries=w.total_deliveries + bindparam("b_total"),
            successful_deliveries=w.successful_deliveries + bindparam("b_ok"),
            failed_deliveries=w.failed_deliveries + bindparam("b_failed"),
            response_ms_total=w.response_ms_total + bindparam("b_ms"),
            responses=w.responses + bindparam("b_answered"),
            last_delivery=bindparam("b_last", type_=w.last_delivery.type),
            consecutive_failures=case(
                (reset, bindparam("b_consecutive", type_=Integer())),
                else_=w.consecutive_failures + bindparam("b_consecutive", type_=Integer()),
            ),
            failing_since=case((reset, since), else_=func.coalesce(w.failing_since, since)),
        ),
        changes,
    )


def count_webhooks(conn: Connection, tenant_id: str, project_id: str) -> int:
    """The project's registered webhooks (Active or Disabled). Called in the transaction that
    registers one more, it holds the project's registrations until commit (SQLite's write lock;
    on PostgreSQL an advisory lock per project), so two cannot both pass the limit."""
    if conn.dialect.name == "postgresql":
        key = func.hashtext(f"pmops-webhooks:{tenant_id}:{project_id}")
        conn.execute(select(func.pg_advisory_xact_lock(key)))
    count = select(func.count()).where(in_scope(webhooks, Scoped(tenant_id, project_id)))
    return int(conn.execute(count).scalar_one())
