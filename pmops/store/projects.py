"""Projects: each one's signing secret, Slack incoming webhook and owners."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from pmops.contract.signing import new_secret
from pmops.store.engine import utc_now
from pmops.store.tables import projects


def _key(tenant_id: str, project_id: str) -> Any:
    return and_(projects.c.tenant_id == tenant_id, projects.c.project_id == project_id)


def read_project(conn: Connection, tenant_id: str, project_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(projects).where(_key(tenant_id, project_id))).mappings().first()
    return None if row is None else dict(row)


def ensure_project(conn: Connection, tenant_id: str, project_id: str) -> dict[str, Any]:
    """The project's row, made with a new signing secret the first time it is needed. Two
    transactions making it at once both get the one row (ON CONFLICT DO NOTHING)."""
    row = read_project(conn, tenant_id, project_id)
    if row is not None:
        return row
    now = utc_now()
    values = {
        "tenant_id": tenant_id,
        "project_id": project_id,
        "signing_secret": new_secret(),
        "secret_created_at": now,
        "secret_revealed": False,
        "owner_emails": [],
        "updated_at": now,
    }
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        conn.execute(make(projects).values(**values).on_conflict_do_nothing())
    else:
        conn.execute(insert(projects).values(**values))
    found = read_project(conn, tenant_id, project_id)
    assert found is not None
    return found


def update_project(conn: Connection, tenant_id: str, project_id: str, **values: Any) -> bool:
    """Write `values` (signing_secret, slack_webhook_url, owner_emails ...) to the project."""
    done = conn.execute(update(projects).where(_key(tenant_id, project_id)).values(**values))
    return bool(done.rowcount)


def read_projects(
    conn: Connection, scopes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of these (tenant_id, project_id) projects that exist."""
    keys = list(scopes)
    if not keys:
        return {}
    rows = conn.execute(
        select(projects).where(tuple_(projects.c.tenant_id, projects.c.project_id).in_(keys))
    ).mappings()
    return {(r["tenant_id"], r["project_id"]): dict(r) for r in rows}


def project_secrets(project: dict[str, Any], now: datetime) -> list[str]:
    """The secrets that sign: the current one, and the previous one during its grace period."""
    valid = [project["signing_secret"]]
    until = project.get("previous_valid_until")
    if project.get("previous_secret") and until is not None and until > now:
        valid.append(project["previous_secret"])
    return valid
