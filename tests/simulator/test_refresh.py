"""Refresh tokens: rotation, reuse detection, leeway, org binding, lifetimes, access expiry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.simulator import Simulator

from .conftest import MakeSim
from .helpers import OAuthClient, error_of, jwt_claims, wait_until

ClientFactory = Callable[[Simulator], OAuthClient]


def test_rotation_returns_a_new_refresh_token(sim: Simulator, client: OAuthClient,
                                              tokens: dict[str, Any]) -> None:
    response = client.refresh(tokens["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    rotated = response.json()
    assert set(rotated) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]
    assert client.api("orders", rotated["access_token"]).status_code == 200
    # Auth0 does not revoke earlier access tokens on refresh.
    assert client.api("orders", tokens["access_token"]).status_code == 200
    assert client.refresh(rotated["refresh_token"]).status_code == 200
    assert sim.counters()["grants"] == {"authorization_code": 1, "refresh_token": 2}


def test_reuse_of_a_rotated_token_revokes_the_whole_family(sim: Simulator, client: OAuthClient,
                                                           tokens: dict[str, Any]) -> None:
    rotated = client.refresh(tokens["refresh_token"]).json()
    reuse = client.refresh(tokens["refresh_token"])
    assert reuse.status_code == 403
    assert error_of(reuse) == "invalid_grant"
    # Everything issued in the family is dead, including the legitimate newest tokens.
    assert error_of(client.refresh(rotated["refresh_token"])) == "invalid_grant"
    assert client.api("orders", tokens["access_token"]).status_code == 401
    assert client.api("orders", rotated["access_token"]).status_code == 401
    counters = sim.counters()
    assert counters["reuse_detections"] == 1
    assert counters["families_revoked"] == 1
    assert counters["token_errors"] == {"invalid_grant": 2}


def test_reuse_only_kills_its_own_family(client: OAuthClient) -> None:
    first, second = client.login(), client.login()
    client.refresh(first["refresh_token"])
    assert client.refresh(first["refresh_token"]).status_code == 403
    assert client.api("orders", second["access_token"]).status_code == 200
    assert client.refresh(second["refresh_token"]).status_code == 200


def test_reuse_within_the_leeway_is_honoured(make_sim: MakeSim,
                                             make_client: ClientFactory) -> None:
    simulator = make_sim(reuse_leeway=60.0)
    client = make_client(simulator)
    tokens = client.login()
    rotated = client.refresh(tokens["refresh_token"]).json()
    again = client.refresh(tokens["refresh_token"])
    assert again.status_code == 200
    assert client.api("orders", again.json()["access_token"]).status_code == 200
    assert client.refresh(rotated["refresh_token"]).status_code == 200
    assert simulator.counters()["reuse_detections"] == 0


def test_reuse_after_the_leeway_is_detected(make_sim: MakeSim,
                                            make_client: ClientFactory) -> None:
    simulator = make_sim(reuse_leeway=0.2)
    client = make_client(simulator)
    tokens = client.login()
    client.refresh(tokens["refresh_token"])
    wait_until(lambda: client.refresh(tokens["refresh_token"]).status_code == 403)
    assert simulator.counters()["reuse_detections"] == 1


def test_without_rotation_the_refresh_token_stays_and_is_not_returned(
        make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(rotation=False))
    tokens = client.login()
    for _ in range(3):
        response = client.refresh(tokens["refresh_token"])
        assert response.status_code == 200
        assert "refresh_token" not in response.json()
        assert client.api("orders", response.json()["access_token"]).status_code == 200


def test_org_id_binds_to_the_family(client: OAuthClient, tokens: dict[str, Any]) -> None:
    bound = client.refresh(tokens["refresh_token"], org_id="org-a")
    assert bound.status_code == 200
    assert jwt_claims(bound.json()["access_token"])["org_id"] == "org-a"
    other = client.refresh(bound.json()["refresh_token"], org_id="org-b")
    assert other.status_code == 403
    assert error_of(other) == "invalid_grant"
    assert "org-b" in other.json()["error_description"]
    # The refused request did not consume the token; the bound org still works, and leaving
    # org_id out keeps the binding.
    same = client.refresh(bound.json()["refresh_token"], org_id="org-a")
    assert same.status_code == 200
    unbound = client.refresh(same.json()["refresh_token"])
    assert jwt_claims(unbound.json()["access_token"])["org_id"] == "org-a"


def test_refresh_family_has_an_absolute_lifetime(make_sim: MakeSim,
                                                 make_client: ClientFactory) -> None:
    client = make_client(make_sim(refresh_ttl=2.0))
    tokens = client.login()
    current = client.refresh(tokens["refresh_token"]).json()["refresh_token"]

    def refresh_fails() -> bool:
        nonlocal current
        response = client.refresh(current)
        if response.status_code == 200:  # rotation does not extend the family's lifetime
            current = response.json()["refresh_token"]
            return False
        assert error_of(response) == "invalid_grant"
        assert "expired" in response.json()["error_description"]
        return True

    wait_until(refresh_fails, interval=0.2)


def test_access_token_expires(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(access_ttl=2.0))
    tokens = client.login()
    assert tokens["expires_in"] == 2
    assert client.api("orders", tokens["access_token"]).status_code == 200
    wait_until(lambda: client.api("orders", tokens["access_token"]).status_code == 401)
    expired = client.api("orders", tokens["access_token"])
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert expired.json() == {"statusCode": 401, "message": "Unauthorized",
                              "error": "Unauthorized"}
    fresh = client.refresh(tokens["refresh_token"]).json()
    assert client.api("orders", fresh["access_token"]).status_code == 200


def test_revoke_all_kills_every_token(sim: Simulator, client: OAuthClient) -> None:
    first, second = client.login(), client.login()
    sim.revoke_all()
    for tokens in (first, second):
        assert client.api("orders", tokens["access_token"]).status_code == 401
        assert error_of(client.refresh(tokens["refresh_token"])) == "invalid_grant"
    assert sim.counters()["families_revoked"] == 2
    assert client.api("orders", client.login()["access_token"]).status_code == 200
