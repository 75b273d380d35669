"""PostgreSQL advisory locks: which API process leads the dispatcher, and the dispatch section.

Several API processes may share one PostgreSQL store. One of them dispatches: it holds the
session lock LEADER_KEY on a connection of its own (`LeaderSession`) for as long as it leads.
PostgreSQL ends the session of a process that died (its socket closes, or TCP keepalives find the
machine gone) and with it the lock, so another process takes it at its next try.

Dispatching itself runs under the transaction lock DISPATCH_KEY (`dispatch_section`), so even two
dispatchers (a leader that hung and was replaced, then woke up) cannot both read the free worker
slots and create runs for them at once.

SQLite stores are one machine's: there is no election (every caller leads, as before) and the
section is not locked (one dispatcher per store; SQLite's writers are serialised anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# pmops.store.engine.install_counters holds 7210431
LEADER_KEY = 7210432
DISPATCH_KEY = 7210433


def elects(engine: Engine) -> bool:
    """Whether processes on this store elect a leader (PostgreSQL) or each leads (SQLite)."""
    return engine.dialect.name == "postgresql"


class LeaderSession:
    """A dedicated connection that tries for, holds and gives up the leader lock.

    The session is made to end when its process cannot keep it: TCP keepalives (a machine that
    vanished is noticed in ~`dead_seconds`) and an idle-session timeout of `dead_seconds` (PG 14+),
    so a holder must `beat` more often than that; a process that froze (stopped, deadlocked)
    stops beating and PostgreSQL closes its session, releasing the lock."""

    def __init__(self, engine: Engine, dead_seconds: int = 8) -> None:
        self.engine = engine
        self.dead_seconds = dead_seconds
        self.conn: Connection | None = None

    def try_lead(self) -> bool:
        """Take the leader lock if it is free (True: this session holds it)."""
        if self.conn is None:
            self.conn = self.engine.connect()
            self._keep_alive(self.conn)
        got = self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_KEY})
        held = bool(got.scalar())
        self.conn.commit()  # never idle in a transaction: the lock is the session's
        return held

    def _keep_alive(self, conn: Connection) -> None:
        idle = max(1, self.dead_seconds // 3)
        for name, value in (
            ("tcp_keepalives_idle", idle),
            ("tcp_keepalives_interval", 1),
            ("tcp_keepalives_count", 3),
        ):
            conn.execute(text(f"SET {name} = {int(value)}"))
        version = int(conn.execute(text("SHOW server_version_num")).scalar() or 0)
        if version >= 140000:
            conn.execute(text(f"SET idle_session_timeout = {int(self.dead_seconds * 1000)}"))
        conn.commit()

    def beat(self) -> None:
        """Show the session is in use (raises when it is gone: the lock went with it)."""
        if self.conn is None:
            raise ConnectionError("no leader session")
        self.conn.execute(text("SELECT 1"))
        self.conn.commit()

    def close(self) -> None:
        """End the session: the lock, if held, is free at once."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.invalidate()  # a closed socket, not a pooled connection that keeps the lock
        finally:
            conn.close()


def leader_pid(engine: Engine) -> int | None:
    """The server process id of the session holding the leader lock, None if it is free.
    Advisory locks are per database: another database on the same server (another store, a
    test's) may hold the same key, so only this database's lock counts."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = 0 AND objid = :k AND objsubid = 1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"k": LEADER_KEY},
        ).scalar()
    return None if found is None else int(found)


@contextmanager
def dispatch_section(engine: Engine) -> Iterator[bool]:
    """Whether this caller may dispatch now: on PostgreSQL, True while it holds the transaction
    lock DISPATCH_KEY (taken if free; False: another dispatcher is in the section); on SQLite
    always True, with no lock taken."""
    if not elects(engine):
        yield True
        return
    with engine.connect() as conn, conn.begin():
        got = conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": DISPATCH_KEY})
        yield bool(got.scalar())
