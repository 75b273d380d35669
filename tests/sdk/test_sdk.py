"""The Python SDK against the real service (sync and async), and webhook verification checked
against signatures made by the independent `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import base64
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from pmops.sdk import (
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationFailed,
    WebhookVerificationError,
    models,
    verify_webhook,
)
from tests.service_stack import Tenant

pytestmark = pytest.mark.xdist_group("stack")


@pytest.fixture
def client(stack: Any, api: Tenant) -> Any:
    with Client(stack.url, api.token, api.tenant, api.project) as c:
        yield c


def test_the_sync_client_runs_an_analysis_end_to_end(
    client: Client, datasets: Path, tmp_path: Path
) -> None:
    ds = client.upload_dataset(datasets / "receipt.xes.gz")
    assert isinstance(ds, models.Dataset) and ds.events and ds.events > 0
    op = client.start_operation(
        "ProcessMiningAnalysis", "via the SDK", {"datasetId": ds.datasetId}, priority="High"
    )
    assert isinstance(op, models.OperationStarted) and op.status == "Initiated"
    final = client.wait(op.operationId, timeout=180)
    assert isinstance(final, models.OperationStatus) and final.status == "Completed"
    assert final.progress.percentage == 100 and all(p.status == "Completed" for p in final.phases)
    seen = list(client.events(op.operationId))
    assert seen[0].type == "operation.started" and seen[-1].terminal
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    results = client.get_results(op.operationId, format="detailed")
    assert results.success and results.summary["recordsAnalyzed"] == ds.events
    names = [
        a.downloadUrl.split("?")[0].rsplit("/", 1)[-1] for a in results.artifacts if a.downloadUrl
    ]
    assert "report.pdf" in names
    pdf = client.download_artifact(op.operationId, "report.pdf", tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    archive = client.download_results(op.operationId, tmp_path / "all.zip")
    assert "report.pdf" in zipfile.ZipFile(archive).namelist()
    listed = client.list_operations(status="Completed", page_size=100)
    assert op.operationId in [o.operationId for o in listed.operations]


def test_errors_are_typed_and_carry_the_problem(client: Client, stack: Any, api: Tenant) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_operation("op-does-not-exist")
    assert missing.value.problem["status"] == 404
    with pytest.raises(ValidationFailed) as invalid:
        client.start_operation("ProcessMiningAnalysis", "bad", {"datasetId": "nope"})
    assert invalid.value.errors[0]["field"] == "parameters.datasetId"
    with (
        Client(stack.url, "pmops_wrong", api.tenant, api.project) as anonymous,
        pytest.raises(Unauthorized),
    ):
        anonymous.list_operations()


def test_a_conflict_when_cancelling_a_finished_operation(
    client: Client, completed_analysis: dict
) -> None:
    with pytest.raises(Conflict) as done:
        client.cancel_operation(completed_analysis["operationId"], "too late")
    assert "Completed" in done.value.detail


def test_the_async_client(stack: Any, api: Tenant, receipt_dataset: dict) -> None:
    async def run() -> tuple[models.OperationStatus, models.OperationList]:
        async with AsyncClient(stack.url, api.token, api.tenant, api.project) as pm:
            op = await pm.start_operation(
                "ProcessMiningAnalysis",
                "async SDK",
                {"datasetId": receipt_dataset["datasetId"], "analysisType": "quick"},
            )
            final = await pm.wait(op.operationId, timeout=180)
            listed = await pm.list_operations(page_size=5)
            return final, listed

    final, listed = asyncio.run(run())
    assert final.status == "Completed"
    assert isinstance(listed, models.OperationList) and listed.summary.totalOperations >= 1


def _signed(secret: bytes, body: bytes, when: datetime) -> dict[str, str]:
    """Headers as the independent standardwebhooks package signs them."""
    msg_id = "msg_test"
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def test_verify_webhook() -> None:
    raw = b"sdk-test-secret-key"
    secret = "whsec_" + base64.b64encode(raw).decode()
    event = {"id": "msg_test", "type": "operation.completed", "timestamp": "2026-11-28T00:00:00Z"}
    body = json.dumps({**event, "data": {"status": "Completed"}}).encode()
    now = datetime.now(UTC)
    got = verify_webhook(_signed(raw, body, now), body, secret)
    assert got.type == "operation.completed" and got.data["status"] == "Completed"
    # a plain (non-whsec_) secret is its UTF-8 bytes, as the contract says
    assert verify_webhook(_signed(raw, body, now), body, raw.decode()).id == "msg_test"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(_signed(raw, body, now), body + b" ", secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(_signed(raw, body, now - timedelta(minutes=10)), body, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook({}, body, secret)


def test_project_settings_and_batches_through_the_sdk(client: Client) -> None:
    set_to = client.set_notification_settings(owner_emails=["owner@example.com"])
    assert set_to["ownerEmails"] == ["owner@example.com"]
    assert client.notification_settings()["ownerEmails"] == ["owner@example.com"]
    assert isinstance(client.list_batches()["batches"], list)
    hook = client.create_webhook(
        "https://your-app.com/sdk", "sdk", ["operation.completed"], secret="sdk-secret-123"
    )
    assert isinstance(hook, models.Webhook) and "sdk-secret-123" not in hook.model_dump_json()
    assert client.webhook_deliveries(hook.webhookId).deliveries == []
    client.delete_webhook(hook.webhookId)
    with pytest.raises(NotFound):
        client.get_webhook(hook.webhookId)
