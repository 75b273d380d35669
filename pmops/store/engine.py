"""Engines and transactions of the app store.

SQLAlchemy Core over SQLite (default; WAL, busy timeout, every transaction BEGIN IMMEDIATE so a
read-then-write never loses a race) or PostgreSQL (`postgresql+psycopg://`). The API, the flow
runs and the supervisor share it; each process opens its own engine. `make_engine` makes sure
the schema is the one this code needs (pmops.store.schema: Alembic revisions, docs/migrations.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import TextClause

from pmops.store.tables import _utc

WRITE_OPTION = "pmops_write"
# a WHERE condition: a SQLAlchemy expression or a SQL fragment (one_of)
Filter = ColumnElement[bool] | TextClause


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


def connect_engine(url: str) -> Engine:
    """An engine on the store as it is: no schema check (`pmops db check` and upgrade)."""
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
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_engine(url: str, *, upgrade: bool = False) -> Engine:
    """An engine on a store at the schema this pmops needs (pmops.store.schema): an empty
    database is created; one behind is upgraded when `upgrade`, else StoreNotCurrent."""
    from pmops.store.schema import ensure_current

    engine = connect_engine(url)
    try:
        ensure_current(engine, upgrade=upgrade)
    except BaseException:
        engine.dispose()
        raise
    return engine


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

    engine.dispose()  # connections opened before (the schema check) are replaced by new ones


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


def one_of(
    conn: Connection, column: ColumnElement[Any], values: Iterable[str] | Iterable[int]
) -> Filter:
    """`column IN values` as the connection's database takes it best: on PostgreSQL one JSON
    array parameter (= ANY(ARRAY(...)), in the column's type: an index scan of the keys), so
    the statement, prepared once, is the same whatever the number of values; elsewhere
    IN (...)."""
    found = list(values)
    if conn.dialect.name != "postgresql":
        return column.in_(found)
    table = getattr(column, "table", None)
    name = f"{table.name}.{column.name}" if table is not None else str(column.name)
    key = f"{column.name}_one_of"
    kind = column.type.compile(dialect=conn.dialect)
    return text(
        f"{name} = ANY(ARRAY(SELECT CAST(v AS {kind}) "
        f"FROM json_array_elements_text(CAST(:{key} AS json)) AS v))"
    ).bindparams(**{key: json.dumps(found)})


@lru_cache(maxsize=4096)
def shared_json(text: str) -> Any:
    """A JSON text that many rows hold alike (a webhook's retry policy on each of its
    deliveries, its headers), parsed once per text: the value is shared, read it only."""
    return json.loads(text)


def json_rows(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON parameter for PostgreSQL's json_to_recordset: datetimes in ISO 8601
    with their offset (a naive one is UTC, as UtcDateTime takes it). orjson: several times
    faster than json.dumps with a default for the datetimes (the fan-out encodes every
    delivery)."""
    return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()


def as_utc(value: datetime | None) -> datetime | None:
    return _utc(value)
