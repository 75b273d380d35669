"""The app store's tables: tenants' tokens, datasets, operations, events, deliveries ...

Engines and transactions are in pmops.store.engine; the queries, one verb_noun function each, in
the resource modules beside this one (operations, datasets, webhooks, deliveries ...).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        value = _utc(value)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _utc(value)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36)),
    Column("principal", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime()),  # None: the token does not expire
    # the highest priority the token may ask for (Low .. Critical); None (tokens made before
    # it existed): High
    Column("max_priority", String(10)),
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("file_name", String(500), nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("format", String(20), nullable=False),
    Column("summary", JSON, nullable=False),
    Column("source_operation_id", String(60)),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_datasets_scope", "tenant_id", "project_id", "created_at"),
)

operations = Table(
    "operations",
    metadata,
    Column("operation_id", String(60), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("operation_type", String(40), nullable=False),
    Column("operation_name", String(500), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("priority_rank", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("request", JSON, nullable=False),
    Column("dataset_id", String(36)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("timeout_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("estimated_seconds", Float),
    Column("flow_run_id", String(36)),
    Column("execution_id", String(60)),
    Column("worker_node", String(200)),
    Column("pid", Integer),
    Column("heartbeat_at", UtcDateTime()),
    Column("progress", JSON),  # phases, percentage, records, usage: written by the reporter
    Column("percentage", Float, nullable=False, default=0.0),
    Column("current_phase", String(100)),
    Column("processed_records", Integer, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("cancel_request", JSON),
    Column("cancellation", JSON),
    Column("error", JSON),
    Column("results", JSON),
    Column("result_dir", Text),
    # The list's indexes: one per filter, each ordered like a page (created_at, operation_id) and
    # ending in status, so a page's ids and the summary's counts come from the index alone.
    Index("ix_ops_scope", "tenant_id", "project_id", "created_at", "operation_id", "status"),
    Index("ix_ops_status", "tenant_id", "project_id", "status", "created_at", "operation_id"),
    Index(
        "ix_ops_type",
        "tenant_id",
        "project_id",
        "operation_type",
        "created_at",
        "operation_id",
        "status",
    ),
    Index(
        "ix_ops_priority",
        "tenant_id",
        "project_id",
        "priority",
        "created_at",
        "operation_id",
        "status",
    ),
    Index("ix_operations_queue", "status", "priority_rank", "created_at"),
)
# Fair dispatch (pmops/service/fair.py): a project's queue head, highest priority then oldest,
# read from the index in order; and the runs holding worker slots, per project, from the index
# alone (status IN (Initiated, Running) AND flow_run_id IS NOT NULL is a short range).
ix_ops_project_queue = Index(
    "ix_ops_project_queue",
    operations.c.tenant_id,
    operations.c.project_id,
    operations.c.status,
    operations.c.priority_rank.desc(),
    operations.c.created_at,
)
ix_ops_active_runs = Index(
    "ix_ops_active_runs",
    operations.c.status,
    operations.c.flow_run_id,
    operations.c.tenant_id,
    operations.c.project_id,
)

# one row per completed run: what start-time estimates are computed from (api/estimates.py)
throughput = Table(
    "run_throughput",
    metadata,
    Column("operation_id", String(60), primary_key=True),
    Column("operation_type", String(40), nullable=False),
    Column("events", Integer, nullable=False),
    Column("phase_seconds", Float, nullable=False),
    Column("startup_seconds", Float, nullable=False),
    Column("ended_at", UtcDateTime(), nullable=False),
    Index("ix_run_throughput_type", "operation_type", "ended_at"),
)

# How many operations each scope has per type, priority and status, kept by triggers on
# `operations` (made by a migration: migrations/versions/0001_baseline.py): the list's summary
# reads a few of these rows instead of counting every operation.
operation_counts = Table(
    "operation_counts",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("project_id", String(36), primary_key=True),
    Column("operation_type", String(40), primary_key=True),
    Column("priority", String(10), primary_key=True),
    Column("status", String(20), primary_key=True),
    Column("n", Integer, nullable=False),
)

# the projects with Initiated work (fair dispatch) without scanning every scope's counters
ix_op_counts_status = Index(
    "ix_op_counts_status",
    operation_counts.c.status,
    operation_counts.c.tenant_id,
    operation_counts.c.project_id,
    operation_counts.c.n,
)

idempotency = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("scope", String(60), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)


# POST /async/batch: operations with dependencies, coordinated by
# pmops.service.batch_progress.advance (from the
# batch's parent flow run, and from the API's dispatcher should that run be gone)
batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(60), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("batch_name", String(500), nullable=False),
    Column("request", JSON, nullable=False),
    # Initiated | Running | Completed | Failed | Cancelled
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("flow_run_id", String(36)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Index("ix_batches_scope", "tenant_id", "project_id", "created_at"),
    Index("ix_batches_status", "status"),
)

batch_members = Table(
    "batch_members",
    metadata,
    Column("operation_id", String(60), primary_key=True),
    Column("batch_id", String(60), nullable=False),
    Column("operation_key", String(100), nullable=False),
    Column("position", Integer, nullable=False),
    Column("dependencies", JSON, nullable=False),
    Column("announced", Boolean, nullable=False, default=False),  # batch.operation.completed sent
    Index("ix_batch_members_batch", "batch_id", "position"),
)

# A batch asked for by a flow (the monthly pipeline): the API's dispatcher validates and creates
# it like POST /async/batch, with the asking flow run as the batch's parent.
batch_submissions = Table(
    "batch_submissions",
    metadata,
    Column("submission_id", String(60), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("body", JSON, nullable=False),
    Column("parent_flow_run_id", String(36)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("batch_id", String(60)),
    Column("error", JSON),
    Index("ix_batch_submissions_open", "batch_id", "created_at"),
)

# A retry and what it retries: the original stays as it was and lists its retries from here.
retries = Table(
    "retries",
    metadata,
    Column("operation_id", String(60), primary_key=True),  # the retry
    Column("original_id", String(60), nullable=False),  # the operation it retries
    Column("lineage", String(60), nullable=False),  # the first operation of the chain
    Column("retry_number", Integer, nullable=False),  # 1 for a retry of the first, ...
    Column("retry_mode", String(10), nullable=False),  # resume | restart
    Column("preserved_phases", JSON, nullable=False),  # what a resume may restore
    Column("reason", Text),
    Column("automatic", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_retries_original", "original_id"),
)

# Failed operations whose start request asked for automatic retries: when the next is due.
# Written with the failure (pmops.service.events.emit), taken by the API's dispatcher.
retry_schedule = Table(
    "retry_schedule",
    metadata,
    Column("operation_id", String(60), primary_key=True),
    Column("due_at", UtcDateTime(), nullable=False),
    Index("ix_retry_schedule_due", "due_at"),
)

# -- events and their deliveries (pmops/events.py, pmops/deliverer.py) -------------------------
# The outbox: one row per status change, written in the transaction that made the change. `body`
# is the JSON sent to every receiver; `fanned_out` turns true once deliveries are made for it.
events = Table(
    "events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(40), nullable=False, unique=True),  # the `id` and webhook-id
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("operation_id", String(60)),  # None for project events (webhook.disabled)
    Column("seq", Integer),  # per operation, from 1
    Column("event_type", String(60), nullable=False),
    Column("percentage", Float),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("fanned_out", Boolean, nullable=False, default=False),
    Index("ix_events_operation", "operation_id", "seq", unique=True),
    Index(
        "ix_events_unfanned",
        "event_id",
        sqlite_where=Column("fanned_out") == False,  # noqa: E712
        postgresql_where=Column("fanned_out") == False,  # noqa: E712
    ),
    Index("ix_events_created", "created_at"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("webhook_id", String(60), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("url", Text, nullable=False),
    Column("name", String(500), nullable=False),
    Column("events", JSON, nullable=False),
    Column("filters", JSON, nullable=False),
    Column("secret", Text),  # None: deliveries are signed with the project's signing secret
    Column("retry_policy", JSON, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # Active | Disabled
    Column("disabled_reason", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("total_deliveries", Integer, nullable=False, default=0),
    Column("successful_deliveries", Integer, nullable=False, default=0),
    Column("failed_deliveries", Integer, nullable=False, default=0),
    Column("response_ms_total", Float, nullable=False, default=0.0),
    Column("responses", Integer, nullable=False, default=0),
    Column("last_delivery", JSON),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("failing_since", UtcDateTime()),
    Index("ix_webhooks_scope", "tenant_id", "project_id", "created_at"),
)

# One row per (event, receiver): a webhook, an operation's callback URL, an email or a Slack post.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(60), primary_key=True),
    Column("event_id", Integer, nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("operation_id", String(60)),
    Column("event_type", String(60), nullable=False),
    Column("kind", String(20), nullable=False),  # webhook | callback | email | slack
    Column("webhook_id", String(60)),
    Column("callback", String(20)),  # onProgress | onCompletion | onError
    Column("target", Text, nullable=False),  # URL, or comma-separated addresses
    Column("endpoint_key", String(200), nullable=False),  # what concurrency is limited per
    Column("policy", JSON, nullable=False),
    # Pending (not tried yet) | Retrying | Delivered | Failed (dead letter) | Cancelled
    Column("status", String(20), nullable=False),
    Column("attempt_count", Integer, nullable=False, default=0),
    Column("attempts", JSON, nullable=False),
    Column("retry_base", Integer, nullable=False, default=0),  # attempts before a redelivery
    Column("next_attempt_at", UtcDateTime()),
    Column("last_attempt_at", UtcDateTime()),
    Column("lease_owner", String(60)),
    Column("last_error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Index("ix_deliveries_webhook", "webhook_id", "created_at"),
    Index("ix_deliveries_operation", "operation_id", "kind", "event_type", "status"),
    Index("ix_deliveries_event", "event_id"),
)
# The due deliveries in the order they are leased (store.list_due_deliveries: next_attempt_at,
# then event order), so a lease reads its first rows in order and never sorts the backlog
# (migration 0003). Partial: open deliveries only (finished ones have no next attempt), so both
# stay the size of the backlog, not of the month of finished deliveries kept.
ix_deliveries_due = Index(
    "ix_deliveries_due",
    deliveries.c.next_attempt_at,
    deliveries.c.event_id,
    deliveries.c.delivery_id,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
)
# Fair delivery (pmops/delivery/outbox.py): one project's due deliveries in lease order, read
# from the index in order however many other projects have due before them; the projects with
# due deliveries are found by a skip scan of its first two columns (store.list_due_projects).
ix_deliveries_project_due = Index(
    "ix_deliveries_project_due",
    deliveries.c.tenant_id,
    deliveries.c.project_id,
    deliveries.c.next_attempt_at,
    deliveries.c.event_id,
    deliveries.c.delivery_id,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
)

# per receiver and operation, the percentage of the last progress event sent
# (a webhook's filters.minProgressIncrement)
progress_marks = Table(
    "progress_marks",
    metadata,
    Column("endpoint_key", String(200), primary_key=True),
    Column("operation_id", String(60), primary_key=True),
    Column("percentage", Float, nullable=False),
)

# per project: the secret that signs callbacks (and webhooks registered without one), the Slack
# incoming webhook, and who owns it (told when a webhook gets disabled)
projects = Table(
    "projects",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("project_id", String(36), primary_key=True),
    Column("signing_secret", Text, nullable=False),
    Column("secret_created_at", UtcDateTime(), nullable=False),
    Column("secret_revealed", Boolean, nullable=False, default=False),
    Column("previous_secret", Text),
    Column("previous_valid_until", UtcDateTime()),
    Column("slack_webhook_url", Text),
    Column("owner_emails", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# operations whose flow run the dispatcher started ahead of a worker slot (PMOPS_STANDBY_RUNS):
# the run's process starts, then waits for the dispatcher to grant it a slot (the row deleted)
# before it claims its operation; while it waits it beats here (pmops.store.standby)
standby_runs = Table(
    "standby_runs",
    metadata,
    Column("operation_id", String(60), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("project_id", String(36), nullable=False),
    Column("since", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime()),
)

# deliverer processes alive: a lease held by one whose heartbeat is stale is free again
deliverers = Table(
    "deliverers",
    metadata,
    Column("owner", String(60), primary_key=True),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
)


# moved to pmops.store.engine / pmops.store.tokens; importing them from here still works
_MOVED = {
    "WRITE_OPTION": "engine",
    "make_engine": "engine",
    "engine_for": "engine",
    "checkpoint_in_background": "engine",
    "checkpoint": "engine",
    "transaction": "engine",
    "utc_now": "engine",
    "as_utc": "engine",
    "hash_token": "tokens",
    "create_token": "tokens",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"pmops.store.{module}"), name)


# Secrets of this installation, made once at random on first use and kept here (never sent):
# "download-links" signs artifact and results download URLs (pmops.service.results). Deleting
# a row (then restarting the API, which caches it) makes a new secret: every link signed with the
# old one is refused.
installation_secrets = Table(
    "installation_secrets",
    metadata,
    Column("name", String(60), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
