"""Many organizations (issue 15, item 5): each org reads its own seeded dataset, chosen by the
org_id its token family was refreshed for, and the counters count API requests a second per
client and per org. Everything over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from worker.simulator import Simulator
from worker.simulator.config import SimulatorConfig
from worker.simulator.counters import SECONDS_KEPT, Counters

from .conftest import MakeSim
from .helpers import OAuthClient

ORGS = {"org-a": 11, "org-b": 22}


def org_token(client: OAuthClient, org: str | None) -> str:
    """An access token of a fresh grant refreshed for ``org`` (None: never bound to one)."""
    tokens = client.login()
    if org is None:
        return str(tokens["access_token"])
    refreshed = client.refresh(tokens["refresh_token"], org_id=org)
    assert refreshed.status_code == 200, refreshed.text
    return str(refreshed.json()["access_token"])


def listed(client: OAuthClient, token: str, resource: str = "orders") -> list[dict[str, Any]]:
    response = client.api(resource, token, limit=200)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()[resource]
    return items


@pytest.fixture
def orgs_sim(make_sim: MakeSim) -> Simulator:
    return make_sim(records=30, orgs=ORGS, org_records={"org-b": 90})


@pytest.fixture
def client(orgs_sim: Simulator, make_client: Callable[[Simulator], OAuthClient]) -> OAuthClient:
    """A client of the many-org simulator (the conftest's is for a single-org one)."""
    return make_client(orgs_sim)


def test_each_org_reads_its_own_dataset(orgs_sim: Simulator, client: OAuthClient) -> None:
    default = listed(client, org_token(client, None))
    org_a = listed(client, org_token(client, "org-a"))
    org_b = listed(client, org_token(client, "org-b"))
    # A token bound to an org that is not configured reads the default dataset, as before.
    other = listed(client, org_token(client, "org-unknown"))
    assert other == default == orgs_sim.dump("orders")
    assert org_a == orgs_sim.dump("orders", org="org-a")
    assert org_b[:200] == orgs_sim.dump("orders", org="org-b")[:200]
    assert len(org_a) == 30 and len(orgs_sim.dump("orders", org="org-b")) == 90
    # Different seeds, different records: no org sees another's.
    assert org_a != default[: len(org_a)]
    assert org_b[: len(org_a)] != org_a


def test_by_id_reads_the_tokens_org(orgs_sim: Simulator, client: OAuthClient) -> None:
    record = orgs_sim.dump("customers", org="org-a")[0]
    found = client.api(f"customers/{record['id']}", org_token(client, "org-a"))
    assert found.status_code == 200 and found.json()["customer"] == record
    default_record = orgs_sim.dump("customers")[0]
    if default_record["id"] != record["id"]:  # ids only equal by chance of the seeds
        assert client.api(f"customers/{record['id']}", org_token(client, None)).json() != {
            "customer": record
        }


def test_admin_dump_takes_an_org(orgs_sim: Simulator) -> None:
    response = requests.get(f"{orgs_sim.url}/_admin/dump/orders?org=org-b", timeout=10)
    assert response.status_code == 200
    assert response.json() == orgs_sim.dump("orders", org="org-b")
    assert response.json() != orgs_sim.dump("orders")


def test_revoking_one_org_leaves_the_others(orgs_sim: Simulator, client: OAuthClient) -> None:
    token_a, token_b = org_token(client, "org-a"), org_token(client, "org-b")
    response = requests.post(f"{orgs_sim.url}/_admin/revoke", json={"org": "org-a"}, timeout=10)
    assert response.status_code == 200
    assert client.api("orders", token_a).status_code == 401
    assert client.api("orders", token_b).status_code == 200
    bad = requests.post(f"{orgs_sim.url}/_admin/revoke", json={"org": 5}, timeout=10)
    assert bad.status_code == 400


def test_counters_per_client_and_org_per_second(orgs_sim: Simulator, client: OAuthClient) -> None:
    token_a, token_b, plain = (org_token(client, org) for org in ("org-a", "org-b", None))
    for _ in range(3):
        client.api("orders", token_a)
    client.api("customers", token_b)
    client.api("customers", plain)
    client.api("customers", "not-a-token")  # no client known: not attributed
    counters = requests.get(f"{orgs_sim.url}/_admin/counters", timeout=10).json()
    assert counters["org_requests"] == {"org-a": 3, "org-b": 1, "(none)": 1}
    per_org = counters["per_second"]["orgs"]
    assert {org: sum(seconds.values()) for org, seconds in per_org.items()} == {
        "org-a": 3,
        "org-b": 1,
        "(none)": 1,
    }
    clients = counters["per_second"]["clients"]
    assert list(clients) == ["rrsync-demo"] and sum(clients["rrsync-demo"].values()) == 5
    peaks = counters["peak_per_second"]
    assert peaks["clients"]["rrsync-demo"] == max(clients["rrsync-demo"].values())
    assert 1 <= peaks["orgs"]["org-a"] <= 3


def test_per_second_counts_keep_a_bounded_window() -> None:
    counters = Counters()
    counters.add_request("client", "org", 1000)
    counters.add_request("client", "org", 1000)
    counters.add_request("client", "org", 1000 + SECONDS_KEPT)
    snapshot = counters.snapshot()
    assert snapshot["per_second"]["clients"]["client"] == {str(1000 + SECONDS_KEPT): 1}
    assert snapshot["peak_per_second"]["clients"]["client"] == 2


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"orgs": {"": 1}}, "org ids must be non-empty"),
        ({"org_records": {"org-x": 5}}, "not in orgs"),
        ({"orgs": {"org-x": 1}, "org_records": {"org-x": -1}}, "org_records counts"),
    ],
)
def test_org_config_is_checked(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SimulatorConfig(**changes)
