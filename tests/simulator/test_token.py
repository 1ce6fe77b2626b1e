"""The token endpoint: code exchange, client authentication, errors, rate limit, revocation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from worker.simulator import Simulator

from .conftest import MakeSim
from .helpers import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    OAuthClient,
    error_of,
    jwt_claims,
)

ClientFactory = Callable[[Simulator], OAuthClient]


def test_code_exchange_answers_tokens_with_no_store(sim: Simulator, client: OAuthClient) -> None:
    before = int(time.time())
    response = client.exchange(client.code())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "offline_access email profile"
    assert tokens["refresh_token"].startswith("v1.")
    claims = jwt_claims(tokens["access_token"])
    assert claims["iss"] == f"{sim.url}/"
    assert claims["aud"] == AUDIENCE
    assert claims["sub"].startswith("auth0|")
    assert claims["scope"] == tokens["scope"]
    assert claims["jti"]
    assert "org_id" not in claims
    assert before <= claims["iat"] <= claims["exp"] - 3599


def test_http_basic_client_authentication(client: OAuthClient) -> None:
    code = client.code()
    response = requests.post(
        f"{client.base_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert response.status_code == 200, response.text


def test_both_authentication_methods_at_once_is_invalid_request(client: OAuthClient) -> None:
    response = requests.post(
        f"{client.base_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": client.code(),
              "redirect_uri": REDIRECT_URI, "client_secret": CLIENT_SECRET},
        auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_no_offline_access_means_no_refresh_token(client: OAuthClient) -> None:
    tokens = client.login(scope="email profile")
    assert "refresh_token" not in tokens
    assert client.api("orders", tokens["access_token"]).status_code == 200


def test_openid_scope_adds_an_id_token(client: OAuthClient) -> None:
    tokens = client.login(scope="openid email offline_access")
    assert jwt_claims(tokens["id_token"])["aud"] == CLIENT_ID


def test_code_is_single_use_and_replay_revokes_its_tokens(sim: Simulator,
                                                          client: OAuthClient) -> None:
    code = client.code()
    first = client.exchange(code).json()
    assert client.api("orders", first["access_token"]).status_code == 200
    replay = client.exchange(code)
    assert replay.status_code == 403
    assert error_of(replay) == "invalid_grant"
    assert client.api("orders", first["access_token"]).status_code == 401
    assert error_of(client.refresh(first["refresh_token"])) == "invalid_grant"
    assert sim.counters()["families_revoked"] == 1


def test_expired_code_is_invalid_grant(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(code_ttl=0.2))
    code = client.code()
    time.sleep(0.4)
    response = client.exchange(code)
    assert response.status_code == 403
    assert error_of(response) == "invalid_grant"


@pytest.mark.parametrize("fields", [
    {"code": "not-a-real-code"},
    {"redirect_uri": REDIRECT_URI + "?x=1"},
    {"redirect_uri": "http://localhost:8765/callback"},
])
def test_bad_code_or_redirect_uri_mismatch_is_invalid_grant(client: OAuthClient,
                                                            fields: dict[str, str]) -> None:
    response = client.token(**{"grant_type": "authorization_code", "code": client.code(),
                               "redirect_uri": REDIRECT_URI, **fields})
    assert response.status_code == 403
    assert error_of(response) == "invalid_grant"


@pytest.mark.parametrize("credentials", [
    {"client_secret": "wrong"},
    {"client_id": "someone-else"},
    {"client_secret": None},
    {"client_id": None, "client_secret": None},
])
def test_client_authentication_failures_are_invalid_client(client: OAuthClient,
                                                           credentials: dict[str, Any]) -> None:
    response = client.exchange(client.code(), **credentials)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"


def test_bad_basic_credentials_get_a_basic_challenge(client: OAuthClient) -> None:
    response = requests.post(f"{client.base_url}/oauth/token",
                             data={"grant_type": "refresh_token", "refresh_token": "x"},
                             auth=(CLIENT_ID, "wrong"), timeout=10)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_json_body_is_rejected(client: OAuthClient) -> None:
    response = requests.post(f"{client.base_url}/oauth/token", timeout=10, json={
        "grant_type": "authorization_code", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "code": client.code(), "redirect_uri": REDIRECT_URI})
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(("fields", "status", "error"), [
    ({}, 400, "invalid_request"),
    ({"grant_type": "password", "username": "u", "password": "p"}, 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
    ({"grant_type": "authorization_code"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token", "refresh_token": "v1.unknown"}, 403, "invalid_grant"),
])
def test_grant_errors(client: OAuthClient, fields: dict[str, str], status: int,
                      error: str) -> None:
    response = client.token(**fields)
    assert response.status_code == status
    assert error_of(response) == error
    assert response.json()["error_description"]


def test_token_errors_and_grants_are_counted(sim: Simulator, client: OAuthClient) -> None:
    client.login()
    client.token(grant_type="password")
    client.token(grant_type="refresh_token", refresh_token="v1.nope")
    counters = sim.counters()
    assert counters["token_requests"] == 3
    assert counters["grants"] == {"authorization_code": 1, "refresh_token": 0}
    assert counters["token_errors"] == {"unsupported_grant_type": 1, "invalid_grant": 1}


def test_token_rate_limit_answers_429_with_retry_after(make_sim: MakeSim,
                                                       make_client: ClientFactory) -> None:
    simulator = make_sim(token_rate_limit=(2, 60.0))
    client = make_client(simulator)
    tokens = client.login()
    assert client.refresh(tokens["refresh_token"]).status_code == 200
    limited = client.refresh(tokens["refresh_token"])
    assert limited.status_code == 429
    assert error_of(limited) == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert simulator.counters()["token_errors"] == {"too_many_requests": 1}


def test_token_endpoint_only_answers_post(sim: Simulator) -> None:
    response = requests.get(f"{sim.url}/oauth/token", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_revoke_kills_the_family(sim: Simulator, client: OAuthClient,
                                 tokens: dict[str, Any]) -> None:
    response = requests.post(f"{sim.url}/oauth/revoke", timeout=10, data={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "token": tokens["refresh_token"]})
    assert response.status_code == 200
    assert response.content == b""
    assert error_of(client.refresh(tokens["refresh_token"])) == "invalid_grant"
    assert client.api("orders", tokens["access_token"]).status_code == 401
    assert sim.counters()["families_revoked"] == 1


def test_revoke_answers_200_for_unknown_tokens(sim: Simulator) -> None:
    response = requests.post(f"{sim.url}/oauth/revoke", timeout=10, data={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token": "v1.never-issued"})
    assert response.status_code == 200


@pytest.mark.parametrize(("data", "status", "error"), [
    ({"client_id": CLIENT_ID, "client_secret": "wrong", "token": "x"}, 401, "invalid_client"),
    ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, 400, "invalid_request"),
])
def test_revoke_errors(sim: Simulator, data: dict[str, str], status: int, error: str) -> None:
    response = requests.post(f"{sim.url}/oauth/revoke", data=data, timeout=10)
    assert response.status_code == status
    assert error_of(response) == error


def test_device_flow_is_not_enabled(sim: Simulator) -> None:
    response = requests.post(f"{sim.url}/oauth/device/code", data={"client_id": CLIENT_ID},
                             timeout=10)
    assert response.status_code == 403
    assert error_of(response) == "unauthorized_client"


def test_userinfo(client: OAuthClient, tokens: dict[str, Any]) -> None:
    response = client.session.get(f"{client.base_url}/userinfo", timeout=10,
                                  headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200
    assert response.json()["sub"] == jwt_claims(tokens["access_token"])["sub"]
    assert client.session.get(f"{client.base_url}/userinfo", timeout=10).status_code == 401
