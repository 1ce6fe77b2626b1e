"""Schema drift, recorded and never acted on (issue 14, item 2).

Each run ends by comparing the shape of the records it sampled (worker/source/fields.py) with
what is known of its resource: the fields earlier runs saw (``rrsync_fields``, the baseline) and
the paths of the registry's typed columns. What differs goes to ``rrsync_drift``, one row per
path and kind of change, with when it was first and last seen and how often, never a value:

- ``added``: a path the baseline did not have (the first run of a resource only sets the
  baseline: everything is new to it);
- ``type``: a JSON type the baseline had not seen at a path that had a non-null type (null
  does not count: an optional field is null or not, that is not drift);
- ``vanished``: a known path (or a typed column's path) that no sampled record of a succeeded
  run had, when the run sampled at least :data:`VANISH_SAMPLE` records (so that a few records
  without an optional field do not read as the field being gone) and saw the object that held
  it (:func:`_judgeable`);
- ``unparsable``: a typed column whose values did not fit its type and were stored NULL (as
  before, the raw record is in ``data``); ``count`` adds up the values.

Nothing is dropped or altered: the typed columns stay as the registry declares them, and the
raw record always has every field. A person reads ``rosesync status`` or ``rosesync doctor``
and changes the registry (and runs ``rosesync db upgrade``) if the change is to be kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.source.resources import Column, Resource
from worker.warehouse.db import reader, upsert
from worker.warehouse.schema import drift, fields

VANISH_SAMPLE = 25  # sampled records a run needs before a known path's absence counts
_TYPES_LIMIT = 200  # characters of a types list stored (it is a handful of names)


@dataclass(frozen=True, slots=True)
class Drift:
    """A row of ``rrsync_drift``."""

    resource: str
    path: str
    change: str
    detail: str
    count: int
    first_seen: datetime
    last_seen: datetime
    run_id: int | None

    def describe(self) -> str:
        """One line for status and doctor."""
        return (
            f"{self.resource}: {self.path} {self.change} ({self.detail}; first seen "
            f"{self.first_seen:%Y-%m-%d %H:%M}, last {self.last_seen:%Y-%m-%d %H:%M})"
        )


def _joined(types: set[str] | frozenset[str]) -> str:
    return ",".join(sorted(types))[:_TYPES_LIMIT]


def record(
    engine: Engine,
    resource: Resource,
    org: str,
    run_id: int,
    seen: Mapping[str, set[str]],
    sampled: int,
    unparsable: Mapping[Column, int],
    now: datetime,
    complete: bool,
) -> list[Drift]:
    """Compare what a run saw with what is known and store the differences (module doc);
    returns the changes this run noticed. Only a ``complete`` (succeeded) run can find a path
    vanished: a failed one may have read a corner of the data."""
    with engine.begin() as conn:
        known = {
            str(path): set(str(types).split(",")) - {""}
            for path, types in conn.execute(
                sa.select(fields.c.path, fields.c.types).where(
                    fields.c.resource == resource.name, fields.c.org == org
                )
            )
        }
        changes: list[tuple[str, str, str, int]] = []  # path, change, detail, count
        if known:
            for path, types in seen.items():
                before = known.get(path)
                if before is None:
                    changes.append((path, "added", _joined(types), 1))
                    continue
                new = types - before - {"null"}
                if new and before - {"null"}:
                    detail = f"{_joined(before - {'null'})} -> {_joined(new)}"
                    changes.append((path, "type", detail, 1))
        if complete and sampled >= VANISH_SAMPLE:
            columns = {c.path: c.name for c in resource.columns}
            for path in sorted(set(known) | set(columns)):
                if path not in seen and _judgeable(path, seen):
                    column = columns.get(path)
                    where = f"typed column {column}" if column else "no longer sent"
                    changes.append((path, "vanished", f"{where}; {sampled} records sampled", 1))
        for typed, count in unparsable.items():
            detail = f"not {typed.type}: stored NULL in {typed.name}"
            changes.append((typed.path, "unparsable", detail, count))
        _remember(conn, resource.name, org, seen, known, now)
        _store(conn, resource.name, org, run_id, changes, now)
    return [
        Drift(resource.name, path, change, detail, count, now, now, run_id)
        for path, change, detail, count in changes
    ]


def _judgeable(path: str, seen: Mapping[str, set[str]]) -> bool:
    """Whether a run can tell that ``path`` is gone: its parent object was seen (a null or
    absent ``customer`` says nothing of ``customer.id``), and it is not an array's elements
    (empty arrays say nothing of what their elements hold; the array's own path still counts)."""
    if path.endswith("[]"):
        return False
    if "." not in path:
        return True
    return "object" in seen.get(path.rsplit(".", 1)[0], ())


def _remember(
    conn: sa.Connection,
    resource: str,
    org: str,
    seen: Mapping[str, set[str]],
    known: Mapping[str, set[str]],
    now: datetime,
) -> None:
    """The baseline grows by what was seen: new paths, and new types at known paths."""
    if not seen:
        return
    rows = [
        {
            "resource": resource,
            "org": org,
            "path": path,
            "types": _joined(types | known.get(path, set())),
            "first_seen": now,
            "last_seen": now,
        }
        for path, types in seen.items()
    ]
    insert = _insert(conn, fields)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[fields.c.resource, fields.c.org, fields.c.path],
            set_={"types": insert.excluded.types, "last_seen": insert.excluded.last_seen},
        ),
        rows,
    )


def _store(
    conn: sa.Connection,
    resource: str,
    org: str,
    run_id: int,
    changes: list[tuple[str, str, str, int]],
    now: datetime,
) -> None:
    if not changes:
        return
    rows = [
        {
            "resource": resource,
            "org": org,
            "path": path,
            "change": change,
            "detail": detail,
            "count": count,
            "first_seen": now,
            "last_seen": now,
            "run_id": run_id,
        }
        for path, change, detail, count in changes
    ]
    insert = _insert(conn, drift)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[drift.c.resource, drift.c.org, drift.c.path, drift.c.change],
            set_={
                "detail": insert.excluded.detail,
                "count": drift.c["count"] + insert.excluded["count"],
                "last_seen": insert.excluded.last_seen,
                "run_id": insert.excluded.run_id,
            },
        ),
        rows,
    )


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return upsert(conn)(table)


def listed(engine: Engine, org: str | None = None) -> list[Drift]:
    """Every recorded change (of one org, or of all), most recently seen first: what
    ``rosesync status`` and ``rosesync doctor`` list."""
    query = sa.select(drift).order_by(drift.c.last_seen.desc(), drift.c.resource, drift.c.path)
    if org is not None:
        query = query.where(drift.c.org == org)
    with reader(engine).connect() as conn:
        return [
            Drift(
                resource=row.resource,
                path=row.path,
                change=row.change,
                detail=row.detail,
                count=int(row._mapping["count"]),
                first_seen=row.first_seen,
                last_seen=row.last_seen,
                run_id=row.run_id,
            )
            for row in conn.execute(query)
        ]
