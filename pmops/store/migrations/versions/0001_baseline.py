"""Baseline: the store's schema as pmops 0.1 made it without migrations.

Revision 0001 (no parent). On an empty database it creates the whole schema. On a store made
before migrations existed (tables but no alembic_version: made by `make_engine`'s create_all and
its hand-kept lists, from the first commit f1a95f8 on) it brings that store to exactly this
schema: missing tables, columns and indexes are made, an index whose columns differ is remade,
the indexes the covering ones replaced are dropped, and the counting triggers are (re)installed
with operation_counts recounted from the operations. Both run in the caller's transaction, under
its lock (pmops.store.schema).

The tables are a frozen copy (never import pmops.store.tables here: the models move on, this
revision must not). UtcDateTime is a DateTime(timezone=True) in the database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

baseline = sa.MetaData()
_TS = sa.DateTime(timezone=True)

tokens = sa.Table(
    "tokens",
    baseline,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36)),
    sa.Column("principal", sa.String(200), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS),
    sa.Column("max_priority", sa.String(10)),
)

datasets = sa.Table(
    "datasets",
    baseline,
    sa.Column("dataset_id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("file_name", sa.String(500), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("source_operation_id", sa.String(60)),
    sa.Column("created_at", _TS, nullable=False),
    sa.Index("ix_datasets_scope", "tenant_id", "project_id", "created_at"),
)

operations = sa.Table(
    "operations",
    baseline,
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("operation_type", sa.String(40), nullable=False),
    sa.Column("operation_name", sa.String(500), nullable=False),
    sa.Column("priority", sa.String(10), nullable=False),
    sa.Column("priority_rank", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("dataset_id", sa.String(36)),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("timeout_at", _TS, nullable=False),
    sa.Column("started_at", _TS),
    sa.Column("ended_at", _TS),
    sa.Column("estimated_seconds", sa.Float),
    sa.Column("flow_run_id", sa.String(36)),
    sa.Column("execution_id", sa.String(60)),
    sa.Column("worker_node", sa.String(200)),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat_at", _TS),
    sa.Column("progress", sa.JSON),
    sa.Column("percentage", sa.Float, nullable=False),
    sa.Column("current_phase", sa.String(100)),
    sa.Column("processed_records", sa.Integer, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("cancel_request", sa.JSON),
    sa.Column("cancellation", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("results", sa.JSON),
    sa.Column("result_dir", sa.Text),
    sa.Index("ix_ops_scope", "tenant_id", "project_id", "created_at", "operation_id", "status"),
    sa.Index("ix_ops_status", "tenant_id", "project_id", "status", "created_at", "operation_id"),
    sa.Index(
        "ix_ops_type",
        "tenant_id",
        "project_id",
        "operation_type",
        "created_at",
        "operation_id",
        "status",
    ),
    sa.Index(
        "ix_ops_priority",
        "tenant_id",
        "project_id",
        "priority",
        "created_at",
        "operation_id",
        "status",
    ),
    sa.Index("ix_operations_queue", "status", "priority_rank", "created_at"),
)
ix_ops_project_queue = sa.Index(
    "ix_ops_project_queue",
    operations.c.tenant_id,
    operations.c.project_id,
    operations.c.status,
    operations.c.priority_rank.desc(),
    operations.c.created_at,
)
ix_ops_active_runs = sa.Index(
    "ix_ops_active_runs",
    operations.c.status,
    operations.c.flow_run_id,
    operations.c.tenant_id,
    operations.c.project_id,
)

throughput = sa.Table(
    "run_throughput",
    baseline,
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("operation_type", sa.String(40), nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("phase_seconds", sa.Float, nullable=False),
    sa.Column("startup_seconds", sa.Float, nullable=False),
    sa.Column("ended_at", _TS, nullable=False),
    sa.Index("ix_run_throughput_type", "operation_type", "ended_at"),
)

operation_counts = sa.Table(
    "operation_counts",
    baseline,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(36), primary_key=True),
    sa.Column("operation_type", sa.String(40), primary_key=True),
    sa.Column("priority", sa.String(10), primary_key=True),
    sa.Column("status", sa.String(20), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)

ix_op_counts_status = sa.Index(
    "ix_op_counts_status",
    operation_counts.c.status,
    operation_counts.c.tenant_id,
    operation_counts.c.project_id,
    operation_counts.c.n,
)

idempotency = sa.Table(
    "idempotency_keys",
    baseline,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("scope", sa.String(60), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.JSON, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)

batches = sa.Table(
    "batches",
    baseline,
    sa.Column("batch_id", sa.String(60), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("batch_name", sa.String(500), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("started_at", _TS),
    sa.Column("ended_at", _TS),
    sa.Column("flow_run_id", sa.String(36)),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Index("ix_batches_scope", "tenant_id", "project_id", "created_at"),
    sa.Index("ix_batches_status", "status"),
)

batch_members = sa.Table(
    "batch_members",
    baseline,
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("batch_id", sa.String(60), nullable=False),
    sa.Column("operation_key", sa.String(100), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("dependencies", sa.JSON, nullable=False),
    sa.Column("announced", sa.Boolean, nullable=False),
    sa.Index("ix_batch_members_batch", "batch_id", "position"),
)

batch_submissions = sa.Table(
    "batch_submissions",
    baseline,
    sa.Column("submission_id", sa.String(60), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("parent_flow_run_id", sa.String(36)),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("batch_id", sa.String(60)),
    sa.Column("error", sa.JSON),
    sa.Index("ix_batch_submissions_open", "batch_id", "created_at"),
)

retries = sa.Table(
    "retries",
    baseline,
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("original_id", sa.String(60), nullable=False),
    sa.Column("lineage", sa.String(60), nullable=False),
    sa.Column("retry_number", sa.Integer, nullable=False),
    sa.Column("retry_mode", sa.String(10), nullable=False),
    sa.Column("preserved_phases", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("automatic", sa.Boolean, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Index("ix_retries_original", "original_id"),
)

retry_schedule = sa.Table(
    "retry_schedule",
    baseline,
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("due_at", _TS, nullable=False),
    sa.Index("ix_retry_schedule_due", "due_at"),
)

events = sa.Table(
    "events",
    baseline,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("operation_id", sa.String(60)),
    sa.Column("seq", sa.Integer),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("percentage", sa.Float),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("fanned_out", sa.Boolean, nullable=False),
    sa.Index("ix_events_operation", "operation_id", "seq", unique=True),
    sa.Index(
        "ix_events_unfanned",
        "event_id",
        sqlite_where=sa.Column("fanned_out") == False,  # noqa: E712
        postgresql_where=sa.Column("fanned_out") == False,  # noqa: E712
    ),
    sa.Index("ix_events_created", "created_at"),
)

webhooks = sa.Table(
    "webhooks",
    baseline,
    sa.Column("webhook_id", sa.String(60), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("filters", sa.JSON, nullable=False),
    sa.Column("secret", sa.Text),
    sa.Column("retry_policy", sa.JSON, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("total_deliveries", sa.Integer, nullable=False),
    sa.Column("successful_deliveries", sa.Integer, nullable=False),
    sa.Column("failed_deliveries", sa.Integer, nullable=False),
    sa.Column("response_ms_total", sa.Float, nullable=False),
    sa.Column("responses", sa.Integer, nullable=False),
    sa.Column("last_delivery", sa.JSON),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("failing_since", _TS),
    sa.Index("ix_webhooks_scope", "tenant_id", "project_id", "created_at"),
)

deliveries = sa.Table(
    "deliveries",
    baseline,
    sa.Column("delivery_id", sa.String(60), primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("operation_id", sa.String(60)),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("webhook_id", sa.String(60)),
    sa.Column("callback", sa.String(20)),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("endpoint_key", sa.String(200), nullable=False),
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False),
    sa.Column("attempts", sa.JSON, nullable=False),
    sa.Column("retry_base", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", _TS),
    sa.Column("last_attempt_at", _TS),
    sa.Column("lease_owner", sa.String(60)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("finished_at", _TS),
    sa.Index("ix_deliveries_due", "next_attempt_at"),
    sa.Index("ix_deliveries_webhook", "webhook_id", "created_at"),
    sa.Index("ix_deliveries_operation", "operation_id", "kind", "event_type", "status"),
    sa.Index("ix_deliveries_event", "event_id"),
)
ix_deliveries_project_due = sa.Index(
    "ix_deliveries_project_due",
    deliveries.c.tenant_id,
    deliveries.c.project_id,
    deliveries.c.next_attempt_at,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
)

progress_marks = sa.Table(
    "progress_marks",
    baseline,
    sa.Column("endpoint_key", sa.String(200), primary_key=True),
    sa.Column("operation_id", sa.String(60), primary_key=True),
    sa.Column("percentage", sa.Float, nullable=False),
)

projects = sa.Table(
    "projects",
    baseline,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(36), primary_key=True),
    sa.Column("signing_secret", sa.Text, nullable=False),
    sa.Column("secret_created_at", _TS, nullable=False),
    sa.Column("secret_revealed", sa.Boolean, nullable=False),
    sa.Column("previous_secret", sa.Text),
    sa.Column("previous_valid_until", _TS),
    sa.Column("slack_webhook_url", sa.Text),
    sa.Column("owner_emails", sa.JSON, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

deliverers = sa.Table(
    "deliverers",
    baseline,
    sa.Column("owner", sa.String(60), primary_key=True),
    sa.Column("heartbeat_at", _TS, nullable=False),
)

installation_secrets = sa.Table(
    "installation_secrets",
    baseline,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)
# replaced by the covering ix_ops_* indexes; only stores made before 0.1 have them
OBSOLETE_INDEXES = ("ix_operations_list", "ix_operations_status", "ix_operations_type")

# -- the counters of operation_counts, kept by triggers on operations --------------------------
_COUNT_KEY = "tenant_id, project_id, operation_type, priority, status"
_COUNT_MATCH = " AND ".join(f"{c} = OLD.{c}" for c in _COUNT_KEY.split(", "))
_COUNT_NEW = ", ".join(f"NEW.{c}" for c in _COUNT_KEY.split(", "))
_COUNT_UP = f"""INSERT INTO operation_counts ({_COUNT_KEY}, n) VALUES ({_COUNT_NEW}, 1)
        ON CONFLICT ({_COUNT_KEY}) DO UPDATE SET n = operation_counts.n + 1;"""
_COUNT_DOWN = f"UPDATE operation_counts SET n = n - 1 WHERE {_COUNT_MATCH};"
_COUNT_BACKFILL = f"""INSERT INTO operation_counts ({_COUNT_KEY}, n)
    SELECT {_COUNT_KEY}, count(*) FROM operations GROUP BY {_COUNT_KEY}"""

SQLITE_TRIGGERS = ("ops_count_insert", "ops_count_delete", "ops_count_status")
SQLITE_COUNTERS = (
    f"CREATE TRIGGER ops_count_insert AFTER INSERT ON operations BEGIN {_COUNT_UP} END",
    f"CREATE TRIGGER ops_count_delete AFTER DELETE ON operations BEGIN {_COUNT_DOWN} END",
    "CREATE TRIGGER ops_count_status AFTER UPDATE OF status ON operations "
    f"WHEN OLD.status IS NOT NEW.status BEGIN {_COUNT_DOWN} {_COUNT_UP} END",
)
POSTGRES_TRIGGERS = ("ops_count_insert_delete", "ops_count_status")
POSTGRES_COUNTERS = (
    f"""CREATE OR REPLACE FUNCTION pmops_count_operations() RETURNS trigger AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN {_COUNT_DOWN} END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN {_COUNT_UP} END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER ops_count_insert_delete AFTER INSERT OR DELETE ON operations "
    "FOR EACH ROW EXECUTE FUNCTION pmops_count_operations()",
    "CREATE TRIGGER ops_count_status AFTER UPDATE OF status ON operations FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION pmops_count_operations()",
)


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in baseline.sorted_tables:
        if table.name not in present:
            table.create(bind)  # with its indexes
    inspector = sa.inspect(bind)  # a new one: the old one caches what it read
    for name in OBSOLETE_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    for table in baseline.sorted_tables:
        if table.name in present:
            _add_missing_columns(inspector, table)
            _repair_indexes(inspector, table)
    _install_counters(bind.dialect.name)


def _add_missing_columns(inspector: sa.Inspector, table: sa.Table) -> None:
    """Columns added after a store was made (tokens.expires_at, tokens.max_priority): create_all
    never added them. All are nullable, as ALTER TABLE ... ADD COLUMN on SQLite requires."""
    have = {c["name"] for c in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name not in have:
            if not column.nullable:
                raise RuntimeError(f"cannot add NOT NULL column {table.name}.{column.name}")
            op.add_column(table.name, sa.Column(column.name, column.type))


def _repair_indexes(inspector: sa.Inspector, table: sa.Table) -> None:
    """Indexes added to a table after a store was made (create_all makes a table's indexes only
    with the table): made; one of the same name over other columns: remade."""
    have = {ix["name"]: ix for ix in inspector.get_indexes(table.name)}
    for index in table.indexes:
        assert index.name is not None
        found = have.get(index.name)
        wanted = [c.name for c in index.columns]
        if found is not None and (
            list(found["column_names"]) != wanted or bool(found["unique"]) != index.unique
        ):
            op.drop_index(index.name, table_name=table.name)
            found = None
        if found is None:
            index.create(op.get_bind())


def _install_counters(dialect: str) -> None:
    """(Re)install the counting triggers and count what the store holds, in this transaction:
    from now on every insert, delete and status change of an operation keeps the counts."""
    if dialect == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        statements = SQLITE_COUNTERS
    else:
        for name in POSTGRES_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON operations")
        statements = POSTGRES_COUNTERS
    for statement in statements:
        op.execute(statement)
    op.execute("DELETE FROM operation_counts")
    op.execute(_COUNT_BACKFILL)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name in POSTGRES_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON operations")
        op.execute("DROP FUNCTION IF EXISTS pmops_count_operations()")
    baseline.drop_all(bind)
