"""worker/warehouse/load.py on SQLite: a batch's upsert travels as statements of
SQLITE_ROWS_PER_STATEMENT rows (issue 16), and every row of such a statement keeps the
newer-wins rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sqlalchemy.engine import Engine

from tests.support import inserts_run, warehouse_rows
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse import connect
from worker.warehouse.db import SQLITE_ROWS_PER_STATEMENT
from worker.warehouse.load import Loader

ORDERS = REGISTRY["orders"]
COUNT = 2 * SQLITE_ROWS_PER_STATEMENT + 500


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    made = connect(sqlite_url)
    yield made
    made.dispose()


def _order(n: int, day: int) -> dict[str, Any]:
    return {
        "id": f"order-{n:05d}",
        "updated_at": f"2024-01-{day:02d}T00:00:00.000Z",
        "status": f"day {day}",
        "billing": {"currency": "CAD", "total_amount": n / 4},
    }


def _load(engine: Engine, records: list[dict[str, Any]]) -> None:
    """One batch, as a sync writes it."""
    decoder = Decoder(ORDERS)
    decoded = [decoder.record(msgspec.json.encode(r), "test") for r in records]
    loader = Loader(engine, ORDERS, "default", run_id=0)
    loader.commit(loader.rows(decoded), 1, lambda: None, {}, lambda _conn: None)


def test_a_batch_is_upserted_in_statements_of_many_rows_newer_wins_in_each(
    engine: Engine,
) -> None:
    group = SQLITE_ROWS_PER_STATEMENT
    upserts = inserts_run(engine, "rr_orders")
    _load(engine, [_order(n, 10) for n in range(COUNT)])
    assert upserts == [
        (group, group),
        (group, group),
        (1, COUNT - 2 * group),
    ]
    # the same orders again: even ones older than stored (kept as they are), odd ones newer
    _load(engine, [_order(n, 5 if n % 2 == 0 else 20) for n in range(COUNT)])
    stored = warehouse_rows(engine, "orders")
    assert len(stored) == COUNT
    for n in range(COUNT):
        row = stored[f"order-{n:05d}"]
        day = 10 if n % 2 == 0 else 20
        assert (row["status"], row["data"]) == (f"day {day}", _order(n, day))
        assert row["total_amount"] == pytest.approx(n / 4)
