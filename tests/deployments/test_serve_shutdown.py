"""A runner that stops leaves the shared deployments and their schedules active.

Several runners (one per machine) serve the same deployments; Prefect's Runner pauses every
deployment it served when it stops unless told not to (deployments/serve.py). A real
`python -m deployments.serve` against a real Prefect server (prefect_test_harness), stopped as
`pmops up` stops it (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

REPO = Path(__file__).resolve().parents[2]


def _deployment(api: str, name: str) -> dict[str, Any] | None:
    r = httpx.get(f"{api}/deployments/name/{name}", timeout=10)
    return dict(r.json()) if r.status_code == 200 else None


def _runner_env(api: str, data_dir: Path, pipelines: list[dict[str, str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMOPS_", "PREFECT_"))}
    env.update(
        PREFECT_API_URL=api,
        PMOPS_DATA_DIR=str(data_dir),
        PMOPS_WARM_START="false",
        PMOPS_MONTHLY_PIPELINES=json.dumps(pipelines),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_a_stopped_runner_does_not_pause_the_deployments(tmp_path: Path) -> None:
    project = str(uuid.uuid4())
    pipelines = [{"tenantId": str(uuid.uuid4()), "projectId": project}]
    monthly = f"MonthlyPipeline/monthly-{project[:8]}"
    served = ["ProcessMiningAnalysis/pmops", "Batch/pmops", monthly]
    with prefect_test_harness(server_startup_timeout=120):
        api = PREFECT_API_URL.value()
        log = (tmp_path / "runner.log").open("wb")
        runner = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"],
            env=_runner_env(api, tmp_path, pipelines),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            end = time.monotonic() + 120
            # polled (status READY): the runner has started, not only registered them (a
            # SIGTERM before its start ends it before it could pause anything)
            while not all(
                (d := _deployment(api, name)) and d.get("status") == "READY" for name in served
            ):
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()
                assert time.monotonic() < end, (tmp_path / "runner.log").read_text()
                time.sleep(0.2)
            before = _deployment(api, monthly)
            assert before is not None
            assert before["paused"] is False
            assert [s["active"] for s in before["schedules"]] == [True]
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(60) is not None
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            log.close()
        output = (tmp_path / "runner.log").read_text()
        for name in served:
            after = _deployment(api, name)
            assert after is not None
            assert after["paused"] is False, (name, output)
            assert all(s["active"] for s in after["schedules"]), (name, after["schedules"])
        assert "Pausing all deployments" not in output


@pytest.mark.parametrize("pause", [True])
def test_prefects_default_would_pause_them(pause: bool) -> None:
    """What the test above guards against: Prefect's Runner pauses on shutdown by default."""
    from prefect.runner import Runner

    assert Runner().pause_on_shutdown is pause
