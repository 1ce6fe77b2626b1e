"""Loading pages into ``rr_<resource>``: bulk, idempotent, and committed with the checkpoint.

Every batch of pages is one transaction holding the upsert of its rows, their child rows
(warehouse/children.py), the advanced cursor, the run's counters and the lease renewal (the
fence). A crash anywhere leaves either all of it or none.

The upsert never lets an older version overwrite a newer one (``updated_at`` decides, per column,
with a CASE) but always stamps ``synced_at`` and clears ``deleted_at``: a full sync relies on
``synced_at`` to know which rows it saw, including ones it saw in an older version.

Dialects differ only in how rows travel: SQLite gets plain tuples on the DBAPI cursor (no
per-row SQLAlchemy processing), 1,000 rows to a statement (db.SqliteRows); PostgreSQL gets a
binary ``COPY`` into a temporary staging table and one ``INSERT ... SELECT ... ON CONFLICT``.
Measured on the benchmark machine (benchmarks/README.md): COPY beat psycopg's pipelined
executemany of the same upsert (7,700 against 7,000 records/s on 50,000 orders), and binary COPY
beat text COPY (10,300 against 8,900 records/s on 70,000 records): the server no longer
unescapes each 2 KB line nor parses the typed columns' text, and the client no longer escapes
it. What is left is mostly PostgreSQL parsing the JSONB ``data``, which no format avoids.
DuckDB (issue 14, item 5), whose ``executemany`` runs one statement per row (about 500
records/s), gets each column bound as one list and one ``INSERT ... SELECT unnest(...) ... ON
CONFLICT``: about 10,000 records/s of 2 KB orders on the benchmark machine.

Poison records (issue 13, item 5) never stop a batch: those found while building rows arrive as
:class:`~worker.warehouse.rows.Poison` and are quarantined (warehouse/quarantine.py) in the
batch's own transaction. When the database still refuses a batch for its data, the refused
records are found by splitting it (:meth:`Loader._refused`, each probe rolled back) and the rest
commits. The clean path pays one pass over the batch to look for poison, nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.errors import QuarantineFull
from worker.logs import redact
from worker.source.records import Record
from worker.source.resources import Column, Resource
from worker.warehouse import quarantine
from worker.warehouse.children import ChildWriter
from worker.warehouse.db import (
    SqliteRows,
    disk_full,
    is_disk_full,
    is_postgres,
    psycopg_connection,
    reader,
    sqlstate,
    upsert,
)
from worker.warehouse.rows import Poison, Row, RowBuilder
from worker.warehouse.runs import add_progress, advance_cursor
from worker.warehouse.schema import resource_tables

log = logging.getLogger(__name__)

Fence = Callable[[sa.Connection], None]

_STAGES = "rrsync_stages"  # connection info: the staging tables this connection has created

# SQLSTATE classes of a refusal caused by a row's data (PostgreSQL appendix A): data exception,
# integrity constraint violation, an exception raised by a trigger (PL/pgSQL), a program limit
# (a value nested too deeply, say). Not 08 (connection), 53 (disk full, memory), 57 (shutdown).
_REFUSING_CLASSES = frozenset({"22", "23", "P0", "54"})


def refusal(exc: BaseException) -> str | None:
    """The database's one-line reason when ``exc`` refuses some row's data; None for anything
    else (a lost connection, a full disk, a bug), which must fail the batch as it is."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    state = sqlstate(orig)
    if state is not None:
        if state[:2] not in _REFUSING_CLASSES:
            return None
    elif not isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError | UnicodeError) and not (
        _duckdb_refuses(orig)
    ):
        return None
    lines = str(orig).strip().splitlines()  # PostgreSQL's DETAIL and CONTEXT quote the data
    return redact(" ".join((lines[0] if lines else type(orig).__name__).split()))[:300]


def _duckdb_refuses(error: BaseException | None) -> bool:
    """A value its column cannot hold, or JSON DuckDB cannot parse. DuckDB as already imported:
    an error of its own means it was (see db.sqlstate)."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is None:
        return False
    refusing = duckdb.DataError | duckdb.IntegrityError | duckdb.InvalidInputException
    return isinstance(error, refusing)


def _forget_stages(conn: sa.Connection) -> None:
    """After a rollback: a staging table created in it is gone, so create it again next time."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        conn.connection.info.pop(_STAGES, None)


def _as_is(text: str) -> str:
    return text


class Loader:
    """Writes one resource's pages; one instance per run."""

    def __init__(
        self,
        engine: Engine,
        resource: Resource,
        org: str,
        run_id: int,
        max_quarantine: int = 100,
    ) -> None:
        self.engine = engine
        self.resource = resource
        self.org = org
        self.run_id = run_id
        self.max_quarantine = max_quarantine  # new poison records this run may set aside
        self.table = resource_tables[resource.name]
        self.postgres = is_postgres(engine)
        self.duckdb = engine.dialect.name == "duckdb"
        native = self.postgres or self.duckdb
        self._builder = RowBuilder(resource, self.postgres, org=org, native=native)
        self._names = self._builder.columns
        self._data = self._names.index("data")
        self._statement = (
            self._newest_statement(self._duckdb_stage() if self.duckdb else self._pg_stage())
            if native
            else self._sqlite_statement()
        )
        self._sqlite = None if native else SqliteRows(self._statement, len(self._names))
        self._updated = self._names.index("updated_at")
        self._children = ChildWriter(engine, resource, org, self._names)
        # Quarantine bookkeeping, shared by the writer threads: the keys quarantined before
        # this run, the keys now quarantined (released when their record loads), and the new
        # ones this run set aside (what SYNC_MAX_QUARANTINE limits).
        self._quarantine_lock = threading.Lock()
        self._before = frozenset(quarantine.keys(engine, resource.name, org))
        self._held = set(self._before)
        self._new: set[str] = set()

    # -- statements, built once per run -------------------------------------------------------

    def _on_conflict(self, insert: Any) -> Any:
        excluded = insert.excluded
        newer = excluded.updated_at >= self.table.c.updated_at
        keep_newest = {
            name: sa.case((newer, excluded[name]), else_=self.table.c[name])
            for name in self._names
            if name not in ("org", "id", "synced_at", "deleted_at")
        }
        return insert.on_conflict_do_update(
            index_elements=[self.table.c.org, self.table.c.id],
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

    def _pg_stage(self) -> sa.FromClause:
        return sa.table(self._stage, *(sa.column(n) for n in self._names))

    def _duckdb_stage(self) -> sa.FromClause:
        """The batch as rows, from one list per column bound as a parameter (``?``): several
        ``unnest`` in one select list step through their lists together."""
        columns = zip(self._names, self._builder.duckdb_types, strict=True)
        return sa.select(
            *(sa.func.unnest(sa.literal_column(f"?::{kind}[]")).label(n) for n, kind in columns)
        ).subquery(self._stage)

    def _newest_statement(self, stage: sa.FromClause) -> str:
        # In id order, so that two batches in flight (worker/sync/commits.py) that share ids
        # lock them in the same order and cannot deadlock. (One row per id: see _newest.)
        rows = sa.select(*(stage.c[n] for n in self._names)).order_by(stage.c.id)
        insert = upsert(self.engine)(self.table).from_select(self._names, rows)
        return str(self._on_conflict(insert).compile(dialect=self.engine.dialect))

    @property
    def unparsable(self) -> dict[Column, int]:
        """Values stored NULL so far this run, per typed column (issue 14, item 2)."""
        return dict(self._builder.unparsable)

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
        (None: leave it), and the rows and pages counted into the run. Poison rows, and the
        rows the database refuses, are quarantined in the same transaction (module doc);
        :class:`~worker.errors.QuarantineFull` when the run has set aside too many."""
        poison = [row for row in rows if type(row) is Poison]
        good = [row for row in rows if type(row) is not Poison] if poison else rows
        try:
            try:
                self._commit(good, poison, len(rows), pages, cursor, stats, fence)
            except Exception as exc:
                why = refusal(exc)
                refused = self._refused(good, why) if why is not None and good else []
                if not refused:
                    raise
                log.warning(
                    "%s: the database refused %d of %d record(s) of a batch; quarantined them "
                    "(first: %s)",
                    self.resource.name,
                    len(refused),
                    len(good),
                    refused[0][1],
                )
                gone = {id(row) for row, _ in refused}
                kept = [row for row in good if id(row) not in gone]
                poison += [
                    Poison(row[0], row[self._data], f"the database refused it: {reason}")
                    for row, reason in refused
                ]
                self._commit(kept, poison, len(rows), pages, cursor, stats, fence)
        except Exception as exc:
            if is_disk_full(exc):  # issue 13, item 8: say so, as a transient failure
                raise disk_full(self.engine, exc, self.resource.name) from None
            raise

    def _commit(
        self,
        good: Sequence[Row],
        poison: list[Poison],
        records: int,
        pages: int,
        cursor: Callable[[], datetime | None],
        stats: dict[str, int],
        fence: Fence,
    ) -> None:
        fresh = self._reserve(poison) if poison else set()
        try:
            with self.engine.begin() as conn:
                try:
                    if good:
                        self._write(conn, good)
                    loaded = self._release(conn, good) if self._held else []
                    if poison:
                        quarantine.add(conn, self.resource.name, self.org, poison, utcnow())
                    # The rows first, then the rows every transaction of this run updates
                    # (lease, cursor, run): their locks are held to the commit, so taking them
                    # last lets two batches in flight (worker/sync/commits.py) overlap in all
                    # but their commits.
                    fence(conn)
                    position = cursor()
                    if position is not None:
                        advance_cursor(conn, self.resource.name, self.org, position)
                    add_progress(conn, self.run_id, pages, records, stats)
                except BaseException:
                    _forget_stages(conn)
                    raise
        except BaseException:
            with self._quarantine_lock:
                self._new -= fresh
            raise
        with self._quarantine_lock:
            self._held.difference_update(loaded)
            self._held.update(quarantine.key_of(item) for item in poison)

    def _reserve(self, poison: list[Poison]) -> set[str]:
        """Counts the batch's new poison against SYNC_MAX_QUARANTINE before it commits (so two
        writers cannot both slip under the limit); the caller gives them back on failure."""
        with self._quarantine_lock:
            fresh = {quarantine.key_of(item) for item in poison} - self._before - self._new
            if len(self._new) + len(fresh) > self.max_quarantine:
                example = poison[-1]
                raise QuarantineFull(
                    f"{self.resource.name}: {len(self._new) + len(fresh)} new records of this "
                    f"run could not be stored, more than SYNC_MAX_QUARANTINE="
                    f"{self.max_quarantine} allows (record {example.record_id or '(no id)'}: "
                    f"{redact(example.reason)[:200]}); see rrsync_quarantine, then fix the "
                    "source or raise SYNC_MAX_QUARANTINE"
                )
            self._new |= fresh
            return fresh

    def _release(self, conn: sa.Connection, good: Sequence[Row]) -> list[str]:
        """Quarantined records stored by this batch leave the quarantine with it."""
        with self._quarantine_lock:
            loaded = [row[0] for row in good if row[0] in self._held]
        if loaded:
            quarantine.release(conn, self.resource.name, self.org, loaded)
            log.info("%s: %d quarantined record(s) loaded now", self.resource.name, len(loaded))
        return loaded

    def _refused(self, rows: Sequence[Row], reason: str) -> list[tuple[Row, str]]:
        """The rows of a batch the database refused (with ``reason``), found by splitting it:
        each half is written in a savepoint that is always rolled back, and a refused half is
        split again. k refused rows of n cost about 2 k log2(n) probes; the search stops once
        the run could not take more into quarantine anyway. DuckDB has no savepoints: each of
        its probes is a transaction of its own, rolled back."""
        found: list[tuple[Row, str]] = []
        with self.engine.connect() as conn:

            def probe(part: Sequence[Row]) -> str | None:
                savepoint = conn.begin() if self.duckdb else conn.begin_nested()
                try:
                    self._write(conn, part)
                except Exception as exc:
                    savepoint.rollback()
                    _forget_stages(conn)
                    why = refusal(exc)
                    if why is None:
                        raise
                    return why
                savepoint.rollback()
                _forget_stages(conn)
                return None

            def search(part: Sequence[Row], why: str) -> None:
                if len(found) > self.max_quarantine:
                    return
                if len(part) == 1:
                    found.append((part[0], why))
                    return
                middle = len(part) // 2
                for half in (part[:middle], part[middle:]):
                    refused = probe(half)
                    if refused is not None:
                        search(half, refused)

            search(rows, reason)
        return found

    def quarantined_to_retry(self, before: datetime) -> list[str]:
        """Ids quarantined by earlier runs, for the run to fetch again (at most the limit)."""
        limit = max(self.max_quarantine, 1)
        return quarantine.ids_to_retry(self.engine, self.resource.name, self.org, before, limit)

    def release_unseen(self, seen_since: datetime, fence: Fence) -> int:
        """After a complete full pass: quarantined records it did not see are gone."""
        with self.engine.begin() as conn:
            fence(conn)
            return quarantine.release_unseen(conn, self.resource.name, self.org, seen_since)

    def _newest(self, rows: Sequence[Row]) -> Sequence[Row]:
        """One row per record, its newest version (of equals, the last, as an upsert of each in
        turn would keep): a batch of pages can carry a record twice when it changed between two
        of them, or where sweep pages overlap. ON CONFLICT may not touch a row twice in one
        statement, and the children written are those of the one version written."""
        at = self._updated
        newest: dict[str, Row] = {}
        for row in rows:
            seen = newest.get(row[0])
            if seen is None or row[at] >= seen[at]:  # SQLite's time text sorts as time
                newest[row[0]] = row
        return rows if len(newest) == len(rows) else list(newest.values())

    def _write(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        """The batch's parents (each row without its last field, the child rows), then their
        children."""
        rows = self._newest(rows)
        if self.duckdb:
            *columns, _ = (list(column) for column in zip(*rows, strict=True))
            conn.exec_driver_sql(self._statement, tuple(columns))
        elif self._sqlite is not None:
            self._sqlite.write(conn, [row[:-1] for row in rows])
        else:
            self._copy(conn, rows)
        if self._children:
            self._children.write(conn, rows)

    def _copy(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        from psycopg.types.json import set_json_dumps  # here: SQLite never imports psycopg

        staged: set[str] = conn.connection.info.setdefault(_STAGES, set())
        with psycopg_connection(conn).cursor() as cursor:
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
                    copy.write_row(row[:-1])
            cursor.execute(self._statement)

    # -- reconciliation (worker/sync/reconcile.py) -------------------------------------------

    def _live_in(
        self, lower: datetime | None, upper: datetime | None, upper_inclusive: bool = False
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = [
            self.table.c.org == self.org,
            self.table.c.deleted_at.is_(None),
        ]
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
                .where(
                    self.table.c.org == self.org,
                    self.table.c.id.in_(list(ids)),
                    self.table.c.deleted_at.is_(None),
                )
                .values(deleted_at=utcnow())
            )
            return int(result.rowcount)

    def mark_deleted(self, seen_since: datetime, fence: Fence) -> int:
        """After a complete full pass: rows it did not see get ``deleted_at`` (never a delete)."""
        with self.engine.begin() as conn:
            fence(conn)
            result = conn.execute(
                self.table.update()
                .where(
                    self.table.c.org == self.org,
                    self.table.c.deleted_at.is_(None),
                    self.table.c.synced_at < seen_since,
                )
                .values(deleted_at=utcnow())
            )
            return int(result.rowcount)
