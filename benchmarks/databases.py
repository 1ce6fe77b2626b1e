"""A fresh, empty warehouse per contender run, and the row count that checks what it loaded.

SQLite: a new file in the run directory. PostgreSQL: a new schema in the ``test`` database,
selected through ``search_path`` in the URL (``options=-csearch_path=...``) so that every
client, rosesync's SQLAlchemy engine and the baselines' psycopg connections alike, lands in it;
the schema is dropped afterwards. DuckDB (issue 14): a new file, for rosesync alone (the
baselines speak sqlite3 and psycopg only; :data:`BASELINE_KINDS`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
KINDS = ("sqlite", "postgresql", "duckdb")
BASELINE_KINDS = ("sqlite", "postgresql")  # where the naive and simple loaders run too


@dataclass(frozen=True, slots=True)
class Warehouse:
    """One empty database. ``url`` is what the baselines take (``sqlite:///path`` or a libpq
    URI); ``sqlalchemy_url`` what rosesync's DATABASE_URL takes."""

    kind: str
    url: str
    sqlalchemy_url: str

    def scalar(self, query: str) -> int:
        """The one integer ``query`` (SQL from our own code, never input) answers; 0 for NULL."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn:
                return int(conn.execute(query).fetchone()[0] or 0)
        if self.kind == "duckdb":
            with closing(duckdb.connect(self.url.removeprefix("duckdb:///"))) as duck:
                found = duck.execute(query).fetchone()
                return int(found[0] or 0) if found else 0
        with psycopg.connect(self.url) as conn:
            row = conn.execute(query).fetchone()
            return int(row[0] or 0) if row else 0


@contextmanager
def fresh_warehouse(kind: str, run_dir: Path, label: str, postgres: str) -> Iterator[Warehouse]:
    """An empty ``kind`` database for one run, removed afterwards."""
    if kind == "sqlite":
        path = run_dir / f"{label}.db"
        try:
            yield Warehouse(kind, f"sqlite:///{path}", f"sqlite:///{path}")
        finally:
            for leftover in run_dir.glob(f"{label}.db*"):  # with -wal and -shm
                leftover.unlink()
        return
    if kind == "duckdb":
        path = run_dir / f"{label}.duckdb"
        try:
            yield Warehouse(kind, f"duckdb:///{path}", f"duckdb:///{path}")
        finally:
            for leftover in run_dir.glob(f"{label}.duckdb*"):  # with .wal
                leftover.unlink()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            # rosesync's own tables in a fresh schema too (ROSESYNC_SCHEMA, issue 14), which
            # the search path names second so that ``scalar`` reads rrsync_runs
            url = f"{postgres}?options=-csearch_path%3D{schema}%2C{schema}_own"
            ours = url.replace("postgresql://", "postgresql+psycopg://", 1)
            yield Warehouse(kind, url, f"{ours}&rrsync_own={schema}_own")
        finally:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema}_own CASCADE")
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def postgres_version(postgres: str) -> str:
    with psycopg.connect(postgres) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"
