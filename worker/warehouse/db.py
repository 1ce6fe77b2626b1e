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
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from worker.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 60_000
_READONLY = "rrsync_readonly"


def _parse(url: str) -> sa.URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"DATABASE_URL: expected a SQLAlchemy URL, got {url!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"DATABASE_URL: rosesync supports sqlite:/// and postgresql:// URLs, got "
            f"{parsed.get_backend_name()!r}"
        )
    return parsed


def create_engine(url: str) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created if missing."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see module doc
        cursor = dbapi_connection.cursor()
        # 16 KiB pages suit rows carrying a 2 KiB JSON record: fewer B-tree splits and WAL
        # frames per page of records (benchmarks/README.md). Only takes effect on a new file.
        cursor.execute("PRAGMA page_size=16384")
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only a power cut can lose
        # the last commits, and then data and cursor are lost together, never apart.
        cursor.execute("PRAGMA synchronous=NORMAL")
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


def is_postgres(bind: Engine | sa.Connection) -> bool:
    return bind.dialect.name == "postgresql"


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
