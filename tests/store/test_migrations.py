"""Schema migrations (pmops/store/migrations, pmops.store.schema), on SQLite and PostgreSQL.

Old stores are made for real: the code of an earlier commit (`git archive`) runs its own
make_engine in a subprocess and writes a few rows; today's code then upgrades that store, and
its whole schema (tests/store/schema_snapshot.py) must be exactly a fresh database's, with the
rows kept and operation_counts right."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine

from pmops.store.engine import connect_engine, make_engine, transaction
from pmops.store.schema import HEAD, StoreNotCurrent, alembic_config, drift, revision
from pmops.store.tables import operations
from tests.conftest import fresh_database
from tests.store.schema_snapshot import lines, snapshot

ROOT = Path(__file__).resolve().parents[2]
# the first landed store; one of 2026-12-06 (before tokens.max_priority and the fair-dispatch
# indexes); the last made without migrations (main when they came)
FIRST = "f1a95f8245bacb105aacdd7da83ae3a5efceaff5"
DEC_06 = "0a4b6edea5ef5cb3addad98cb27791613058e16e"
LAST = "9aaf0ffb4f3be54c07310be93f87c01b386d9c45"
TENANT, PROJECT = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"

# runs in the old code's tree: make the store as that release did, then write some rows
OLD_STORE = """
import json, sys
from datetime import UTC, datetime, timedelta
try:
    from pmops.store.engine import make_engine
    from pmops.store import tables as t
except ImportError:  # before pmops/store/ was a package
    import pmops.store as t
    make_engine = t.make_engine
assert t.__file__.startswith(sys.argv[2]), t.__file__
tenant, project = sys.argv[3], sys.argv[4]
engine = make_engine(sys.argv[1])
now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
kinds = [("ProcessMiningAnalysis", "High", 3), ("DataEnrichment", "Low", 1)]
statuses = ["Initiated", "Running", "Completed", "Completed", "Failed"]
with engine.begin() as conn:
    conn.execute(t.tokens.insert().values(
        token_hash="h" * 64, tenant_id=tenant, project_id=project, principal="old",
        created_at=now))
    conn.execute(t.datasets.insert().values(
        dataset_id="d1", tenant_id=tenant, project_id=project, file_name="log.csv",
        path="/x/log.csv", size_bytes=10, format="csv", summary={"events": 3},
        created_at=now))
    for i in range(11):
        kind, priority, rank = kinds[i % 2]
        conn.execute(t.operations.insert().values(
            operation_id=f"op-{i:02d}", tenant_id=tenant, project_id=project,
            operation_type=kind, operation_name=f"op {i}", priority=priority,
            priority_rank=rank, status=statuses[i % 5], request={"i": i}, dataset_id="d1",
            created_at=now + timedelta(seconds=i), timeout_at=now + timedelta(hours=1)))
engine.dispose()
"""

# runs with today's code: what a process of the app does when it starts
START = """
import sys
from pmops.store.engine import make_engine
make_engine(sys.argv[1], upgrade=sys.argv[2] == "upgrade").dispose()
"""


@pytest.fixture(scope="session")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each commit's pmops/ tree, from git (skipped outside a git checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git history (old commits' code)")
    trees = {}
    for commit in (FIRST, DEC_06, LAST):
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "pmops"],
            capture_output=True,
            check=True,
        ).stdout
        folder = tmp_path_factory.mktemp(f"code-{commit[:7]}")
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        trees[commit] = folder
    yield trees


def run(code: str, *args: str, tree: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter of this venv; `tree`: with that tree's pmops first on the path."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of the dialect: (one for the old store, one fresh)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_database("pmops_old") as old, fresh_database("pmops_fresh") as fresh:
        yield old, fresh


def rows(engine: Engine, table: str, key: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {key}")
        return [dict(r) for r in result.mappings().all()]


def counts(engine: Engine) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int]]:
    """(operation_counts without zero rows, a real count of operations)."""
    key = "tenant_id, project_id, operation_type, priority, status"
    with engine.connect() as conn:
        kept = conn.exec_driver_sql(f"SELECT {key}, n FROM operation_counts WHERE n > 0").all()
        real = conn.exec_driver_sql(f"SELECT {key}, count(*) FROM operations GROUP BY {key}").all()
    return {tuple(r[:5]): r[5] for r in kept}, {tuple(r[:5]): r[5] for r in real}


def test_head_is_the_scripts_head() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD]
    # the scripts come from the package, wherever it is installed
    assert Path(scripts.dir).parent == Path(sys.modules["pmops.store.schema"].__file__).parent


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_models_match_head(dialect: str, tmp_path: Path) -> None:
    """A database made by the revisions is the models' schema: autogenerate finds nothing."""
    if dialect == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        assert drift(engine) == []
        engine.dispose()
        return
    with fresh_database("pmops_head") as url:
        engine = make_engine(url)
        assert drift(engine) == []
        engine.dispose()


@pytest.mark.parametrize("commit", [FIRST, DEC_06, LAST], ids=["f1a95f8", "0a4b6ed", "main"])
def test_an_old_store_upgrades_to_exactly_a_fresh_one(
    commit: str, urls: tuple[str, str], old_code: dict[str, Path]
) -> None:
    old_url, fresh_url = urls
    made = run(OLD_STORE, old_url, str(old_code[commit]), TENANT, PROJECT, tree=old_code[commit])
    assert made.returncode == 0, made.stderr
    before = connect_engine(old_url)
    kept = {
        t: rows(before, t, k) for t, k in (("tokens", "token_hash"), ("datasets", "dataset_id"))
    }
    ops_before = rows(before, "operations", "operation_id")
    with before.connect() as conn:
        assert revision(conn) is None
    assert drift(before)  # not current: `pmops db check` says so
    before.dispose()

    with pytest.raises(StoreNotCurrent, match="made before schema migrations"):
        make_engine(old_url)  # an app process does not upgrade behind the operator's back
    # three processes upgrading at once (pmops up on two machines ...): one does, under the lock
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", START, old_url, "upgrade"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in starting:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    upgraded, fresh = make_engine(old_url), make_engine(fresh_url)
    try:
        assert lines(snapshot(upgraded)) == lines(snapshot(fresh))
        assert drift(upgraded) == []
        # the rows are kept; columns added since read NULL
        for table, key in (("tokens", "token_hash"), ("datasets", "dataset_id")):
            now = rows(upgraded, table, key)
            assert [{k: r[k] for k in old} for r, old in zip(now, kept[table], strict=True)] == (
                kept[table]
            )
        assert rows(upgraded, "operations", "operation_id") == ops_before
        assert all(r["max_priority"] is None for r in rows(upgraded, "tokens", "token_hash"))
        # counted once (not three times), and counting from now on
        kept_counts, real = counts(upgraded)
        assert kept_counts == real and sum(real.values()) == 11
        with transaction(upgraded) as conn:
            conn.execute(
                update(operations)
                .where(operations.c.status == "Initiated")
                .values(status="Running")
            )
            conn.execute(delete(operations).where(operations.c.operation_id == "op-04"))
        kept_counts, real = counts(upgraded)
        assert kept_counts == real and sum(real.values()) == 10
    finally:
        upgraded.dispose()
        fresh.dispose()


def test_processes_starting_together_on_an_empty_database_create_it_once(
    urls: tuple[str, str],
) -> None:
    url = urls[0]
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", START, url, "check"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in starting:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert [v[0] for v in versions] == [HEAD]
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_a_newer_store_is_refused_and_drift_at_head_reported(urls: tuple[str, str]) -> None:
    url = urls[0]
    make_engine(url).dispose()
    engine = connect_engine(url)
    try:
        with transaction(engine) as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
        with pytest.raises(StoreNotCurrent, match="does not know: a newer release"):
            make_engine(url, upgrade=True)
        with transaction(engine) as conn:
            conn.exec_driver_sql("DROP INDEX ix_ops_scope")
            conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{HEAD}'")
        # at head but drifted: the app starts (one query), `pmops db check` tells
        make_engine(url).dispose()
        found = drift(engine)
        assert len(found) == 1 and "ix_ops_scope" in found[0], found
    finally:
        engine.dispose()


def test_the_scripts_have_one_file_per_revision() -> None:
    versions = Path(sys.modules["pmops.store.schema"].__file__).with_name("migrations")
    files = sorted(p.name for p in (versions / "versions").glob("[0-9]*.py"))
    assert files and files[-1].startswith(f"{HEAD}_"), files  # NNNN_slug.py, newest last
