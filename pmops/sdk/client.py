"""pmops clients over httpx: `Client` (blocking) and `AsyncClient`, one method per endpoint.

Both are the same `_Endpoints` methods: each builds a `Call` (method, path, query, body, the
model of the answer), and the client sends it, blocking or awaited. So every endpoint is written
once and the two clients cannot drift apart. Errors raise `pmops.sdk.errors.PmopsError`
subclasses carrying the problem+json; `wait()` follows the live event stream and falls back to
polling at the `Retry-After` the API suggests.

    from pmops.sdk import Client
    with Client("http://127.0.0.1:8000", token, tenant_id, project_id) as pm:
        ds = pm.upload_dataset("bpic2012.xes.gz")
        op = pm.start_operation("ProcessMiningAnalysis", "Loans", {"datasetId": ds.datasetId})
        final = pm.wait(op.operationId)
        pm.download_artifact(op.operationId, "report.pdf", "report.pdf")
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from pmops.contract.enums import TERMINAL_STATUSES
from pmops.contract.responses import (
    Batch,
    Cancellation,
    Dataset,
    DatasetList,
    Delivery,
    DeliveryList,
    Event,
    OperationList,
    OperationStarted,
    OperationStatusView,
    Results,
    RetryStarted,
    Webhook,
    WebhookList,
)
from pmops.sdk.errors import error_for

TERMINAL = tuple(TERMINAL_STATUSES)


@dataclass
class Call:
    method: str
    path: str
    model: type[BaseModel] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    files: Any = None
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bool = False  # answer the httpx.Response itself


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _parse(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:500]}
        raise error_for(response.status_code, problem)
    if call.raw:
        return response
    if response.status_code == 204 or not response.content:
        return None
    body = response.json()
    return call.model.model_validate(body) if call.model is not None else body


class _EventLines:
    """Server-Sent Events text, fed line by line; an Event at the end of each one."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line.startswith("data:"):
            self.data.append(line[5:].strip())
        elif not line and self.data:
            text, self.data = "\n".join(self.data), []
            return Event.model_validate(json.loads(text))
        return None


def _events(lines: Iterator[str]) -> Iterator[Event]:
    parser = _EventLines()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


class _Endpoints:
    """Every endpoint of the contract, as a Call the concrete client sends."""

    tenant_id: str
    project_id: str

    def _send(self, call: Call) -> Any:
        raise NotImplementedError

    @property
    def _base(self) -> str:
        return f"/api/{self.tenant_id}/{self.project_id}"

    # datasets
    def upload_dataset(self, path: str | Path, **column_mapping: str) -> Any:
        """Upload an event log (CSV, XES, XES.GZ, Parquet); column_mapping: caseColumn, ..."""
        p = Path(path)
        return self._send(
            Call(
                "POST",
                f"{self._base}/datasets",
                Dataset,
                files={"file": (p.name, p.read_bytes())},
                data=column_mapping or None,
            )
        )

    def list_datasets(self) -> Any:
        return self._send(Call("GET", f"{self._base}/datasets", DatasetList))

    def get_dataset(self, dataset_id: str) -> Any:
        return self._send(Call("GET", f"{self._base}/datasets/{dataset_id}", Dataset))

    def delete_dataset(self, dataset_id: str) -> Any:
        """Remove the dataset and its file (409 while an operation that has not ended uses it)."""
        return self._send(Call("DELETE", f"{self._base}/datasets/{dataset_id}"))

    # operations
    def start_operation(
        self,
        operation_type: str,
        operation_name: str,
        parameters: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Any:
        """POST /async/operation; fields: priority, callbacks, notifications, timeout, ..."""
        body = {
            "operationType": operation_type,
            "operationName": operation_name,
            "parameters": parameters,
            **fields,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        path = f"{self._base}/async/operation"
        return self._send(Call("POST", path, OperationStarted, json=body, headers=headers))

    def get_operation(self, operation_id: str) -> Any:
        path = f"{self._base}/async/operation/{operation_id}"
        return self._send(Call("GET", path, OperationStatusView))

    def list_operations(
        self,
        status: str | None = None,
        operation_type: str | None = None,
        priority: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        include_details: bool = False,
        page: int = 1,
        page_size: int = 20,
    ) -> Any:
        params = _clean(
            {
                "status": status,
                "operationType": operation_type,
                "priority": priority,
                "dateFrom": date_from,
                "dateTo": date_to,
                "includeDetails": str(include_details).lower() if include_details else None,
                "page": page,
                "pageSize": page_size,
            }
        )
        path = f"{self._base}/async/operations"
        return self._send(Call("GET", path, OperationList, params=params))

    def cancel_operation(
        self,
        operation_id: str,
        reason: str | None = None,
        *,
        force: bool = False,
        preserve_partial_results: bool = True,
        notify_callbacks: bool = True,
    ) -> Any:
        body = _clean(
            {
                "reason": reason,
                "forceTermination": force,
                "preservePartialResults": preserve_partial_results,
                "notifyCallbacks": notify_callbacks,
            }
        )
        path = f"{self._base}/async/operation/{operation_id}"
        return self._send(Call("DELETE", path, Cancellation, json=body))

    def get_results(
        self,
        operation_id: str,
        format: str = "summary",
        include_artifacts: bool = True,
        phase: str | None = None,
    ) -> Any:
        params = _clean(
            {"format": format, "includeArtifacts": str(include_artifacts).lower(), "phase": phase}
        )
        path = f"{self._base}/async/operation/{operation_id}/results"
        return self._send(Call("GET", path, Results, params=params))

    def artifact(self, operation_id: str, name: str) -> Any:
        """The artifact's bytes (httpx.Response)."""
        path = f"{self._base}/async/operation/{operation_id}/artifacts/{name}"
        return self._send(Call("GET", path, raw=True))

    def results_zip(self, operation_id: str) -> Any:
        """Every artifact in one zip (httpx.Response)."""
        path = f"{self._base}/async/operation/{operation_id}/results"
        return self._send(Call("GET", path, params={"format": "download"}, raw=True))

    def retry_operation(
        self,
        operation_id: str,
        mode: str = "resume",
        *,
        reason: str | None = None,
        updated_parameters: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Any:
        body = _clean(
            {
                "retryMode": mode,
                "retryReason": reason,
                "modifyParameters": bool(updated_parameters),
                "updatedParameters": updated_parameters,
                **fields,
            }
        )
        path = f"{self._base}/async/operation/{operation_id}/retry"
        return self._send(Call("POST", path, RetryStarted, json=body))

    def operation_deliveries(self, operation_id: str, page: int = 1) -> Any:
        path = f"{self._base}/async/operation/{operation_id}/deliveries"
        return self._send(Call("GET", path, DeliveryList, params={"page": page}))

    # webhooks
    def create_webhook(
        self, url: str, name: str, events: list[str], *, secret: str | None = None, **fields: Any
    ) -> Any:
        body = {"webhookUrl": url, "webhookName": name, "events": events, **fields}
        if secret:
            body["authentication"] = {"type": "hmac-sha256", "secret": secret}
        return self._send(Call("POST", f"{self._base}/async/webhooks", Webhook, json=body))

    def list_webhooks(self, page: int = 1) -> Any:
        path = f"{self._base}/async/webhooks"
        return self._send(Call("GET", path, WebhookList, params={"page": page}))

    def get_webhook(self, webhook_id: str) -> Any:
        return self._send(Call("GET", f"{self._base}/async/webhooks/{webhook_id}", Webhook))

    def set_webhook_status(self, webhook_id: str, status: str) -> Any:
        path = f"{self._base}/async/webhooks/{webhook_id}"
        return self._send(Call("PATCH", path, Webhook, json={"status": status}))

    def delete_webhook(self, webhook_id: str) -> Any:
        return self._send(Call("DELETE", f"{self._base}/async/webhooks/{webhook_id}"))

    def webhook_deliveries(self, webhook_id: str, status: str | None = None, page: int = 1) -> Any:
        path = f"{self._base}/async/webhooks/{webhook_id}/deliveries"
        params = _clean({"status": status, "page": page})
        return self._send(Call("GET", path, DeliveryList, params=params))

    def redeliver(self, webhook_id: str, delivery_id: str) -> Any:
        path = f"{self._base}/async/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        return self._send(Call("POST", path, Delivery))

    def redeliver_operation_delivery(self, operation_id: str, delivery_id: str) -> Any:
        path = f"{self._base}/async/operation/{operation_id}/deliveries/{delivery_id}/redeliver"
        return self._send(Call("POST", path, Delivery))

    def notification_settings(self) -> Any:
        return self._send(Call("GET", f"{self._base}/async/notification-settings"))

    def set_notification_settings(
        self, slack_webhook_url: str | None = None, owner_emails: list[str] | None = None
    ) -> Any:
        body = _clean({"slackWebhookUrl": slack_webhook_url, "ownerEmails": owner_emails})
        path = f"{self._base}/async/notification-settings"
        return self._send(Call("PUT", path, json=body))

    def signing_secret(self) -> Any:
        return self._send(Call("GET", f"{self._base}/async/signing-secret"))

    def rotate_signing_secret(self) -> Any:
        return self._send(Call("POST", f"{self._base}/async/signing-secret/rotate"))

    # batches
    def create_batch(self, batch: dict[str, Any]) -> Any:
        """POST /async/batch with the contract's body (batchName, operations, ...)."""
        return self._send(Call("POST", f"{self._base}/async/batch", json=batch))

    def list_batches(self, page: int = 1) -> Any:
        return self._send(Call("GET", f"{self._base}/async/batches", params={"page": page}))

    def get_batch(self, batch_id: str) -> Any:
        return self._send(Call("GET", f"{self._base}/async/batch/{batch_id}", Batch))

    def cancel_batch(self, batch_id: str) -> Any:
        return self._send(Call("DELETE", f"{self._base}/async/batch/{batch_id}", Batch))

    def health(self) -> Any:
        return self._send(Call("GET", "/health", raw=True))


class Client(_Endpoints):
    """Blocking client."""

    def __init__(
        self,
        url: str,
        token: str,
        tenant_id: str,
        project_id: str,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.tenant_id, self.project_id = tenant_id, project_id
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> Any:
        response = self.http.request(
            call.method,
            call.path,
            params=call.params or None,
            json=call.json,
            files=call.files,
            data=call.data,
            headers=call.headers or None,
        )
        return _parse(call, response)

    def download_artifact(self, operation_id: str, name: str, dest: str | Path) -> Path:
        path = f"{self._base}/async/operation/{operation_id}/artifacts/{name}"
        return self._download(path, {}, Path(dest))

    def download_results(self, operation_id: str, dest: str | Path) -> Path:
        """Every artifact of the operation as one zip file at dest."""
        path = f"{self._base}/async/operation/{operation_id}/results"
        return self._download(path, {"format": "download"}, Path(dest))

    def _download(self, path: str, params: dict[str, Any], dest: Path) -> Path:
        with self.http.stream("GET", path, params=params) as r:
            if r.status_code >= 400:
                r.read()
                _parse(Call("GET", path), r)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
        return dest

    def events(self, operation_id: str, last_event_id: int | None = None) -> Iterator[Event]:
        """The operation's events (replayed, then live) until the terminal one."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        path = f"{self._base}/async/operation/{operation_id}/events"
        with self.http.stream("GET", path, headers=headers, timeout=None) as r:
            if r.status_code >= 400:
                r.read()
                _parse(Call("GET", path), r)
            yield from _events(r.iter_lines())

    def wait(
        self, operation_id: str, timeout: float | None = None, stream: bool = True
    ) -> OperationStatusView:
        """Block until the operation ends; its final status."""
        end = None if timeout is None else time.monotonic() + timeout
        if stream:
            try:
                for event in self.events(operation_id):
                    if event.terminal or (end is not None and time.monotonic() > end):
                        break
            except httpx.HTTPError:
                pass  # a dropped stream: polling finishes the wait
        while True:
            response = self.http.get(f"{self._base}/async/operation/{operation_id}")
            status: OperationStatusView = _parse(Call("GET", "", OperationStatusView), response)
            if status.status in TERMINAL:
                return status
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"{operation_id} is still {status.status}")
            time.sleep(float(response.headers.get("Retry-After", "1")))


class AsyncClient(_Endpoints):
    """The same endpoints for asyncio: every method returns an awaitable."""

    def __init__(
        self,
        url: str,
        token: str,
        tenant_id: str,
        project_id: str,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.tenant_id, self.project_id = tenant_id, project_id
        self.http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call) -> Any:
        response = await self.http.request(
            call.method,
            call.path,
            params=call.params or None,
            json=call.json,
            files=call.files,
            data=call.data,
            headers=call.headers or None,
        )
        return _parse(call, response)

    async def events(
        self, operation_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[Event]:
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        path = f"{self._base}/async/operation/{operation_id}/events"
        async with self.http.stream("GET", path, headers=headers, timeout=None) as r:
            if r.status_code >= 400:
                await r.aread()
                _parse(Call("GET", path), r)
            parser = _EventLines()
            async for line in r.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    async def wait(self, operation_id: str, timeout: float | None = None) -> OperationStatusView:
        end = None if timeout is None else time.monotonic() + timeout
        try:
            async for event in self.events(operation_id):
                if event.terminal or (end is not None and time.monotonic() > end):
                    break
        except httpx.HTTPError:
            pass
        while True:
            response = await self.http.get(f"{self._base}/async/operation/{operation_id}")
            status: OperationStatusView = _parse(Call("GET", "", OperationStatusView), response)
            if status.status in TERMINAL:
                return status
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"{operation_id} is still {status.status}")
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
