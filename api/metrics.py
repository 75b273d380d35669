"""GET /metrics: the API process's figures in Prometheus text (docs/observability.md).

Each app has a registry of its own (a test process makes many apps):
- `pmops_http_request_duration_seconds{method,route,status}`: a histogram per route template
  (`/api/{tenantId}/{projectId}/async/operation/{operationId}`, never the raw path, so no tenant
  or operation id becomes a label; a path no route matches is `route="unmatched"`), measured by
  `api.observe.Observe` from the request's arrival to its response's headers (an event stream or a
  download is counted until its first byte, not while it streams);
- `pmops_dispatch_latency_seconds{operation_type}`: submission to the creation of the
  operation's first flow run, observed by this process's dispatcher (only the leader's
  dispatches, with several API processes on PostgreSQL);
- read from the store at each scrape (pmops.service.figures), so the same in every API process:
  `pmops_operations{status,operation_type}`, `pmops_queue_depth`,
  `pmops_deliveries{outcome}` and `pmops_deliverer_lag_seconds` (how long the oldest due
  undelivered delivery has been due; 0 when none is).

Unauthenticated unless PMOPS_METRICS_TOKEN is set: then a bearer token equal to it is required.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from api.deps import SettingsDep
from pmops.service.errors import Problem
from pmops.service.figures import store_figures
from pmops.store.engine import utc_now

router = APIRouter(tags=["metrics"], include_in_schema=False)
# from a quick status read (milliseconds) to an upload read in a worker process (minutes)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# a free slot dispatches within the dispatch interval; a full queue waits for runs to end
DISPATCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class StoreCollector(Collector):
    """The store's figures, read when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        figures = store_figures(self.engine)
        ops = GaugeMetricFamily(
            "pmops_operations",
            "Operations in the store by status and operation type",
            labels=["status", "operation_type"],
        )
        for (status, operation_type), n in sorted(figures.operations.items()):
            ops.add_metric([status, operation_type], n)
        yield ops
        yield GaugeMetricFamily(
            "pmops_queue_depth",
            "Initiated operations waiting for a worker slot (no flow run created yet)",
            value=figures.queued,
        )
        deliveries = GaugeMetricFamily(
            "pmops_deliveries",
            "Deliveries kept in the store by outcome (Pending, Retrying, Delivered, Failed, "
            "Cancelled)",
            labels=["outcome"],
        )
        for outcome, n in sorted(figures.deliveries.items()):
            deliveries.add_metric([outcome], n)
        yield deliveries
        lag = 0.0
        if figures.oldest_due is not None:
            lag = max(0.0, (utc_now() - figures.oldest_due).total_seconds())
        yield GaugeMetricFamily(
            "pmops_deliverer_lag_seconds",
            "How long the oldest due, undelivered delivery has been due (0: none is due)",
            value=lag,
        )


class Metrics:
    """One app's registry: the request and dispatch histograms and the store's figures."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "pmops_http_request_duration_seconds",
            "API requests by route template, from arrival to the response's headers",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.dispatch = Histogram(
            "pmops_dispatch_latency_seconds",
            "From an operation's submission to the creation of its flow run (this process's "
            "dispatcher)",
            ["operation_type"],
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(engine))

    def dispatched(self, operation_type: str, seconds: float) -> None:
        self.dispatch.labels(operation_type).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def _allowed(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


@router.get("/metrics")
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """The figures in Prometheus text (version 0.0.4)."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if token and not _allowed(request, token):
        challenge = 'Bearer realm="pmops-metrics"'
        detail = "GET /metrics needs the bearer token PMOPS_METRICS_TOKEN"
        raise Problem(401, detail, headers={"WWW-Authenticate": challenge})
    found: Metrics = request.app.state.metrics
    body = await run_in_threadpool(found.text)  # the store's figures are read here
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
