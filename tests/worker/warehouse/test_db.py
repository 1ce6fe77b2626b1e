"""db.SqliteRows: many rows through a one-row INSERT, in statements of a fixed number of rows
(issue 16), on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support import inserts_run
from worker.warehouse.db import SqliteRows, create_engine

UPSERT = (
    "INSERT INTO t (k, v, w) VALUES (?, ?, ?) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v, w = coalesce(excluded.w, t.w)"
)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    made = create_engine(sqlite_url)
    with made.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, w TEXT)")
    yield made
    made.dispose()


def _stored(engine: Engine) -> dict[str, tuple[int, str | None]]:
    with engine.connect() as conn:
        return {k: (v, w) for k, v, w in conn.exec_driver_sql("SELECT k, v, w FROM t")}


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 7])
def test_rows_go_in_statements_of_the_group_size_and_the_rest_at_once(
    engine: Engine, count: int
) -> None:
    rows = [(f"k{n}", n, f"w{n}") for n in range(count)]
    seen = inserts_run(engine, "t")
    with engine.begin() as conn:
        SqliteRows(UPSERT, 3, per_statement=3).write(conn, rows)
    assert _stored(engine) == {k: (v, w) for k, v, w in rows}
    expected = [(3, 3)] * (count // 3) + ([(1, count % 3)] if count % 3 else [])
    assert seen == expected


def test_the_conflict_clause_applies_to_every_row_of_a_statement(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES ('a', 0, 'kept'), ('c', 0, 'old')")
        SqliteRows(UPSERT, 3, per_statement=4).write(
            conn, [("a", 1, None), ("b", 2, "new"), ("c", 3, "newer"), ("d", 4, None)]
        )
    assert _stored(engine) == {
        "a": (1, "kept"),
        "b": (2, "new"),
        "c": (3, "newer"),
        "d": (4, None),
    }


def test_a_statement_holds_no_more_parameters_than_sqlite_allows(sqlite_url: str) -> None:
    """Builds of SQLite before 3.32 allow 999 parameters a statement, not 32,766: the group
    shrinks to what the connection allows (here 7 parameters: two rows of three)."""
    engine = create_engine(sqlite_url)

    @sa.event.listens_for(engine, "connect")
    def _limit(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 7)

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, w TEXT)")
        seen = inserts_run(engine, "t")
        rows = [(f"k{n}", n, None) for n in range(5)]
        with engine.begin() as conn:
            SqliteRows(UPSERT, 3, per_statement=1000).write(conn, rows)
        assert _stored(engine) == {k: (v, w) for k, v, w in rows}
        assert seen == [(2, 2), (2, 2), (1, 1)]
    finally:
        engine.dispose()


def test_only_a_one_row_insert_of_that_width_is_taken() -> None:
    with pytest.raises(ValueError, match="not a one-row INSERT of 2 parameters"):
        SqliteRows(UPSERT, 2)
