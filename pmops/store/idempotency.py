"""Idempotency-Key records: the answer to replay for a (tenant, scope, key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pmops.store.engine import utc_now
from pmops.store.tables import idempotency


@dataclass(frozen=True)
class Remembered:
    request_hash: str
    status_code: int
    response: dict[str, Any]
    headers: dict[str, str]


def read_idempotency(conn: Connection, tenant_id: str, where: str, key: str) -> Remembered | None:
    """The answer recorded for this key by the tenant at `where` (e.g. "POST /async/operation")."""
    row = conn.execute(
        select(idempotency).where(
            idempotency.c.tenant_id == tenant_id,
            idempotency.c.scope == where,
            idempotency.c.key == key,
        )
    ).first()
    if row is None:
        return None
    return Remembered(row.request_hash, row.status_code, row.response, row.headers)


def insert_idempotency(
    conn: Connection,
    tenant_id: str,
    where: str,
    key: str,
    digest: str,
    status: int,
    response: dict[str, Any],
    headers: dict[str, str],
) -> None:
    """Record the answer; a second insert for the same key raises IntegrityError."""
    conn.execute(
        idempotency.insert().values(
            tenant_id=tenant_id,
            scope=where,
            key=key,
            request_hash=digest,
            status_code=status,
            response=response,
            headers=headers,
            created_at=utc_now(),
        )
    )
