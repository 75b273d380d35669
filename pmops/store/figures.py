"""What /metrics reads from the store at each scrape (api/metrics.py, docs/observability.md):
operations per status and type, the queue's depth, deliveries per outcome and the oldest due
undelivered delivery. Across every tenant: the figures carry no tenant or project."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from pmops.store.engine import as_utc
from pmops.store.tables import deliveries, operation_counts, operations

# not finished: Pending (not tried yet) or Retrying (pmops/store/deliveries.py)
OPEN_DELIVERIES = ("Pending", "Retrying")


@dataclass(frozen=True)
class StoreFigures:
    """The store's side of /metrics at one moment."""

    # (status, operation type) -> operations
    operations: dict[tuple[str, str], int]
    # Initiated operations no flow run has been created for yet (waiting for a worker slot)
    queued: int
    # delivery status (Pending, Retrying, Delivered, Failed, Cancelled) -> deliveries
    deliveries: dict[str, int]
    # when the oldest open delivery that is due now became due (None: nothing due)
    oldest_due: datetime | None


def read_store_figures(conn: Connection, now: datetime) -> StoreFigures:
    """The figures, each from one query: the operation counters kept by triggers
    (operation_counts), the queue index, and the deliveries table (grouped by status: a scan of
    the deliveries kept, a month by default; the oldest due one from ix_deliveries_due)."""
    c = operation_counts.c
    per_status = conn.execute(
        select(c.status, c.operation_type, func.sum(c.n))
        .group_by(c.status, c.operation_type)
        .having(func.sum(c.n) > 0)
    )
    o = operations.c
    queued = conn.execute(
        select(func.count()).where(o.status == "Initiated", o.flow_run_id.is_(None))
    ).scalar_one()
    d = deliveries.c
    outcomes = conn.execute(select(d.status, func.count()).group_by(d.status))
    oldest = conn.execute(
        select(func.min(d.next_attempt_at)).where(
            d.next_attempt_at <= now, d.status.in_(OPEN_DELIVERIES)
        )
    ).scalar()
    return StoreFigures(
        operations={(s, t): int(n) for s, t, n in per_status},
        queued=int(queued),
        deliveries={s: int(n) for s, n in outcomes},
        oldest_due=as_utc(oldest),
    )
