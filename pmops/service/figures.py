"""The service's figures for /metrics (api/metrics.py): what the store holds at scrape time."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from pmops.store.engine import utc_now
from pmops.store.figures import StoreFigures, read_store_figures

__all__ = ["StoreFigures", "store_figures"]


def store_figures(engine: Engine) -> StoreFigures:
    """Operations per status and type, the queue's depth, deliveries per outcome and the oldest
    due delivery, read in one connection."""
    with engine.connect() as conn:
        return read_store_figures(conn, utc_now())
