"""GET /metrics in process: Prometheus text that prometheus_client's own parser reads, whose
figures move with real requests (route templates, never raw paths), the dispatcher's first
dispatch, the store's operations and deliveries; and PMOPS_METRICS_TOKEN when set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pmops.delivery import outbox
from tests.api.conftest import Client, Served, served_app
from tests.service_stack import assert_problem

RECEIVER = "http://127.0.0.1:9/metrics-hook"  # loopback is allowed on this app; nothing listens
STATUS_ROUTE = "/api/{tenantId}/{projectId}/async/operation/{operationId}"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An app of its own: the store's figures start from nothing."""
    with served_app(
        tmp_path_factory.mktemp("metrics"), webhook_allow_networks="127.0.0.0/8"
    ) as served:
        yield served


def scrape(served: Served, **headers: str) -> Samples:
    r = served.request("GET", "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def matching(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def test_requests_are_counted_by_route_template(app: Served, datasets: Path) -> None:
    api = app.tenant()
    op = api.start(api.upload(datasets / "receipt.xes.gz")["datasetId"])
    count = "pmops_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": STATUS_ROUTE, "status": "200"}
    before = value(scrape(app), count, **labels)
    for _ in range(3):
        api.status(op["operationId"])
    assert api.get("/async/operation/op-does-not-exist").status_code == 404
    assert app.request("GET", "/no/such/path").status_code == 404
    after = scrape(app)
    assert value(after, count, **labels) == before + 3
    assert value(after, count, **{**labels, "status": "404"}) == 1
    assert value(after, count, method="GET", route="unmatched", status="404") == 1
    routes = {labels["route"] for labels in matching(after, count)}
    # no tenant, project or operation id ever becomes a label
    for ident in (api.tenant, api.project, op["operationId"]):
        assert not [r for r in routes if ident in r], routes
    assert value(after, "pmops_http_request_duration_seconds_sum", **labels) > 0


def test_operations_queue_and_dispatch_latency(app: Served, datasets: Path) -> None:
    api = app.tenant()
    dataset = api.upload(datasets / "receipt.xes.gz")["datasetId"]
    before = scrape(app)
    started = [api.start(dataset, f"op {i}") for i in range(3)]
    # the fake orchestrator's runs never start: the worker limit's slots fill and the rest wait
    slots = app.settings.worker_limit
    deadline = time.monotonic() + 30
    while len(app.orchestrator.created()) < slots:
        assert time.monotonic() < deadline, "the dispatcher created no runs"
        time.sleep(0.05)
    after = scrape(app)
    initiated = {"status": "Initiated", "operation_type": "ProcessMiningAnalysis"}
    assert value(after, "pmops_operations", **initiated) == value(
        before, "pmops_operations", **initiated
    ) + len(started)
    queued_ops = value(after, "pmops_operations", **initiated) - len(app.orchestrator.created())
    assert value(after, "pmops_queue_depth") == queued_ops
    dispatched = value(
        after, "pmops_dispatch_latency_seconds_count", operation_type="ProcessMiningAnalysis"
    )
    assert dispatched == len(app.orchestrator.created())
    assert (
        value(after, "pmops_dispatch_latency_seconds_sum", operation_type="ProcessMiningAnalysis")
        > 0
    )
    cancelled = api.delete(f"/async/operation/{started[-1]['operationId']}")
    assert cancelled.status_code == 200, cancelled.text
    last = scrape(app)
    gone = {"status": "Cancelled", "operation_type": "ProcessMiningAnalysis"}
    assert value(last, "pmops_operations", **gone) == value(after, "pmops_operations", **gone) + 1


def register(api: Client, url: str) -> dict[str, Any]:
    body = {"webhookUrl": url, "webhookName": "metrics", "events": ["operation.cancelled"]}
    r = api.post("/async/webhooks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_deliveries_and_deliverer_lag(app: Served, datasets: Path) -> None:
    api = app.tenant()
    register(api, RECEIVER)
    outbox.fan_out(app.engine, app.settings)  # what came before this test
    before = scrape(app)
    op = api.start(api.upload(datasets / "receipt.xes.gz")["datasetId"])
    assert api.delete(f"/async/operation/{op['operationId']}").status_code == 200
    made = outbox.fan_out(app.engine, app.settings)  # as the deliverer would: one per receiver
    assert made >= 1
    after = scrape(app)
    pending = value(after, "pmops_deliveries", outcome="Pending")
    assert pending == value(before, "pmops_deliveries", outcome="Pending") + 1
    # nothing delivers here: the new delivery is due and waits
    assert value(after, "pmops_deliverer_lag_seconds") > 0
    later = scrape(app)
    assert value(later, "pmops_deliverer_lag_seconds") > value(after, "pmops_deliverer_lag_seconds")


def test_metrics_token(tmp_path: Path) -> None:
    with served_app(tmp_path, metrics_token="scrape-me") as served:
        r = served.request("GET", "/metrics")
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        wrong = served.request("GET", "/metrics", headers={"Authorization": "Bearer nope"})
        assert_problem(wrong, 401)
        samples = scrape(served, Authorization="Bearer scrape-me")
        assert ("pmops_queue_depth", ()) in samples
