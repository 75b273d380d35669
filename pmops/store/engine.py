"""Engines and transactions of the app store.

SQLAlchemy Core over SQLite (default; WAL, busy timeout, every transaction BEGIN IMMEDIATE so a
read-then-write never loses a race) or PostgreSQL (`postgresql+psycopg://`). The API, the flow
runs and the supervisor share it; each process opens its own engine. `make_engine` creates the
schema (metadata.create_all), adds late columns and installs the counting triggers.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex

from pmops.store.tables import (
    _utc,
    ix_deliveries_project_due,
    ix_op_counts_status,
    ix_ops_active_runs,
    ix_ops_project_queue,
    metadata,
    tokens,
)

WRITE_OPTION = "pmops_write"

OBSOLETE_INDEXES = ("ix_operations_list", "ix_operations_status", "ix_operations_type")
# columns added after stores were first made; `create_all` makes missing tables, never columns
ADDED_COLUMNS = ((tokens, "expires_at"), (tokens, "max_priority"))
# nor indexes of tables that exist: these are made (IF NOT EXISTS) on stores made before them
ADDED_INDEXES = (
    ix_ops_project_queue,
    ix_ops_active_runs,
    ix_op_counts_status,
    ix_deliveries_project_due,
)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # let SQLAlchemy's begin event decide the transaction mode
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # writers take the lock up front (no lost read-then-write race); a reader runs each
        # statement in its own implicit transaction, as PostgreSQL's READ COMMITTED does
        if conn.get_execution_options().get(WRITE_OPTION, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # one pooled connection per request thread (anyio's pool has 40) plus the dispatcher:
        # an overflowing pool would open a connection and run its PRAGMAs per request
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=48,
            max_overflow=16,
        )
        _sqlite_pragmas(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for name in OBSOLETE_INDEXES:  # replaced by covering ones; only stores made before 0.1
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    add_missing_columns(engine)
    with transaction(engine) as conn:  # IF NOT EXISTS: processes starting together
        for index in ADDED_INDEXES:
            conn.execute(CreateIndex(index, if_not_exists=True))
    install_counters(engine)
    return engine


def add_missing_columns(engine: Engine) -> None:
    """ALTER TABLE ... ADD COLUMN for each of ADDED_COLUMNS a store made before lacks (all are
    nullable). Under the write lock (SQLite) or with IF NOT EXISTS (PostgreSQL), so processes
    starting together do not both add one."""
    with transaction(engine) as conn:
        for table, name in ADDED_COLUMNS:
            kind = table.c[name].type.compile(dialect=engine.dialect)
            if engine.dialect.name == "sqlite":
                present = {r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")}
                if name not in present:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
            else:
                conn.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {name} {kind}"
                )


_COUNT_KEY = "tenant_id, project_id, operation_type, priority, status"
_COUNT_MATCH = " AND ".join(f"{c} = OLD.{c}" for c in _COUNT_KEY.split(", "))
_COUNT_NEW = ", ".join(f"NEW.{c}" for c in _COUNT_KEY.split(", "))
_COUNT_UP = f"""INSERT INTO operation_counts ({_COUNT_KEY}, n) VALUES ({_COUNT_NEW}, 1)
        ON CONFLICT ({_COUNT_KEY}) DO UPDATE SET n = operation_counts.n + 1;"""
_COUNT_DOWN = f"UPDATE operation_counts SET n = n - 1 WHERE {_COUNT_MATCH};"
_COUNT_BACKFILL = f"""INSERT INTO operation_counts ({_COUNT_KEY}, n)
    SELECT {_COUNT_KEY}, count(*) FROM operations GROUP BY {_COUNT_KEY}"""

SQLITE_COUNTERS = (
    f"CREATE TRIGGER ops_count_insert AFTER INSERT ON operations BEGIN {_COUNT_UP} END",
    f"CREATE TRIGGER ops_count_delete AFTER DELETE ON operations BEGIN {_COUNT_DOWN} END",
    "CREATE TRIGGER ops_count_status AFTER UPDATE OF status ON operations "
    f"WHEN OLD.status IS NOT NEW.status BEGIN {_COUNT_DOWN} {_COUNT_UP} END",
)
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


def install_counters(engine: Engine) -> None:
    """Create the counting triggers once, and count what the store already holds, atomically:
    under the write lock (SQLite) or an advisory lock (PostgreSQL), so two processes starting
    together neither both install nor count twice."""
    with transaction(engine) as conn:
        if engine.dialect.name == "sqlite":
            present = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                "AND name = 'ops_count_status'"
            ).scalar_one()
            statements = SQLITE_COUNTERS
        else:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7210431)")
            present = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'ops_count_status'"
            ).scalar_one()
            statements = POSTGRES_COUNTERS
        if present:
            return
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("DELETE FROM operation_counts")
        conn.exec_driver_sql(_COUNT_BACKFILL)


@lru_cache
def engine_for(url: str) -> Engine:
    return make_engine(url)


def checkpoint_in_background(engine: Engine) -> None:
    """This process's connections leave WAL checkpoints to `checkpoint` (SQLite only).

    SQLite otherwise checkpoints in whichever commit fills the WAL past 1000 pages, and that
    request pays for copying and syncing them (the POST p99 under load). The API calls this at
    start and checkpoints from its dispatcher thread; other processes keep auto-checkpointing."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    engine.dispose()  # connections opened before (create_all) are replaced by new ones


def checkpoint(engine: Engine) -> None:
    """Copy committed WAL pages into the database without waiting for readers or writers."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


class _WriteQueue:
    """Writers of one SQLite store queue here: threads on a lock, processes on an flock of a file
    beside the database. Both wake the next writer the moment the lock is free, where SQLite's own
    busy handler polls in sleeps of up to 100 ms (the POST tail latency under load). The kernel
    drops the flock of a process that dies holding it."""

    def __init__(self, database: str) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._fd = os.open(f"{database}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


_queues: dict[int, _WriteQueue] = {}
_queues_lock = threading.Lock()


def _write_queue(engine: Engine) -> _WriteQueue | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    with _queues_lock:
        queue = _queues.get(id(engine))
        if queue is None:
            queue = _queues[id(engine)] = _WriteQueue(database)
    return queue


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite, after queueing in _WriteQueue)."""
    queue = _write_queue(engine)
    if queue is None:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            yield conn
        return
    with queue.held(), engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        yield conn


def ping(engine: Engine) -> None:
    """Raise unless the store answers a trivial query."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    return _utc(value)
