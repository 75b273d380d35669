"""The one tenant-scoped lookup: a row of a tenant's (and project's) table by its key.

Every table that belongs to a tenant has `tenant_id` and `project_id` columns; a row of another
tenant or project is not found (None), never told apart from a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Scoped:
    """Whose rows: a tenant's, and of one project unless project_id is None (a tenant token)."""

    tenant_id: str
    project_id: str | None


def in_scope(table: Table, scoped: Scoped) -> ColumnElement[bool]:
    """The WHERE clause that keeps `table`'s rows to the scope."""
    conds = [table.c.tenant_id == scoped.tenant_id]
    if scoped.project_id is not None:
        conds.append(table.c.project_id == scoped.project_id)
    return and_(*conds)


def read_scoped(
    conn: Connection,
    table: Table,
    key: str,
    value: Any,
    scoped: Scoped,
    *,
    columns: Sequence[Any] | None = None,
    for_update: bool = False,
) -> dict[str, Any] | None:
    """The row of `table` whose `key` column is `value`, if it is the scope's; else None.
    `columns`: only these (default every column); `for_update`: lock it (PostgreSQL)."""
    query = select(*(columns or (table,))).where(table.c[key] == value, in_scope(table, scoped))
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)
