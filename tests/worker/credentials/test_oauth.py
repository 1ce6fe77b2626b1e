"""worker/credentials/oauth.py: the authorization URL, PKCE, discovery, the token requests and
their error messages, against a scripted stub server."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from config.settings import Settings
from tests.worker.credentials.helpers import CLIENT_SECRET, Stub
from worker.credentials import oauth
from worker.errors import MalformedResponse, OAuthError, RateLimited, ServerError

TOKEN = {"access_token": "eyJh.access", "refresh_token": "v1.refresh", "expires_in": 60}


def _request(settings: Settings) -> oauth.AuthorizationRequest:
    return oauth.authorization_request(settings, oauth.discover(settings))


def test_authorization_url_has_every_seed_parameter_and_pkce(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    settings = client_settings(stub.url, ROSEROCKET_AUDIENCE="https://aud.example")
    request = _request(settings)
    parts = urlsplit(request.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{stub.url}/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "audience": "https://aud.example",
        "response_type": "code",
        "client_id": "rrsync-demo",
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "scope": "offline_access email profile",
        "state": request.state,
        "code_challenge": request.pkce.challenge,
        "code_challenge_method": "S256",
    }
    assert len(base64.urlsafe_b64decode(request.state + "==")) >= 16  # 128 bits at least
    assert 43 <= len(request.pkce.verifier) <= 128
    digest = hashlib.sha256(request.pkce.verifier.encode()).digest()
    assert request.pkce.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert request.pkce.verifier not in repr(request)
    assert _request(settings).state != request.state


def test_discovery_names_the_endpoints(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    stub.answer(
        "/.well-known/openid-configuration",
        200,
        {
            "authorization_endpoint": f"{stub.url}/oauth2/auth",
            "token_endpoint": f"{stub.url}/oauth2/token",
        },
    )
    settings = client_settings(stub.url)
    endpoints = oauth.discover(settings)
    assert endpoints == oauth.Endpoints(f"{stub.url}/oauth2/auth", f"{stub.url}/oauth2/token")
    oauth.discover(settings)
    assert len(stub.received) == 1  # cached


@pytest.mark.parametrize(
    "answer",
    [(404, "not here"), (200, "<html>"), (200, {"issuer": "x"}), (200, {"token_endpoint": 3})],
)
def test_without_usable_discovery_the_auth0_paths(
    stub: Stub, client_settings: Callable[..., Settings], answer: tuple[int, object]
) -> None:
    stub.answer("/.well-known/openid-configuration", *answer)
    endpoints = oauth.discover(client_settings(stub.url))
    assert endpoints == oauth.Endpoints(f"{stub.url}/authorize", f"{stub.url}/oauth/token")


def test_discovery_that_fails_for_now_is_asked_again(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    stub.answer("/.well-known/openid-configuration", 503, "busy")
    stub.answer(
        "/.well-known/openid-configuration",
        200,
        {"authorization_endpoint": f"{stub.url}/a", "token_endpoint": f"{stub.url}/t"},
    )
    settings = client_settings(stub.url)
    assert oauth.discover(settings).token == f"{stub.url}/oauth/token"
    assert oauth.discover(settings).token == f"{stub.url}/t"


def test_code_exchange_sends_the_seed_form(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    settings = client_settings(stub.url)
    request = _request(settings)
    stub.answer("/oauth/token", 200, {**TOKEN, "scope": "offline_access", "token_type": "Bearer"})
    grant = oauth.exchange_code(settings, oauth.discover(settings), "the-code", request)
    assert (grant.access_token, grant.refresh_token, grant.expires_in) == (
        "eyJh.access",
        "v1.refresh",
        60.0,
    )
    assert "v1.refresh" not in repr(grant) and "eyJh.access" not in repr(grant)
    (form,) = stub.forms("/oauth/token")
    assert form == {
        "grant_type": "authorization_code",
        "client_id": "rrsync-demo",
        "client_secret": CLIENT_SECRET,
        "code": "the-code",
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "code_verifier": request.pkce.verifier,
    }


@pytest.mark.parametrize("status", [503, 429])
def test_code_exchange_is_never_retried(
    stub: Stub, client_settings: Callable[..., Settings], status: int
) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", status, "busy", Retry_After="0")
    with pytest.raises(OAuthError, match="works only once, so run `rosesync bootstrap` again"):
        oauth.exchange_code(settings, oauth.discover(settings), "code", _request(settings))
    assert len(stub.forms("/oauth/token")) == 1


def test_code_exchange_without_refresh_token_names_offline_access(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", 200, {"access_token": "eyJh.only", "expires_in": 60})
    with pytest.raises(OAuthError, match="offline_access"):
        oauth.exchange_code(settings, oauth.discover(settings), "code", _request(settings))


@pytest.mark.parametrize(
    ("status", "error", "advice"),
    [
        (403, "invalid_grant", "the authorization code was refused"),
        (400, "invalid_grant", "the authorization code was refused"),
        (401, "invalid_client", "check ROSEROCKET_CLIENT_ID and ROSEROCKET_CLIENT_SECRET"),
        (400, "invalid_request", "ROSEROCKET_REDIRECT_URI is exactly the callback URI"),
        (403, "unauthorized_client", "provisioned for the authorization code"),
        (400, "invalid_scope", "check ROSEROCKET_SCOPE"),
        (400, "something_new", "check ROSEROCKET_CLIENT_ID, ROSEROCKET_CLIENT_SECRET"),
    ],
)
def test_oauth_error_bodies_become_one_line_with_advice(
    stub: Stub, client_settings: Callable[..., Settings], status: int, error: str, advice: str
) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", status, {"error": error, "error_description": "Said\nthe server"})
    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code(settings, oauth.discover(settings), "code", _request(settings))
    message = str(caught.value)
    assert caught.value.error == error
    assert "\n" not in message
    assert message.startswith(f"the code exchange failed: {error} (Said the server): ")
    assert advice in message
    assert CLIENT_SECRET not in message


def test_an_error_without_oauth_body_names_the_url(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    settings = client_settings(stub.url, ROSEROCKET_AUTH_URL=f"{stub.url}/wrong")
    with pytest.raises(OAuthError, match="answered HTTP 404 without an OAuth error"):
        oauth.refresh(settings, oauth.discover(settings), "v1.r", None)


def test_refresh_form_and_org_id(stub: Stub, client_settings: Callable[..., Settings]) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", 200, TOKEN)
    endpoints = oauth.discover(settings)
    oauth.refresh(settings, endpoints, "v1.old", "org-7")
    oauth.refresh(settings, endpoints, "v1.old", None)
    with_org, without = stub.forms("/oauth/token")
    assert with_org == {
        "grant_type": "refresh_token",
        "refresh_token": "v1.old",
        "client_id": "rrsync-demo",
        "client_secret": CLIENT_SECRET,
        "org_id": "org-7",
    }
    assert "org_id" not in without


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (503, "down", ServerError),
        (429, "slow down", RateLimited),
        (200, "not json", MalformedResponse),
        (200, {"access_token": "eyJh.x", "token_type": "mac"}, MalformedResponse),
        (200, {"access_token": "eyJh.x", "expires_in": -1}, MalformedResponse),
    ],
)
def test_refresh_transient_and_malformed_answers(
    stub: Stub,
    client_settings: Callable[..., Settings],
    status: int,
    body: object,
    error: type[Exception],
) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", status, body)
    with pytest.raises(error):
        oauth.refresh(settings, oauth.discover(settings), "v1.r", None)


def test_refresh_without_new_refresh_token_or_expiry(
    stub: Stub, client_settings: Callable[..., Settings]
) -> None:
    settings = client_settings(stub.url)
    stub.answer("/oauth/token", 200, {"access_token": "eyJh.x"})
    grant = oauth.refresh(settings, oauth.discover(settings), "v1.r", None)
    assert grant.refresh_token is None and grant.expires_in == oauth.DEFAULT_EXPIRES_IN
