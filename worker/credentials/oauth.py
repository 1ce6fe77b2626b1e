"""The OAuth 2.0 protocol, client side: endpoints, the authorization URL, PKCE, the two token
requests, and turning the server's error bodies into one line that says what to check.

Stateless: nothing here stores anything. Every HTTP call goes through ``worker.source.http``, and
every secret (client secret, code, verifier, tokens) is registered for log redaction the moment
it exists. Each function makes at most ONE request; whether to retry is the caller's decision,
because for these two grants it is a correctness question, not a convenience (see
:func:`exchange_code` and ``store.py``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from config.settings import Settings
from worker.errors import (
    ClientRejected,
    MalformedResponse,
    OAuthError,
    TransientError,
    Unreachable,
)
from worker.logs import redact, register_secret
from worker.source.http import raise_for_transient, send, timeouts

# RFC 6749 section 5.2 error codes that mean "this grant is finished": no retry and no further
# refresh can succeed until a person bootstraps again.
REAUTH_ERRORS = frozenset({"invalid_grant"})
# ... and those that mean "this client is refused": our settings are wrong, the grant may be
# fine. Issue 17: a wrong ROSEROCKET_CLIENT_SECRET once marked the credential reauth_required,
# and fixing the secret was not enough.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})

DISCOVERY_PATH = "/.well-known/openid-configuration"
AUTH_URL = "ROSEROCKET_AUTH_URL"  # the variable an unreachable-server error names
DISCOVERY_TIMEOUT_SECONDS = 10.0
# Auth0 always sends expires_in; RFC 6749 section 5.1 only RECOMMENDS it. Without it we assume
# an hour and rely on the 401 path (seed step 7) if the token dies sooner.
DEFAULT_EXPIRES_IN = 3600

# The three steps, as error messages name them.
AUTHORIZATION = "the authorization"
CODE_EXCHANGE = "the code exchange"
TOKEN_REFRESH = "the token refresh"  # noqa: S105 - a label, not a password


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorization: str
    token: str


@dataclass(frozen=True, slots=True)
class Pkce:
    """RFC 7636: a one-time verifier kept here, and its S256 challenge sent with the request."""

    verifier: str = field(repr=False)
    challenge: str


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str  # carries state and the PKCE challenge, neither of which lets anyone in
    redirect_uri: str
    state: str
    pkce: Pkce


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A successful token response (RFC 6749 section 5.1)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float
    scope: str | None


_discovered: dict[str, Endpoints] = {}
_discovered_lock = threading.Lock()


def discover(settings: Settings) -> Endpoints:
    """The endpoints named by OIDC discovery at ROSEROCKET_AUTH_URL, else the Auth0 defaults.

    Cached per process once the server has answered: the document changes about never, and a
    refresh must not pay an extra round trip. A server without discovery gets ``/authorize`` and
    ``/oauth/token``, which is what Auth0 serves anyway; so does one that cannot be reached right
    now, uncached, so that the next call asks again.
    """
    base = settings.auth_url.rstrip("/")
    with _discovered_lock:
        cached = _discovered.get(base)
    if cached is not None:
        return cached
    try:
        endpoints = discovered(settings) or Endpoints(
            authorization=f"{base}/authorize", token=f"{base}/oauth/token"
        )
    except Unreachable:
        raise  # nothing will answer at the default paths either: say so now (issue 17)
    except TransientError:
        return Endpoints(authorization=f"{base}/authorize", token=f"{base}/oauth/token")
    with _discovered_lock:
        _discovered[base] = endpoints
    return endpoints


def discovered(settings: Settings) -> Endpoints | None:
    """The endpoints the discovery document names, or None when the server has none (any
    answer but a usable 200). Raises :class:`TransientError` when it could not be asked, and
    :class:`Unreachable` (naming ROSEROCKET_AUTH_URL) when nothing listens there."""
    url = settings.auth_url.rstrip("/") + DISCOVERY_PATH
    what = f"OIDC discovery at {url}"
    response = send("GET", url, what, timeouts(DISCOVERY_TIMEOUT_SECONDS), AUTH_URL)
    raise_for_transient(response, what)
    try:
        document = response.json() if response.status_code == 200 else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        named = (document.get("authorization_endpoint"), document.get("token_endpoint"))
        if all(isinstance(url, str) and urlsplit(url).scheme in ("http", "https") for url in named):
            return Endpoints(authorization=str(named[0]), token=str(named[1]))
    return None


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_pkce() -> Pkce:
    """RFC 7636 section 4.1-4.2: 64 random bytes give an 86-character verifier (43-128 allowed),
    and the S256 challenge is BASE64URL(SHA256(verifier)) without padding."""
    verifier = secrets.token_urlsafe(64)
    register_secret(verifier)
    return Pkce(verifier=verifier, challenge=_base64url(hashlib.sha256(verifier.encode()).digest()))


def authorization_request(settings: Settings, endpoints: Endpoints) -> AuthorizationRequest:
    """Seed step 2's URL, plus PKCE. ``state``: 32 random bytes (256 bits), the CSRF defence of
    RFC 6749 section 10.12, checked on the callback."""
    client_id, _secret = settings.require_client()
    state = secrets.token_urlsafe(32)
    pkce = new_pkce()
    query = urlencode(
        {
            "audience": settings.audience,
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": settings.redirect_uri,
            "scope": settings.scope,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if urlsplit(endpoints.authorization).query else "?"
    return AuthorizationRequest(
        url=f"{endpoints.authorization}{separator}{query}",
        redirect_uri=settings.redirect_uri,
        state=state,
        pkce=pkce,
    )


def exchange_code(
    settings: Settings, endpoints: Endpoints, code: str, request: AuthorizationRequest
) -> TokenGrant:
    """Seed step 5: the authorization code for tokens, in exactly one request.

    Never retried, whatever happens. A code is single-use (RFC 6749 section 4.1.2) and the
    server SHOULD revoke what it issued when a code is presented twice (section 10.5), so once
    the request may have reached the server a retry can only fail or do harm; and when it never
    got there, running `rosesync bootstrap` again costs the operator one click.
    """
    client_id, client_secret = settings.require_client()
    register_secret(client_secret.reveal())
    register_secret(code)
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret.reveal(),
        "code": code,
        "redirect_uri": request.redirect_uri,  # RFC 6749 section 4.1.3: identical to step 2's
        "code_verifier": request.pkce.verifier,  # RFC 7636 section 4.5
    }
    try:
        grant = _token_request(settings, endpoints, form, CODE_EXCHANGE)
    except TransientError as exc:
        raise OAuthError(
            f"{exc}; an authorization code works only once, so run `rosesync bootstrap` again"
        ) from None
    if not grant.refresh_token:
        raise OAuthError(
            "the token endpoint issued no refresh token: rosesync needs the offline_access scope "
            "(check that ROSEROCKET_SCOPE includes offline_access and that the application is "
            "allowed refresh tokens / offline access in the Rose Rocket developer portal)",
            "no_refresh_token",
        )
    return grant


def refresh(
    settings: Settings, endpoints: Endpoints, refresh_token: str, org_id: str | None
) -> TokenGrant:
    """Seed step 7 (RFC 6749 section 6), one request. ``org_id`` is Rose Rocket's extension
    naming the organization; it is sent only when the credential belongs to one."""
    client_id, client_secret = settings.require_client()
    register_secret(client_secret.reveal())
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret.reveal(),
    }
    if org_id:
        form["org_id"] = org_id
    return _token_request(settings, endpoints, form, TOKEN_REFRESH)


def _token_request(
    settings: Settings, endpoints: Endpoints, form: dict[str, str], what: str
) -> TokenGrant:
    # RFC 6749 section 3.2: POST, application/x-www-form-urlencoded (requests encodes the dict).
    response = send(
        "POST", endpoints.token, what, timeouts(settings.http_timeout_seconds), AUTH_URL, data=form
    )
    raise_for_transient(response, what)
    if response.status_code != 200:
        raise oauth_error(response, what, endpoints.token)
    return _grant(response, what)


def _grant(response: requests.Response, what: str) -> TokenGrant:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    access = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access, str) or not access:
        raise MalformedResponse(f"{what}: the token endpoint's answer has no access_token")
    register_secret(access)
    refresh_token = body.get("refresh_token")
    refresh_token = refresh_token if isinstance(refresh_token, str) and refresh_token else None
    register_secret(refresh_token)
    # RFC 6749 section 7.1: a client must not use a token whose type it does not understand.
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise MalformedResponse(f"{what}: unsupported token_type {token_type!r} (need Bearer)")
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise MalformedResponse(f"{what}: the token endpoint's expires_in is not a positive number")
    scope = body.get("scope")
    return TokenGrant(
        access_token=access,
        refresh_token=refresh_token,
        expires_in=float(expires_in),
        scope=scope if isinstance(scope, str) else None,
    )


def _one_line(text: object, limit: int = 200) -> str:
    """Server-supplied text made safe to print: one line, bounded, redacted."""
    flat = " ".join(str(text).split())
    return redact(flat[:limit] + ("..." if len(flat) > limit else ""))


# What to check for each RFC 6749 error code: the seed's own checklist (client id and secret,
# the registered redirect URI, the listener) applied to the case at hand.
_ADVICE = {
    "invalid_client": "check ROSEROCKET_CLIENT_ID and ROSEROCKET_CLIENT_SECRET (a rotated "
    "secret stops working at once)",
    "unauthorized_client": "the application may not use this grant: check that it is "
    "provisioned for the authorization code and refresh token grants",
    "invalid_request": "check the request parameters: ROSEROCKET_CLIENT_ID, and that "
    "ROSEROCKET_REDIRECT_URI is exactly the callback URI registered for the application",
    "invalid_scope": "check ROSEROCKET_SCOPE (expected 'offline_access email profile')",
    "access_denied": "the sign-in was declined or cancelled: run `rosesync bootstrap` again and "
    "approve the access",
    "unsupported_response_type": "the application may not use the authorization code flow: "
    "check its provisioning",
    "server_error": "the authorization server failed: try `rosesync bootstrap` again later",
    "temporarily_unavailable": "the authorization server is busy: try again later",
}
_INVALID_GRANT = {
    CODE_EXCHANGE: "the authorization code was refused (it works once, expires within "
    "a minute, and must come with the same ROSEROCKET_REDIRECT_URI registered for the "
    "application): run `rosesync bootstrap` again",
    TOKEN_REFRESH: "the refresh token is no longer valid (revoked, expired, or reused)",
}


def describe_error(error: str, description: object, what: str) -> str:
    """One line: what failed, the server's words, and what to check."""
    advice = _INVALID_GRANT.get(what) if error == "invalid_grant" else _ADVICE.get(error)
    said = f" ({_one_line(description)})" if description else ""
    return f"{what} failed: {_one_line(error, 60)}{said}: " + (
        advice or "check ROSEROCKET_CLIENT_ID, ROSEROCKET_CLIENT_SECRET and ROSEROCKET_AUTH_URL"
    )


def oauth_error(response: requests.Response, what: str, url: str) -> OAuthError:
    """An error response (RFC 6749 section 5.2) as an :class:`OAuthError` with its code.

    Auth0 answers invalid_grant with 403 (the RFC says 400), so the body decides, not the status.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, str) or not error:
        return OAuthError(
            f"{what} failed: {url} answered HTTP {response.status_code} without an OAuth error: "
            "check ROSEROCKET_AUTH_URL"
        )
    kind = ClientRejected if error in CLIENT_ERRORS else OAuthError
    return kind(describe_error(error, body.get("error_description"), what), error)
