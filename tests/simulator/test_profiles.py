"""The two API profiles: "documented" (Rose Rocket's own v1 description) next to "extended",
and the options that make an API less convenient (inclusive end bounds, no by-id route)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from worker.simulator import PATHS, RESOURCES, SINGULAR, Simulator

from .conftest import MakeSim
from .helpers import OAuthClient

ClientFactory = Callable[[Simulator], OAuthClient]


def login(
    make_sim: MakeSim, make_client: ClientFactory, **config: Any
) -> tuple[Simulator, OAuthClient, str]:
    sim = make_sim(**config)
    client = make_client(sim)
    return sim, client, client.login()["access_token"]


def newest_first(records: list[dict[str, Any]]) -> list[str]:
    """Newest created first; ties (bulk imports) by id, as a database index on both would."""
    by_id = sorted(records, key=lambda r: r["id"])
    return [r["id"] for r in sorted(by_id, key=lambda r: r["created_at"], reverse=True)]


def read_all(client: OAuthClient, token: str, resource: str, limit: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        page = client.api(PATHS[resource], token, limit=limit, offset=len(records)).json()
        records += page[PATHS[resource]]
        if len(records) >= page["total"]:
            return records


def test_documented_limits_default_20_and_clamp_to_50(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    _, client, token = login(make_sim, make_client, profile="documented", records=120)
    first = client.api("orders", token).json()
    assert (len(first["orders"]), first["limit"], first["total"]) == (20, 20, 120)
    clamped = client.api("orders", token, limit=200).json()
    assert (len(clamped["orders"]), clamped["limit"]) == (50, 50)


def test_documented_can_reject_large_limits_in_the_v1_envelope(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    _, client, token = login(make_sim, make_client, profile="documented", oversize_limit="reject")
    response = client.api("orders", token, limit=51)
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "bad_request",
        "error_message": "limit must not be greater than 50",
    }


def test_documented_order_is_newest_created_first_and_ignores_updated_filters(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    sim, client, token = login(make_sim, make_client, profile="documented", records=60)
    for resource in ("orders", "customers"):
        records = read_all(client, token, resource, limit=7)
        assert [r["id"] for r in records] == newest_first(sim.dump(resource))
    ignored = client.api("orders", token, updated_start_at="2999-01-01T00:00:00.000Z").json()
    assert ignored["total"] == 60


def test_created_filters_on_orders_only(make_sim: MakeSim, make_client: ClientFactory) -> None:
    for profile in ("documented", "extended"):
        sim, client, token = login(make_sim, make_client, profile=profile, records=60)
        orders = sim.dump("orders")
        cut = sorted(r["created_at"] for r in orders)[30]
        body = client.api("orders", token, created_start_at=cut, limit=50).json()
        expected = {r["id"] for r in orders if r["created_at"] >= cut}
        assert body["total"] == len(expected)
        assert {r["id"] for r in body["orders"]} == expected
        customers = client.api("customers", token, created_start_at=cut).json()
        assert customers["total"] == 60, profile  # no date filter on customers


def test_documented_paths_keys_and_missing_invoices(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    sim, client, token = login(make_sim, make_client, profile="documented", records=10)
    partners = client.api("partner_carriers", token).json()
    assert len(partners["partner_carriers"]) == 10
    record = sim.dump("partners")[0]
    one = client.api(f"partner_carriers/{record['id']}", token).json()
    assert one == {"partner_carrier": record}
    for path in ("invoices", "partners"):
        missing = client.api(path, token)
        assert missing.status_code == 404
        assert missing.json() == {
            "error_code": "not_found",
            "error_message": f"Cannot GET /api/v1/{path}",
        }
    unauthorized = client.api("orders", None)
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"error_code": "unauthorized", "error_message": "Unauthorized"}


@pytest.mark.parametrize("resource", RESOURCES)
def test_extended_serves_every_resource_at_its_path(
    sim: Simulator, client: OAuthClient, tokens: dict[str, Any], resource: str
) -> None:
    body = client.api(PATHS[resource], tokens["access_token"], limit=3).json()
    assert len(body[PATHS[resource]]) == 3
    record = sim.dump(resource)[0]
    one = client.api(f"{PATHS[resource]}/{record['id']}", tokens["access_token"]).json()
    assert one == {SINGULAR[resource]: record}


def test_documented_live_inserts_land_first_and_deletes_shift(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    sim, client, token = login(make_sim, make_client, profile="documented", records=30)
    before = [r["id"] for r in client.api("orders", token, limit=50).json()["orders"]]
    changes: dict[str, int] = {"created": 0, "deleted": 0}
    while not (changes["created"] and changes["deleted"]):
        for kind, count in sim.mutate(1, "orders").items():
            changes[kind] = changes.get(kind, 0) + count
    after = client.api("orders", token, limit=50).json()["orders"]
    assert [r["id"] for r in after] == newest_first(sim.dump("orders"))
    newest = after[0]
    assert newest["id"] not in before  # a live insert is the newest record: it comes first
    assert len(after) == 30 + changes["created"] - changes["deleted"]


def test_an_inclusive_end_bound(make_sim: MakeSim, make_client: ClientFactory) -> None:
    for inclusive in (False, True):
        sim, client, token = login(make_sim, make_client, records=40, end_inclusive=inclusive)
        stamp = sim.dump("orders")[10]["updated_at"]
        body = client.api("orders", token, updated_end_at=stamp, limit=50).json()
        at_stamp = {r["id"] for r in sim.dump("orders") if r["updated_at"] == stamp}
        listed = {r["id"] for r in body["orders"]}
        assert (at_stamp <= listed) is inclusive


def test_without_a_by_id_route_every_id_is_404(
    make_sim: MakeSim, make_client: ClientFactory
) -> None:
    sim, client, token = login(make_sim, make_client, by_id=False)
    record = sim.dump("orders")[0]
    response = client.api(f"orders/{record['id']}", token)
    assert response.status_code == 404
    assert response.json()["message"] == f"Cannot GET /api/v1/orders/{record['id']}"
    assert client.api("orders", token).status_code == 200
