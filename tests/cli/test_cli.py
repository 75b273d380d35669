"""The `pmops` client commands against the real service, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service_stack import REPO, Tenant

pytestmark = pytest.mark.xdist_group("stack")


def pmops(stack: Any, api: Tenant, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMOPS_")}
    env.update(
        PMOPS_URL=stack.url,
        PMOPS_TOKEN=api.token,
        PMOPS_TENANT=api.tenant,
        PMOPS_PROJECT=api.project,
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "pmops.cli.commands", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_upload_submit_watch_list_and_results(
    stack: Any, api: Tenant, datasets: Path, tmp_path: Path
) -> None:
    up = pmops(stack, api, "datasets", "upload", str(datasets / "receipt.xes.gz"))
    assert up.returncode == 0, up.stderr
    dataset_id = up.stdout.strip()
    assert "events" in up.stderr
    started = pmops(
        stack, api, "submit", "--name", "from the CLI", "--dataset", dataset_id,
        "--param", "analysisType=standard", "--priority", "High",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    op_id = started.stdout.strip()
    assert op_id.startswith("op-")
    watched = pmops(stack, api, "watch", op_id)
    assert watched.returncode == 0, watched.stderr
    assert "Completed" in watched.stdout
    assert "Process Discovery" in watched.stderr  # a bar per phase
    status = pmops(stack, api, "status", op_id, "--json")
    assert json.loads(status.stdout)["status"] == "Completed"
    listed = pmops(stack, api, "ls", "--status", "Completed", "--page-size", "100")
    assert listed.returncode == 0 and op_id in listed.stdout
    got = pmops(stack, api, "results", op_id, "--download", str(tmp_path / "files"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "files" / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "recordsAnalyzed" in got.stdout


def test_clear_errors_and_exit_codes(stack: Any, api: Tenant, completed_analysis: dict) -> None:
    missing = pmops(stack, api, "status", "op-nope")
    assert missing.returncode == 3 and "not found" in missing.stderr
    refused = pmops(stack, api, "cancel", completed_analysis["operationId"])
    assert refused.returncode == 2 and "Completed" in refused.stderr
    bad = pmops(stack, api, "submit", "--dataset", "nope")
    assert bad.returncode == 2 and "parameters.datasetId" in bad.stderr
    failing = pmops(stack, api, "submit", "--dataset", completed_analysis["operationId"], "--wait")
    assert failing.returncode == 2
    unreachable = subprocess.run(
        [sys.executable, "-m", "pmops.cli.commands", "--url", "http://127.0.0.1:9", "--token", "x",
         "--tenant", api.tenant, "--project", api.project, "ls"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr


def test_a_failed_run_watched_exits_1_and_retry_resumes(
    stack: Any, api: Tenant, receipt_dataset: dict
) -> None:
    fault = json.dumps({"failPhase": "Machine Learning Analysis"})
    started = pmops(
        stack, api, "submit", "--dataset", receipt_dataset["datasetId"],
        "--param", "analysisType=standard", "--param", f"faultInjection={fault}", "--wait",
    )  # fmt: skip
    assert started.returncode == 1 and "Failed" in started.stdout
    op_id = started.stdout.split()[0]
    again = pmops(stack, api, "retry", op_id, "--param", "faultInjection=null")
    assert again.returncode == 0, again.stderr
    assert "2 phases kept" in again.stderr
    assert pmops(stack, api, "watch", again.stdout.strip()).returncode == 0


def test_webhooks_and_batch(stack: Any, api: Tenant, receipt_dataset: dict, tmp_path: Path) -> None:
    added = pmops(stack, api, "webhooks", "add", "https://your-app.com/hook", "--name", "cli")
    assert added.returncode == 0, added.stderr
    hook = added.stdout.strip()
    assert hook in pmops(stack, api, "webhooks", "ls").stdout
    assert pmops(stack, api, "webhooks", "deliveries", hook).returncode == 0
    assert pmops(stack, api, "webhooks", "rm", hook).returncode == 0
    body = {
        "batchName": "cli batch",
        "operations": [
            {
                "operationKey": "one",
                "operationName": "one",
                "operationType": "ProcessMiningAnalysis",
                "parameters": {"datasetId": receipt_dataset["datasetId"], "analysisType": "quick"},
            }
        ],
    }
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(body))
    done = pmops(stack, api, "batch", str(path), "--wait")
    assert done.returncode == 0, done.stderr
    assert "Completed" in done.stdout
