"""`pmops db upgrade` and `pmops db check` on SQLite (PMOPS_DATA_DIR) and PostgreSQL
(PMOPS_DATABASE_URL); `pmops up` upgrades before it starts anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pmops.cli.commands import app
from pmops.settings import get_settings
from pmops.store.engine import connect_engine, transaction
from pmops.store.schema import HEAD
from tests.conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("PMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PMOPS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'pmops.db').resolve()}"
    else:
        with fresh_database("pmops_cli") as url:
            monkeypatch.setenv("PMOPS_DATABASE_URL", url)
            get_settings.cache_clear()
            yield url
    get_settings.cache_clear()


def sql(url: str, *statements: str) -> None:
    engine = connect_engine(url)
    try:
        with transaction(engine) as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def test_check_then_upgrade_then_check(store_url: str) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["db", "check"])
    assert missing.exit_code == 1
    assert "pmops db upgrade" in missing.output

    made = runner.invoke(app, ["db", "upgrade"])
    assert made.exit_code == 0, made.output
    assert f"upgraded the store to revision {HEAD} (from none)" in made.output
    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0 and "nothing to do" in again.output

    ok = runner.invoke(app, ["db", "check"])
    assert ok.exit_code == 0, ok.output
    assert f"at revision {HEAD} (head) and matches the models" in ok.output

    # changed by hand: check lists each difference; upgrade (nothing to run) says so too
    sql(
        store_url,
        "DROP INDEX ix_ops_scope",
        "CREATE INDEX ix_by_hand ON tokens (principal)",
        "ALTER TABLE tokens ADD COLUMN by_hand INTEGER",
        "DROP TRIGGER ops_count_status"
        + (" ON operations" if store_url.startswith("postgresql") else ""),
    )
    drifted = runner.invoke(app, ["db", "check"])
    assert drifted.exit_code == 1
    lines = drifted.output.splitlines()
    assert lines[0] == "pmops: the store is not what this pmops needs:"
    expected = [
        "add_index: operations.ix_ops_scope (tenant_id, project_id, created_at, operation_id, "
        "status): in the models, not in the database",
        "remove_index: tokens.ix_by_hand (principal): in the database, not in the models",
        "remove_column: tokens.by_hand: in the database, not in the models",
        "missing trigger ops_count_status",
    ]
    assert sorted(line.strip() for line in lines[1:]) == sorted(expected)
    still = runner.invoke(app, ["db", "upgrade"])
    assert still.exit_code == 1 and "differs from this pmops's models" in still.output


def test_check_reports_a_store_made_before_migrations_and_upgrade_adopts_it(
    store_url: str,
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    sql(store_url, "DROP TABLE alembic_version", "DROP INDEX ix_ops_active_runs")
    behind = runner.invoke(app, ["db", "check"])
    assert behind.exit_code == 1
    assert f"revision: none (no alembic_version), head is {HEAD}" in behind.output
    assert "ix_ops_active_runs" in behind.output
    adopted = runner.invoke(app, ["db", "upgrade"])
    assert adopted.exit_code == 0, adopted.output
    assert runner.invoke(app, ["db", "check"]).exit_code == 0


def test_up_refuses_a_store_of_a_newer_release_before_starting_anything(store_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    sql(store_url, "UPDATE alembic_version SET version_num = '9999'")
    up = runner.invoke(app, ["up"])
    assert up.exit_code == 1
    assert "revision 9999, which this pmops does not know" in up.output
    assert not (Path(get_settings().data_dir) / "logs").exists()  # nothing was started
