"""`pmops tokens create --max-priority`: the operator grants a token a priority above High (no
stack: the command writes the store under PMOPS_DATA_DIR)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pmops.cli.commands import app
from pmops.settings import get_settings
from pmops.store.engine import make_engine
from pmops.store.tokens import hash_token, read_token

TENANT = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PMOPS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def max_priority_of(data_dir: Path, token: str) -> str:
    engine = make_engine(f"sqlite:///{(data_dir / 'pmops.db').resolve()}")
    try:
        with engine.connect() as conn:
            row = read_token(conn, hash_token(token))
    finally:
        engine.dispose()
    assert row is not None
    return str(row["max_priority"])


def test_tokens_create_max_priority(data_dir: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["tokens", "create", "--tenant", TENANT])
    assert plain.exit_code == 0, plain.output
    assert max_priority_of(data_dir, plain.stdout.strip()) == "High"
    args = ["tokens", "create", "--tenant", TENANT, "--max-priority", "Critical"]
    granted = runner.invoke(app, args)
    assert granted.exit_code == 0, granted.output
    assert max_priority_of(data_dir, granted.stdout.strip()) == "Critical"
    wrong = runner.invoke(app, ["tokens", "create", "--tenant", TENANT, "--max-priority", "Urgent"])
    assert wrong.exit_code == 2
