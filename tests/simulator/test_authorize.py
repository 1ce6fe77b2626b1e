"""The authorization endpoint: consent modes, error page vs error redirect, PKCE."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from worker.simulator import Simulator

from .conftest import MakeSim
from .helpers import (
    CLIENT_ID,
    REDIRECT_URI,
    OAuthClient,
    consent_transaction,
    error_of,
    location_params,
    pkce_pair,
)

ClientFactory = Callable[[Simulator], OAuthClient]


def test_auto_approve_redirects_with_code_and_state(client: OAuthClient) -> None:
    params = location_params(client.authorize(state="abc-123"))
    assert set(params) == {"code", "state"}
    assert params["state"] == "abc-123"
    assert len(params["code"]) >= 32


def test_auto_deny_redirects_with_access_denied(make_sim: MakeSim,
                                                make_client: ClientFactory) -> None:
    client = make_client(make_sim(consent="deny"))
    params = location_params(client.authorize(state="s1"))
    assert params["error"] == "access_denied"
    assert params["state"] == "s1"
    assert "code" not in params


def test_consent_page_approve(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(consent="page"))
    page = client.authorize(state="s2")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert 'action="/authorize/decision"' in page.text
    assert 'value="approve"' in page.text and 'value="deny"' in page.text
    # The form carries an opaque transaction, not the request parameters.
    assert "redirect_uri" not in page.text and "st-123" not in page.text
    answer = client.decide(consent_transaction(page.text), "approve")
    params = location_params(answer)
    assert params["state"] == "s2"
    assert client.exchange(params["code"]).status_code == 200


def test_consent_page_deny(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(consent="page"))
    page = client.authorize(state="s3")
    params = location_params(client.decide(consent_transaction(page.text), "deny"))
    assert params == {"error": "access_denied", "error_description": params["error_description"],
                      "state": "s3"}


def test_consent_transaction_is_single_use(make_sim: MakeSim, make_client: ClientFactory) -> None:
    client = make_client(make_sim(consent="page"))
    transaction = consent_transaction(client.authorize().text)
    assert client.decide(transaction, "approve").status_code == 302
    replay = client.decide(transaction, "approve")
    assert replay.status_code == 400
    assert "Location" not in replay.headers


@pytest.mark.parametrize("form", [
    {"transaction": "made-up", "decision": "approve"},
    {"decision": "approve"},
    {"transaction": "x", "decision": "maybe"},
])
def test_bad_consent_submissions_get_an_error_page(make_sim: MakeSim, make_client: ClientFactory,
                                                   form: dict[str, str]) -> None:
    simulator = make_sim(consent="page")
    make_client(simulator).authorize()
    response = requests.post(f"{simulator.url}/authorize/decision", data=form,
                             allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Location" not in response.headers


@pytest.mark.parametrize("overrides", [
    {"client_id": None},
    {"client_id": "someone-else"},
    {"redirect_uri": None},
    {"redirect_uri": REDIRECT_URI + "/"},
    {"redirect_uri": "http://evil.example/callback"},
    {"redirect_uri": REDIRECT_URI.upper()},
])
def test_bad_client_or_redirect_uri_shows_an_error_page_never_a_redirect(
        client: OAuthClient, overrides: dict[str, str | None]) -> None:
    response = client.authorize(**overrides)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("query", [
    f"client_id={CLIENT_ID}&client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}",
    f"client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}&redirect_uri={REDIRECT_URI}",
])
def test_duplicated_client_or_redirect_uri_shows_an_error_page(sim: Simulator, query: str) -> None:
    response = requests.get(f"{sim.url}/authorize?{query}&state=x&response_type=code",
                            allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(("overrides", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": None}, "invalid_request"),
    ({"scope": "offline_access admin"}, "invalid_scope"),
    ({"audience": "https://elsewhere.example"}, "invalid_request"),
    ({"audience": None}, "invalid_request"),
    ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request"),
    ({"code_challenge_method": "S256"}, "invalid_request"),
    ({"code_challenge": "too-short", "code_challenge_method": "S256"}, "invalid_request"),
])
def test_request_errors_are_redirected_with_state(client: OAuthClient,
                                                  overrides: dict[str, str | None],
                                                  error: str) -> None:
    params = location_params(client.authorize(state="keep-me", **overrides))
    assert params["error"] == error
    assert params["state"] == "keep-me"
    assert params["error_description"]
    assert "code" not in params


def test_missing_state_is_an_invalid_request(client: OAuthClient) -> None:
    params = location_params(client.authorize(state=None))
    assert params["error"] == "invalid_request"
    assert "state" not in params


def test_duplicated_parameter_is_an_invalid_request(sim: Simulator) -> None:
    query = (f"audience=https://roserocket.com&response_type=code&client_id={CLIENT_ID}"
             f"&redirect_uri={REDIRECT_URI}&scope=email&scope=profile&state=s9")
    response = requests.get(f"{sim.url}/authorize?{query}", allow_redirects=False, timeout=10)
    params = location_params(response)
    assert params["error"] == "invalid_request"
    assert params["state"] == "s9"


def test_default_scope_when_none_is_requested(client: OAuthClient) -> None:
    tokens = client.exchange(client.code(scope=None)).json()
    assert tokens["scope"] == "openid profile email"
    assert "refresh_token" not in tokens


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_pkce_success(client: OAuthClient, method: str) -> None:
    verifier, challenge = pkce_pair()
    if method == "plain":
        challenge = verifier
    code = client.code(code_challenge=challenge, code_challenge_method=method)
    response = client.exchange(code, code_verifier=verifier)
    assert response.status_code == 200, response.text


def test_pkce_without_method_defaults_to_plain(client: OAuthClient) -> None:
    verifier, _ = pkce_pair()
    code = client.code(code_challenge=verifier)
    assert client.exchange(code, code_verifier=verifier).status_code == 200


@pytest.mark.parametrize("verifier", ["wrong-" + "v" * 50, None])
def test_pkce_wrong_or_missing_verifier_is_invalid_grant(client: OAuthClient,
                                                         verifier: str | None) -> None:
    _, challenge = pkce_pair()
    code = client.code(code_challenge=challenge, code_challenge_method="S256")
    response = client.exchange(code, code_verifier=verifier)
    assert response.status_code == 403
    assert error_of(response) == "invalid_grant"


def test_verifier_without_challenge_is_refused_as_a_downgrade(client: OAuthClient) -> None:
    verifier, _ = pkce_pair()
    response = client.exchange(client.code(), code_verifier=verifier)
    assert response.status_code == 403
    assert error_of(response) == "invalid_grant"


def test_pkce_challenge_survives_the_consent_page(make_sim: MakeSim,
                                                  make_client: ClientFactory) -> None:
    client = make_client(make_sim(consent="page"))
    verifier, challenge = pkce_pair()
    code = client.code(code_challenge=challenge, code_challenge_method="S256")
    assert client.exchange(code).status_code == 403
    code = client.code(code_challenge=challenge, code_challenge_method="S256")
    assert client.exchange(code, code_verifier=verifier).status_code == 200


def test_authorize_only_answers_get(sim: Simulator) -> None:
    response = requests.post(f"{sim.url}/authorize", data={"client_id": CLIENT_ID}, timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
