"""The two baselines of issue 7, as a competent person would write them in an afternoon.

Both page through ``GET /api/v1/<resource>?limit=200&offset=N`` (correct on the benchmark's
static dataset; on a live TMS offset paging can skip records, which is why rosesync pages by key),
decode each page with the standard library's json (through ``response.json()``), and store
``id``, ``data`` (the record as JSON text; ``jsonb`` on PostgreSQL) and ``updated_at`` in a table
named after the resource.

- ``naive``: ``requests.get`` per page and one ``INSERT ... ON CONFLICT DO UPDATE`` per record,
  each committed as it is made: the script from a tutorial, which calls ``commit()`` after every
  insert (or runs in autocommit) so that nothing is lost when it stops.
- ``simple``: one ``requests.Session`` (keep-alive) and one ``executemany`` of that upsert per
  page, committed once per page: the "simple correct loader" the issue measures rosesync
  against.

Both use each driver as it comes (sqlite3 and psycopg defaults, no tuning): that is what the
people we compare with run. Run by the harness as
``python -m benchmarks.contenders {naive,simple} --api URL --token-file F --database URL``;
the token comes in a 0600 file so that it never shows in ``ps`` or in the environment.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import requests

from benchmarks.measure import report_phase

PAGE_SIZE = 200
Connection = sqlite3.Connection | psycopg.Connection[Any]
Get = Callable[..., requests.Response]


@dataclass(frozen=True, slots=True)
class Dialect:
    placeholder: str
    json_type: str
    time_type: str

    def create_table(self, table: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, "
            f"data {self.json_type} NOT NULL, updated_at {self.time_type} NOT NULL)"
        )

    def upsert(self, table: str) -> str:
        p = self.placeholder
        return (
            f"INSERT INTO {table} (id, data, updated_at) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
        )


SQLITE = Dialect("?", "TEXT", "TEXT")
POSTGRES = Dialect("%s", "JSONB", "TIMESTAMPTZ")


def table_of(resource: str) -> str:
    """Where a baseline stores ``resource`` (the harness counts rows there)."""
    return resource


def pages(get: Get, api: str, resource: str) -> Iterator[list[dict[str, Any]]]:
    """Every page of ``resource`` by limit/offset, until a short page says it was the last."""
    offset = 0
    while True:
        response = get(
            f"{api}/api/v1/{resource}", params={"limit": PAGE_SIZE, "offset": offset}, timeout=60
        )
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()[resource]
        yield records
        if len(records) < PAGE_SIZE:
            return
        offset += PAGE_SIZE


def naive(api: str, token: str, conn: Connection, dialect: Dialect,
          resources: Sequence[str]) -> None:
    """One request at a time without a session, one INSERT and one commit per record."""
    get = partial(requests.get, headers={"Authorization": f"Bearer {token}"})
    for resource in resources:
        table = table_of(resource)
        conn.execute(dialect.create_table(table))
        upsert = dialect.upsert(table)
        for records in pages(get, api, resource):
            for record in records:
                conn.execute(upsert, (record["id"], json.dumps(record), record["updated_at"]))
                conn.commit()


def simple(api: str, token: str, conn: Connection, dialect: Dialect,
           resources: Sequence[str]) -> None:
    """One keep-alive session, one executemany per page, commit per page."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for resource in resources:
            table = table_of(resource)
            conn.execute(dialect.create_table(table))
            upsert = dialect.upsert(table)
            for records in pages(session.get, api, resource):
                rows = [(r["id"], json.dumps(r), r["updated_at"]) for r in records]
                conn.cursor().executemany(upsert, rows)
                conn.commit()


LOADERS = {"naive": naive, "simple": simple}


def connect(database: str) -> tuple[Connection, Dialect]:
    if database.startswith("sqlite:///"):
        return sqlite3.connect(database.removeprefix("sqlite:///")), SQLITE
    return psycopg.connect(database), POSTGRES


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one baseline loader (see module doc).")
    parser.add_argument("contender", choices=sorted(LOADERS))
    parser.add_argument("--api", required=True, help="base URL of the simulator")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--database", required=True, help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--resources", default="orders,customers")
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip()
    load = LOADERS[args.contender]
    conn, dialect = connect(args.database)
    try:
        report_phase(lambda: load(args.api, token, conn, dialect, args.resources.split(",")))
    finally:
        conn.close()


if __name__ == "__main__":
    main()
