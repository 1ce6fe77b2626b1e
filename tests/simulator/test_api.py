"""The v1 data API: paging, filters, get-by-id, error envelopes, determinism, record shapes."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
import requests

from worker.simulator import PATHS, RESOURCES, SINGULAR, Simulator

from .conftest import MakeSim
from .helpers import OAuthClient

ClientFactory = Callable[[Simulator], OAuthClient]
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
FULL_ID = {"customers": r"CUST-\d+", "orders": r"O-\d+", "manifests": r"M-\d+",
           "partners": r"P-\d+", "invoices": r"INV-\d+", "bills": r"B-\d+"}


@pytest.fixture
def token(tokens: dict[str, Any]) -> str:
    access: str = tokens["access_token"]
    return access


def read_all(client: OAuthClient, token: str, resource: str, limit: int,
             **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        response = client.api(PATHS[resource], token, limit=limit, offset=len(records), **params)
        assert response.status_code == 200, response.text
        page = response.json()[PATHS[resource]]
        records += page
        if len(page) < limit:
            return records


def key(record: dict[str, Any]) -> tuple[str, str]:
    return record["updated_at"], record["id"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_pages_cover_every_record_in_api_order(sim: Simulator, client: OAuthClient, token: str,
                                               resource: str) -> None:
    records = read_all(client, token, resource, limit=7)
    assert records == sim.dump(resource)
    assert len(records) == 40
    assert [key(r) for r in records] == sorted(key(r) for r in records)


def test_list_body_shape_and_defaults(client: OAuthClient, token: str) -> None:
    response = client.api("orders", token)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert list(body) == ["orders", "offset", "limit", "total"]
    assert (body["offset"], body["limit"], body["total"]) == (0, 50, 40)
    assert len(body["orders"]) == 40
    page = client.api("orders", token, limit=10, offset=35).json()
    assert (page["offset"], page["limit"], page["total"], len(page["orders"])) == (35, 10, 40, 5)
    beyond = client.api("orders", token, offset=1000).json()
    assert beyond["orders"] == [] and beyond["total"] == 40


def test_limit_200_is_the_maximum(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(records_by_resource={"orders": 450}))
    token = client.login()["access_token"]
    assert len(client.api("orders", token, limit=200).json()["orders"]) == 200
    response = client.api("orders", token, limit=201)
    assert response.status_code == 400
    assert response.json() == {"statusCode": 400, "error": "Bad Request",
                               "message": ["limit must not be greater than 200"]}


@pytest.mark.parametrize(("query", "message"), [
    ("limit=0", "limit must not be less than 1"),
    ("limit=-5", "limit must not be less than 1"),
    ("limit=abc", "limit must be an integer number"),
    ("limit=1.5", "limit must be an integer number"),
    ("limit=%2B5", "limit must be an integer number"),
    ("limit=", "limit must be an integer number"),
    ("limit=" + "9" * 5000, "limit must not be greater than 200"),
    ("offset=-1", "offset must not be less than 0"),
    ("offset=" + "9" * 40, "offset must not be greater than 2147483647"),
    ("offset=x", "offset must be an integer number"),
    ("limit=5&limit=6", "limit must not be repeated"),
    ("updated_start_at=yesterday", "updated_start_at must be a valid ISO 8601 date string"),
    ("updated_end_at=2024-13-45", "updated_end_at must be a valid ISO 8601 date string"),
    ("updated_start_at=2024-01-01T00:00:00+00:00", "updated_start_at must be a valid ISO 8601 "
                                                   "date string"),  # unencoded + is a space
    ("limit=%ff", "query string is not valid"),
])
def test_invalid_list_parameters_are_400_with_a_message_list(sim: Simulator, token: str,
                                                             query: str, message: str) -> None:
    response = requests.get(f"{sim.url}/api/v1/orders?{query}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400 and body["error"] == "Bad Request"
    assert body["message"] == [message]


def test_every_problem_is_reported_at_once(client: OAuthClient, token: str) -> None:
    response = client.api("orders", token, limit=0, offset=-1, updated_end_at="nope")
    assert response.status_code == 400
    assert response.json()["message"] == [
        "limit must not be less than 1", "offset must not be less than 0",
        "updated_end_at must be a valid ISO 8601 date string"]


def test_unknown_parameters_are_ignored(client: OAuthClient, token: str) -> None:
    response = client.api("orders", token, sort="-updated_at", foo="bar", limit=3)
    assert response.status_code == 200
    assert response.json()["total"] == 40


def test_updated_filters_are_start_inclusive_end_exclusive(sim: Simulator, client: OAuthClient,
                                                           token: str) -> None:
    records = sim.dump("orders")
    low, high = records[10]["updated_at"], records[30]["updated_at"]
    expected = [r for r in records if low <= r["updated_at"] < high]
    body = client.api("orders", token, updated_start_at=low, updated_end_at=high, limit=200).json()
    assert body["orders"] == expected
    assert body["total"] == len(expected)
    assert body["orders"][0]["updated_at"] == low
    assert all(r["updated_at"] != high for r in body["orders"])
    # The same instant spelled differently selects the same records.
    moment = datetime.strptime(low, "%Y-%m-%dT%H:%M:%S.%f%z")
    spelled = moment.astimezone(timezone(timedelta(hours=-5))).isoformat(timespec="microseconds")
    assert client.api("orders", token, updated_start_at=spelled, updated_end_at=high,
                      limit=200).json()["orders"] == expected


def test_sub_millisecond_bounds_round_up(sim: Simulator, client: OAuthClient, token: str) -> None:
    records = sim.dump("orders")
    stamp = records[5]["updated_at"]
    just_after = stamp[:-1] + "4Z"  # 0.4 ms later than the record's stamp
    later = [r for r in records if r["updated_at"] > stamp]
    assert client.api("orders", token, updated_start_at=just_after,
                      limit=200).json()["orders"] == later
    up_to = [r for r in records if r["updated_at"] <= stamp]
    assert client.api("orders", token, updated_end_at=just_after,
                      limit=200).json()["orders"] == up_to


def test_naive_timestamps_are_utc_and_dates_are_midnight(sim: Simulator, client: OAuthClient,
                                                         token: str) -> None:
    records = sim.dump("orders")
    expected = [r for r in records if r["updated_at"] >= "2024-06-01T00:00:00.000Z"]
    for spelling in ("2024-06-01", "2024-06-01T00:00:00", "2024-06-01T00:00:00.000Z"):
        body = client.api("orders", token, updated_start_at=spelling, limit=200).json()
        assert body["orders"] == expected, spelling


def test_total_can_be_omitted(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(include_total=False))
    body = client.api("orders", client.login()["access_token"], limit=5).json()
    assert list(body) == ["orders", "offset", "limit"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_get_by_id(sim: Simulator, client: OAuthClient, token: str, resource: str) -> None:
    record = sim.dump(resource)[3]
    response = client.api(f"{PATHS[resource]}/{record['id']}", token)
    assert response.status_code == 200
    assert response.json() == {SINGULAR[resource]: record}


# A well-formed id no record has. Fixed, not uuid4(): pytest-xdist needs every worker process to
# collect the same test ids.
UNKNOWN_ID = "0b1e5ca5-0000-4000-8000-000000000000"


@pytest.mark.parametrize("record_id", [UNKNOWN_ID, "not-a-uuid", "O-1"])
def test_unknown_ids_are_404(client: OAuthClient, token: str, record_id: str) -> None:
    response = client.api(f"orders/{record_id}", token)
    assert response.status_code == 404
    body = response.json()
    assert body["statusCode"] == 404 and body["error"] == "Not Found"
    assert isinstance(body["message"], str)


@pytest.mark.parametrize("path", ["trucks", "orders/", "orders/x/legs", "", "v2/orders"])
def test_unknown_paths_are_404(sim: Simulator, token: str, path: str) -> None:
    response = requests.get(f"{sim.url}/api/v1/{path}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "orders"), ("PUT", "orders/x"), ("DELETE", "customers/x"), ("PATCH", "bills"),
])
def test_wrong_methods_are_405(sim: Simulator, token: str, method: str, path: str) -> None:
    response = requests.request(method, f"{sim.url}/api/v1/{path}", timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json() == {"statusCode": 405, "message": "Method Not Allowed",
                               "error": "Method Not Allowed"}


def test_head_answers_headers_only(sim: Simulator, token: str) -> None:
    response = requests.head(f"{sim.url}/api/v1/orders", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 1000
    assert response.content == b""


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "Token abc",
    "Bearer a b",
])
def test_bad_bearer_tokens_are_401(sim: Simulator, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = requests.get(f"{sim.url}/api/v1/orders", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "message": "Unauthorized",
                               "error": "Unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if authorization is not None:
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_bearer_scheme_is_case_insensitive(sim: Simulator, token: str) -> None:
    response = requests.get(f"{sim.url}/api/v1/orders", timeout=10,
                            headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


def test_gzip_when_enabled_and_accepted(make_sim: MakeSim, make_client: ClientFactory) -> None:
    simulator = make_sim(gzip=True)
    client = make_client(simulator)
    token = client.login()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    zipped = requests.get(f"{simulator.url}/api/v1/orders", timeout=10,
                          headers={**headers, "Accept-Encoding": "gzip"}, stream=True)
    assert zipped.headers["Content-Encoding"] == "gzip"
    raw = zipped.raw.read(decode_content=False)
    assert len(raw) == int(zipped.headers["Content-Length"])
    assert msgspec.json.decode(gzip.decompress(raw))["orders"] == simulator.dump("orders")[:40]
    plain = requests.get(f"{simulator.url}/api/v1/orders", timeout=10,
                         headers={**headers, "Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    refused = requests.get(f"{simulator.url}/api/v1/orders", timeout=10,
                           headers={**headers, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


def test_same_seed_same_data_different_seed_different_data(make_sim: MakeSim) -> None:
    first, second, other = make_sim(seed=7), make_sim(seed=7), make_sim(seed=8)
    for resource in RESOURCES:
        assert first.dump(resource) == second.dump(resource)
        assert first.dump(resource) != other.dump(resource)


def test_changing_one_resource_size_keeps_unrelated_resources(make_sim: MakeSim) -> None:
    base, bigger = make_sim(seed=3), make_sim(seed=3, records_by_resource={"bills": 90})
    assert base.dump("customers") == bigger.dump("customers")
    assert base.dump("bills") != bigger.dump("bills")


@pytest.mark.parametrize("resource", RESOURCES)
def test_record_shapes(make_sim: MakeSim, resource: str) -> None:
    records = make_sim(records=300).dump(resource)
    numbers = set()
    for record in records:
        uuid.UUID(record["id"], version=4)
        assert re.fullmatch(FULL_ID[resource], record["full_id"])
        assert record["public_id"] == record["full_id"]
        numbers.add(int(record["full_id"].split("-")[1]))
        assert TIMESTAMP.fullmatch(record["created_at"])
        assert TIMESTAMP.fullmatch(record["updated_at"])
        assert "2023-01-01" <= record["created_at"] <= record["updated_at"] < "2026-01-01"
        assert isinstance(record["version"], int) and record["version"] >= 1
        assert (record["version"] == 1) == (record["created_at"] == record["updated_at"])
        assert isinstance(record["status"], str)
    assert numbers == set(range(1, 301))
    assert len({r["id"] for r in records}) == 300
    ties = Counter(r["updated_at"] for r in records)
    assert any(count > 1 for count in ties.values()), "bulk imports must create ties"


def test_records_reference_each_other(make_sim: MakeSim) -> None:
    simulator = make_sim(records=100)
    customers = {c["id"]: c for c in simulator.dump("customers")}
    partners = {p["id"] for p in simulator.dump("partners")}
    orders = {o["id"]: o for o in simulator.dump("orders")}
    manifests = {m["id"] for m in simulator.dump("manifests")}
    for order in orders.values():
        customer = customers[order["customer"]["id"]]
        assert order["customer"] == {k: customer[k] for k in ("id", "full_id", "name")}
    for manifest in simulator.dump("manifests"):
        assert manifest["carrier"] is None or manifest["carrier"]["id"] in partners
        assert all(order_id in orders for order_id in manifest["order_ids"])
    for invoice in simulator.dump("invoices"):
        order = orders[invoice["order"]["id"]]
        assert invoice["customer"] == order["customer"]
        assert invoice["total_amount"] == order["billing"]["total_amount"]
    for bill in simulator.dump("bills"):
        assert bill["partner"] is None or bill["partner"]["id"] in partners
        assert bill["manifest"] is None or bill["manifest"]["id"] in manifests


def test_orders_look_like_a_tms_order(make_sim: MakeSim) -> None:
    orders = make_sim(records=200).dump("orders")
    sizes = [len(msgspec.json.encode(order)) for order in orders]
    assert 1500 <= sum(sizes) / len(sizes) <= 2500
    order = orders[0]
    for place in ("origin", "destination"):
        stop = order[place]
        assert {"org_name", "address_1", "city", "state", "postal", "country", "lat", "lng",
                "appointment_start_at", "appointment_end_at"} <= set(stop)
        assert isinstance(stop["lat"], float) and TIMESTAMP.fullmatch(stop["appointment_start_at"])
    billing = order["billing"]
    assert billing["currency"] in ("USD", "CAD")
    assert billing["total_amount"] == round(billing["subtotal_amount"] + billing["tax_amount"], 2)
    assert 1 <= len(order["commodities"]) <= 4
    for commodity in order["commodities"]:
        assert isinstance(commodity["quantity"], int)
        assert set(commodity["dimensions"]) == {"length", "width", "height", "unit"}
    statuses = {o["status"] for o in orders}
    assert statuses <= {"new", "quoted", "booked", "dispatched", "in-transit", "delivered",
                        "invoiced", "cancelled"}
    assert len(statuses) >= 5
    text = msgspec.json.encode(orders).decode()
    assert any(char in text for char in "éüö中")
    assert any(o["notes"] is None for o in orders) and any(o["notes"] for o in orders)


def test_large_dataset_builds_and_pages(make_sim: MakeSim, make_client: ClientFactory) -> None:
    simulator = make_sim(records=0, records_by_resource={"orders": 20_000})
    client = make_client(simulator)
    token = client.login()["access_token"]
    body = client.api("orders", token, limit=200, offset=19_900).json()
    assert body["total"] == 20_000 and len(body["orders"]) == 100
    assert body["orders"] == simulator.dump("orders")[19_900:]


def test_poison_records_are_served_as_planted(make_sim: MakeSim,
                                              make_client: ClientFactory) -> None:
    """SimulatorConfig.poison (issue 13): one record per kind, in its place in the order, with
    exactly the text an API would send, by list and by id; live mutation copes with them."""
    kinds = ("nul", "surrogate", "no_updated_at", "null_updated_at", "number_updated_at",
             "yesterday")
    sim = make_sim(records_by_resource={"orders": 30}, poison={"orders": kinds})
    client = make_client(sim)
    token = client.login()["access_token"]
    planted = sim.poisoned("orders")
    assert len(set(planted)) == len(kinds)
    body = client.api("orders", token, limit=200).content
    assert len(json.loads(body)["orders"]) == 30 and b"before\\u0000after" in body
    assert b"half a pair: \\ud800" in body
    spoiled = {record_id: client.api(f"orders/{record_id}", token).json()["order"]
               for record_id in planted}
    nul, surrogate, missing, null, number, word = (spoiled[i] for i in planted)
    assert nul["poison"] == "before\x00after" and surrogate["poison"] == "half a pair: \ud800"
    assert "updated_at" not in missing and null["updated_at"] is None
    assert number["updated_at"] == 1_700_000_000 and word["updated_at"] == "yesterday"
    assert {r["id"] for r in sim.dump("orders")} >= set(planted)
    sim.mutate(200, resource="orders")  # updates, creates and deletes: poison included
    assert len(sim.dump("orders")) > 0
