"""Loading pages into ``rr_<resource>``: bulk, idempotent, and committed with the checkpoint.

Every page is one transaction holding the upsert of its rows, the advanced cursor, the run's
counters and the lease renewal (the fence). A crash anywhere leaves either all of it or none.

The upsert never lets an older version overwrite a newer one (``updated_at`` decides, per column,
with a CASE) but always stamps ``synced_at`` and clears ``deleted_at``: a full sync relies on
``synced_at`` to know which rows it saw, including ones it saw in an older version.

Dialects differ only in how rows travel: SQLite gets one ``executemany`` of plain tuples on the
DBAPI cursor (no per-row SQLAlchemy processing); PostgreSQL gets ``COPY`` into a temporary
staging table and one ``INSERT ... SELECT ... ON CONFLICT``, measured faster than executemany
(benchmarks/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from worker.clock import parse_timestamp, utcnow
from worker.resources import Column, Resource
from worker.warehouse.db import is_postgres, reader
from worker.warehouse.runs import advance_cursor, update_run
from worker.warehouse.schema import resource_tables, sqlite_timestamp

log = logging.getLogger(__name__)

Fence = Callable[[sa.Connection], None]


def _extract(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _coerce(value: Any, column: Column) -> Any:
    """The JSON value as the column's Python type; ValueError when it does not fit."""
    if value is None:
        return None
    kind = column.type
    if kind == "text":
        if isinstance(value, dict | list):
            raise ValueError("an object or array")
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError(repr(value))
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(repr(value))
        return int(value)
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(repr(value))
        return float(value)
    if not isinstance(value, str):
        raise ValueError(repr(value))
    return parse_timestamp(value)


def _as_is(value: datetime) -> datetime:
    return value


class Loader:
    """Writes one resource's pages; one instance per run."""

    def __init__(self, engine: Engine, resource: Resource, org: str, run_id: int) -> None:
        self.engine = engine
        self.resource = resource
        self.org = org
        self.run_id = run_id
        self.table = resource_tables[resource.name]
        self.postgres = is_postgres(engine)
        self._paths = [(c, tuple(c.path.split("."))) for c in resource.columns]
        self._names = ["id", *(c.name for c in resource.columns), "data", "updated_at"]
        self._names += ["synced_at", "deleted_at"]
        self._bad_columns: set[str] = set()
        self._statement = self._postgres_statement() if self.postgres else self._sqlite_statement()

    # -- statements, built once per run -------------------------------------------------------

    def _on_conflict(self, insert: Any) -> Any:
        excluded = insert.excluded
        newer = excluded.updated_at >= self.table.c.updated_at
        keep_newest = {
            name: sa.case((newer, excluded[name]), else_=self.table.c[name])
            for name in self._names
            if name not in ("id", "synced_at", "deleted_at")
        }
        return insert.on_conflict_do_update(
            index_elements=[self.table.c.id],
            set_={**keep_newest, "synced_at": excluded.synced_at, "deleted_at": sa.null()},
        )

    def _sqlite_statement(self) -> str:
        insert = sqlite.insert(self.table).values({n: sa.bindparam(n) for n in self._names})
        compiled = self._on_conflict(insert).compile(dialect=self.engine.dialect)
        assert list(compiled.positiontup or []) == self._names  # tuples are built in this order
        return str(compiled)

    @property
    def _stage(self) -> str:
        return f"{self.table.name}_stage"

    def _postgres_statement(self) -> str:
        stage = sa.table(self._stage, *(sa.column(n) for n in self._names))
        insert = postgresql.insert(self.table).from_select(
            self._names, sa.select(*(stage.c[n] for n in self._names))
        )
        return str(self._on_conflict(insert).compile(dialect=self.engine.dialect))

    # -- rows ---------------------------------------------------------------------------------

    def _rows(
        self, records: Sequence[dict[str, Any]], updated: Sequence[datetime], synced: datetime
    ) -> list[tuple[Any, ...]]:
        # One row per id: a page could carry an id twice, which PostgreSQL's ON CONFLICT
        # refuses within one statement. The later (newer) occurrence wins.
        by_id: dict[str, tuple[Any, ...]] = {}
        stamp = _as_is if self.postgres else sqlite_timestamp
        synced_value = stamp(synced)
        id_field = self.resource.id_field
        for record, updated_at in zip(records, updated, strict=True):
            typed = []
            for column, path in self._paths:
                try:
                    value = _coerce(_extract(record, path), column)
                except ValueError as exc:
                    self._warn_once(column, record.get(id_field), exc)
                    value = None
                typed.append(stamp(value) if isinstance(value, datetime) else value)
            row_id = str(record[id_field])
            data = orjson.dumps(record).decode()
            by_id[row_id] = (row_id, *typed, data, stamp(updated_at), synced_value, None)
        return list(by_id.values())

    def _warn_once(self, column: Column, record_id: Any, problem: ValueError) -> None:
        if column.name not in self._bad_columns:
            self._bad_columns.add(column.name)
            log.warning(
                "%s: %s of record %s is %s, not %s; stored NULL in %s (the raw record is in data)",
                self.resource.name,
                column.path,
                record_id,
                problem,
                column.type,
                column.name,
            )

    # -- writing ------------------------------------------------------------------------------

    def commit(
        self,
        records: Sequence[dict[str, Any]],
        updated: Sequence[datetime],
        cursor: datetime | None,
        counters: dict[str, int],
        fence: Fence,
    ) -> int:
        """Upsert one page and checkpoint it, atomically. Returns the rows written."""
        synced = utcnow()
        rows = self._rows(records, updated, synced)
        with self.engine.begin() as conn:
            fence(conn)
            if rows:
                self._write(conn, rows)
            if cursor is not None:
                advance_cursor(conn, self.resource.name, self.org, cursor)
            update_run(conn, self.run_id, heartbeat_at=synced, **counters)
        return len(rows)

    def _write(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        if not self.postgres:
            conn.exec_driver_sql(self._statement, rows)
            return
        dbapi = conn.connection.dbapi_connection
        assert isinstance(dbapi, psycopg.Connection)
        staged: set[str] = conn.connection.info.setdefault("rrsync_stages", set())
        with dbapi.cursor() as cursor:
            if self._stage not in staged:
                # Per connection; ON COMMIT DELETE ROWS empties it after every page.
                cursor.execute(
                    f'CREATE TEMP TABLE IF NOT EXISTS "{self._stage}" '
                    f'(LIKE "{self.table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
                )
                staged.add(self._stage)
            columns = ", ".join(f'"{n}"' for n in self._names)
            with cursor.copy(f'COPY "{self._stage}" ({columns}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self._statement)

    # -- reconciliation (worker/reconcile.py) --------------------------------------------------

    def _live_in(self, lower: datetime | None, upper: datetime) -> list[sa.ColumnElement[bool]]:
        where = [self.table.c.deleted_at.is_(None), self.table.c.updated_at < upper]
        if lower is not None:
            where.append(self.table.c.updated_at >= lower)
        return where

    def count_live(self, lower: datetime | None, upper: datetime) -> int:
        with reader(self.engine).connect() as conn:
            query = sa.select(sa.func.count()).where(*self._live_in(lower, upper))
            return int(conn.execute(query).scalar_one())

    def median_updated_at(self, lower: datetime | None, upper: datetime) -> datetime | None:
        """The middle ``updated_at`` of the live rows in ``[lower, upper)``."""
        with reader(self.engine).connect() as conn:
            count = self.count_live(lower, upper)
            return conn.execute(
                sa.select(self.table.c.updated_at)
                .where(*self._live_in(lower, upper))
                .order_by(self.table.c.updated_at)
                .offset(count // 2)
                .limit(1)
            ).scalar()

    def live_ids(self, lower: datetime | None, upper: datetime) -> set[str]:
        with reader(self.engine).connect() as conn:
            query = sa.select(self.table.c.id).where(*self._live_in(lower, upper))
            return set(conn.execute(query).scalars())

    def mark_gone(self, ids: Sequence[str], fence: Fence) -> int:
        """Rows whose records the API confirmed gone (404) get ``deleted_at``."""
        if not ids:
            return 0
        with self.engine.begin() as conn:
            fence(conn)
            result = conn.execute(
                self.table.update()
                .where(self.table.c.id.in_(list(ids)), self.table.c.deleted_at.is_(None))
                .values(deleted_at=utcnow())
            )
            return int(result.rowcount)

    def mark_deleted(self, seen_since: datetime, fence: Fence) -> int:
        """After a complete full pass: rows it did not see get ``deleted_at`` (never a delete)."""
        with self.engine.begin() as conn:
            fence(conn)
            result = conn.execute(
                self.table.update()
                .where(self.table.c.deleted_at.is_(None), self.table.c.synced_at < seen_since)
                .values(deleted_at=utcnow())
            )
            return int(result.rowcount)
