"""The store's schema version: Alembic revisions in pmops/store/migrations/versions/.

`ensure_current` is what every engine of the app passes through (make_engine): a store at HEAD
costs one query and no Alembic import; an empty database is created at HEAD; a store behind
HEAD (or made before migrations existed, or by a newer release) is refused with what to run,
unless the caller upgrades (`pmops up`, `pmops db upgrade`). Creating and upgrading run in one
transaction under a lock (SQLite: the write queue's flock and BEGIN IMMEDIATE; PostgreSQL:
pg_advisory_xact_lock), so processes starting together upgrade once and the others then find
HEAD. docs/migrations.md has the why and how to add a revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from pmops.store.engine import connect_engine, transaction
from pmops.store.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config

# the newest revision (tests/store/test_migrations.py checks it is the scripts' head)
HEAD = "0004"
MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 7210432  # pg_advisory_xact_lock: one migrating process per PostgreSQL database
_TRIGGERS = {
    "sqlite": ("ops_count_insert", "ops_count_delete", "ops_count_status"),
    "postgresql": ("ops_count_insert_delete", "ops_count_status"),
}


class StoreNotCurrent(RuntimeError):
    """The store's schema is not the one this pmops needs; the message says what to run."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made here (no alembic.ini): scripts from the installed package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def revision(conn: Connection) -> str | None:
    """The store's revision; None when it has no alembic_version (empty, or made before)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return ",".join(sorted(rows)) or None


def _has_tables(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return any(table.name in names for table in metadata.sorted_tables)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        yield conn


def ensure_current(engine: Engine, *, upgrade: bool = False) -> tuple[str | None, str]:
    """Make sure the store is at HEAD: (revision before, revision after).

    At HEAD: nothing. Empty database: created. Behind (or pre-migration): upgraded when
    `upgrade`, else StoreNotCurrent. Unknown revision (a newer release's): StoreNotCurrent."""
    with engine.connect() as conn:
        before = revision(conn)
    if before == HEAD:
        return before, HEAD
    with _locked(engine) as conn:
        before = revision(conn)  # another process may have upgraded while we waited
        if before == HEAD:
            return before, HEAD
        if not upgrade and (before is not None or _has_tables(conn)):
            raise StoreNotCurrent(_not_current(engine, before))
        if before is not None and not _known(before):
            raise StoreNotCurrent(_not_current(engine, before))
        _upgrade(conn)
    return before, HEAD


def upgrade_store(url: str) -> tuple[str | None, str]:
    """Bring the store at `url` to HEAD (`pmops db upgrade`, `pmops up`): (before, after)."""
    engine = connect_engine(url)
    try:
        return ensure_current(engine, upgrade=True)
    finally:
        engine.dispose()


def check_store(url: str) -> list[str]:
    """`drift` of the store at `url` (`pmops db check`); never creates or changes anything."""
    engine = connect_engine(url)
    try:
        return drift(engine)
    finally:
        engine.dispose()


def _known(rev: str) -> bool:
    """Whether every revision in `rev` is one of this pmops's scripts."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        return all(scripts.get_revision(r) is not None for r in rev.split(","))
    except (RevisionError, CommandError):
        return False


def _upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")


def _not_current(engine: Engine, rev: str | None) -> str:
    where = engine.url.render_as_string(hide_password=True)
    if rev is None:
        state = "was made before schema migrations (it has tables but no alembic_version)"
    elif not _known(rev):
        return (
            f"the store {where} is at revision {rev}, which this pmops does not know: a newer "
            "release upgraded it; run that release (or a newer one)"
        )
    else:
        state = f"is at revision {rev}, this pmops needs {HEAD}"
    return f"the store {where} {state}: run `pmops db upgrade` (or `pmops up`) first"


def drift(engine: Engine) -> list[str]:
    """What differs between the store and this pmops: its revision, then each difference
    Alembic's autogenerate finds between the database and the models, then missing counting
    triggers. Empty when the store is exactly current."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    found = []
    with engine.connect() as conn:
        rev = revision(conn)
        if rev != HEAD:
            found.append(
                f"revision: {rev or 'none (no alembic_version)'}, head is {HEAD} "
                "(`pmops db upgrade`)"
            )
        if rev is None and not _has_tables(conn):
            return [*found, "the database is empty: `pmops db upgrade` creates the store"]
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        found += [_describe(diff) for diff in compare_metadata(context, metadata)]
        found += [f"missing trigger {name}" for name in _missing_triggers(conn)]
    return found


def _missing_triggers(conn: Connection) -> list[str]:
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    present = set(conn.exec_driver_sql(sql).scalars().all())
    return [name for name in _TRIGGERS.get(conn.dialect.name, ()) if name not in present]


def _describe(diff: Any) -> str:
    """One line per autogenerate difference (a tuple; a list of them for one column)."""
    if isinstance(diff, list):
        return "; ".join(_describe(d) for d in diff)
    kind = diff[0]
    if kind.startswith("modify_"):  # (kind, schema, table, column, existing, database, models)
        where = f"{diff[2]}.{diff[3]}"
        return f"{kind}: {where}: {diff[5]!r} in the database, {diff[6]!r} in the models"
    if kind in ("add_column", "remove_column"):  # (kind, schema, table, column)
        what = f"{diff[2]}.{diff[3].name}"
    elif kind in ("add_table", "remove_table"):
        what = diff[1].name
    else:  # an index or constraint
        item = diff[1]
        columns = ", ".join(c.name for c in getattr(item, "columns", ()))
        what = f"{item.table.name}.{item.name} ({columns})"
    if kind.startswith("add_"):
        return f"{kind}: {what}: in the models, not in the database"
    if kind.startswith("remove_"):
        return f"{kind}: {what}: in the database, not in the models"
    return f"{kind}: {what}"
