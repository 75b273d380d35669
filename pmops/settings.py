"""Service settings from the environment (prefix PMOPS_), read through one cached getter."""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PMOPS_", extra="ignore")

    data_dir: Path = Path(".pmops")
    # SQLite under data_dir by default; a postgresql+psycopg:// URL works too
    database_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    prefect_port: int = 4200
    prefect_api_url: str | None = None
    # flow runs executing at once; the API queues the rest by priority
    worker_limit: int = Field(default=2, ge=1)
    max_upload_bytes: int = 2_000_000_000
    # a Running operation whose flow-run process has not written a heartbeat for this long is
    # declared Failed (the process died without telling anyone)
    heartbeat_stale_seconds: float = 30.0
    heartbeat_interval_seconds: float = 2.0
    dispatch_interval_seconds: float = 0.2
    # how often the runner asks Prefect for runs to start (Prefect's default is 10 s)
    runner_poll_seconds: float = Field(default=0.2, gt=0)
    # a flow run Pending/Running in Prefect this long without claiming its operation is taken
    # for lost (its runner died between taking it and starting its process): dispatched again
    unclaimed_run_seconds: float = Field(default=60.0, gt=0)
    # batches whose parent flow run may run at once (beside the worker limit's operations), and
    # how often a parent run moves its batch on
    batch_parent_limit: int = Field(default=4, ge=1)
    batch_poll_seconds: float = Field(default=0.5, gt=0)
    # monthly pipelines (deployments/monthly.py): a JSON list of {"tenantId", "projectId",
    # "datasetIds" (optional: every uploaded dataset of the project), "analysisType"}; empty:
    # one for the development tenant and project of `pmops up`
    monthly_pipelines: str = ""
    monthly_cron: str = "0 2 1 * *"
    monthly_timezone: str = "UTC"
    # the event stream (GET .../events): how often the API's one shared feed reads new events,
    # and how often an idle stream gets a keep-alive comment
    stream_poll_seconds: float = Field(default=0.2, gt=0)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    # fork flow-run processes from a pre-imported forkserver (deployments/warmstart.py)
    warm_start: bool = True
    # flow-run processes run at this niceness (0: as the runner), so on a small machine the
    # API answers promptly while analyses use the CPU
    run_niceness: int = Field(default=10, ge=0, le=19)
    # accept `parameters.faultInjection` {"failPhase": <phase name>}: the run fails in that phase
    # (tests and drills of retries; off in production)
    fault_injection: bool = False
    price_cpu_hour: float = 0.04048
    price_gb_hour: float = 0.004445
    # resources a flow run is allowed; reported as resourcesAllocated
    cpu_units: int = 1
    memory_gb: float = 2.0

    # -- webhooks, callbacks and notifications (pmops/deliverer.py) --------------------------
    # CIDRs a webhook, callback or Slack URL may resolve to although private or loopback
    # (comma-separated, e.g. "127.0.0.0/8,::1/128" for development); empty: public hosts only
    webhook_allow_networks: str = ""
    # how long one delivery attempt may take (connect, send, answer)
    delivery_timeout_seconds: float = Field(default=10.0, gt=0)
    # attempts in flight at once, in all, and per receiving endpoint
    delivery_concurrency: int = Field(default=256, ge=1)
    delivery_per_endpoint: int = Field(default=8, ge=1)
    # how often the deliverer looks for new events and due retries when idle
    delivery_poll_seconds: float = Field(default=0.05, gt=0)
    # callbacks, email and Slack have no retryPolicy of their own: these apply
    callback_max_retries: int = Field(default=5, ge=0)
    callback_retry_delay: float = Field(default=10.0, ge=0)
    callback_backoff_multiplier: float = Field(default=2.0, ge=1.0)
    callback_max_delay: float = Field(default=600.0, ge=0)
    # a webhook whose attempts have all failed this many times in a row, over at least this
    # many seconds, is disabled and the project's owner notified
    webhook_disable_after_failures: int = Field(default=100, ge=1)
    webhook_disable_after_seconds: float = Field(default=86_400.0, ge=0)
    # after a rotation, deliveries are signed with the old project secret too for this long
    secret_rotation_grace_seconds: float = Field(default=86_400.0, ge=0)
    # events and finished deliveries older than this are deleted
    event_retention_days: float = Field(default=30.0, gt=0)
    # where links in emails and Slack messages point
    public_url: str | None = Field(
        default=None,
        description="The service's public base URL (e.g. https://pmops.example.com): links in "
        "emails and Slack messages, and the absolute download URLs of artifacts and partial "
        "results; unset, download URLs use the base URL of the request that lists them.",
    )
    download_link_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        le=7 * 86_400,
        description="How long a signed download URL (artifacts[].downloadUrl, "
        "partialResults.downloadUrls) works after the answer that listed it; later it is 403.",
    )
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "pmops@localhost"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

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
