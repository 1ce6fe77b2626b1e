"""Lease rows (``rrsync_leases``): named, expiring ownership, used for "only one at a time".

A lease lives in the same database as the data it protects, which buys fencing: a sync renews
its lease inside the very transaction that commits a page (:func:`renew`), so a run that lost its
lease (paused past its expiry, another run took over) can never commit another page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.warehouse.db import reader
from worker.warehouse.schema import leases


@dataclass(frozen=True, slots=True)
class LeaseRow:
    name: str
    owner: str
    acquired_at: datetime
    expires_at: datetime
    detail: str | None = None  # what the holder publishes (JSON), e.g. the beat's schedule


def acquire(
    engine: Engine,
    name: str,
    owner: str,
    ttl: float,
    holder_is_gone: Callable[[str], bool] = lambda _owner: False,
    detail: str | None = None,
) -> bool:
    """Take (or renew) the lease unless another live owner holds an unexpired one; the holder
    publishes ``detail`` with it."""
    try:
        with engine.begin() as conn:
            row = conn.execute(
                sa.select(leases).where(leases.c.name == name).with_for_update()
            ).first()
            now = utcnow()
            expires = now + timedelta(seconds=ttl)
            if row is None:
                conn.execute(
                    leases.insert().values(
                        name=name, owner=owner, acquired_at=now, expires_at=expires, detail=detail
                    )
                )
                return True
            if row.owner == owner:
                conn.execute(
                    leases.update()
                    .where(leases.c.name == name)
                    .values(expires_at=expires, detail=detail)
                )
                return True
            if row.expires_at <= now or holder_is_gone(row.owner):
                conn.execute(
                    leases.update()
                    .where(leases.c.name == name)
                    .values(owner=owner, acquired_at=now, expires_at=expires, detail=detail)
                )
                return True
            return False
    except sa.exc.IntegrityError:  # PostgreSQL: another process inserted the row first
        return False


def renew(conn: sa.Connection, name: str, owner: str, ttl: float) -> bool:
    """Extend the lease inside the caller's transaction; False when ``owner`` lost it."""
    result = conn.execute(
        leases.update()
        .where(leases.c.name == name, leases.c.owner == owner)
        .values(expires_at=utcnow() + timedelta(seconds=ttl))
    )
    return result.rowcount == 1


def release(engine: Engine, name: str, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(leases.delete().where(leases.c.name == name, leases.c.owner == owner))


def _lease_row(row: sa.Row[tuple[object, ...]]) -> LeaseRow:
    return LeaseRow(row.name, row.owner, row.acquired_at, row.expires_at, row.detail)


def holder(engine: Engine, name: str) -> LeaseRow | None:
    """The current unexpired holder, if any."""
    with reader(engine).connect() as conn:
        row = conn.execute(
            sa.select(leases).where(leases.c.name == name, leases.c.expires_at > utcnow())
        ).first()
    return None if row is None else _lease_row(row)


def live(engine: Engine, prefix: str) -> list[LeaseRow]:
    """Every unexpired lease whose name starts with ``prefix`` (the workers' presence)."""
    named = leases.c.name.startswith(prefix, autoescape=True)
    with reader(engine).connect() as conn:
        rows = conn.execute(
            sa.select(leases).where(named, leases.c.expires_at > utcnow()).order_by(leases.c.name)
        ).all()
    return [_lease_row(row) for row in rows]
