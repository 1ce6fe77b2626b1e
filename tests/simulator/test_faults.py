"""Fault injection: each kind, firing schedules, runtime changes, path prefixes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import requests

from worker.simulator import FaultRule, Simulator

from .conftest import MakeSim
from .helpers import OAuthClient, error_of

ClientFactory = Callable[[Simulator], OAuthClient]


@pytest.fixture
def token(tokens: dict[str, Any]) -> str:
    access: str = tokens["access_token"]
    return access


def statuses(client: OAuthClient, token: str, count: int) -> list[int]:
    return [client.api("orders", token, limit=1).status_code for _ in range(count)]


@pytest.mark.parametrize(("status", "retry_after", "header"), [
    (503, 2.5, "3"), (429, 1.0, "1"), (429, 0.2, "1"), (500, 5.0, None), (502, 1.0, None),
])
def test_status_fault(sim: Simulator, client: OAuthClient, token: str, status: int,
                      retry_after: float, header: str | None) -> None:
    sim.set_faults(FaultRule("status", status=status, retry_after=retry_after, count=1))
    response = client.api("orders", token)
    assert response.status_code == status
    assert response.headers.get("Retry-After") == header
    body = response.json()
    assert body["statusCode"] == status and isinstance(body["message"], str)
    assert client.api("orders", token).status_code == 200
    assert sim.counters()["faults_fired"] == {"status": 1}


def test_unauthorized_fault_does_not_revoke(sim: Simulator, client: OAuthClient,
                                            token: str) -> None:
    sim.set_faults(FaultRule("unauthorized", count=1))
    response = client.api("orders", token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.json()["statusCode"] == 401
    assert client.api("orders", token).status_code == 200
    assert sim.counters()["families_revoked"] == 0


def test_malformed_fault_is_200_with_non_json(sim: Simulator, client: OAuthClient,
                                              token: str) -> None:
    sim.set_faults(FaultRule("malformed", count=1))
    response = client.api("orders", token)
    assert response.status_code == 200
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(response.content)
    assert client.api("orders", token).json()["total"] == 40


def test_truncate_fault_cuts_the_json_in_half(sim: Simulator, token: str) -> None:
    url, headers = f"{sim.url}/api/v1/orders?limit=20", {"Authorization": f"Bearer {token}"}
    complete = requests.get(url, headers=headers, timeout=10).content
    sim.set_faults(FaultRule("truncate", count=1))
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.content == complete[: len(complete) // 2]
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(response.content)


def test_drop_fault_closes_the_connection(sim: Simulator, client: OAuthClient,
                                          token: str) -> None:
    sim.set_faults(FaultRule("drop", count=1))
    with pytest.raises(requests.ConnectionError):
        client.api("orders", token)
    assert client.api("orders", token).status_code == 200
    counters = sim.counters()
    assert counters["faults_fired"] == {"drop": 1}
    assert counters["requests"]["GET /api/v1/orders dropped"] == 1


def test_latency_fault_delays_every_matching_request(sim: Simulator, client: OAuthClient,
                                                     token: str) -> None:
    sim.set_faults(FaultRule("latency", latency=0.3))
    for _ in range(2):
        started = time.monotonic()
        assert client.api("orders", token).status_code == 200
        assert time.monotonic() - started >= 0.3
    assert requests.get(f"{sim.url}/.well-known/openid-configuration", timeout=10).ok
    assert sim.counters()["faults_fired"] == {"latency": 2}


def test_latency_combines_with_another_fault(sim: Simulator, client: OAuthClient,
                                             token: str) -> None:
    sim.set_faults(FaultRule("latency", latency=0.2), FaultRule("status", status=502))
    started = time.monotonic()
    assert client.api("orders", token).status_code == 502
    assert time.monotonic() - started >= 0.2
    assert sim.counters()["faults_fired"] == {"latency": 1, "status": 1}


def test_every_nth_request(sim: Simulator, client: OAuthClient, token: str) -> None:
    sim.set_faults(FaultRule("status", status=500, every=3))
    assert statuses(client, token, 7) == [200, 200, 500, 200, 200, 500, 200]


def test_after_and_count(sim: Simulator, client: OAuthClient, token: str) -> None:
    sim.set_faults(FaultRule("status", status=503, after=2, count=2))
    assert statuses(client, token, 6) == [200, 200, 503, 503, 200, 200]


def test_after_with_every(sim: Simulator, client: OAuthClient, token: str) -> None:
    sim.set_faults(FaultRule("status", status=500, after=1, every=2, count=2))
    assert statuses(client, token, 8) == [200, 200, 500, 200, 500, 200, 200, 200]


def test_rate_is_random_but_reproducible(make_sim: MakeSim, make_client: ClientFactory) -> None:
    patterns = []
    for _ in range(2):
        simulator = make_sim(seed=11, faults=(FaultRule("status", status=500, rate=0.5),))
        client = make_client(simulator)
        patterns.append(statuses(client, client.login()["access_token"], 30))
    assert patterns[0] == patterns[1]
    assert 5 <= patterns[0].count(500) <= 25


def test_faults_from_the_config_are_active_at_start(make_sim: MakeSim,
                                                    make_client: ClientFactory) -> None:
    simulator = make_sim(faults=(FaultRule("status", status=502, count=1),))
    client = make_client(simulator)
    assert statuses(client, client.login()["access_token"], 2) == [502, 200]


def test_path_prefix_targets_the_token_endpoint(sim: Simulator, client: OAuthClient,
                                                tokens: dict[str, Any]) -> None:
    sim.set_faults(FaultRule("status", status=503, retry_after=4, path_prefix="/oauth/token"))
    response = client.refresh(tokens["refresh_token"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "4"
    assert client.api("orders", tokens["access_token"]).status_code == 200
    sim.set_faults()
    assert client.refresh(tokens["refresh_token"]).status_code == 200
    assert sim.counters()["token_requests"] == 3  # the faulted one counts as a token request


def test_set_faults_replaces_and_clears(sim: Simulator, client: OAuthClient, token: str) -> None:
    sim.set_faults(FaultRule("status", status=500))
    assert statuses(client, token, 2) == [500, 500]
    sim.set_faults(FaultRule("status", status=502))
    assert statuses(client, token, 1) == [502]
    sim.set_faults()
    assert statuses(client, token, 2) == [200, 200]


def test_faults_through_the_admin_endpoint(sim: Simulator, client: OAuthClient,
                                           token: str) -> None:
    rules = [{"kind": "status", "status": 429, "retry_after": 2, "count": 1},
             {"kind": "latency", "latency": 0.01}]
    assert requests.post(f"{sim.url}/_admin/faults", json=rules, timeout=10).status_code == 200
    listed = requests.get(f"{sim.url}/_admin/faults", timeout=10).json()
    assert [FaultRule(**rule) for rule in listed] == [FaultRule(**rule) for rule in rules]
    response = client.api("orders", token)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
    assert requests.post(f"{sim.url}/_admin/faults", json=[], timeout=10).status_code == 200
    assert requests.get(f"{sim.url}/_admin/faults", timeout=10).json() == []


@pytest.mark.parametrize("payload", [
    {"kind": "status"}, [{"kind": "nope"}], [{"kind": "status", "status": "500"}],
    [{"kind": "drop", "bogus": 1}], [{"kind": "drop", "count": True}], ["drop"],
])
def test_admin_refuses_bad_fault_rules(sim: Simulator, payload: Any) -> None:
    response = requests.post(f"{sim.url}/_admin/faults", json=payload, timeout=10)
    assert response.status_code == 400
    assert isinstance(response.json()["message"], list)


def test_admin_endpoints_are_never_faulted(sim: Simulator) -> None:
    sim.set_faults(FaultRule("drop", path_prefix="/"))
    assert requests.get(f"{sim.url}/_admin/counters", timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/.well-known/openid-configuration", timeout=10)


def test_oauth_errors_still_flow_through_status_faults(sim: Simulator,
                                                       client: OAuthClient) -> None:
    sim.set_faults(FaultRule("status", status=500, path_prefix="/oauth/", count=1))
    assert client.token(grant_type="password").status_code == 500
    assert error_of(client.token(grant_type="password")) == "unsupported_grant_type"
