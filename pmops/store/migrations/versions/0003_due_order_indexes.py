"""Due deliveries read in the lease order from an index (issue #15: delivery speed).

Revision 0003 (after 0002). The deliverer leases open deliveries `ORDER BY next_attempt_at,
event_id, delivery_id` (pmops.store.deliveries.list_due_deliveries), across all projects and
per project. The two due indexes held `next_attempt_at` alone, so PostgreSQL sorted every due
delivery on each lease (and, under FOR UPDATE, fully: the sort cannot stop at the LIMIT), an
on-disk sort of the whole backlog, 0.5-0.65 s per lease at 65,000 due deliveries on a busy
machine (bench/notes/cluster.md). Both now carry the whole order and are partial (open
deliveries only: finished ones have no next attempt), so a lease reads the first rows in order:

    ix_deliveries_due          (next_attempt_at, event_id, delivery_id)
    ix_deliveries_project_due  (tenant_id, project_id, next_attempt_at, event_id, delivery_id)
    both                       WHERE next_attempt_at IS NOT NULL

Downgrade makes the 0002 indexes again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = sa.text("next_attempt_at IS NOT NULL")


def _remake(due: list[str], project_due: list[str], due_partial: bool) -> None:
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_index("ix_deliveries_project_due", table_name="deliveries")
    if due_partial:
        op.create_index(
            "ix_deliveries_due", "deliveries", due, sqlite_where=_OPEN, postgresql_where=_OPEN
        )
    else:
        op.create_index("ix_deliveries_due", "deliveries", due)
    op.create_index(
        "ix_deliveries_project_due",
        "deliveries",
        project_due,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def upgrade() -> None:
    _remake(
        ["next_attempt_at", "event_id", "delivery_id"],
        ["tenant_id", "project_id", "next_attempt_at", "event_id", "delivery_id"],
        due_partial=True,
    )


def downgrade() -> None:
    _remake(["next_attempt_at"], ["tenant_id", "project_id", "next_attempt_at"], due_partial=False)
