"""Loading pages into ``rr_<resource>``: bulk, idempotent, and committed with the checkpoint.

Every batch of pages is one transaction holding the upsert of its rows, the advanced cursor,
the run's counters and the lease renewal (the fence). A crash anywhere leaves either all of it
or none.

The upsert never lets an older version overwrite a newer one (``updated_at`` decides, per column,
with a CASE) but always stamps ``synced_at`` and clears ``deleted_at``: a full sync relies on
``synced_at`` to know which rows it saw, including ones it saw in an older version.

Dialects differ only in how rows travel: SQLite gets one ``executemany`` of plain tuples on the
DBAPI cursor (no per-row SQLAlchemy processing); PostgreSQL gets a binary ``COPY`` into a
temporary staging table and one ``INSERT ... SELECT ... ON CONFLICT``. Measured on the benchmark
machine (benchmarks/README.md): COPY beat psycopg's pipelined executemany of the same upsert
(7,700 against 7,000 records/s on 50,000 orders), and binary COPY beat text COPY (10,300
against 8,900 records/s on 70,000 records): the server no longer unescapes each 2 KB line nor
parses the typed columns' text, and the client no longer escapes it. What is left is mostly
PostgreSQL parsing the JSONB ``data``, which no format avoids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.source.records import Record
from worker.source.resources import Resource
from worker.warehouse.db import is_postgres, reader
from worker.warehouse.rows import Row, RowBuilder
from worker.warehouse.runs import add_progress, advance_cursor
from worker.warehouse.schema import resource_tables

Fence = Callable[[sa.Connection], None]


def _as_is(text: str) -> str:
    return text


class Loader:
    """Writes one resource's pages; one instance per run."""

    def __init__(self, engine: Engine, resource: Resource, org: str, run_id: int) -> None:
        self.engine = engine
        self.resource = resource
        self.org = org
        self.run_id = run_id
        self.table = resource_tables[resource.name]
        self.postgres = is_postgres(engine)
        self._builder = RowBuilder(resource, self.postgres)
        self._names = self._builder.columns
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
        # One row per id (ON CONFLICT may not touch a row twice in one statement): a batch of
        # pages can carry an id twice when a record changed between two of them. In id order,
        # so two batches in flight (worker/sync/commits.py) that share ids lock them in the same
        # order and cannot deadlock.
        newest = (
            sa.select(*(stage.c[n] for n in self._names))
            .ext(postgresql.distinct_on(stage.c.id))
            .order_by(stage.c.id, stage.c.updated_at.desc())
        )
        insert = postgresql.insert(self.table).from_select(self._names, newest)
        return str(self._on_conflict(insert).compile(dialect=self.engine.dialect))

    # -- writing ------------------------------------------------------------------------------

    def rows(self, records: Sequence[Record]) -> list[Row]:
        """The driver's rows for these records. Pure CPU work and thread-safe, so the fetcher
        threads do it while this loader's thread is writing (see sync/run.py)."""
        return self._builder.rows(records, utcnow())

    def commit(
        self,
        rows: Sequence[Row],
        pages: int,
        cursor: Callable[[], datetime | None],
        stats: dict[str, int],
        fence: Fence,
    ) -> None:
        """Upsert rows and checkpoint them, atomically: the cursor that ``cursor()`` returns
        (None: leave it), and the rows and pages counted into the run."""
        with self.engine.begin() as conn:
            if rows:
                self._write(conn, rows)
            # The rows first, then the rows every transaction of this run updates (lease,
            # cursor, run): their locks are held to the commit, so taking them last lets two
            # batches in flight (worker/sync/commits.py) overlap in all but their commits.
            fence(conn)
            position = cursor()
            if position is not None:
                advance_cursor(conn, self.resource.name, self.org, position)
            add_progress(conn, self.run_id, pages, len(rows), stats)

    def _write(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        if not self.postgres:
            conn.exec_driver_sql(self._statement, rows)
            return
        dbapi = conn.connection.dbapi_connection
        assert isinstance(dbapi, psycopg.Connection)
        staged: set[str] = conn.connection.info.setdefault("rrsync_stages", set())
        with dbapi.cursor() as cursor:
            if self._stage not in staged:
                # Per connection; ON COMMIT DELETE ROWS empties it after every page. The stage
                # compresses ``data`` as the table does (LZ4, see migrate.py), so the INSERT
                # moves each compressed value as it is instead of compressing it twice.
                pg14 = (conn.dialect.server_version_info or ()) >= (14,)
                including = "DEFAULTS INCLUDING COMPRESSION" if pg14 else "DEFAULTS"
                cursor.execute(
                    f'CREATE TEMP TABLE IF NOT EXISTS "{self._stage}" '
                    f'(LIKE "{self.table.name}" INCLUDING {including}) ON COMMIT DELETE ROWS'
                )
                staged.add(self._stage)
            columns = ", ".join(f'"{n}"' for n in self._names)
            copy_in = f'COPY "{self._stage}" ({columns}) FROM STDIN (FORMAT BINARY)'
            set_json_dumps(_as_is, context=cursor)  # ``data`` is the record's JSON text already
            with cursor.copy(copy_in) as copy:
                copy.set_types(self._builder.postgres_types)
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self._statement)

    # -- reconciliation (worker/sync/reconcile.py) -------------------------------------------

    def _live_in(
        self, lower: datetime | None, upper: datetime | None, upper_inclusive: bool = False
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = [self.table.c.deleted_at.is_(None)]
        if lower is not None:
            where.append(self.table.c.updated_at >= lower)
        if upper is not None:
            column = self.table.c.updated_at
            where.append(column <= upper if upper_inclusive else column < upper)
        return where

    def count_live(
        self, lower: datetime | None, upper: datetime, upper_inclusive: bool = False
    ) -> int:
        """Live rows with ``updated_at`` in ``[lower, upper)``, or ``[lower, upper]``: the
        range the API counts (its end bound's own choice, probed)."""
        with reader(self.engine).connect() as conn:
            where = self._live_in(lower, upper, upper_inclusive)
            return int(conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one())

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

    def unseen_ids(self, lower: datetime | None, seen_since: datetime) -> set[str]:
        """Live rows from ``lower`` on that no write since ``seen_since`` touched."""
        where = [*self._live_in(lower, None), self.table.c.synced_at < seen_since]
        with reader(self.engine).connect() as conn:
            return set(conn.execute(sa.select(self.table.c.id).where(*where)).scalars())

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
