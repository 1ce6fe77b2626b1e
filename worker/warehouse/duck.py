"""DuckDB as the warehouse (issue 14, item 5): the analyst's embedded, columnar database.

DuckDB lets one process at a time open a database file for writing; any other process gets
"Could not set lock on file". rosesync runs several processes on one database (the Celery
worker and its pool processes, beat, CLI commands such as ``rosesync status``), so a DuckDB
engine never keeps the file open: every connection opens it for one transaction and closes it
(``NullPool``), which releases the file for the next process. A process that finds the file
held waits and tries again with a growing back-off, for at most :data:`LOCK_TIMEOUT_SECONDS`
(SQLite's busy timeout plays the same part), then fails with one line naming DATABASE_URL.

Inside a process, the threads of a sync (the writer, the lease heartbeat) share DuckDB's one
database instance, whose optimistic concurrency would fail the second of two transactions that
touch the same row instead of making it wait. So each process also takes a turn (:class:`_Turn`)
for the life of a connection: DuckDB transactions are serialized, process-wide and across
processes, which is the guarantee SQLite's ``BEGIN IMMEDIATE`` gives (one writer at a time, a
"lock, re-read, write" is correct) and why ``SELECT ... FOR UPDATE``, which DuckDB does not
parse, can be left out.

The rest is SQL that DuckDB spells differently: it has no ``SERIAL`` (an autoincrement integer
key gets a sequence of its own, ``<table>_<column>_seq``, as PostgreSQL names it), and Alembic
needs an implementation class for the ``duckdb`` dialect name.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from alembic.ddl.postgresql import PostgresqlImpl
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateTable
from sqlalchemy.sql.compiler import SQLCompiler

from worker.errors import WarehouseUnavailable
from worker.logs import safe_url

LOCK_TIMEOUT_SECONDS = 60.0
_FIRST_WAIT = 0.01
_LONGEST_WAIT = 0.5
_LOCKED = "Could not set lock on file"


class DuckDBImpl(PostgresqlImpl):
    """Alembic's operations on DuckDB: its dialect is PostgreSQL's, and so is its DDL."""

    __dialect__ = "duckdb"
    transactional_ddl = True


def _serial(column: sa.Column[Any]) -> bool:
    table = column.table
    return (
        table is not None
        and column is table.autoincrement_column
        and column.server_default is None
        and isinstance(column.type, sa.Integer)
    )


def _sequence(column: sa.Column[Any]) -> str:
    return f"{column.table.name}_{column.name}_seq"


@compiles(CreateColumn, "duckdb")
def _create_column(element: CreateColumn, compiler: Any, **kw: Any) -> str:
    column = element.element
    if not _serial(column):
        return str(compiler.visit_create_column(element, **kw))
    name = compiler.preparer.format_column(column)
    kind = compiler.type_compiler.process(column.type)
    return f"{name} {kind} DEFAULT nextval('{_sequence(column)}') NOT NULL"


@compiles(CreateTable, "duckdb")
def _create_table(element: CreateTable, compiler: Any, **kw: Any) -> str:
    """The table, preceded by the sequence of its autoincrement key (one DDL string: DuckDB
    runs the statements of one execute in order)."""
    ddl = str(compiler.visit_create_table(element, **kw))
    serial = [c for c in element.element.columns if _serial(c)]
    return "".join(f"CREATE SEQUENCE IF NOT EXISTS {_sequence(c)};\n" for c in serial) + ddl


def _no_for_update(_compiler: SQLCompiler, _select: Any, **_kw: Any) -> str:
    """Every transaction holds the database alone (module doc): no row lock to ask for."""
    return ""


def database_file(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser().resolve()


class _Turn:
    """One thread at a time per process holds the database; reentrant within a thread (a
    connection opened while the same thread holds another), and releasable from any thread
    (the pool may close a connection a thread forgot from the garbage collector)."""

    def __init__(self) -> None:
        self._free = threading.Condition()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._free:
            while self._depth and self._owner != me:
                self._free.wait()
            self._owner = me
            self._depth += 1

    def release(self) -> None:
        with self._free:
            self._depth -= 1
            if self._depth <= 0:
                self._depth = 0
                self._owner = None
                self._free.notify()


def _connect(url: str, open_file: Callable[[], Any], timeout: float) -> Any:
    """Opens the file, waiting while another process holds it."""
    deadline = time.monotonic() + timeout
    wait = _FIRST_WAIT
    while True:
        try:
            return open_file()
        except duckdb.IOException as exc:
            if _LOCKED not in str(exc):
                raise
            if time.monotonic() >= deadline:
                holder = re.search(r"PID (\d+)", str(exc))
                raise WarehouseUnavailable(
                    f"DATABASE_URL: {safe_url(url)} stayed locked by another process"
                    f"{f' (PID {holder.group(1)})' if holder else ''} for {timeout:.0f} s: "
                    "DuckDB lets one process at a time open the file, and rosesync opens it "
                    "for one transaction at a time; look for a process that keeps it open "
                    "(a DuckDB shell, a notebook) and close it, or use PostgreSQL for many "
                    "workers"
                ) from None
        time.sleep(min(wait, max(deadline - time.monotonic(), 0)) * random.uniform(0.5, 1))
        wait = min(wait * 2, _LONGEST_WAIT)


_turns: dict[tuple[int, str], _Turn] = {}
_turns_lock = threading.Lock()


def _turn(database: str) -> _Turn:
    """This process's turn at ``database``; keyed by pid, since a fork copies a held one."""
    with _turns_lock:
        return _turns.setdefault((os.getpid(), database), _Turn())


def create_engine(url: sa.URL, timeout: float = LOCK_TIMEOUT_SECONDS) -> Engine:
    """An engine that opens the file per connection, one connection at a time (module doc)."""
    path = database_file(url)
    database = ":memory:" if path is None else str(path)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    turn = _turn(database)
    rendered = url.render_as_string(hide_password=True)

    @sa.event.listens_for(engine, "do_connect")
    def _open(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        turn.acquire()
        try:
            return _connect(rendered, lambda: dialect.connect(*cargs, **cparams), timeout)
        except BaseException:
            turn.release()
            raise

    @sa.event.listens_for(engine, "close")
    def _closed(_dbapi_connection: Any, _record: Any) -> None:
        turn.release()

    @sa.event.listens_for(engine, "close_detached")
    def _closed_detached(_dbapi_connection: Any) -> None:
        turn.release()

    compiler: type[SQLCompiler] = engine.dialect.statement_compiler
    engine.dialect.statement_compiler = type(
        "RosesyncDuckDBCompiler", (compiler,), {"for_update_clause": _no_for_update}
    )
    return engine
