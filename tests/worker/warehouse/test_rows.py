"""worker/warehouse/rows.py: typed values convert, odd ones become NULL once-reported."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.source.records import Decoder, Record
from worker.source.resources import REGISTRY, Column, Resource
from worker.warehouse.rows import (
    RowBuilder,
    _decimal,
    _decimal_text,
    postgres_time,
    sqlite_time,
)

THING = Resource(
    name="things",
    endpoint="/api/v1/things",
    records_key="things",
    item_key="thing",
    columns=(
        Column("label", "label"),
        Column("count", "count", "integer"),
        Column("amount", "amount", "numeric"),
        Column("active", "active", "boolean"),
        Column("seen_at", "seen_at", "timestamp"),
    ),
)
SYNCED = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


def record(*values: object) -> Record:
    return Record("t-1", "2024-03-05T14:22:11.123Z", values, '{"id":"t-1"}')


def test_sqlite_row() -> None:
    (row,) = RowBuilder(THING, postgres=False, org="acme").rows(
        [record("x", 3, "2.5", True, "2024-01-01T00:00:00+02:00")], SYNCED
    )
    assert row == (
        "t-1",
        "x",
        3,
        "2.5000",  # exact decimal text: SQLite has no decimal type (issue 14)
        True,
        "2023-12-31 22:00:00.000000",
        '{"id":"t-1"}',
        "2024-03-05 14:22:11.123000",
        "2026-01-02 03:04:05.600000",
        None,
        "acme",
        (),  # its child rows: THING declares no child lists
    )


def test_postgres_row_has_the_binary_copy_types() -> None:
    builder = RowBuilder(THING, postgres=True, org="default")
    (row,) = builder.rows([record(12.0, None, 0.1, False, "2024-01-01T02:00:00+02:00")], SYNCED)
    assert row[1:6] == ("12.0", None, Decimal("0.1"), False, datetime(2024, 1, 1, tzinfo=UTC))
    assert row[7] == datetime(2024, 3, 5, 14, 22, 11, 123000, tzinfo=UTC) and row[8] == SYNCED
    assert builder.postgres_types == [
        "text", "text", "int8", "numeric", "bool", "timestamptz",
        "jsonb", "timestamptz", "timestamptz", "timestamptz", "varchar",
    ]  # fmt: skip


@pytest.mark.parametrize("postgres", [False, True])
def test_numbers_out_of_their_columns_range_become_null(postgres: bool) -> None:
    builder = RowBuilder(THING, postgres=postgres, org="default")
    rows = builder.rows(
        [record(None, 2**63, "NaN", None, None), record(None, -(2**63) - 1, "1e300", None, None)],
        SYNCED,
    )
    assert [row[2] for row in rows] == [None, None]
    assert [row[3] for row in rows] == [None, None]  # NUMERIC(18, 4), its text on SQLite
    (edge,) = builder.rows([record(None, 2**63 - 1, "99999999999999.9999", None, None)], SYNCED)
    wanted = Decimal("99999999999999.9999")
    assert edge[2:4] == (2**63 - 1, wanted if postgres else str(wanted))


def test_values_that_do_not_fit_become_null_and_are_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder = RowBuilder(THING, postgres=False, org="default")
    caplog.set_level(logging.WARNING)
    rows = builder.rows(
        [record({"a": 1}, True, "n/a", "yes", 17), record([1], 1.5, None, 1, "soon")], SYNCED
    )
    for row in rows:
        assert row[1:6] == (None, None, None, None, None)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 5  # one per column, not one per value
    assert any("amount of record t-1" in m and "not numeric" in m for m in warned)


def test_time_conversions() -> None:
    assert sqlite_time("2024-03-05T14:22:11.123Z") == "2024-03-05 14:22:11.123000"
    assert sqlite_time("2024-03-05T14:22:11Z") == "2024-03-05 14:22:11.000000"
    assert postgres_time("2024-03-05T14:22:11.123Z") == datetime(
        2024, 3, 5, 14, 22, 11, 123000, tzinfo=UTC
    )
    assert postgres_time("2024-03-05 16:22:11+02:00") == datetime(
        2024, 3, 5, 14, 22, 11, tzinfo=UTC
    )
    for bad in ("yesterday", 12):
        with pytest.raises(ValueError):  # noqa: PT011 - the converters' contract
            sqlite_time(bad)


def test_every_registry_resource_builds_rows() -> None:
    for resource in REGISTRY.values():
        values = tuple(None for _ in resource.columns)
        (row,) = RowBuilder(resource, postgres=False, org="default").rows(
            [Record("i", "2024-01-01T00:00:00.000Z", values, "{}")], SYNCED
        )
        assert len(row) == len(resource.columns) + 7
        assert row[-1] == tuple([] for _ in resource.children)


@pytest.mark.parametrize("postgres", [False, True])
def test_child_rows_are_typed_by_the_parents_rules(postgres: bool) -> None:
    """Issue 14: each element of a declared list becomes a child row (the parent's key, its
    position, typed columns, its JSON text as sent); what does not fit is NULL, never an error."""
    orders = REGISTRY["orders"]
    body = (
        b'{"id":"o-1","updated_at":"2024-01-01T00:00:00.000Z","commodities":['
        b'{"description":"Pallets","quantity":"4","weight":12.25,"is_hazmat":false},'
        b'{"description":{"odd":1},"quantity":1.5,"weight":"heavy"}, 7],'
        b'"reference_numbers":[{"type":"PO","value":"PO-1"}]}'
    )
    decoded = Decoder(orders).record(body, "test")
    (row,) = RowBuilder(orders, postgres=postgres, org="acme").rows([decoded], SYNCED)
    commodities, references = row[-1]
    weight = Decimal("12.25") if postgres else "12.2500"
    if postgres:  # the element as sent, for the writer to embed in its JSON (children.py)
        commodities = [(*r[:-1], bytes(r[-1]).decode()) for r in commodities]
        references = [(*r[:-1], bytes(r[-1]).decode()) for r in references]
    assert commodities == [
        (
            "acme", "o-1", 0, "Pallets", 4, None, weight, None, None, False,
            '{"description":"Pallets","quantity":"4","weight":12.25,"is_hazmat":false}',
        ),
        (
            "acme", "o-1", 1, None, None, None, None, None, None, None,
            '{"description":{"odd":1},"quantity":1.5,"weight":"heavy"}',
        ),
        ("acme", "o-1", 2, None, None, None, None, None, None, None, "7"),
    ]  # fmt: skip
    assert references == [("acme", "o-1", 0, "PO", "PO-1", '{"type":"PO","value":"PO-1"}')]


@settings(max_examples=500, deadline=None)
@given(st.floats() | st.integers(min_value=-(10**16), max_value=10**16))
def test_sqlite_amount_text_without_decimal_is_decimals_text(value: float) -> None:
    """_decimal_text's shortcut for plain floats and integers writes what Decimal would."""
    try:
        wanted = format(_decimal(value).quantize(Decimal("0.0001"), ROUND_HALF_UP), "f")
    except ValueError:
        with pytest.raises(ValueError):  # noqa: PT011 - the converters' contract
            _decimal_text(value)
        return
    assert _decimal_text(value) == wanted


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["description", "quantity", "pieces", "weight", "is_hazmat", "x"]),
            _JSON_VALUES,
        )
        | _JSON_VALUES,
        max_size=4,
    ),
    st.booleans(),
)
def test_child_rows_read_by_msgspec_equal_those_read_value_by_value(
    elements: list[Any], native: bool
) -> None:
    """The child rows' fast path (types checked by msgspec, worker/warehouse/rows.py) makes
    exactly the rows the parent's converters make of the same elements one by one."""
    orders = REGISTRY["orders"]
    builder = RowBuilder(orders, postgres=native, org="acme")
    text = msgspec.json.encode({"id": "o", "updated_at": "2024-01-01T00:00:00.000Z",
                                "commodities": elements})
    (commodities, _) = builder.children(Decoder(orders).record(text, "test"))
    slow = Record("o", None, (), "{}", lists=(elements, None))  # Python values: value by value
    assert commodities == builder.children(slow)[0]
