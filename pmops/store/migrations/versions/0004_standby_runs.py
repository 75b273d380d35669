"""Standby runs: flow runs started ahead of a worker slot (issue #15: throughput).

Revision 0004 (after 0003). A new table, `standby_runs`: one row per Initiated operation whose
flow run the dispatcher created before a worker slot was free (PMOPS_STANDBY_RUNS). The run's
process starts and waits until the dispatcher grants it a slot by deleting the row, then claims
its operation; while it waits it writes `heartbeat_at`. Nothing else changes.

Downgrade drops the table: a standby operation then claims at once (the worker limit may be
exceeded by the standby runs that were waiting).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
_TS = sa.DateTime(timezone=True)  # UtcDateTime in the database (never import the models here)
depends_on: str | None = None


def upgrade() -> None:
    # a store whose alembic_version was lost after its tables were made by today's models
    # (0001 then finds every table) has it already
    if sa.inspect(op.get_bind()).has_table("standby_runs"):
        return
    op.create_table(
        "standby_runs",
        sa.Column("operation_id", sa.String(60), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("since", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS),
    )


def downgrade() -> None:
    op.drop_table("standby_runs")
