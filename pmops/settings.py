"""Service settings from the environment (prefix PMOPS_), read through one cached getter.

Each field's description is its row in the README's configuration table: `python -m pmops.settings`
prints that table.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field is an environment variable PMOPS_<NAME>; its description is the README's."""

    model_config = SettingsConfigDict(env_prefix="PMOPS_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".pmops"),
        description="where the app store, uploads, results, logs and Prefect's database live",
    )
    database_url: str | None = Field(
        default=None,
        description="the app store: SQLite under data_dir by default; a postgresql+psycopg:// "
        "URL works too",
    )
    storage_url: str | None = Field(
        default=None,
        description="where uploads, results, checkpoints and artifacts are kept, by key "
        "(docs/storage.md): `file:///dir`, or `s3://bucket/prefix` with the standard AWS_* "
        "settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_DEFAULT_REGION); unset: the data directory itself (file://DATA_DIR)",
    )
    storage_redirect: bool = Field(
        default=False,
        description="s3:// storage: an artifact download answers 307 to a presigned URL of the "
        "object store (valid PMOPS_DOWNLOAD_LINK_SECONDS) instead of streaming it through the API",
    )
    api_host: str = Field(default="127.0.0.1", description="the API's address")
    api_port: int = Field(default=8000, description="the API's port")
    prefect_port: int = Field(
        default=4200,
        description="the embedded Prefect server's port (its UI at http://127.0.0.1:4200)",
    )
    prefect_host: str = Field(
        default="127.0.0.1",
        description="the embedded Prefect server's address (0.0.0.0: reachable from the other "
        "machines, which set PMOPS_PREFECT_API_URL to it)",
    )
    prefect_api_url: str | None = Field(
        default=None,
        description="another Prefect server instead of the embedded one "
        "(http://host:4200/api): `pmops up` then starts no Prefect server and waits for this "
        "one's /health",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="the embedded Prefect server's database: SQLite under data_dir by default; "
        "e.g. postgresql+asyncpg://host:5432/prefect for a server on PostgreSQL (a "
        "PREFECT_SERVER_DATABASE_CONNECTION_URL set in the environment wins)",
    )
    execution: Literal["runner", "workpool"] = Field(
        default="runner",
        description="how flow runs start: `runner` (one warm runner process serving the "
        "deployments; the fast default) or `workpool` (deployments in a Prefect `process` work "
        "pool, queues High/Normal/Low, run by `prefect worker start` on any machine)",
    )
    work_pool: str = Field(
        default="pmops",
        description="the Prefect work pool's name in workpool execution",
    )
    prefect_auth_string: SecretStr | None = Field(
        default=None,
        description="the Prefect API's basic-auth string (`user:password`; what the Prefect UI "
        "asks for at sign-in): the Prefect server requires it and every pmops process sends it. "
        "Unset: `pmops up` generates one into DATA_DIR/prefect-auth (mode 0600) and reuses it "
        "on every start (`pmops prefect-auth` prints it); set: this one wins, e.g. the "
        "PREFECT_SERVER_API_AUTH_STRING of a Prefect server run elsewhere "
        "(PMOPS_PREFECT_API_URL)",
    )
    worker_limit: int = Field(
        default=2,
        ge=1,
        description="flow runs executing at once; the API queues the rest by priority",
    )
    standby_runs: int = Field(
        default=1,
        ge=0,
        description="flow runs started ahead of a free worker slot: each one's process starts, "
        "then waits (its operation still Queued, executing nothing) until the dispatcher grants "
        "it the next slot, so a quick operation does not wait for its run to be created, taken "
        "and forked; 0: a run is created only when a slot is free",
    )
    max_upload_bytes: int = Field(
        default=2_000_000_000, description="largest accepted upload (413 beyond)"
    )
    max_json_bytes: int = Field(
        default=1 << 20,
        description="largest JSON request body on every endpoint but the upload (413 "
        "problem+json before the body is read: by its Content-Length, or counted as a chunked "
        "body streams in)",
    )
    # -- limits per tenant (docs/limits.md) --------------------------------------------------
    token_requests_per_second: float = Field(
        default=50.0,
        gt=0,
        description="requests one bearer token may make per second, on average (a token bucket "
        "counted by each API process for itself); beyond: 429 problem+json with Retry-After",
    )
    token_request_burst: int = Field(
        default=100,
        ge=1,
        description="requests one bearer token may make at once before the per-second rate "
        "applies (the bucket's size)",
    )
    auth_failures_per_address: int = Field(
        default=20,
        ge=1,
        description="failed authentications (an unknown or expired bearer token) one client "
        "address may make within PMOPS_AUTH_FAILURE_WINDOW_SECONDS; beyond: every request from "
        "it is 429 with Retry-After until the oldest failure leaves the window (counted per API "
        "process)",
    )
    auth_failure_window_seconds: float = Field(
        default=60.0, gt=0, description="the window those failures are counted in"
    )
    queued_operations_per_project: int = Field(
        default=500,
        ge=1,
        description="operations a project may have waiting (Initiated, or Pending in a batch); "
        "a start, batch or retry that would pass it is 429 naming `operations`",
    )
    webhooks_per_project: int = Field(
        default=50,
        ge=1,
        description="webhooks a project may have registered; one more is 429 naming `webhooks`",
    )
    streams_per_token: int = Field(
        default=10,
        ge=1,
        description="event streams (GET .../events) one bearer token may hold open at once, per "
        "API process; one more is 429",
    )
    uploads_per_project: int = Field(
        default=4,
        ge=1,
        description="uploads of one project being read at once, per API process; one more is "
        "429 naming `file` (each upload is read in a worker process: pmops.service.inspection)",
    )
    inspect_workers: int = Field(
        default=2,
        ge=1,
        description="worker processes reading uploads at once, per API process (each ends "
        "after one file, giving its memory back)",
    )
    heartbeat_stale_seconds: float = Field(
        default=30.0,
        description="a Running operation whose flow-run process has not written a heartbeat "
        "for this long is declared Failed (the process died without telling anyone)",
    )
    heartbeat_interval_seconds: float = Field(
        default=2.0,
        description="how often a flow run writes its progress, usage and heartbeat",
    )
    dispatch_interval_seconds: float = Field(
        default=0.2,
        description="how often the dispatcher looks for queued operations when not woken",
    )
    runner_poll_seconds: float = Field(
        default=0.2,
        gt=0,
        description="how often the runner looks for runs to start (Prefect's default is 10 s): "
        "it reads the run ids the dispatcher recorded in the store and asks Prefect only when "
        "one is new to it, or every 2 s for runs pmops did not make (a schedule, the Prefect "
        "UI; deployments/gate.py); a Prefect worker (workpool execution) asks Prefect this often",
    )
    unclaimed_run_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a flow run Pending/Running in Prefect this long without claiming its "
        "operation is taken for lost (its runner died between taking it and starting its "
        "process): dispatched again",
    )
    batch_parent_limit: int = Field(
        default=4,
        ge=1,
        description="batches whose parent flow run may run at once (beside the worker "
        "limit's operations)",
    )
    batch_poll_seconds: float = Field(
        default=0.5, gt=0, description="how often a batch's parent run moves its batch on"
    )
    monthly_pipelines: str = Field(
        default="",
        description='monthly pipelines (deployments/monthly.py): a JSON list of {"tenantId", '
        '"projectId", "datasetIds" (optional: every uploaded dataset of the project), '
        '"analysisType"}; empty: one for the development tenant and project of `pmops up`',
    )
    monthly_cron: str = Field(default="0 2 1 * *", description="when the monthly pipelines run")
    monthly_timezone: str = Field(default="UTC", description="the cron's time zone")
    stream_poll_seconds: float = Field(
        default=0.2,
        gt=0,
        description="the event stream (GET .../events): how often the API's one shared feed "
        "reads new events",
    )
    stream_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how often an idle event stream gets a keep-alive comment",
    )
    warm_start: bool = Field(
        default=True,
        description="fork flow-run processes from a pre-imported forkserver "
        "(deployments/warmstart.py)",
    )
    run_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="flow-run processes run at this niceness (0: as the runner), so on a small "
        "machine the API answers promptly while analyses use the CPU",
    )
    fault_injection: bool = Field(
        default=False,
        description='accept `parameters.faultInjection` {"failPhase": <phase name>}: the run '
        "fails in that phase (tests and drills of retries; off in production)",
    )
    price_cpu_hour: float = Field(
        default=0.04048,
        description="USD per vCPU-hour for costs (AWS Fargate us-east-1 on-demand)",
    )
    price_gb_hour: float = Field(
        default=0.004445,
        description="USD per GB-hour of memory for costs (same source)",
    )
    cpu_units: int = Field(
        default=1,
        description="vCPUs a flow run is allowed, applied to its process (PMOPS_RUN_LIMITS); "
        "reported as resourcesAllocated.cpuUnits",
    )
    memory_gb: float = Field(
        default=2.0,
        gt=0,
        description="memory (GB) a flow run is allowed, enforced on its process (PMOPS_RUN_LIMITS)"
        "; reported as resourcesAllocated.memoryGB",
    )
    run_limits: Literal["auto", "cgroup", "rlimit", "off"] = Field(
        default="auto",
        description="how a flow-run process is held to memoryGB and cpuUnits "
        "(pmops/service/runlimits.py): cgroup (v2 memory.max, cpu.max; or v1 "
        "memory.limit_in_bytes, cpu.cfs_quota_us), rlimit (RLIMIT_AS = memoryGB + "
        "PMOPS_RUN_ADDRESS_SPACE_EXTRA_GB, CPU affinity), auto (cgroup where usable, else "
        "rlimit) or off",
    )
    run_address_space_extra_gb: float = Field(
        default=1.25,
        ge=0,
        description="PMOPS_RUN_LIMITS=rlimit: the address space a flow-run process may reserve "
        "beyond memoryGB (RLIMIT_AS = memoryGB + this; thread stacks, malloc arenas, BLAS "
        "buffers and libraries reserve ~0.9 GB they never touch, docs/limits.md)",
    )
    run_cgroup_dir: Path = Field(
        default=Path("/sys/fs/cgroup/pmops"),
        description="the cgroup v2 directory each flow run's own cgroup is made in "
        "(run-<operationId>) when PMOPS_RUN_LIMITS is cgroup or auto (cgroup v1: `pmops` under "
        "the process's own memory and cpu cgroups instead)",
    )

    # -- webhooks, callbacks and notifications (pmops/delivery/) -----------------------------
    webhook_allow_networks: str = Field(
        default="",
        description="CIDRs a webhook, callback or Slack URL may resolve to although private or "
        'loopback (comma-separated, e.g. "127.0.0.0/8,::1/128" for development); empty: public '
        "hosts only",
    )
    delivery_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how long one delivery attempt may take (connect, send, answer)",
    )
    delivery_concurrency: int = Field(
        default=256, ge=1, description="delivery attempts in flight at once, in all"
    )
    delivery_per_endpoint: int = Field(
        default=8, ge=1, description="delivery attempts in flight at once per receiving endpoint"
    )
    delivery_reserve: int = Field(
        default=32,
        ge=0,
        description="delivery slots kept free for a project that has deliveries due and none in "
        "flight (at most a quarter of PMOPS_DELIVERY_CONCURRENCY): each project with work may "
        "hold (concurrency - reserve) / projects-with-work slots, so a newcomer starts at once",
    )
    delivery_breaker_timeouts: int = Field(
        default=3,
        ge=0,
        description="an endpoint whose attempts timed out this many times in a row is put behind "
        "a circuit breaker: its due deliveries wait, unsent and uncounted, then one probe goes; "
        "0: no breaker",
    )
    delivery_breaker_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a tripped endpoint waits before its probe; doubled after each "
        "probe that times out too, up to 10 minutes",
    )
    delivery_dns_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how long a new delivery connection may wait for its host to resolve",
    )
    delivery_dns_ttl_seconds: float = Field(
        default=30.0,
        ge=0,
        description="how long a resolved and checked webhook address is reused for new "
        "connections to that host (0: resolve for every new connection)",
    )
    delivery_poll_seconds: float = Field(
        default=0.05,
        gt=0,
        description="how often the deliverer looks for new events and due retries when idle",
    )
    # callbacks, email and Slack have no retryPolicy of their own: these four apply
    callback_max_retries: int = Field(
        default=5,
        ge=0,
        description="retries of a failed callback, email or Slack message (they have no "
        "retryPolicy of their own)",
    )
    callback_retry_delay: float = Field(
        default=10.0, ge=0, description="their first retry delay (s)"
    )
    callback_backoff_multiplier: float = Field(
        default=2.0, ge=1.0, description="their backoff multiplier"
    )
    callback_max_delay: float = Field(
        default=600.0, ge=0, description="their longest wait between attempts (s)"
    )
    webhook_disable_after_failures: int = Field(
        default=100,
        ge=1,
        description="a webhook whose attempts have all failed this many times in a row, over "
        "at least PMOPS_WEBHOOK_DISABLE_AFTER_SECONDS, is disabled and the project's owner "
        "notified",
    )
    webhook_disable_after_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="how long those failures must span before the webhook is disabled",
    )
    secret_rotation_grace_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="after a rotation, deliveries are signed with the old project secret too "
        "for this long",
    )
    event_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="events and finished deliveries older than this are deleted",
    )
    public_url: str | None = Field(
        default=None,
        description="the service's public base URL (e.g. https://pmops.example.com): links in "
        "emails and Slack messages, and the absolute download URLs of artifacts and partial "
        "results; unset, download URLs use the base URL of the request that lists them",
    )
    download_link_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        le=7 * 86_400,
        description="how long a signed download URL (artifacts[].downloadUrl, "
        "partialResults.downloadUrls) works after the answer that listed it; later it is 403",
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server for email notifications; unset: email is off"
    )
    smtp_port: int = Field(default=587, description="SMTP port")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls | tls | none (starttls never falls back to plain text)",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login (optional)")
    smtp_password: str | None = Field(default=None, description="SMTP password (optional)")
    smtp_sender: str = Field(default="pmops@localhost", description="From address of notifications")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, description="SMTP timeout per step")
    # -- observability (docs/observability.md) ----------------------------------------------
    metrics_token: SecretStr | None = Field(
        default=None,
        description="a bearer token GET /metrics then requires (401 without it); unset: /metrics "
        "answers anyone who reaches the API, as Prometheus scrapes by default (it shows counts "
        "and latencies across all tenants, no tenant or project ids)",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per log line (with tenantId, projectId, operationId "
        "and flowRunId where known) from the API, the deliverer and the flow runs; text: the "
        "same fields as key=value after a readable line",
    )
    log_level: str = Field(default="INFO", description="the lowest level pmops logs")

    @cached_property  # read on every request; resolving the path touches the file system
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pmops.db').resolve()}"

    @cached_property
    def resolved_prefect_api_url(self) -> str:
        return self.prefect_api_url or f"http://127.0.0.1:{self.prefect_port}/api"

    @cached_property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "operations"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _default_text(value: object) -> str:
    if value is None:
        return "—"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_table() -> str:
    """The README's configuration table: one row per setting, from the fields' descriptions."""
    rows = ["| setting | default | what |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        what = (info.description or "").replace("|", "\\|")
        rows.append(f"| `PMOPS_{name.upper()}` | `{_default_text(info.default)}` | {what} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
