"""`pmops up --only prefect` with PMOPS_PREFECT_DATABASE_URL: the one machine that runs the
Prefect server, on PostgreSQL instead of SQLite under the data dir (README "Scaling out").
A real `pmops up`, a real Prefect server and a fresh PostgreSQL database (dropped after)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from pmops.prefect_auth import basic_auth_header
from tests.conftest import fresh_database
from tests.service_stack import REPO, base_env, eventually, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("stack-aux")]  # a server of its own


def test_only_prefect_runs_the_prefect_server_on_postgresql(tmp_path: Path) -> None:
    import psycopg

    port = free_port()
    with fresh_database("pmops_prefect") as url:
        prefect_url = url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
        env = base_env(
            tmp_path,
            PMOPS_PREFECT_PORT=str(port),
            PMOPS_PREFECT_DATABASE_URL=prefect_url,
        )
        log = (tmp_path / "pmops-up.log").open("wb")
        up = subprocess.Popen(
            [sys.executable, "-m", "pmops.cli.commands", "up", "--only", "prefect"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{port}/api"

        def logs() -> str:
            parts = [tmp_path / "pmops-up.log", *sorted((tmp_path / "logs").glob("*.log"))]
            return "\n".join(p.read_text(errors="replace")[-3000:] for p in parts if p.exists())

        def healthy() -> bool:
            assert up.poll() is None, logs()
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            assert eventually(healthy, 240), logs()
            children = [" ".join(p.cmdline()) for p in psutil.Process(up.pid).children()]
            assert len(children) == 1 and "prefect server start" in children[0], children
            headers = basic_auth_header((tmp_path / "prefect-auth").read_text().strip())
            r = httpx.post(
                f"{api}/flows/", json={"name": "on-postgres"}, headers=headers, timeout=30
            )
            assert r.status_code in (200, 201), r.text
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn) as conn:
                names = [row[0] for row in conn.execute("SELECT name FROM flow")]
            assert names == ["on-postgres"]
            # nothing of Prefect's on SQLite, and no store: only the server was started
            assert not (tmp_path / "prefect" / "prefect.db").exists()
            assert not (tmp_path / "pmops.db").exists()
        finally:
            if up.poll() is None:
                up.send_signal(signal.SIGINT)
                try:
                    up.wait(60)
                except subprocess.TimeoutExpired:
                    up.kill()
                    up.wait()
            log.close()
        assert up.returncode == 0, logs()
