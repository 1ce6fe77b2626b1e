"""Counters, the /_admin API, and what the simulator never logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.message import Message
from typing import Any

import pytest
import requests

from worker.simulator import RESOURCES, FaultRule, Simulator
from worker.simulator.admin import is_loopback
from worker.simulator.api import DRIFT_FIELD
from worker.simulator.app import App
from worker.simulator.config import SimulatorConfig
from worker.simulator.messages import Request

from .conftest import MakeSim
from .helpers import OAuthClient


def test_counters_count_requests_by_route_and_status(sim: Simulator, client: OAuthClient,
                                                     tokens: dict[str, Any]) -> None:
    token = tokens["access_token"]
    order_id = sim.dump("orders")[0]["id"]
    before = time.time()
    client.api("orders", token)
    first_answered = time.time()
    client.api("orders", token, limit=0)
    client.api(f"orders/{order_id}", token)
    client.api("orders/00000000-0000-4000-8000-000000000000", token)
    client.api("trucks", token)
    requests.request("BREW", f"{sim.url}/api/v1/orders", timeout=10)
    requests.get(f"{sim.url}/_admin/counters", timeout=10)  # not counted
    counters = sim.counters()
    assert counters["requests"] == {
        "GET /authorize 302": 1,
        "POST /oauth/token 200": 1,
        "GET /api/v1/orders 200": 1,
        "GET /api/v1/orders 400": 1,
        "GET /api/v1/orders/{id} 200": 1,
        "GET /api/v1/orders/{id} 404": 1,
        "GET (unmatched) 404": 1,
        "OTHER /api/v1/orders 405": 1,
    }
    assert counters["api_requests"] == 6
    assert before <= counters["first_api_request_at"] <= first_answered
    assert counters["token_requests"] == 1
    assert counters["grants"] == {"authorization_code": 1, "refresh_token": 0}
    assert set(counters) == {"requests", "grants", "token_requests", "token_errors",
                             "reuse_detections", "families_revoked", "api_requests",
                             "first_api_request_at", "faults_fired", "mutations",
                             "per_second", "peak_per_second", "org_requests"}


def test_reset_counters(sim: Simulator, client: OAuthClient, tokens: dict[str, Any]) -> None:
    sim.set_faults(FaultRule("status", status=500, count=1))
    client.api("orders", tokens["access_token"])
    sim.mutate(3)
    assert sim.counters()["requests"]
    sim.reset_counters()
    assert sim.counters() == {
        "requests": {}, "grants": {"authorization_code": 0, "refresh_token": 0},
        "token_requests": 0, "token_errors": {}, "reuse_detections": 0, "families_revoked": 0,
        "api_requests": 0, "first_api_request_at": None, "faults_fired": {},
        "mutations": {"updated": 0, "created": 0, "deleted": 0},
        "per_second": {"clients": {}, "orgs": {}},
        "peak_per_second": {"clients": {}, "orgs": {}}, "org_requests": {}}


def test_counters_are_a_snapshot(sim: Simulator) -> None:
    counters = sim.counters()
    counters["requests"]["fake"] = 1
    assert "fake" not in sim.counters()["requests"]


@pytest.mark.parametrize("resource", RESOURCES)
def test_admin_dump_matches_python_dump(sim: Simulator, resource: str) -> None:
    response = requests.get(f"{sim.url}/_admin/dump/{resource}", timeout=10)
    assert response.status_code == 200
    assert response.json() == sim.dump(resource)


def test_admin_counters_reset_and_revoke(sim: Simulator, client: OAuthClient,
                                         tokens: dict[str, Any]) -> None:
    client.api("orders", tokens["access_token"])
    assert requests.get(f"{sim.url}/_admin/counters", timeout=10).json() == sim.counters()
    assert requests.post(f"{sim.url}/_admin/reset-counters", timeout=10).status_code == 200
    assert sim.counters()["api_requests"] == 0
    assert requests.post(f"{sim.url}/_admin/revoke", timeout=10).status_code == 200
    assert client.api("orders", tokens["access_token"]).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "dump/trucks", None, 404),
    ("GET", "nothing", None, 404),
    ("DELETE", "counters", None, 404),
    ("POST", "mutate", b"{not json", 400),
    ("POST", "faults", b"\xff\xfe", 400),
    ("POST", "api", b'{"schema_drift_after": -1}', 400),
    ("POST", "api", b'{"schema_drift_after": true}', 400),
    ("POST", "api", b'{"records": 5}', 400),
    ("POST", "api", b"[1]", 400),
])
def test_admin_errors(sim: Simulator, method: str, path: str, body: bytes | None,
                      status: int) -> None:
    response = requests.request(method, f"{sim.url}/_admin/{path}", data=body, timeout=10)
    assert response.status_code == status
    assert response.json()["statusCode"] == status


def test_schema_drift_is_set_at_start_and_live_through_the_admin_api(
        make_sim: MakeSim, make_client: Callable[[Simulator], OAuthClient]) -> None:
    """issue 14, item 2: a field added and full_id's type changed, from the Nth request on."""
    sim = make_sim(schema_drift_after=1)
    client = make_client(sim)
    token = client.login()["access_token"]
    first, second = (client.api("orders", token).json()["orders"] for _ in range(2))
    assert isinstance(first[0]["full_id"], str) and DRIFT_FIELD not in first[0]
    assert second[0]["full_id"] == {"value": first[0]["full_id"]}
    assert second[0][DRIFT_FIELD]
    assert client.api(f"orders/{first[0]['id']}", token).json()["order"] == second[0]
    # live: off, then on again after one more request (counted from when it is set)
    for after in (None, 1):
        response = requests.post(
            f"{sim.url}/_admin/api", json={"schema_drift_after": after}, timeout=10
        )
        assert response.status_code == 200
        assert client.api("orders", token).json()["orders"][0] == first[0]
    assert client.api("orders", token).json()["orders"][0] == second[0]


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.7", False), ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1", False),
    ("garbage", False),
])
def test_loopback_detection(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_admin_refuses_non_loopback_peers() -> None:
    # Tests only bind loopback, so the peer address is set directly on the request here.
    app = App(SimulatorConfig(records=2))
    for peer, status in (("192.0.2.7", 403), ("127.0.0.1", 200)):
        response = app.handle(Request("GET", "/_admin/counters", "", Message(), b"", peer))
        assert response is not None and response.status == status


def test_no_token_or_secret_is_ever_logged(sim: Simulator, client: OAuthClient,
                                           caplog: pytest.LogCaptureFixture,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = client.login()
    rotated = client.refresh(tokens["refresh_token"]).json()
    client.refresh(tokens["refresh_token"])  # reuse detection
    client.api("orders", tokens["access_token"])
    client.api("orders", "bogus-token")
    sim.set_faults(FaultRule("drop", count=1))
    with pytest.raises(requests.ConnectionError):
        client.api("orders", rotated["access_token"])
    captured = capsys.readouterr()
    output = caplog.text + captured.out + captured.err
    secrets = [tokens["access_token"], tokens["refresh_token"], rotated["access_token"],
               rotated["refresh_token"], "rrsync-demo-secret"]
    assert not [secret for secret in secrets if secret in output]
