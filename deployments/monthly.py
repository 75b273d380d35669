"""The scheduled monthly pipelines: which tenants, projects and datasets, and when.

`PMOPS_MONTHLY_PIPELINES` is a JSON list of {"tenantId", "projectId", "datasetIds" (optional:
all the project's uploaded datasets at run time), "analysisType"}. Empty (the default), it is one
pipeline for the development tenant and project that `pmops up` made. Each pipeline is a
deployment of flows/monthly_pipeline.py named `monthly-<first 8 of the project id>`, on
`PMOPS_MONTHLY_CRON` (default `0 2 1 * *`: 02:00 on the 1st) in `PMOPS_MONTHLY_TIMEZONE`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pmops.settings import Settings


@dataclass(frozen=True)
class MonthlyPipeline:
    tenant_id: str
    project_id: str
    dataset_ids: tuple[str, ...] = ()
    analysis_type: str = "standard"

    @property
    def deployment_name(self) -> str:
        return f"monthly-{self.project_id[:8]}"

    def parameters(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "project_id": self.project_id,
            "dataset_ids": list(self.dataset_ids) or None,
            "analysis_type": self.analysis_type,
        }


def configured(settings: Settings) -> list[MonthlyPipeline]:
    """The pipelines to schedule; ValueError naming PMOPS_MONTHLY_PIPELINES when it is wrong."""
    if not settings.monthly_pipelines.strip():
        dev = settings.data_dir / "dev-token"
        if not dev.exists():
            return []
        tenant, project, _ = dev.read_text().split()
        return [MonthlyPipeline(tenant, project)]
    try:
        items = json.loads(settings.monthly_pipelines)
        return [
            MonthlyPipeline(
                str(uuid.UUID(item["tenantId"])),
                str(uuid.UUID(item["projectId"])),
                tuple(str(uuid.UUID(d)) for d in item.get("datasetIds") or ()),
                str(item.get("analysisType") or "standard"),
            )
            for item in items
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"PMOPS_MONTHLY_PIPELINES is not a valid list of pipelines: {exc}"
        ) from exc
