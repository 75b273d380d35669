"""The Prefect API's auth string (pmops/prefect_auth.py): generated once into the data dir with
mode 0600, reused on every start, the operator's PMOPS_PREFECT_AUTH_STRING winning, handed to
the server and every child by `pmops up`'s environment, and printed by `pmops prefect-auth`.
The stack test (tests/stack/test_prefect_auth.py) checks that the real server then refuses a
request without it."""

from __future__ import annotations

import base64
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from pmops.cli.commands import app
from pmops.cli.supervisor import prefect_env
from pmops.prefect_auth import (
    FILE_NAME,
    basic_auth_header,
    load_or_create,
    prefect_auth_string,
)
from pmops.settings import Settings, get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PMOPS_PREFECT_AUTH_STRING", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert prefect_auth_string(settings) is None  # only `pmops up` creates it
    assert not (tmp_path / "data" / FILE_NAME).exists()
    first = prefect_auth_string(settings, create=True)
    path = tmp_path / "data" / FILE_NAME
    assert first is not None and path.read_text() == first + "\n"
    assert mode(path) == 0o600
    user, _, password = first.partition(":")
    assert user == "pmops" and len(password) >= 43  # 32 random bytes, url-safe base64
    # a restart (a new Settings, as a new process reads them) gets the same string back
    again = Settings(data_dir=tmp_path / "data")
    assert prefect_auth_string(again, create=True) == first
    assert prefect_auth_string(again) == first
    # another data dir, another secret
    assert prefect_auth_string(Settings(data_dir=tmp_path / "other"), create=True) != first
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]  # no temporary file left


def test_looser_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text("pmops:restored-from-a-backup\n")
    path.chmod(0o644)
    assert load_or_create(path) == "pmops:restored-from-a-backup"
    assert mode(path) == 0o600


def test_concurrent_starts_agree_on_one_string(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    barrier = threading.Barrier(16)
    got: list[str] = []

    def one() -> None:
        barrier.wait()
        got.append(load_or_create(path))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and len(set(got)) == 1, set(got)
    assert path.read_text().strip() == got[0]
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]


def test_the_operators_setting_wins(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("pmops:generated-earlier\n")
    given = Settings(data_dir=tmp_path, prefect_auth_string=SecretStr("admin:from-the-operator"))
    assert prefect_auth_string(given, create=True) == "admin:from-the-operator"
    assert (tmp_path / FILE_NAME).read_text() == "pmops:generated-earlier\n"  # left alone
    elsewhere = Settings(
        data_dir=tmp_path / "fresh", prefect_auth_string=SecretStr("admin:from-the-operator")
    )
    assert prefect_auth_string(elsewhere, create=True) == "admin:from-the-operator"
    assert not (tmp_path / "fresh" / FILE_NAME).exists()  # nothing generated beside it
    # an empty setting is unset
    empty = Settings(data_dir=tmp_path, prefect_auth_string=SecretStr(""))
    assert prefect_auth_string(empty) == "pmops:generated-earlier"


def test_up_gives_the_server_and_every_child_the_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "a-prefect-cloud-key")  # would be sent instead
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "stale:value")
    settings = Settings(data_dir=tmp_path)
    env = prefect_env(settings)
    auth = (tmp_path / FILE_NAME).read_text().strip()
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == auth
    assert "PREFECT_API_KEY" not in env
    assert prefect_env(Settings(data_dir=tmp_path))["PREFECT_API_AUTH_STRING"] == auth
    given = Settings(data_dir=tmp_path, prefect_auth_string=SecretStr("ops:elsewhere"))
    env = prefect_env(given)
    assert (
        env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == "ops:elsewhere"
    )


def test_header_is_the_one_prefects_client_sends() -> None:
    from prefect.client.orchestration import SyncPrefectClient

    auth = "pmops:" + "x" * 43
    client = SyncPrefectClient("http://127.0.0.1:9/api", auth_string=auth)
    sent = client._client.headers["Authorization"]
    assert basic_auth_header(auth) == {"Authorization": sent}
    assert base64.b64decode(sent.split()[1]).decode() == auth
    assert basic_auth_header(None) == {}


def test_cli_prints_the_string(data_dir: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["prefect-auth"])
    assert missing.exit_code == 1 and "pmops up" in missing.stderr
    auth = load_or_create(data_dir / FILE_NAME)
    shown = runner.invoke(app, ["prefect-auth"])
    assert shown.exit_code == 0 and shown.stdout.strip() == auth
