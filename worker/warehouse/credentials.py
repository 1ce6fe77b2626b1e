"""Credential rows (``rrsync_credentials``): all the SQL the credentials layer needs.

Tokens arrive here already encrypted (``worker/credentials/cipher.py``); this module never sees
plaintext. :func:`lock` is the cross-process half of the single-flight refresh: inside an
``engine.begin()`` transaction it holds the row until commit (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite our engine starts every write transaction with ``BEGIN IMMEDIATE``, which
already holds the database's write lock, see ``db.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.logs import redact
from worker.warehouse.db import reader, upsert
from worker.warehouse.schema import credentials

OK = "ok"
REAUTH_REQUIRED = "reauth_required"


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """One stored credential; the token fields hold Fernet ciphertext, kept out of reprs too."""

    org: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: str
    obtained_at: datetime
    refreshed_at: datetime | None
    state: str
    last_error: str | None
    refresh_failures: int = 0  # failed refresh cycles in a row
    refresh_blocked_until: datetime | None = None  # no token request before this
    paused_at: datetime | None = None  # set: beat does not sync the org (issue 15)

    @property
    def issued_at(self) -> datetime:
        """When the current access token was received (its lifetime starts here)."""
        return self.refreshed_at or self.obtained_at


def _row(row: sa.Row[tuple[object, ...]]) -> CredentialRow:
    return CredentialRow(
        org=row.org,
        access_token=row.access_token,
        refresh_token=row.refresh_token,
        expires_at=row.expires_at,
        scope=row.scope,
        obtained_at=row.obtained_at,
        refreshed_at=row.refreshed_at,
        state=row.state,
        last_error=row.last_error,
        refresh_failures=row.refresh_failures,
        refresh_blocked_until=row.refresh_blocked_until,
        paused_at=row.paused_at,
    )


def read(engine: Engine, org: str) -> CredentialRow | None:
    """The row as committed, without taking any lock."""
    with reader(engine).connect() as conn:
        row = conn.execute(sa.select(credentials).where(credentials.c.org == org)).first()
    return None if row is None else _row(row)


def read_all(engine: Engine) -> list[CredentialRow]:
    with reader(engine).connect() as conn:
        rows = conn.execute(sa.select(credentials).order_by(credentials.c.org)).all()
    return [_row(row) for row in rows]


def lock(conn: sa.Connection, org: str) -> CredentialRow | None:
    """Re-read the row and hold it until the caller's transaction ends."""
    row = conn.execute(
        sa.select(credentials).where(credentials.c.org == org).with_for_update()
    ).first()
    return None if row is None else _row(row)


def replace(engine: Engine, row: CredentialRow) -> None:
    """Insert or overwrite the org's credential in one statement (bootstrap, also over a
    ``reauth_required`` one: that is how re-authorization is done)."""
    values = {
        "org": row.org,
        "access_token": row.access_token,
        "refresh_token": row.refresh_token,
        "expires_at": row.expires_at,
        "scope": row.scope,
        "obtained_at": row.obtained_at,
        "refreshed_at": row.refreshed_at,
        "state": row.state,
        "last_error": row.last_error,
        "refresh_failures": 0,  # a new grant starts with a clean slate (issue 13, item 3)
        "refresh_blocked_until": None,
        "updated_at": utcnow(),
    }
    with engine.begin() as conn:
        insert = upsert(conn)(credentials)
        conn.execute(
            insert.values(**values).on_conflict_do_update(
                index_elements=[credentials.c.org],
                set_={k: v for k, v in values.items() if k != "org"},
            )
        )


def save_refresh(
    conn: sa.Connection,
    org: str,
    *,
    access_token: str,
    refresh_token: str,
    expires_at: datetime,
    scope: str,
    refreshed_at: datetime,
) -> None:
    """The refreshed tokens, inside the transaction that holds :func:`lock`."""
    conn.execute(
        credentials.update()
        .where(credentials.c.org == org)
        .values(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=expires_at,
            scope=scope,
            refreshed_at=refreshed_at,
            state=OK,
            last_error=None,
            refresh_failures=0,
            refresh_blocked_until=None,
            updated_at=utcnow(),
        )
    )


def record_error(conn: sa.Connection, org: str, error: str, state: str) -> None:
    """Remember why the last refresh failed; ``REAUTH_REQUIRED`` stops further token calls."""
    conn.execute(
        credentials.update()
        .where(credentials.c.org == org)
        .values(state=state, last_error=redact(error), updated_at=utcnow())
    )


def block_refresh(conn: sa.Connection, org: str, error: str, until: datetime) -> None:
    """A refresh cycle failed: count it, and hold every process's token requests until
    ``until`` (inside the transaction that holds :func:`lock`)."""
    conn.execute(
        credentials.update()
        .where(credentials.c.org == org)
        .values(
            refresh_failures=credentials.c.refresh_failures + 1,
            refresh_blocked_until=until,
            last_error=error,
            updated_at=utcnow(),
        )
    )


def set_paused(engine: Engine, org: str, paused_at: datetime | None) -> bool:
    """Pause (a time) or resume (None) the org's syncs; False when no credential is stored."""
    with engine.begin() as conn:
        result = conn.execute(
            credentials.update()
            .where(credentials.c.org == org)
            .values(paused_at=paused_at, updated_at=utcnow())
        )
    return bool(result.rowcount)


def delete(engine: Engine, org: str) -> bool:
    """Forget the org's credential (its tokens); False when none was stored."""
    with engine.begin() as conn:
        result = conn.execute(credentials.delete().where(credentials.c.org == org))
    return bool(result.rowcount)
