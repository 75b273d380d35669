"""Installation secrets (table installation_secrets): made at random on first use, then read."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pmops.store.tables import installation_secrets, transaction, utc_now


def read_secret(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            select(installation_secrets.c.secret).where(installation_secrets.c.name == name)
        ).scalar()
    return None if found is None else str(found)


def read_or_create_secret(engine: Engine, name: str) -> str:
    """The installation's secret `name`; 32 random bytes (hex) made and kept the first time.
    Two processes making it at once agree: the second insert fails and reads the first's."""
    found = read_secret(engine, name)
    if found is not None:
        return found
    try:
        with transaction(engine) as conn:
            again = conn.execute(
                select(installation_secrets.c.secret).where(installation_secrets.c.name == name)
            ).scalar()
            if again is not None:
                return str(again)
            made = secrets.token_hex(32)
            conn.execute(
                installation_secrets.insert().values(name=name, secret=made, created_at=utc_now())
            )
            return made
    except IntegrityError:
        found = read_secret(engine, name)
        if found is None:
            raise
        return found
