"""The quarantine (``rrsync_quarantine``): records a run could not store (issue 13, item 5).

One poison record used to stop its resource for good. Now it is kept here, with the reason and
its text (secrets redacted), while the rest of its batch and the cursor move on; ``rosesync
status`` shows how many wait per resource (:func:`counts`), the next incremental run fetches
each again by id, and a record that loads, by any path, leaves the quarantine in the
transaction that stores it (warehouse/load.py).

A record is keyed by its id, or by a hash of its text when it has no usable id (it can then
only leave when a full sync no longer sees it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.logs import redact
from worker.warehouse.db import reader, upsert
from worker.warehouse.schema import quarantine

if TYPE_CHECKING:  # rows.py (msgspec, the row builders) is the loader's, not `rosesync status`'s
    from worker.warehouse.rows import Poison

MAX_RAW = 100_000  # characters of a record's text kept; a runaway record must not fill the disk


def key_of(poison: Poison) -> str:
    if poison.record_id:
        return _storable(poison.record_id)
    return "sha256:" + hashlib.sha256(_storable(poison.raw).encode()).hexdigest()


def _storable(text: str) -> str:
    """Text any database takes: NUL spelled as its JSON escape, invalid UTF-8 escaped."""
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")


def add(
    conn: sa.Connection, resource: str, org: str, items: Sequence[Poison], now: datetime
) -> None:
    """Quarantine ``items`` (again: a record already there gets its reason, text and
    ``last_seen`` updated; ``first_seen`` stays)."""
    values = {
        key_of(item): {
            "resource": resource,
            "org": org,
            "key": key_of(item),
            "record_id": _storable(item.record_id) if item.record_id else None,
            "reason": redact(_storable(item.reason))[:1000],
            "raw": redact(_storable(item.raw)[:MAX_RAW]),
            "first_seen": now,
            "last_seen": now,
        }
        for item in items
    }
    insert = upsert(conn)(quarantine)
    statement = insert.on_conflict_do_update(
        index_elements=[quarantine.c.resource, quarantine.c.org, quarantine.c.key],
        set_={name: insert.excluded[name] for name in ("record_id", "reason", "raw", "last_seen")},
    )
    conn.execute(statement, list(values.values()))


def release(conn: sa.Connection, resource: str, org: str, keys: Iterable[str]) -> int:
    """Records that have been stored leave the quarantine."""
    wanted = list(keys)
    released = 0
    for start in range(0, len(wanted), 500):  # bounded IN lists
        result = conn.execute(
            quarantine.delete().where(
                quarantine.c.resource == resource,
                quarantine.c.org == org,
                quarantine.c.key.in_(wanted[start : start + 500]),
            )
        )
        released += int(result.rowcount)
    return released


def release_unseen(conn: sa.Connection, resource: str, org: str, since: datetime) -> int:
    """After a complete full pass: records it did not see are gone from the source."""
    result = conn.execute(
        quarantine.delete().where(
            quarantine.c.resource == resource,
            quarantine.c.org == org,
            quarantine.c.last_seen < since,
        )
    )
    return int(result.rowcount)


def keys(engine: Engine, resource: str, org: str) -> set[str]:
    with reader(engine).connect() as conn:
        query = sa.select(quarantine.c.key).where(
            quarantine.c.resource == resource, quarantine.c.org == org
        )
        return set(conn.execute(query).scalars())


def ids_to_retry(
    engine: Engine, resource: str, org: str, before: datetime, limit: int
) -> list[str]:
    """Ids of records quarantined and not seen since ``before``, least recently seen first."""
    with reader(engine).connect() as conn:
        query = (
            sa.select(quarantine.c.record_id)
            .where(
                quarantine.c.resource == resource,
                quarantine.c.org == org,
                quarantine.c.record_id.is_not(None),
                quarantine.c.last_seen < before,
            )
            .order_by(quarantine.c.last_seen, quarantine.c.key)
            .limit(limit)
        )
        return [str(record_id) for record_id in conn.execute(query).scalars()]


def counts(engine: Engine, org: str | None = None) -> dict[str, int]:
    """Records waiting in quarantine, per resource (of one org, or of all): what ``rosesync
    status`` shows, and what ``rosesync doctor`` may check."""
    query = sa.select(quarantine.c.resource, sa.func.count()).group_by(quarantine.c.resource)
    if org is not None:
        query = query.where(quarantine.c.org == org)
    with reader(engine).connect() as conn:
        return {str(resource): int(count) for resource, count in conn.execute(query).all()}
