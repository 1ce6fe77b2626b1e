"""The SQLAlchemy engine: one per process, tuned per dialect.

SQLite is the embedded default and gets the settings that make it safe with several processes
(worker, beat, CLI) on one file: WAL (readers never block the writer), a busy timeout, and real
transactions. Python's sqlite3 module starts transactions lazily and only before DML, so by
default DDL and the first SELECT of a read-modify-write run outside any transaction; we switch
its own handling off and emit ``BEGIN IMMEDIATE`` ourselves (the recipe in SQLAlchemy's SQLite
dialect docs, "Serializable isolation / Savepoints / Transactional DDL"). IMMEDIATE takes the
write lock up front, which is what makes "lock, re-read, write" (the credential refresh, a lease)
correct, and avoids the SQLITE_BUSY a deferred transaction gets when it upgrades to a writer.
Read-only work uses :func:`reader`, which begins a plain deferred transaction instead.

DuckDB, the third choice (issue 14, item 5), allows one process at a time on its file: its
engine is built in duck.py.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine, make_url

from worker.errors import ConfigError, RoseSyncError, Unreachable, WarehouseFull
from worker.logs import redact, safe_url

if TYPE_CHECKING:  # imported where used: a SQLite deployment never loads psycopg (issue 16)
    import psycopg

SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_CACHE_KIB = 16 * 1024  # per connection; see _tune_sqlite
_READONLY = "rrsync_readonly"


def _parse(url: str) -> sa.URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"DATABASE_URL: expected a SQLAlchemy URL, got {url!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "duckdb"):
        raise ConfigError(
            f"DATABASE_URL: rosesync supports sqlite:///, duckdb:/// and postgresql:// URLs, got "
            f"{parsed.get_backend_name()!r}"
        )
    return parsed


# A PostgreSQL host that drops packets would otherwise hold `connect` for the OS's TCP timeout
# (minutes); a refused connection fails at once either way.
CONNECT_TIMEOUT_SECONDS = 10


def database_file(url: str) -> Path | None:
    """The file behind a SQLite or DuckDB URL (absolute), None for PostgreSQL or an in-memory
    database."""
    parsed = _parse(url)
    database = parsed.database
    if parsed.get_backend_name() == "postgresql" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def require_existing(url: str) -> None:
    """For commands that only read: a SQLite or DuckDB file that is not there is an error, never
    created (issue 17: `status` run from another directory created ./var/rrsync.db and said "no
    credential")."""
    path = database_file(url)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"DATABASE_URL: there is no database at {path} ({url}): run rosesync from the "
            "directory it was set up in (relative paths start there), set DATABASE_URL, or "
            "create it with `rosesync db upgrade`"
        )


def _cause(exc: sa.exc.DBAPIError) -> str:
    """The driver's reason in a few words: 'Connection refused', 'database "x" does not
    exist' (psycopg prefixes it with where it tried; SQLite's is short already)."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    text = text.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    return redact(" ".join(text.split()))[:200]


def connection_error(url: str, exc: sa.exc.DBAPIError | OSError) -> RoseSyncError:
    """What to tell the operator when the database behind DATABASE_URL cannot be used.

    No server answered (refused, unknown host, timed out): :class:`Unreachable`, which a Celery
    task may retry later. The server answered no (no such database, wrong password), or a
    SQLite or DuckDB file cannot be opened: :class:`ConfigError`. Either names the variable and the
    address, never the password.
    """
    where = safe_url(url)
    if isinstance(exc, OSError):
        return ConfigError(f"DATABASE_URL: cannot use {where} ({exc.strerror or exc})")
    cause = _cause(exc)
    if getattr(exc.orig, "sqlstate", None) is None and database_file(url) is None:
        return Unreachable(f"DATABASE_URL: cannot connect to {where} ({cause})")
    return ConfigError(f"DATABASE_URL: {where}: {cause}")


def create_engine(url: str, pooled: bool = True, wal: bool = True) -> Engine:
    """An engine for ``url``; for a SQLite or DuckDB file, its directory is created if missing.

    ``pooled=False`` closes every connection after use: for a thread of a process that forks
    (the Celery worker's heartbeat, before the embedded beat forks), since a SQLite connection
    carried across fork() breaks the file's locking ("locking protocol"). DuckDB's engine never
    pools (duck.py).

    ``wal=False`` leaves a SQLite file's journal mode as it is: for the embedded broker's file,
    which a worker may be polling (worker/warehouse/broker.py).
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        own, data = parsed.query.get(OWN_PARAMETER), parsed.query.get(DATA_PARAMETER)
        parsed = parsed.difference_update_query([OWN_PARAMETER, DATA_PARAMETER])
        pool: dict[str, Any] = (
            {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}
            if pooled
            else {"poolclass": sa.pool.NullPool}
        )
        engine = sa.create_engine(
            parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}, **pool
        )
        if isinstance(own, str):
            _place(engine, own, data if isinstance(data, str) else None)
        return engine
    path = database_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise connection_error(url, exc) from None
    if parsed.get_backend_name() == "duckdb":
        # Imported here: DuckDB costs a SQLite or PostgreSQL deployment nothing at start-up.
        from worker.warehouse import duck

        return duck.create_engine(parsed)
    engine = sa.create_engine(
        parsed,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **({} if pooled else {"poolclass": sa.pool.NullPool}),
    )
    _tune_sqlite(engine, wal)
    return engine


# Where things land on PostgreSQL (issue 14, item 3), carried by the URL so that every engine
# of a process, and every process, agrees (Settings.warehouse_url adds them): rosesync's own
# tables in one schema, the rr_* tables in another (default: the connection's own default).
OWN_PARAMETER = "rrsync_own"
DATA_PARAMETER = "rrsync_data"
_SCHEMAS = "rrsync_schemas"  # connection info: (data, own) as placed


def _place(engine: Engine, own: str, data: str | None) -> None:
    """Every connection's search_path becomes "data, own": unqualified names (SQLAlchemy's
    tables, the loader's raw SQL, Alembic) find the rr_* tables in the first and rosesync's
    own in the second, and a new table lands in the first (migrate.py switches the order
    while it creates rosesync's own)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            default = cursor.fetchone()[0] or "public"
            schema = data or default
            cursor.execute(f'SET search_path TO "{schema}", "{own}"')
        dbapi_connection.commit()
        record.info[_SCHEMAS] = (schema, own)


def schemas(conn: sa.Connection) -> tuple[str, str] | None:
    """(data, own) schemas of a PostgreSQL connection placed by :func:`_place`, else None."""
    placed = conn.connection.info.get(_SCHEMAS)
    return placed if isinstance(placed, tuple) else None


def _tune_sqlite(engine: Engine, wal: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see module doc
        cursor = dbapi_connection.cursor()
        # 16 KiB pages suit rows carrying a 2 KiB JSON record: fewer B-tree splits and WAL
        # frames per page of records (benchmarks/README.md). Only takes effect on a new file.
        cursor.execute("PRAGMA page_size=16384")
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only a power cut can lose
        # the last commits, and then data and cursor are lost together, never apart.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite's default page cache is 2 MB: a batch's upsert inserts its records' random UUID
        # keys all over the (org, id) and child-table indexes, several MB each at 50,000 orders,
        # so most of those inserts read their index page back from the OS. 16 MB hold them:
        # 20% less time writing a batch of orders and their children (benchmarks/README.md).
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        readonly = connection.get_execution_options().get(_READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def reader(engine: Engine) -> Engine:
    """The same engine, for read-only transactions (no write lock on SQLite)."""
    return engine.execution_options(**{_READONLY: True})


# SQLSTATE class 53, insufficient resources: 53100 disk_full ("could not extend file"),
# 53200 out of memory, 53300 too many connections. Only disk_full is the disk.
_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL, also a PRAGMA max_page_count reached),
    PostgreSQL's disk_full or DuckDB's failed write (ENOSPC), raw from the driver or wrapped by
    SQLAlchemy."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    duckdb = sys.modules.get("duckdb")  # imported only by a DuckDB deployment (duck.py)
    if duckdb is not None and isinstance(orig, duckdb.IOException):
        return os.strerror(errno.ENOSPC) in str(orig)
    return sqlstate(orig) == _DISK_FULL


def sqlstate(error: BaseException | None) -> str | None:
    """PostgreSQL's SQLSTATE of a psycopg error ("" when it has none); None for anything else.

    psycopg as already imported, if it was: a psycopg error means it was, and a SQLite
    deployment does not pay the 50 ms of importing it at start-up (issue 16)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(error, psycopg.Error):
        return None
    return str(error.sqlstate or "")


def disk_full(engine: Engine, exc: BaseException, what: str) -> WarehouseFull:
    """The one-line report of a full disk: which database, and what to do."""
    where = engine.url.render_as_string(hide_password=True)
    return WarehouseFull(
        f"{what}: the warehouse database is out of disk space ({where}); free space or "
        "enlarge its volume (on SQLite also check PRAGMA max_page_count), and the next run "
        "resumes from the last committed page"
    )


# Rows one SQLite INSERT carries when a batch is written (issue 16). ``executemany`` steps its
# statement once per row, and CPython's sqlite3 lets go of the GIL around every step: with the
# fetcher threads decoding pages in Python meanwhile, the writer then waited for the GIL again
# after each row. In a full sync of 70,000 records the upsert took 2.0 s, 0.6 s of it on the
# CPU; as statements of 1,000 rows, 0.9 s, and the whole process 3.20 -> 2.94 s (median of 5,
# benchmarks/README.md). A statement of 1,000 rows of 13 values takes SQLite about 2 MB, held
# by sqlite3's statement cache on each connection that ran it: hence fixed sizes only (one
# statement for full groups, ``executemany`` for the rest), never one per batch size.
SQLITE_ROWS_PER_STATEMENT = 1000


class SqliteRows:
    """A one-row ``INSERT ... VALUES (?, ...) ...`` statement, run over many rows as statements
    of up to ``per_statement`` rows each (see SQLITE_ROWS_PER_STATEMENT), and what is left
    with ``executemany``; whatever follows the VALUES row (an ON CONFLICT clause) applies to
    every row, as it would row by row."""

    def __init__(
        self, statement: str, width: int, per_statement: int = SQLITE_ROWS_PER_STATEMENT
    ) -> None:
        row = f"({', '.join('?' * width)})"
        head, values, tail = statement.partition(f"VALUES {row}")
        if not values:
            raise ValueError(f"not a one-row INSERT of {width} parameters: {statement[:80]!r}")
        self._one = statement
        self._parts = (head, row, tail)
        self._width = width
        self._wanted = per_statement
        self._group: tuple[int, str] | None = None  # rows per statement, and that statement

    def _grouped(self, conn: sa.Connection) -> tuple[int, str]:
        """Rows per statement within SQLite's limit on a statement's parameters (32,766 by
        default since SQLite 3.32, 999 before), and that statement; made at the first use."""
        if self._group is None:
            driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            size = max(1, min(self._wanted, limit // self._width))
            head, row, tail = self._parts
            self._group = (size, f"{head}VALUES {', '.join([row] * size)}{tail}")
        return self._group

    def write(self, conn: sa.Connection, rows: Sequence[Sequence[Any]]) -> None:
        size, statement = self._grouped(conn)
        whole = len(rows) - len(rows) % size
        for start in range(0, whole, size):
            conn.exec_driver_sql(statement, tuple(chain.from_iterable(rows[start : start + size])))
        if whole < len(rows):
            conn.exec_driver_sql(self._one, list(rows[whole:]))


def psycopg_connection(conn: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under ``conn`` (PostgreSQL only), for COPY and binary parameters,
    which SQLAlchemy does not offer."""
    import psycopg

    dbapi = conn.connection.dbapi_connection
    assert isinstance(dbapi, psycopg.Connection)
    return dbapi


def is_postgres(bind: Engine | sa.Connection) -> bool:
    return bind.dialect.name == "postgresql"


def column_names(conn: sa.Connection, table: str) -> list[str]:
    """The columns of a table or view, in order."""
    if conn.dialect.name == "duckdb":
        # duckdb-engine's inspector asks PostgreSQL's catalog for collations DuckDB lacks
        query = sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
            "ORDER BY ordinal_position"
        )
        return list(conn.execute(query, {"t": table}).scalars())
    return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def upsert(bind: Engine | sa.Connection) -> Callable[[sa.Table], Any]:
    """The dialect's ``insert`` that has ``on_conflict_do_update``: DuckDB speaks PostgreSQL's
    (its SQLAlchemy dialect derives from it), SQLite its own."""
    if bind.dialect.name == "sqlite":
        return sqlite.insert
    from sqlalchemy.dialects import postgresql  # not imported on SQLite (issue 16, target 2)

    return postgresql.insert


def greatest(bind: Engine | sa.Connection) -> Any:
    """SQL's two-argument maximum: ``greatest`` (PostgreSQL, DuckDB), or ``max(a, b)`` on
    SQLite."""
    return sa.func.max if bind.dialect.name == "sqlite" else sa.func.greatest


_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """This process's engine for ``url``, created on first use.

    Keyed by pid because Celery's prefork pool forks workers: a pooled connection must never
    cross a fork (the parent's socket would be shared by two processes).
    """
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_engine(url)
        return engine
