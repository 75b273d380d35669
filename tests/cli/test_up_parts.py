"""`pmops up --only ...` and the remote Prefect server: which children `pmops up` starts (the
supervisor's plan()), the environment it hands them, and the work-queue of each priority."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pmops.cli import supervisor
from pmops.cli.commands import main
from pmops.cli.supervisor import PARTS, parse_only, plan, prefect_env, start_prefect
from pmops.contract.enums import WORK_QUEUES, Priority
from pmops.settings import Settings


def names(settings: Settings, only: str | None = None) -> list[str]:
    return [child.name for child in plan(settings, parse_only(only))]


def test_default_is_every_part_in_start_order(tmp_path: Path) -> None:
    assert parse_only(None) == parse_only("") == frozenset(PARTS)
    assert names(Settings(data_dir=tmp_path)) == ["prefect-server", "runner", "api", "deliverer"]


def test_only_starts_the_named_parts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert names(settings, "api") == ["api"]
    assert names(settings, " runner , deliverer ") == ["runner", "deliverer"]
    assert names(settings, "deliverer,prefect") == ["prefect-server", "deliverer"]
    api = next(c for c in plan(settings, parse_only("api")) if c.name == "api")
    assert api.argv[1:4] == ["-m", "uvicorn", "api.main:app"]
    assert api.argv[-4:] == ["--host", "127.0.0.1", "--port", "8000"]


def test_a_remote_prefect_server_means_no_server_child(tmp_path: Path) -> None:
    remote = Settings(data_dir=tmp_path, prefect_api_url="http://prefect.internal:4200/api")
    assert names(remote) == ["runner", "api", "deliverer"]
    assert names(remote, "prefect,api") == ["api"]
    assert names(remote, "prefect") == []


def test_workpool_execution_starts_a_worker_instead_of_the_runner(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, execution="workpool")
    assert names(settings) == ["prefect-server", "worker", "api", "deliverer"]
    worker = plan(settings, parse_only("runner"))[0]
    assert worker.argv == [sys.executable, "-m", "deployments.workpool"]


def test_unknown_parts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown parts bogus, worker in --only"):
        parse_only("api,bogus,worker")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "--only", "api,bogus"], "unknown part bogus in --only (the parts are prefect"),
        (["up", "--only", "prefect"], "nothing to start"),
    ],
)
def test_up_exits_2_on_a_wrong_only(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PMOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PMOPS_PREFECT_API_URL", "http://127.0.0.1:9/api")
    supervisor.get_settings.cache_clear()
    try:
        assert main(argv) == 2
    finally:
        supervisor.get_settings.cache_clear()
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing was started or made


@pytest.fixture
def remote_prefect() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server standing for a Prefect server elsewhere: it answers /api/health."""
    seen: list[str] = []

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", seen
    finally:
        server.shutdown()
        server.server_close()


def test_with_a_remote_server_up_waits_for_its_health_and_starts_none(
    tmp_path: Path, remote_prefect: tuple[str, list[str]]
) -> None:
    url, seen = remote_prefect
    settings = Settings(data_dir=tmp_path, prefect_api_url=url)
    children = plan(settings, parse_only(None))
    logs = tmp_path / "logs"
    logs.mkdir()
    assert start_prefect(settings, children, prefect_env(settings), logs)
    assert "/api/health" in seen
    assert not any(child.alive() for child in children)  # the caller starts them after
    assert list(logs.iterdir()) == []  # no server's log: none was started


def test_prefect_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    key = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    default = prefect_env(Settings(data_dir=tmp_path))[key]
    assert default == f"sqlite+aiosqlite:///{(tmp_path / 'prefect' / 'prefect.db').resolve()}"
    pg = "postgresql+asyncpg://postgres@127.0.0.1:5432/prefect_somewhere"
    assert prefect_env(Settings(data_dir=tmp_path, prefect_database_url=pg))[key] == pg
    # the operator's own Prefect setting is never overridden
    own = "postgresql+asyncpg://postgres@db.internal:5432/prefect"
    monkeypatch.setenv(key, own)
    assert prefect_env(Settings(data_dir=tmp_path, prefect_database_url=pg))[key] == own
    assert prefect_env(Settings(data_dir=tmp_path))[key] == own


def test_worker_polls_as_often_as_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_WORKER_QUERY_SECONDS", raising=False)
    env = prefect_env(Settings(data_dir=tmp_path, runner_poll_seconds=0.5))
    assert env["PREFECT_WORKER_QUERY_SECONDS"] == "0.5"
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "3")
    assert prefect_env(Settings(data_dir=tmp_path))["PREFECT_WORKER_QUERY_SECONDS"] == "3"
    host = prefect_env(Settings(data_dir=tmp_path, prefect_host="0.0.0.0"))
    assert host["PREFECT_SERVER_API_HOST"] == "0.0.0.0"


def test_clients_skip_the_handshakes_pmops_does_not_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each flow run's new Prefect clients asked for a CSRF token (422: protection is off) and
    the server's version: skipped where pmops knows the answer, kept where it does not."""
    csrf = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"
    version = "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED"
    protection = "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"
    for key in (csrf, version, protection):
        monkeypatch.delenv(key, raising=False)
    local = prefect_env(Settings(data_dir=tmp_path))
    assert (local[csrf], local[version]) == ("false", "false")
    # a Prefect server pmops did not start may be another version: its clients still ask
    remote = prefect_env(Settings(data_dir=tmp_path, prefect_api_url="http://10.0.0.9:4200/api"))
    assert remote[csrf] == "false" and version not in remote
    # the operator turned CSRF protection on: the clients fetch their tokens
    monkeypatch.setenv(protection, "true")
    assert csrf not in prefect_env(Settings(data_dir=tmp_path))
    monkeypatch.delenv(protection)
    # the operator's own settings win
    monkeypatch.setenv(csrf, "true")
    monkeypatch.setenv(version, "true")
    own = prefect_env(Settings(data_dir=tmp_path))
    assert (own[csrf], own[version]) == ("true", "true")


def test_priorities_map_onto_three_work_queues() -> None:
    assert WORK_QUEUES == ("High", "Normal", "Low")
    assert {p.value: p.work_queue for p in Priority} == {
        "Critical": "High",
        "High": "High",
        "Normal": "Normal",
        "Low": "Low",
    }
