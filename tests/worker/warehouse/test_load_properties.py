"""Generated records thrown at the decoder and the loader (issue 13, item 5), on SQLite and
PostgreSQL: any JSON, odd strings (NUL, lone surrogates, every plane), huge and nested values,
every timestamp shape. Each record is stored exactly or quarantined with a reason; nothing
fails the batch. `make test` runs a modest, fixed set of examples; `make soak` many new ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.support import warehouse_rows
from worker.clock import parse_timestamp
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse import connect
from worker.warehouse.load import Loader
from worker.warehouse.schema import quarantine, resource_tables

ORDERS = REGISTRY["orders"]

# Every code point, surrogates and NUL included (Python's json writes a lone surrogate as the
# escape an API would send).
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
HUGE = st.just("x" * 70_000) | st.integers(50, 200).map(
    lambda depth: json.loads("[" * depth + "1" + "]" * depth)
)

OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))
TIMESTAMPS = (
    MOMENTS.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")  # the API's own form
    | st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), MOMENTS, OFFSETS)
    | MOMENTS.map(lambda d: d.isoformat())  # naive: taken as UTC
    | MOMENTS.map(lambda d: d.date().isoformat())
    | st.sampled_from(["yesterday", "", "2024-13-45T99:99:99.999Z", "0001-01-01T00:00:00+01:00"])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | JSON
)
IDS = st.uuids().map(str) | ANY_TEXT | st.integers()
MISSING = object()


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(JSON)  # not an object at all, sometimes
    record: dict[str, Any] = draw(st.dictionaries(ANY_TEXT, JSON, max_size=5))
    for key, values in (
        ("id", IDS),
        ("updated_at", TIMESTAMPS),
        ("full_id", JSON),
        ("status", JSON),
        ("customer", st.fixed_dictionaries({"id": JSON}) | JSON),
        ("origin", st.fixed_dictionaries({"city": JSON}) | JSON),
        ("billing", st.fixed_dictionaries({"currency": JSON, "total_amount": JSON}) | JSON),
        ("created_at", TIMESTAMPS),
        ("notes", HUGE | JSON),
    ):
        value = draw(st.sampled_from([MISSING, MISSING, MISSING]) | values)
        if key in ("id", "updated_at"):  # usually present, or few records would be storable
            value = draw(values) if draw(st.integers(0, 9)) else value
        if value is not MISSING:
            record[key] = value
    return record


def _id_of(record: Any) -> str | None:
    """The id as the decoder reads it (None: none it can use)."""
    if not isinstance(record, dict) or isinstance(record.get("id"), dict | list | None):
        return None
    return str(record["id"])


def _identity(record: Any) -> tuple[str, str]:
    """Records in one batch have distinct ids (one row each), or, without one, distinct text."""
    record_id = _id_of(record)
    return ("id", record_id) if record_id is not None else ("text", json.dumps(record))


def _same(a: Any, b: Any) -> bool:
    """JSON equality as a database keeps it: numbers by value (jsonb writes 1e300 out in full)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return Decimal(repr(a)) == Decimal(repr(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    made = connect(warehouse_url)
    yield made
    made.dispose()


@pytest.mark.soak
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # emptied per example
@given(batch=st.lists(records(), min_size=1, max_size=12, unique_by=_identity))
def test_every_record_is_stored_exactly_or_quarantined_with_a_reason(
    engine: Engine, batch: list[Any]
) -> None:
    with engine.begin() as conn:  # every example starts empty
        conn.execute(resource_tables["orders"].delete())
        conn.execute(quarantine.delete())
    body = json.dumps({"orders": batch, "total": len(batch)}).encode()
    page = Decoder(ORDERS).page(body, "orders: generated")
    assert len(page.records) == len(batch)
    # A large limit: this property is about each record's fate, not about the run's limit.
    loader = Loader(engine, ORDERS, "default", run_id=0, max_quarantine=1000)
    loader.commit(loader.rows(page.records), 1, lambda: None, {}, lambda _conn: None)

    stored = warehouse_rows(engine, "orders")
    with engine.connect() as conn:
        held = conn.execute(sa.select(quarantine)).mappings().all()
    for entry in held:
        assert str(entry["reason"]).strip() and "\n" not in str(entry["reason"])
        assert entry["record_id"] not in stored
    anonymous = set()
    for record in batch:
        record_id = _id_of(record)
        if record_id is None:
            anonymous.add(json.dumps(record))  # quarantined under a hash of its text
        elif record_id in stored:
            row = stored[record_id]
            assert _same(row["data"], record), f"{record_id!r}: data differs"
            assert row["updated_at"] == parse_timestamp(record["updated_at"])
    # Every record with an id is stored or quarantined under it, every other one once by text.
    with_id = len(batch) - sum(1 for record in batch if _id_of(record) is None)
    assert len(stored) + len(held) == with_id + len(anonymous)
