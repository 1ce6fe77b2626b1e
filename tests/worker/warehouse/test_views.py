"""worker/warehouse/views.py on SQLite, PostgreSQL and DuckDB (issue 14, items 4 and 5): the
views hold live rows only, are kept current by `db upgrade`, and answer the analyst's questions
(the README's two queries) with the numbers the simulator's data gives, computed here in
Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support import World, make_world
from worker.simulator import SimulatorConfig
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource
from worker.warehouse.migrate import upgrade

# The README's queries; only the month differs between the databases.
MONTH = {
    "postgresql": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')",
    "sqlite": "strftime('%Y-%m', created_at)",
    "duckdb": "strftime(created_at AT TIME ZONE 'UTC', '%Y-%m')",
}
REVENUE = """
SELECT customer_id, {month} AS month, currency,
       count(*) AS orders, sum(total_amount) AS revenue
FROM v_orders
GROUP BY customer_id, month, currency
"""
WEIGHT = """
SELECT o.full_id, {month} AS month, c.weight_unit, sum(c.weight) AS weight
FROM v_orders o JOIN v_orders__commodities c ON c.parent_id = o.id
GROUP BY o.full_id, month, c.weight_unit
"""

CENT = Decimal("0.0001")


@pytest.fixture
def world(warehouse_url: str, tmp_path: Path) -> Iterator[World]:
    with make_world(warehouse_url, tmp_path, SimulatorConfig(records=150)) as w:
        for name in ("orders", "customers"):
            assert sync_resource(w.settings, w.engine, w.store, REGISTRY[name], full=True).ok
        w.sim.mutate(60, "orders")  # edits (new commodities), creations and deletions
        result = sync_resource(w.settings, w.engine, w.store, REGISTRY["orders"], full=True)
        assert result.ok and result.run.deleted > 0
        yield w


def query(world: World, sql: str) -> list[Any]:
    with world.engine.connect() as conn:
        month = MONTH[world.engine.dialect.name]
        return list(conn.exec_driver_sql(sql.format(month=month)).all())


def exact(value: Any) -> Decimal:
    """An amount as the warehouse summed it: Decimal on PostgreSQL, a float on SQLite, whose
    sum() is floating point (README, "Money"), so to 4 places."""
    return Decimal(str(value)).quantize(CENT)


def test_views_hold_live_rows_and_the_children_of_live_parents(world: World) -> None:
    live = {r["id"] for r in world.dump("orders")}
    with world.engine.connect() as conn:
        deleted = set(
            conn.exec_driver_sql("SELECT id FROM rr_orders WHERE deleted_at IS NOT NULL").scalars()
        )
        assert deleted  # soft-deleted rows exist, and keep their children
        assert set(conn.exec_driver_sql("SELECT id FROM v_orders").scalars()) == live
        kept = conn.exec_driver_sql("SELECT DISTINCT parent_id FROM rr_orders__commodities")
        assert deleted <= set(kept.scalars())
        shown = conn.exec_driver_sql("SELECT DISTINCT parent_id FROM v_orders__commodities")
        assert set(shown.scalars()) == {r["id"] for r in world.dump("orders") if r["commodities"]}
        columns = conn.exec_driver_sql("SELECT * FROM v_orders LIMIT 1").keys()
        assert "deleted_at" not in columns and "total_amount" in columns


def test_the_analysts_questions_are_one_query_each(world: World) -> None:
    revenue: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    weight: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    for order in world.dump("orders"):
        month = order["created_at"][:7]
        key = ((order["customer"] or {}).get("id"), month, order["billing"]["currency"])
        revenue[key][0] += 1
        revenue[key][1] += Decimal(str(order["billing"]["total_amount"]))
        for item in order["commodities"]:
            weight[(order["full_id"], month, item["weight_unit"])] += Decimal(str(item["weight"]))
    got = {
        (customer, month, currency): [orders, exact(total)]
        for customer, month, currency, orders, total in query(world, REVENUE)
    }
    assert got == {key: [n, total.quantize(CENT)] for key, (n, total) in revenue.items()}
    got_weight = {(o, m, u): exact(w) for o, m, u, w in query(world, WEIGHT)}
    assert got_weight == {key: total.quantize(CENT) for key, total in weight.items()}


def test_upgrade_replaces_a_view_that_is_out_of_date(world: World) -> None:
    with world.engine.begin() as conn:
        conn.exec_driver_sql("DROP VIEW v_orders")
        conn.exec_driver_sql("CREATE VIEW v_orders AS SELECT id FROM rr_orders")
    assert upgrade(world.engine) == ["replaced view v_orders"]
    assert upgrade(world.engine) == []
    assert len(query(world, REVENUE)) > 0
