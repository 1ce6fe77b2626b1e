"""Child tables (issue 14, item 1): each nested list the registry declares, one row per element.

A parent's child rows are built with its row, on the fetcher threads: the decoder hands each
list over as its raw text, found in the same pass as the record (worker/source/records.py), and
the row builder decodes its elements and types them by the parent's rules
(worker/warehouse/rows.py): a value that does not fit its column is NULL, the element being
kept whole in ``data``. They are written in the batch's own
transaction, right after the parents' upsert:

1. which parents of the batch are now stored in the batch's version (the newer-wins upsert may
   have kept a newer stored one, whose children then stay as they are): the batch's parents
   less those the database finds stored in another version, usually none;
2. those parents' children are deleted;
3. the children of those parents' batch versions are inserted.

So the children always match the stored parent version, and a soft-deleted parent (never
written by a batch) keeps them. The batch holds one version per parent (the loader keeps the
newest of a record the batch read twice), so step 3 never inserts a position twice.

Steps 1 and 2 are skipped for a parent this run has not written before, when the run began
with nothing stored for its org, neither parents nor children (a first full sync; checked under
the run's lease, so no other run writes them meanwhile): such a parent was not stored before
the batch's upsert, so the upsert stored the batch's version, and it has no children yet.
Deleting by key for every parent of every batch cost PostgreSQL's server about 1 s of a 5.8 s
first sync of 70,000 records, on the two cores it shares with the client; asking SQLite for
the stale parents of every batch, 0.2 s of its writer's time (issue 16).

Why in Python, not derived in SQL from the stored JSON (the first version did that, measured
in benchmarks/README.md): SQLite 3.40 has no binary JSON, so each parent's text was parsed
again per child table and each element again per typed column, by the one writer that holds
the database's only write lock; child tables cost 41% of SQLite's throughput that way. Here
each list costs two msgspec calls and a little Python per element (worker/warehouse/rows.py),
on the fetcher threads, and the databases receive plain rows: with child tables on, a full sync
runs at 0.73x (SQLite), 0.72x (PostgreSQL) and 0.71x (DuckDB) of its records/s without them
(benchmarks/README.md, "Child tables built in Python").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.source.records import Decoder
from worker.source.resources import Child, Resource
from worker.warehouse.db import psycopg_connection, reader
from worker.warehouse.rows import DUCKDB_TYPES, POSTGRES_TYPES, ChildRow, Row, RowBuilder
from worker.warehouse.schema import child_tables, resource_tables


# Every statement here is built from the registry's names (quoted) and constants, never from
# data: the data travels as bound parameters.
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The parents a run has written, as one bit each of a bitmap indexed by their id's hash: 1 MB
# whatever the number of parents. Two ids sharing a bit only cost the second one a stale query
# and a delete that find nothing (at 700,000 parents, about 8% of them); a written parent is
# never missed.
_WRITTEN_BITS = 1 << 23


class ChildWriter:
    """Replaces the children of the parents a batch wrote, for one resource, org and dialect;
    one per run, made under its lease (see the module doc on skipping steps 1 and 2)."""

    def __init__(self, engine: Engine, resource: Resource, org: str, names: Sequence[str]) -> None:
        self.dialect = dialect = engine.dialect.name
        self.org = org
        self._id = names.index("id")
        self._updated = names.index("updated_at")
        tables = dict(child_tables[resource.name])
        self._tables = [(child, tables[child]) for child in resource.children]
        parent_table = resource_tables[resource.name]
        self._written: bytearray | None = (
            bytearray(_WRITTEN_BITS // 8)
            if self._tables and self._none_stored(engine, parent_table)
            else None
        )
        self._written_lock = threading.Lock()  # PostgreSQL's writers share the bitmap
        parent = _quote(parent_table.name)
        # The batch's parents whose stored version is no longer the batch's (a newer one was
        # kept): usually none, so SQLite steps no rows back, each of which costs its writer
        # the GIL again while the fetchers decode (a query of the kept ones, 2,000 rows a
        # batch, took 1.07 s of a sync's 5.6, 0.28 s of it on the CPU; issue 16).
        if dialect == "postgresql":
            # The batch's keys as arrays: the planner knows an array's length and looks the
            # parents up by index (a join with a staging table, which has no statistics, made it
            # read the whole table for every batch: a sync quadratic in the table's size).
            # Binary parameters: 2,000 keys cost 1.6 ms a statement so, 10 ms as text.
            self._stale = (
                f"SELECT b.id FROM unnest(%(ids)b::text[], %(updated)b::timestamptz[]) "  # noqa: S608
                f"AS b(id, updated) WHERE NOT EXISTS (SELECT 1 FROM {parent} AS p "
                "WHERE p.org = %(org)s AND p.id = b.id AND p.updated_at = b.updated)"
            )
            ids = "ANY(%(ids)b::text[])"
        elif dialect == "duckdb":
            self._stale = (
                f"SELECT b.id FROM (SELECT ? AS org, unnest(?::VARCHAR[]) AS id, "  # noqa: S608
                "unnest(?::TIMESTAMPTZ[]) AS updated) AS b WHERE NOT EXISTS "
                f"(SELECT 1 FROM {parent} AS p "
                "WHERE p.org = b.org AND p.id = b.id AND p.updated_at = b.updated)"
            )
            ids = "(SELECT unnest(?::VARCHAR[]))"
        else:  # SQLite: the batch as one JSON parameter (?2), the org ?1
            self._stale = (
                f"SELECT b.value ->> 0 FROM json_each(?2) AS b WHERE NOT EXISTS "  # noqa: S608
                f"(SELECT 1 FROM {parent} "
                "WHERE org = ?1 AND id = b.value ->> 0 AND updated_at = b.value ->> 1)"
            )
            ids = "(SELECT value FROM json_each(?))"
        compare = "=" if dialect == "postgresql" else "IN"
        self._deletes = [
            f"DELETE FROM {_quote(t.name)} "  # noqa: S608
            f"WHERE parent_org = {'%(org)s' if dialect == 'postgresql' else '?'} "
            f"AND parent_id {compare} {ids}"
            for _, t in self._tables
        ]

    def __bool__(self) -> bool:
        return bool(self._tables)

    def _none_stored(self, engine: Engine, parent: sa.Table) -> bool:
        """Whether the org has no parent and no child row stored."""
        with reader(engine).connect() as conn:
            return not any(
                conn.execute(sa.select(org).where(org == self.org).limit(1)).first()
                for org in (parent.c.org, *(table.c.parent_org for _, table in self._tables))
            )

    def _written_before(self, rows: Sequence[Row]) -> Sequence[Row]:
        """Of the batch's parents, those that may have been stored before its upsert: all of
        them, unless the run began with nothing stored; then those this run has written before
        (it marks the others now: a batch rolled back later only costs a needless query)."""
        if self._written is None:
            return rows
        written, before, at = self._written, [], self._id
        with self._written_lock:
            for row in rows:
                bit = hash(row[at]) % _WRITTEN_BITS
                byte, mask = bit >> 3, 1 << (bit & 7)
                if written[byte] & mask:
                    before.append(row)
                else:
                    written[byte] |= mask
        return before

    def write(self, conn: sa.Connection, rows: Sequence[Row]) -> None:
        """After the upsert of ``rows`` (one per parent), in the same transaction: the children
        of every parent now stored in the version the batch carried."""
        before = self._written_before(rows)
        stale = set(self._stale_ids(conn, before)) if before else set()
        ids = [row[self._id] for row in before if row[self._id] not in stale]
        for index, ((child, table), delete) in enumerate(
            zip(self._tables, self._deletes, strict=True)
        ):
            if ids:
                self._execute(conn, delete, ids=ids)
            found = [
                element for row in rows if row[self._id] not in stale for element in row[-1][index]
            ]
            if found:
                insert(conn, child, table, found)

    def _stale_ids(self, conn: sa.Connection, rows: Sequence[Row]) -> list[str]:
        ids = [row[self._id] for row in rows]
        updated = [row[self._updated] for row in rows]
        return self._execute(conn, self._stale, ids=ids, updated=updated)

    def _execute(self, conn: sa.Connection, statement: str, **lists: list[Any]) -> list[Any]:
        """``statement`` with the org and ``lists`` bound as this dialect binds a batch; the
        first column of what it returns."""
        if self.dialect == "postgresql":
            with psycopg_connection(conn).cursor() as cursor:
                cursor.execute(statement, {"org": self.org, **lists})
                return [row[0] for row in cursor.fetchall()] if cursor.description else []
        if self.dialect == "duckdb":
            parameters: tuple[Any, ...] = (self.org, *lists.values())
        else:  # one JSON array: of the values, or of tuples of them
            values = [*lists.values()]
            batch = values[0] if len(values) == 1 else list(zip(*values, strict=True))
            parameters = (self.org, msgspec.json.encode(batch).decode())
        result = conn.exec_driver_sql(statement, parameters)
        return [row[0] for row in result] if result.returns_rows else []


def insert(conn: sa.Connection, child: Child, table: sa.Table, rows: list[ChildRow]) -> None:
    """Child rows into ``table``: ``executemany`` on SQLite; on PostgreSQL and DuckDB, all of
    them as one JSON parameter, written by msgspec in one call with each element embedded as
    the API sent it (the row's ``data`` is a ``msgspec.Raw`` there), and read back by the
    database. Measured: binary COPY spent about 7 us a row in Python (psycopg's ``write_row``),
    DuckDB's bound lists 45 us a row converting values one by one; its JSON path takes 30."""
    names = [column.name for column in table.columns]
    into = f"INSERT INTO {_quote(table.name)} ({', '.join(map(_quote, names))})"
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql(f"{into} VALUES ({', '.join('?' * len(names))})", rows)
        return
    if dialect == "postgresql":
        from psycopg.types.json import Jsonb  # here: SQLite never imports psycopg

        values = ", ".join(
            f"r -> {i}" if kind == "jsonb" else f"(r ->> {i})::{kind}"
            for i, kind in enumerate(postgres_types(child))
        )
        statement = f"{into} SELECT {values} FROM jsonb_array_elements(%s) AS r"  # noqa: S608
        with psycopg_connection(conn).cursor() as cursor:
            # msgspec's bytes as they are: as text, psycopg would encode them again (about 0.1
            # s of the client's CPU for a sync's 225,000 child rows)
            cursor.execute(statement, (Jsonb(rows, dumps=msgspec.json.encode),))
    else:
        payload = msgspec.json.encode(rows).decode()
        values = ", ".join(
            f"r -> '$[{i}]'" if kind == "JSON" else f"CAST(r ->> '$[{i}]' AS {kind})"
            for i, kind in enumerate(duckdb_types(child))
        )
        rows_of = "(SELECT unnest(json_extract(?::JSON, '$[*]')) AS r)"
        statement = f"{into} SELECT {values} FROM {rows_of}"  # noqa: S608
        conn.exec_driver_sql(statement, (payload,))


def postgres_types(child: Child) -> list[str]:
    """Each column's PostgreSQL type, as the bulk path reads it from JSON (a test checks them
    against the table as created): the parent's key (org, id), the position, typed, data."""
    typed = [POSTGRES_TYPES[column.type] for column in child.columns]
    return ["varchar", "text", "int4", *typed, "jsonb"]


def duckdb_types(child: Child) -> list[str]:
    """Each column's DuckDB type, as its bulk path reads it from JSON."""
    typed = [DUCKDB_TYPES[column.type] for column in child.columns]
    return ["VARCHAR", "VARCHAR", "INTEGER", *typed, "JSON"]


REFILL_CHUNK = 2000  # parents read at a time: memory stays flat whatever the table's size


def refill(conn: sa.Connection, resource: Resource, child: Child) -> None:
    """Builds a child table anew from every stored parent, soft-deleted ones included: what
    ``rosesync db upgrade`` does when it creates a child table or adds a column to one, so an
    existing install has its children without a full sync. Parents are read by key, a chunk
    at a time, and their children built by the sync's own decoder and row builder."""
    parent = resource_tables[resource.name]
    table = dict(child_tables[resource.name])[child]
    index = resource.children.index(child)
    decoder = Decoder(resource)
    postgres, native = conn.dialect.name == "postgresql", conn.dialect.name != "sqlite"
    builders: dict[str, RowBuilder] = {}
    conn.execute(table.delete())
    key = sa.tuple_(parent.c.org, parent.c.id)
    query = sa.select(parent.c.org, parent.c.id, sa.cast(parent.c.data, sa.Text)).order_by(
        parent.c.org, parent.c.id
    )
    after: tuple[str, str] | None = None
    while True:
        page = query if after is None else query.where(key > after)
        chunk = conn.execute(page.limit(REFILL_CHUNK)).all()
        if not chunk:
            return
        rows: list[ChildRow] = []
        for org, _, text in chunk:
            builder = builders.get(org)
            if builder is None:
                builder = builders[org] = RowBuilder(resource, postgres, org=org, native=native)
            record = decoder.record(text.encode(), f"{parent.name} (db upgrade)")
            rows += builder.children(record)[index]
        if rows:
            insert(conn, child, table, rows)
        after = (chunk[-1][0], chunk[-1][1])
