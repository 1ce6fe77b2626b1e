"""worker/warehouse/drift.py on SQLite and PostgreSQL: the baseline, what counts as drift and
what does not, and keys no database would take as they came (issue 14, item 2)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.source.fields import Shape, printable
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse import connect, drift
from worker.warehouse.drift import VANISH_SAMPLE
from worker.warehouse.schema import fields

CUSTOMERS = REGISTRY["customers"]
# what a customer's records hold: the registry's paths and one more
BASE = {
    "id": {"string"},
    "updated_at": {"string"},
    "full_id": {"string"},
    "name": {"string"},
    "currency": {"string", "null"},
    "is_active": {"boolean"},
    "created_at": {"string"},
    "notes": {"null"},
}


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[Engine]:
    made = connect(warehouse_url)
    yield made
    made.dispose()


def run(
    engine: Engine,
    seen: dict[str, set[str]],
    run_id: int,
    sampled: int = VANISH_SAMPLE,
    complete: bool = True,
) -> set[tuple[str, str, str]]:
    now = utcnow() + timedelta(seconds=run_id)
    found = drift.record(engine, CUSTOMERS, "default", run_id, seen, sampled, {}, now, complete)
    return {(d.path, d.change, d.detail) for d in found}


def test_the_first_run_sets_the_baseline_then_changes_are_recorded_once(engine: Engine) -> None:
    assert run(engine, BASE, 1) == set()
    assert run(engine, BASE, 2) == set()
    changed = {**BASE, "full_id": {"number"}, "notes": {"string"}, "tier": {"string"}}
    del changed["name"]
    assert run(engine, changed, 3) == {
        ("full_id", "type", "string -> number"),
        ("tier", "added", "string"),
        ("name", "vanished", f"typed column name; {VANISH_SAMPLE} records sampled"),
    }  # notes: null before, a string now: a value appeared, not a type change
    # the baseline learnt the new shape; the vanished field is reported again while it is gone
    assert run(engine, changed, 4) == {
        ("name", "vanished", f"typed column name; {VANISH_SAMPLE} records sampled")
    }
    recorded = {(d.path, d.change): d for d in drift.listed(engine)}
    assert recorded[("name", "vanished")].count == 2
    assert recorded[("name", "vanished")].run_id == 4
    assert recorded[("tier", "added")].count == 1
    assert recorded[("tier", "added")].first_seen < recorded[("name", "vanished")].last_seen
    assert drift.listed(engine, "another-org") == []


def test_a_small_or_failed_run_finds_nothing_vanished(engine: Engine) -> None:
    run(engine, BASE, 1)
    few = {"id": {"string"}, "updated_at": {"string"}}
    assert run(engine, few, 2, sampled=VANISH_SAMPLE - 1) == set()
    assert run(engine, few, 3, complete=False) == set()
    assert run(engine, few, 4) != set()


def test_a_field_is_not_vanished_when_what_held_it_was_not_seen(engine: Engine) -> None:
    nested = {
        **BASE,
        "customer": {"object", "null"},
        "customer.id": {"string"},
        "stops": {"array"},
        "stops[]": {"object"},
        "stops[].city": {"string"},
    }
    run(engine, nested, 1)
    # customer null and stops empty in every sampled record: nothing can be said of their parts
    unseen = {**BASE, "customer": {"null"}, "stops": {"array"}}
    assert run(engine, unseen, 2) == set()
    # customer an object without id, stops holding objects without city: both gone
    gone = {**BASE, "customer": {"object"}, "stops": {"array"}, "stops[]": {"object"}}
    detail = f"no longer sent; {VANISH_SAMPLE} records sampled"
    assert run(engine, gone, 3) == {
        ("customer.id", "vanished", detail),
        ("stops[].city", "vanished", detail),
    }


def test_unparsable_values_are_counted_per_typed_column(engine: Engine) -> None:
    column = next(c for c in CUSTOMERS.columns if c.name == "is_active")
    for run_id in (1, 2):
        drift.record(engine, CUSTOMERS, "default", run_id, {}, 0, {column: 7}, utcnow(), True)
    (found,) = drift.listed(engine)
    assert (found.path, found.change, found.count) == ("is_active", "unparsable", 14)
    assert found.detail == "not boolean: stored NULL in is_active"


def test_keys_no_database_takes_as_they_came_are_stored_escaped(engine: Engine) -> None:
    odd = printable("a\x00b\ud800" + "x" * 200)
    run(engine, BASE, 1)
    assert run(engine, {**BASE, odd: {"string"}}, 2) == {(odd, "added", "string")}
    (found,) = drift.listed(engine)
    assert found.path == odd and found.path.isprintable()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.text(), JSON, min_size=1, max_size=4))
def test_any_record_shape_is_stored_printable(engine: Engine, extra: dict[str, object]) -> None:
    """Keys with NUL and other control characters, very long keys, deep nesting: what a run
    samples is always storable on both databases, and printable (issue 14, item 2)."""
    record = {**extra, "id": "o-1", "updated_at": "2024-01-02T03:04:05.000Z"}
    decoded = Decoder(CUSTOMERS).record(msgspec.json.encode(record), "test")
    shape = Shape()
    shape.sample([decoded])
    run(engine, BASE, 1)  # a baseline, so that the odd keys are new fields: drift rows
    drift.record(engine, CUSTOMERS, "default", 2, shape.types, 1, {}, utcnow(), True)
    with engine.connect() as conn:
        known = list(conn.execute(sa.select(fields.c.path)).scalars())
    assert all(path.isprintable() for path in known)
    assert all(change.path.isprintable() for change in drift.listed(engine))
