"""Bearer tokens: only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from pmops.contract.requests import PRIORITY_RANK
from pmops.store.engine import transaction, utc_now
from pmops.store.tables import tokens

# what a token may ask for unless the operator grants more (`pmops tokens create --max-priority`);
# tokens stored before the column existed read as this too
DEFAULT_MAX_PRIORITY = "High"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    engine: Engine,
    tenant_id: str,
    project_id: str | None,
    principal: str,
    expires_at: datetime | None = None,
    max_priority: str = DEFAULT_MAX_PRIORITY,
) -> str:
    """A new bearer token, refused from `expires_at` on (never, if None), that may start
    operations up to `max_priority` (Low, Normal, High or Critical); only its SHA-256 is
    stored."""
    if max_priority not in PRIORITY_RANK:
        raise ValueError(f"max_priority must be one of {', '.join(PRIORITY_RANK)}")
    token = "pmops_" + secrets.token_urlsafe(32)
    with transaction(engine) as conn:
        conn.execute(
            tokens.insert().values(
                token_hash=hash_token(token),
                tenant_id=tenant_id,
                project_id=project_id,
                principal=principal,
                created_at=utc_now(),
                expires_at=expires_at,
                max_priority=max_priority,
            )
        )
    return token


def read_token(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    """The stored row of the bearer token with this hash (hash_token), or None."""
    row = conn.execute(select(tokens).where(tokens.c.token_hash == token_hash)).mappings()
    found = row.first()
    return None if found is None else dict(found)
