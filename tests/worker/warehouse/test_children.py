"""worker/warehouse/children.py on SQLite, PostgreSQL and DuckDB (issue 14, items 1 and 5): a
parent's child rows are replaced with it, in its transaction, and always match the stored
version: a stale version leaves them alone, a soft-deleted parent keeps them, two versions in
one batch leave the newer one's, and odd elements make NULL typed columns, never a failed
batch; the typed columns follow the parent's rules (worker/warehouse/rows.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support import assert_children_match, warehouse_rows
from worker.clock import utcnow
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse import connect
from worker.warehouse.load import Loader
from worker.warehouse.schema import child_tables


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    engine = connect(warehouse_url)
    yield engine
    engine.dispose()


def order(record_id: str, updated: str, commodities: Any, **fields: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "updated_at": updated,
        "created_at": "2024-01-01T00:00:00.000Z",
        "billing": {"currency": "CAD", "total_amount": 10.5, "line_items": []},
        "commodities": commodities,
        **fields,
    }


def load(
    engine: Engine, resource: str, *records: dict[str, Any], run: Loader | None = None
) -> None:
    """One batch, one transaction, as a sync writes it; of a run of its own, or of ``run``."""
    loader = run or Loader(engine, REGISTRY[resource], "default", run_id=0)
    decoder = Decoder(REGISTRY[resource])
    decoded = [decoder.record(msgspec.json.encode(r), "test") for r in records]
    loader.commit(loader.rows(decoded), 1, lambda: None, {}, lambda _conn: None)


def deleted_for(engine: Engine) -> list[list[str]]:
    """From now on: the parents each DELETE of commodities named (SQLite and DuckDB, whose
    statements go through SQLAlchemy; PostgreSQL's go to psycopg directly)."""
    seen: list[list[str]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.startswith('DELETE FROM "rr_orders__commodities"'):
            ids = parameters[-1]
            seen.append(sorted(json.loads(ids) if isinstance(ids, str) else ids))

    return seen


def asked_if_stale(engine: Engine) -> list[list[str]]:
    """From now on: the parents each query for stale ones named (as :func:`deleted_for`)."""
    seen: list[list[str]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if "NOT EXISTS" in statement:  # SQLite: [[id, updated], ...]; DuckDB: the ids' list
            ids = parameters[1]
            pairs = json.loads(ids) if isinstance(ids, str) else zip(ids, ids, strict=True)
            seen.append(sorted(k for k, _ in pairs))

    return seen


def children(engine: Engine, resource: str, name: str) -> list[dict[str, Any]]:
    table = dict((c.name, t) for c, t in child_tables[resource])[name]
    with engine.connect() as conn:
        query = sa.select(table).order_by(table.c.parent_id, table.c.position)
        return [dict(row) for row in conn.execute(query).mappings()]


def weights(engine: Engine) -> list[tuple[str, int, float]]:
    return [
        (row["parent_id"], row["position"], float(row["weight"]))
        for row in children(engine, "orders", "commodities")
    ]


def test_children_are_replaced_with_their_parent(engine: Engine) -> None:
    three = [{"weight": 1.5}, {"weight": 2}, {"weight": 3.25}]
    refs = [{"type": "PO", "value": "PO-1"}]
    load(engine, "orders", order("a", "2024-01-02T00:00:00.000Z", three, reference_numbers=refs))
    load(engine, "orders", order("b", "2024-01-02T00:00:00.000Z", three[:1]))
    assert weights(engine) == [("a", 0, 1.5), ("a", 1, 2.0), ("a", 2, 3.25), ("b", 0, 1.5)]
    assert [r["value"] for r in children(engine, "orders", "reference_numbers")] == ["PO-1"]
    # a newer version with fewer commodities and no reference numbers at all
    load(engine, "orders", order("a", "2024-01-03T00:00:00.000Z", [{"weight": 9}]))
    assert weights(engine) == [("a", 0, 9.0), ("b", 0, 1.5)]
    assert children(engine, "orders", "reference_numbers") == []
    assert_children_match(engine, "orders", "default")


def test_a_first_sync_deletes_children_only_of_parents_it_wrote_before(engine: Engine) -> None:
    """A run that began with no child rows stored for its org (a first full sync) writes a
    parent's children without deleting first, until it writes that parent again."""
    run = Loader(engine, REGISTRY["orders"], "default", run_id=0)
    deletes, asked = deleted_for(engine), asked_if_stale(engine)
    day1, day2 = "2024-01-02T00:00:00.000Z", "2024-01-03T00:00:00.000Z"
    load(engine, "orders", order("a", day1, [{"weight": 1}, {"weight": 2}]), run=run)
    load(engine, "orders", order("b", day1, [{"weight": 3}]), order("c", day1, []), run=run)
    # "a" changed while the run read: its second version replaces the first one's children
    again, new = order("a", day2, [{"weight": 9}]), order("d", day1, [{"weight": 4}])
    load(engine, "orders", again, new, run=run)
    # and its first version, read again by another part, leaves them alone
    load(engine, "orders", order("a", day1, [{"weight": 1}]), run=run)
    assert weights(engine) == [("a", 0, 9.0), ("b", 0, 3.0), ("d", 0, 4.0)]
    assert_children_match(engine, "orders", "default")
    if engine.dialect.name != "postgresql":
        assert deletes == [["a"]]
        assert asked == [["a"], ["a"]]
    # the next run finds children stored: it asks and deletes for every parent it writes
    deletes.clear()
    asked.clear()
    load(engine, "orders", order("e", day1, [{"weight": 5}]), order("b", day2, []))
    assert weights(engine) == [("a", 0, 9.0), ("d", 0, 4.0), ("e", 0, 5.0)]
    if engine.dialect.name != "postgresql":
        assert deletes == [["b", "e"]]
        assert asked == [["b", "e"]]


def test_a_run_that_began_with_parents_but_no_children_asks_which_are_stale(
    engine: Engine,
) -> None:
    """Stored parents without child rows (their lists were empty) do not make a first sync:
    a stored parent newer than the batch's version keeps its (lack of) children."""
    load(engine, "orders", order("a", "2024-01-03T00:00:00.000Z", []))
    load(engine, "orders", order("a", "2024-01-02T00:00:00.000Z", [{"weight": 1}]))
    assert weights(engine) == []
    assert_children_match(engine, "orders", "default")


def test_a_stale_version_leaves_the_children_of_the_stored_one(engine: Engine) -> None:
    load(engine, "orders", order("a", "2024-01-03T00:00:00.000Z", [{"weight": 9}]))
    load(engine, "orders", order("a", "2024-01-02T00:00:00.000Z", [{"weight": 1}, {"weight": 2}]))
    assert weights(engine) == [("a", 0, 9.0)]
    assert warehouse_rows(engine, "orders")["a"]["data"]["commodities"] == [{"weight": 9}]


def test_two_versions_in_one_batch_leave_the_newer_ones_children(engine: Engine) -> None:
    newer = order("a", "2024-01-03T00:00:00.000Z", [{"weight": 3}])
    older = order("a", "2024-01-02T00:00:00.000Z", [{"weight": 1}, {"weight": 2}])
    load(engine, "orders", newer, older, newer)
    assert weights(engine) == [("a", 0, 3.0)]
    load(engine, "orders", older, newer, order("b", "2024-01-01T00:00:00.000Z", []))
    assert weights(engine) == [("a", 0, 3.0)]
    assert_children_match(engine, "orders", "default")


def test_a_soft_deleted_parent_keeps_its_children(engine: Engine) -> None:
    load(engine, "orders", order("a", "2024-01-02T00:00:00.000Z", [{"weight": 1}]))
    loader = Loader(engine, REGISTRY["orders"], "default", run_id=0)
    assert loader.mark_deleted(utcnow(), lambda _conn: None) == 1
    assert warehouse_rows(engine, "orders")["a"]["deleted_at"] is not None
    assert weights(engine) == [("a", 0, 1.0)]


ODD_COMMODITIES = [
    {"description": {"an": "object"}, "quantity": 1.5, "weight": "heavy", "is_hazmat": "yes"},
    {"description": 12.5, "quantity": 10**19, "weight": 10**15, "is_hazmat": 1},
    {"description": True, "quantity": -3, "weight": -0.25, "is_hazmat": False},
    "just text",
    [1, 2],
    None,
    7,
    {"description": None, "freight_class": "77.5", "pieces": "3", "weight": True},
]
ODD_STOPS = [
    {"sequence": 1, "scheduled_at": "2024-03-05T14:22:11.123Z"},
    {"sequence": 2, "scheduled_at": "2024-02-30T10:00:00.000Z"},
    {"sequence": 3, "scheduled_at": "2024-03-05T14:22:11Z"},
    {"sequence": 4, "scheduled_at": "2024-13-05T14:22:11.123Z"},
    {"sequence": 5, "scheduled_at": "2024-03-05T24:22:11.123Z"},
    {"sequence": 6, "scheduled_at": "0000-03-05T14:22:11.123Z"},
    {"sequence": 7, "scheduled_at": "yesterday"},
    {"sequence": 8, "scheduled_at": 1_709_648_531},
    {"sequence": 9, "scheduled_at": "2024-02-29T23:59:59.999Z", "city": "Montréal"},
]


def test_odd_elements_make_null_columns_never_a_failed_batch(engine: Engine) -> None:
    load(
        engine,
        "orders",
        order("a", "2024-01-02T00:00:00.000Z", ODD_COMMODITIES),
        order("b", "2024-01-02T00:00:00.000Z", {"not": "a list"}, reference_numbers="PO-1"),
        order("c", "2024-01-02T00:00:00.000Z", None),
    )
    assert_children_match(engine, "orders", "default")
    rows = children(engine, "orders", "commodities")
    assert [r["parent_id"] for r in rows] == ["a"] * len(ODD_COMMODITIES)
    assert [r["data"] for r in rows] == ODD_COMMODITIES
    assert [r["description"] for r in rows[:3]] == [None, "12.5", "true"]
    assert [r["quantity"] for r in rows[:3]] == [None, None, -3]
    assert [r["is_hazmat"] for r in rows[:3]] == [None, None, False]
    assert [r["weight"] for r in rows[:3]] == [None, None, pytest.approx(-0.25)]
    # a numeric string is read as its number, as a parent's typed column reads it
    assert rows[7]["freight_class"] == "77.5" and rows[7]["pieces"] == 3
    load(
        engine,
        "manifests",
        {"id": "m", "updated_at": "2024-01-02T00:00:00.000Z", "stops": ODD_STOPS},
    )
    assert_children_match(engine, "manifests", "default")
    stops = children(engine, "manifests", "stops")
    assert [s["scheduled_at"] for s in stops] == [
        datetime(2024, 3, 5, 14, 22, 11, 123_000, tzinfo=UTC),
        None,  # February 30th
        datetime(2024, 3, 5, 14, 22, 11, tzinfo=UTC),  # ISO 8601 without milliseconds
        *[None] * 5,
        datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC),
    ]
    assert stops[8]["city"] == "Montréal"
