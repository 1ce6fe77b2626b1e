"""worker/source/records.py: pages decode to records carrying the raw text and just the fields
used."""

from __future__ import annotations

import json

import msgspec
import pytest

from worker.errors import MalformedResponse
from worker.source.records import Decoder
from worker.source.resources import REGISTRY

ORDERS = Decoder(REGISTRY["orders"])
ORDER = (
    b'{"id":"o-1","full_id":"O-1","status":"booked","updated_at":"2024-03-05T14:22:11.123Z",'
    b'"customer":{"id":"c-9","name":"ACME"},"origin":{"city":"Laredo","lat":27.4},'
    b'"destination":null,"billing":{"currency":"USD","total_amount":12.5,"line_items":[]},'
    b'"created_at":"2024-03-01T00:00:00.000Z","notes":"\\u00e9t\\u00e9","extra":[1,2,{"x":1}]}'
)


def test_a_page_decodes_to_records_with_their_exact_text() -> None:
    page = ORDERS.page(b'{"orders":[' + ORDER + b'],"offset":0,"limit":50,"total":7}', "t")
    assert page.total == 7
    (record,) = page.records
    assert record.id == "o-1"
    assert record.updated == "2024-03-05T14:22:11.123Z"
    columns = [c.name for c in REGISTRY["orders"].columns]
    values = dict(zip(columns, record.values, strict=True))
    assert values == {
        "full_id": "O-1",
        "status": "booked",
        "customer_id": "c-9",
        "origin_city": "Laredo",
        "destination_city": None,
        "currency": "USD",
        "total_amount": 12.5,
        "created_at": "2024-03-01T00:00:00.000Z",
    }
    assert record.raw.encode() == ORDER  # byte for byte, escapes included


@pytest.mark.parametrize(
    "billing", [b'"billing":null,', b"", b'"billing":{},', b'"billing":{"currency":null},']
)
def test_an_object_null_or_missing_on_the_way_to_a_field_reads_as_none(billing: bytes) -> None:
    """All of a record's fields are read in one call, which a null object on the way to one
    of them interrupts: then each is read on its own, to the same values."""
    body = (
        b'{"id":"o-2","updated_at":"2024-03-05T14:22:11.123Z","customer":{"id":"c-1"},'
        + billing
        + b'"commodities":[{"weight":1}],"status":"booked"}'
    )
    record = ORDERS.record(body, "t")
    values = dict(zip([c.name for c in REGISTRY["orders"].columns], record.values, strict=True))
    assert (record.id, record.problem) == ("o-2", None)
    assert (values["customer_id"], values["status"]) == ("c-1", "booked")
    assert values["currency"] is values["total_amount"] is values["origin_city"] is None
    children = [child.name for child in REGISTRY["orders"].children]
    lists = dict(zip(children, record.lists, strict=True))
    assert bytes(lists["commodities"]) == b'[{"weight":1}]'
    assert lists["reference_numbers"] is None


def test_a_record_with_every_object_there_reads_in_one_call_to_the_same_values() -> None:
    full = ORDER.replace(b'"destination":null', b'"destination":{"city":"Dallas"}')
    record = ORDERS.record(full, "t")
    values = dict(zip([c.name for c in REGISTRY["orders"].columns], record.values, strict=True))
    assert values["destination_city"] == "Dallas"
    assert (values["origin_city"], values["customer_id"], values["currency"]) == (
        "Laredo",
        "c-9",
        "USD",
    )
    assert record.lists == (None, None)  # no commodities nor reference numbers


def test_an_odd_shape_is_read_the_slow_way_not_failed() -> None:
    odd = (
        b'{"id":7,"updated_at":"2024-01-01T00:00:00.000Z","origin":"Laredo, TX",'
        b'"billing":{"total_amount":"12.50"},"customer":[1]}'
    )
    record = ORDERS.record(odd, "t")
    values = dict(zip([c.name for c in REGISTRY["orders"].columns], record.values, strict=True))
    assert record.id == "7"
    assert values["origin_city"] is None  # origin is not an object
    assert values["customer_id"] is None
    assert values["total_amount"] == "12.50"  # rows.py decides whether that fits numeric
    assert record.raw.encode() == odd


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"customers": []}', "without a 'orders' list"),
        (b'{"orders": {"id": 1}}', "without a 'orders' list"),
        (b'{"orders": [{"id": 1}', "not valid JSON"),
        (b"<html>502</html>", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_errors_never_empty_pages(body: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        ORDERS.page(body, "orders: GET /api/v1/orders")


STAMP = '"updated_at": "2024-01-01T00:00:00Z"'


@pytest.mark.parametrize(
    ("record", "record_id", "problem"),
    [
        ("1", "", "it is not a JSON object"),
        ("[]", "", "it is not a JSON object"),
        ("{" + STAMP + "}", "", "its 'id' is none"),
        ('{"id": {"x": 1}, ' + STAMP + "}", "", "its 'id' is an object or array"),
        ('{"id": "a"}', "a", "it has no 'updated_at'"),
        ('{"id": "a", "updated_at": null}', "a", "it has no 'updated_at'"),
        ('{"id": "a", "updated_at": 1700000000}', "a", "its 'updated_at' is 1700000000, not"),
        ('{"id": "a", "updated_at": "yesterday"}', "a", "its 'updated_at' 'yesterday' is not"),
        ('{"id": "a", "updated_at": "0001-01-01T00:00:00+01:00"}', "a", "is not an ISO-8601"),
        ('{"id": "a", ' + STAMP + ', "x": "\\ud800"}', "a", "surrogate escape without its pair"),
    ],
)
def test_a_record_that_cannot_be_stored_has_a_problem_not_an_error(
    record: str, record_id: str, problem: str
) -> None:
    """Issue 13, item 5: one bad record leaves the rest of its page readable; the loader
    quarantines it."""
    good = '{"id": "good", ' + STAMP + "}"
    body = ('{"orders": [' + good + ", " + record + ", " + good + '], "total": 3}').encode()
    page = ORDERS.page(body, "t")
    assert page.total == 3
    first, bad, last = page.records
    assert first.problem is None and last.problem is None and first.id == last.id == "good"
    assert bad.id == record_id
    assert bad.problem is not None and problem in bad.problem
    assert json.loads(bad.raw) == json.loads(record)


def test_text_that_is_not_utf8_is_a_problem() -> None:
    body = b'{"orders": [{"id": "a", "updated_at": "2024-01-01T00:00:00Z", "x": "\xff"}]}'
    (record,) = ORDERS.page(body, "t").records
    assert record.problem == "its text is not valid UTF-8"


def test_json_nested_beyond_any_decoder_is_one_clear_error() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"orders": [{"id": "a", "updated_at": "2024-01-01T00:00:00Z", "x": ' + deep + b"}]}"
    with pytest.raises(MalformedResponse, match="nested too deeply"):
        ORDERS.page(body, "t")


def test_total_that_is_not_a_number_counts_as_absent() -> None:
    assert ORDERS.page(b'{"orders": [], "total": "12"}', "t").total is None
    assert ORDERS.page(b'{"orders": []}', "t").total is None


def test_item_bodies() -> None:
    record = ORDERS.item(b'{"order":' + ORDER + b"}", "t")
    assert record.id == "o-1"
    with pytest.raises(MalformedResponse, match="without a 'order' object"):
        ORDERS.item(b'{"orders": []}', "t")


def test_records_of_every_resource_decode_from_the_simulator() -> None:
    from worker.simulator import Simulator, SimulatorConfig

    simulator = Simulator(SimulatorConfig(records=20))
    for name, resource in REGISTRY.items():
        decoder = Decoder(resource)
        for source in simulator.dump(name):
            record = decoder.record(msgspec.json.encode(source), name)
            assert record.id == source["id"]
            assert record.updated == source["updated_at"]
            assert msgspec.json.decode(record.raw) == source
