from __future__ import annotations

import os
from pathlib import Path

import pytest

# The shared datasets sit beside the repository (../shared/datasets), as laid for developers and CI.
DATASETS = Path(
    os.environ.get("PMOPS_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"shared datasets not found at {DATASETS}")
    return DATASETS
