"""Several processes on one PostgreSQL store (issue #15): each test gets a database of its own
and two engines on it, as two API or deliverer processes would have."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from pmops.store.engine import make_engine
from tests.conftest import fresh_database


@pytest.fixture
def cluster_url() -> Iterator[str]:
    with fresh_database("pmops_cluster") as url:
        yield url


@pytest.fixture
def engines(cluster_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines (two processes' pools) on one fresh database."""
    first, second = make_engine(cluster_url), make_engine(cluster_url)
    yield first, second
    first.dispose()
    second.dispose()
