"""Child tables (issue 14, item 1): each nested list the registry declares, one row per element.

A parent's children are derived inside the database from the parent row as stored, in the
parent's own transaction, right after the batch's upsert: delete the children of the parents
the batch wrote, then insert one row per element of each one's list (PostgreSQL
``jsonb_array_elements ... WITH ORDINALITY``, SQLite and DuckDB ``json_each``). So the children
always match the stored parent version: a parent the newer-wins rule kept (its stored ``updated_at``
is not the batch's) is left alone with its children, and a soft-deleted parent (never written
by a batch) keeps them.

Why in the database: building child rows in Python meant decoding every record in full (the
decoder reads only the typed columns' paths, worker/source/records.py) and shipping a second
set of rows; an earlier attempt made PostgreSQL syncs 25-40% slower. Here the only extra
traffic is two statements per child table (the SQL reads the JSON the upsert has just stored).
What it costs (benchmarks/README.md, rosesync against rosesync-flat, 20,000 orders and 8,000
customers, about 4.5 child rows an order, median of 3 on a busy 2-core machine): SQLite
0.51-0.58x the records/s without child tables, PostgreSQL 0.77x. On SQLite the writer, which
holds the database's only write lock, does it all: parsing each parent's JSON once per child
table, the typed columns (about half), the child rows and their index. Issue 16 asks 0.7x.

Typed columns follow the parent's rules (warehouse/rows.py) as far as SQL can without raising,
the same on both databases: a value that does not fit its type is NULL, the element being kept
whole in ``data``. Integers and amounts are read from JSON numbers only (a numeric string is
NULL here; integers up to 18 digits), timestamps in the API's own form only
(``2024-03-05T14:22:11.123Z``), text from strings, numbers and booleans (a number as its JSON
text). Every cast is guarded, so odd data never fails a batch. DuckDB (issue 14, item 5) reads
the same JSON with its own functions and the same rules; its casts are ``TRY_CAST``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from worker.source.resources import Child, Column, ColumnType, Resource
from worker.warehouse.schema import child_tables, parent_key, resource_tables


# Every statement here is built from the registry's names (quoted) and constants, never from
# data: the data stays in the database, or travels as a bound parameter (SQLite's written ids).
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- PostgreSQL ---------------------------------------------------------------------------------

# The API's form, every field in range; the CASE around the cast then checks the year (not
# 0000) and the day against the month's length, so that the cast itself never raises.
_PG_TIMESTAMP = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9]\.[0-9]{3}Z$"
)


def _postgres_value(element: str, column: Column) -> str:
    x = element + "".join(f" -> {_literal(key)}" for key in column.path.split("."))
    x = f"({x})"
    kind = f"jsonb_typeof({x})"
    text = f"({x} #>> '{{}}')"
    number = f"{x}::numeric"
    typed: dict[ColumnType, str] = {
        "text": (
            f"CASE {kind} WHEN 'string' THEN {text} WHEN 'number' THEN {x}::text "
            f"WHEN 'boolean' THEN {x}::text END"
        ),
        "boolean": f"CASE {kind} WHEN 'boolean' THEN {x}::boolean END",
        # a whole number of up to 18 digits, as on SQLite (1.0 has a scale: not whole)
        "integer": (
            f"CASE {kind} WHEN 'number' THEN CASE WHEN scale({number}) = 0 "
            f"AND abs({number}) < 1e18 THEN {number}::bigint END END"
        ),
        # NUMERIC(18, 4) rounds to 4 places on the way in: below this bound nothing carries
        # into a 15th digit. (A cast and a comparison: a regular expression on the text cost
        # twice the whole insert.)
        "numeric": (
            f"CASE {kind} WHEN 'number' THEN CASE WHEN abs({number}) < 99999999999999.99995 "
            f"THEN {number} END END"
        ),
        "timestamp": (
            f"CASE WHEN {kind} = 'string' AND {text} ~ {_literal(_PG_TIMESTAMP)} "
            f"AND substr({text}, 1, 4) <> '0000' THEN "
            f"CASE WHEN substr({text}, 9, 2)::int <= extract(day from "
            f"make_date(substr({text}, 1, 4)::int, substr({text}, 6, 2)::int, 1) "
            f"+ interval '1 month - 1 day') THEN {text}::timestamptz END END"
        ),
    }
    return typed[column.type]


# -- SQLite -------------------------------------------------------------------------------------

_SQLITE_TIMESTAMP = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z"
)


def _sqlite_path(path: str) -> str:
    return _literal("$" + "".join(f'."{key}"' for key in path.split(".")))


def _sqlite_value(element: str, column: Column) -> str:
    path = _sqlite_path(column.path)
    kind = f"json_type({element}, {path})"
    value = f"json_extract({element}, {path})"
    typed: dict[ColumnType, str] = {
        # a number as its JSON text, as the parent's text columns store it
        "text": (
            f"CASE {kind} WHEN 'text' THEN {value} WHEN 'integer' THEN {element} -> {path} "
            f"WHEN 'real' THEN {element} -> {path} WHEN 'true' THEN 'true' "
            "WHEN 'false' THEN 'false' END"
        ),
        "boolean": f"CASE {kind} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END",
        "integer": f"CASE WHEN {kind} = 'integer' AND abs({value}) < 1e18 THEN {value} END",
        # the number's own digits, as the API wrote them (a REAL would round them): exact
        "numeric": (
            f"CASE WHEN {kind} IN ('integer', 'real') AND abs({value}) < 1e14 "
            f"THEN {element} -> {path} END"
        ),
        # The API's form, as UTCDateTime stores it (schema.py), every field in range (SQLite's
        # date functions take February 30th and 24:00 as they come): the day at most the
        # month's last, which date() finds.
        "timestamp": (
            f"CASE WHEN {kind} = 'text' AND {value} GLOB {_literal(_SQLITE_TIMESTAMP)} "
            f"AND substr({value}, 1, 4) <> '0000' "
            f"AND substr({value}, 6, 2) BETWEEN '01' AND '12' AND substr({value}, 9, 2) >= '01' "
            f"AND substr({value}, 1, 10) <= "
            f"date(substr({value}, 1, 8) || '01', '+1 month', '-1 day') "
            f"AND substr({value}, 12, 2) < '24' AND substr({value}, 15, 2) < '60' "
            f"AND substr({value}, 18, 2) < '60' "
            f"THEN substr({value}, 1, 10) || ' ' || substr({value}, 12, 12) || '000' END"
        ),
    }
    return typed[column.type]


# -- DuckDB -------------------------------------------------------------------------------------

_DUCKDB_NUMBER = "('BIGINT', 'UBIGINT', 'DOUBLE')"  # json_type's names for a JSON number


def _duckdb_value(element: str, column: Column) -> str:
    path = _sqlite_path(column.path)  # the same JSONPath: $."key"."key"
    kind = f"json_type({element}, {path})"
    text = f"json_extract_string({element}, {path})"  # a number: its JSON text
    typed: dict[ColumnType, str] = {
        "text": f"CASE WHEN {kind} IN ('VARCHAR', 'BOOLEAN', 'BIGINT', 'UBIGINT', 'DOUBLE') "
        f"THEN {text} END",
        "boolean": f"CASE WHEN {kind} = 'BOOLEAN' THEN {text} = 'true' END",
        # a whole number (1.0 reads as DOUBLE: not whole) of up to 18 digits
        "integer": (
            f"CASE WHEN {kind} IN ('BIGINT', 'UBIGINT') AND length(ltrim({text}, '-')) <= 18 "
            f"THEN TRY_CAST({text} AS BIGINT) END"
        ),
        # from the number's text, not a double: exact; NULL where DECIMAL(18, 4) overflows
        "numeric": f"CASE WHEN {kind} IN {_DUCKDB_NUMBER} "
        f"THEN TRY_CAST({text} AS DECIMAL(18, 4)) END",
        "timestamp": (
            f"CASE WHEN {kind} = 'VARCHAR' AND regexp_full_match({text}, "
            f"{_literal(_PG_TIMESTAMP.strip('^$'))}) AND substr({text}, 1, 4) <> '0000' "
            f"THEN TRY_CAST({text} AS TIMESTAMPTZ) END"
        ),
    }
    return typed[column.type]


class ChildWriter:
    """Replaces the children of the parents a batch wrote; statements built once per run."""

    def __init__(self, resource: Resource, parent: sa.Table, dialect: sa.Dialect) -> None:
        self._key = [column.name for column, _ in parent_key(parent)]
        keys = ", ".join(f"p.{_quote(k)}" for k in self._key)
        if dialect.name == "postgresql":
            # The batch's keys as arrays, not a join with the staging table: the planner knows
            # an array's length, so it looks the parents (and their children) up by index; it
            # has no statistics on the stage, and chose to read both whole tables for every
            # batch, a sync quadratic in the table's size. Binary parameters: 2,000 keys and
            # times cost 1.6 ms a statement so, 10 ms as text (measured), four statements a batch.
            arrays = ", ".join(
                f"%(k{i})b::{column.type.compile(dialect=dialect)}[]"
                for i, (column, _) in enumerate(parent_key(parent))
            )
            written = (
                f"({keys}, p.updated_at) IN "  # noqa: S608
                f"(SELECT * FROM unnest({arrays}, %(updated)b::timestamptz[]))"
            )
        elif dialect.name == "duckdb":
            # one list per key column, as the upsert binds its rows (warehouse/load.py)
            lists = ", ".join(
                f"unnest(?::{column.type.compile(dialect=dialect)}[])"
                for column, _ in parent_key(parent)
            )
            written = f"({keys}, p.updated_at) IN (SELECT {lists}, unnest(?::TIMESTAMPTZ[]))"
        else:
            pairs = ", ".join(f"w.value ->> {i}" for i in range(len(self._key) + 1))
            written = f"({keys}, p.updated_at) IN (SELECT {pairs} FROM json_each(?) w)"  # noqa: S608
        self._statements = [
            statement
            for child, table in child_tables[resource.name]
            for statement in _replace(child, table, parent, dialect.name, written)
        ]

    def __bool__(self) -> bool:
        return bool(self._statements)

    def write_postgres(self, cursor: Any, names: Sequence[str], rows: Sequence[Any]) -> None:
        """After the upsert of ``rows`` (tuples in ``names`` order), on the same psycopg
        cursor and transaction: the children of every parent now stored in the version one of
        them carried."""
        written = self._written(names, rows)
        arrays: dict[str, list[Any]] = {
            f"k{i}": [key[i] for key in written] for i in range(len(self._key))
        }
        arrays["updated"] = list(written.values())
        for statement in self._statements:
            cursor.execute(statement, arrays)

    def write_sqlite(self, conn: sa.Connection, names: Sequence[str], rows: Sequence[Any]) -> None:
        """As :meth:`write_postgres`, the batch's keys as one JSON parameter."""
        written = self._written(names, rows)
        pairs = msgspec.json.encode([[*key, updated] for key, updated in written.items()])
        parameter = (pairs.decode(),)
        for statement in self._statements:
            conn.exec_driver_sql(statement, parameter)

    def write_duckdb(self, conn: sa.Connection, names: Sequence[str], rows: Sequence[Any]) -> None:
        """As :meth:`write_postgres`, the batch's keys as one list per column."""
        written = self._written(names, rows)
        lists = (*([key[i] for key in written] for i in range(len(self._key))), [*written.values()])
        for statement in self._statements:
            conn.exec_driver_sql(statement, lists)

    def _written(self, names: Sequence[str], rows: Sequence[Any]) -> dict[tuple[Any, ...], Any]:
        """Each parent key of the batch with its newest ``updated_at`` (the version the upsert
        kept, unless the stored one is newer still)."""
        at = [names.index(k) for k in self._key]
        cursor = names.index("updated_at")
        newest: dict[tuple[Any, ...], Any] = {}
        for row in rows:
            key = tuple(row[i] for i in at)
            updated = row[cursor]
            if key not in newest or updated > newest[key]:  # SQLite's time text sorts as time
                newest[key] = updated
        return newest


def refill(conn: sa.Connection, resource: Resource, child: Child) -> None:
    """Derives a child table anew from every stored parent, soft-deleted ones included: what
    ``rosesync db upgrade`` does when it creates a child table or adds a column to one, so an
    existing install has its children without a full sync."""
    parent = resource_tables[resource.name]
    table = dict(child_tables[resource.name])[child]
    for statement in _replace(child, table, parent, conn.dialect.name, "1 = 1"):
        conn.exec_driver_sql(statement)


def _replace(
    child: Child, table: sa.Table, parent: sa.Table, dialect: str, written: str
) -> tuple[str, str]:
    """Delete then insert the children of the parents ``p`` for which ``written`` holds."""
    key = parent_key(parent)
    names = [name for _, name in key]
    keys = ", ".join(f"p.{_quote(column.name)}" for column, _ in key)
    columns = ", ".join(_quote(n) for n in [*names, "position", *(c.name for c in child.columns)])
    if dialect == "postgresql":
        array = f"p.data #> {_literal('{' + ','.join(child.path.split('.')) + '}')}"
        source = (
            f"FROM {_quote(parent.name)} p CROSS JOIN LATERAL jsonb_array_elements("
            f"CASE jsonb_typeof({array}) WHEN 'array' THEN {array} ELSE '[]' END) "
            f"WITH ORDINALITY AS e(value, n) WHERE {written}"
        )
        position, data = "(e.n - 1)::int", "e.value"
        values = [_postgres_value("e.value", c) for c in child.columns]
        child_keys = ", ".join(f"c.{_quote(n)}" for n in names)
        delete = (
            f"DELETE FROM {_quote(table.name)} c USING {_quote(parent.name)} p "  # noqa: S608
            f"WHERE ({child_keys}) = ({keys}) AND {written}"
        )
    elif dialect == "duckdb":
        array = _sqlite_path(child.path)
        # The batch's parents first: DuckDB would otherwise expand every stored parent's list
        # and filter after (a sync quadratic in the table's size).
        source = (
            f"FROM (SELECT * FROM {_quote(parent.name)} p WHERE {written} "  # noqa: S608
            f"AND json_type(p.data, {array}) = 'ARRAY') p, json_each(p.data, {array}) e"
        )
        position, data = "CAST(e.key AS INTEGER)", "e.value"  # any element: its JSON text
        element = "(CASE e.type WHEN 'OBJECT' THEN e.value END)"
        values = [_duckdb_value(element, c) for c in child.columns]
        delete = (
            f"DELETE FROM {_quote(table.name)} WHERE ({', '.join(map(_quote, names))}) IN "  # noqa: S608
            f"(SELECT {keys} FROM {_quote(parent.name)} p WHERE {written})"
        )
    else:
        array = _sqlite_path(child.path)
        source = (
            f"FROM {_quote(parent.name)} p, json_each(p.data, {array}) e "
            f"WHERE {written} AND json_type(p.data, {array}) = 'array'"
        )
        position = "e.key"
        # an element that is not an object or array: its JSON text, not its SQL value
        data = "CASE WHEN e.type IN ('object', 'array') THEN e.value ELSE p.data -> e.fullkey END"
        # typed columns read objects only: json_type() on a string element's SQL value raises
        element = "(CASE e.type WHEN 'object' THEN e.value END)"
        values = [_sqlite_value(element, c) for c in child.columns]
        delete = (
            f"DELETE FROM {_quote(table.name)} WHERE ({', '.join(map(_quote, names))}) IN "  # noqa: S608
            f"(SELECT {keys} FROM {_quote(parent.name)} p WHERE {written})"
        )
    insert = (
        f"INSERT INTO {_quote(table.name)} ({columns}, data) "
        f"SELECT {keys}, {position}, {''.join(v + ', ' for v in values)}{data} {source}"
    )
    return delete, insert
