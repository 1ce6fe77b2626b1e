"""Authorization-server state, Auth0-style: consent transactions, codes, token families.

This module knows nothing of HTTP: `oauth_endpoints` parses requests and calls in here. Every
grant belongs to a *family* (one authorization, with all the access and refresh tokens issued
from it), because that is the unit Auth0 revokes: on reuse of a rotated refresh token, on replay
of an authorization code, on /oauth/revoke.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from worker.simulator.config import SimulatorConfig
from worker.simulator.counters import Counters

# A consent page left open longer than this must be started again.
TRANSACTION_TTL = 600.0

# The one simulated user who "logs in" on the consent page.
USER_NAME = "Dana Dispatcher"
USER_EMAIL = "dispatcher@example.com"


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 section 5.2): `error` code, description, HTTP status."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers


def invalid_grant(description: str) -> OAuthError:
    # Auth0 answers invalid_grant with 403, where RFC 6749 section 5.2 would say 400.
    return OAuthError("invalid_grant", description, 403)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated /authorize request, waiting for (or granted) the user's consent."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass
class _Family:
    client_id: str
    scope: tuple[str, ...]
    expires_at: float  # absolute refresh-token lifetime
    org_id: str | None = None
    revoked: bool = False


@dataclass
class _Code:
    request: AuthorizationRequest
    expires_at: float
    used: bool = False
    family: _Family | None = None  # the tokens issued from it, revoked if the code is replayed


@dataclass
class _Refresh:
    family: _Family
    rotated_at: float | None = None  # set once this token has been exchanged for a new one


@dataclass
class _Access:
    family: _Family
    expires_at: float


@dataclass(frozen=True)
class TokenSet:
    """What a successful token request returns (RFC 6749 section 5.1)."""

    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None


@dataclass(frozen=True)
class AccessInfo:
    """What the API learns from a valid access token."""

    subject: str
    scope: tuple[str, ...]
    org_id: str | None
    client_id: str


@dataclass
class _Stores:
    transactions: dict[str, tuple[AuthorizationRequest, float]] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    access: dict[str, _Access] = field(default_factory=dict)
    families: list[_Family] = field(default_factory=list)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 section 4.6: S256 compares BASE64URL(SHA256(verifier)), plain compares as is."""
    if method == "S256":
        verifier = _b64url(hashlib.sha256(verifier.encode("utf-8")).digest())
    return hmac.compare_digest(verifier.encode(), challenge.encode())


class AuthorizationServer:
    """Clients, codes and token families; thread-safe (one lock around all state)."""

    def __init__(
        self, config: SimulatorConfig, counters: Counters, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.issuer = ""  # "<base url>/", set by the server once its address is known
        self._counters = counters
        self._clock = clock
        self._lock = threading.Lock()
        self._stores = _Stores()
        self._key = secrets.token_bytes(32)  # HS256 key, new per simulator
        self.subject = f"auth0|{random.Random(f'user:{config.seed}').getrandbits(96):024x}"

    # -- clients -------------------------------------------------------------------------------

    def is_client(self, client_id: str) -> bool:
        return hmac.compare_digest(client_id.encode(), self.config.client_id.encode())

    def authenticate(self, client_id: str, client_secret: str) -> bool:
        # Constant-time comparisons, as a real authorization server would do.
        return self.is_client(client_id) and hmac.compare_digest(
            client_secret.encode(), self.config.client_secret.encode()
        )

    # -- consent and codes ---------------------------------------------------------------------

    def begin_consent(self, request: AuthorizationRequest) -> str:
        """Park a validated request behind an opaque id for the consent form to refer to."""
        transaction_id = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            transactions = self._stores.transactions
            for stale in [key for key, (_, expires) in transactions.items() if expires <= now]:
                del transactions[stale]
            transactions[transaction_id] = (request, now + TRANSACTION_TTL)
        return transaction_id

    def finish_consent(self, transaction_id: str) -> AuthorizationRequest | None:
        """The parked request, once: a consent form cannot be submitted twice."""
        with self._lock:
            entry = self._stores.transactions.pop(transaction_id, None)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def issue_code(self, request: AuthorizationRequest) -> str:
        code = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            codes = self._stores.codes
            for stale in [
                key for key, entry in codes.items() if entry.expires_at <= now and not entry.used
            ]:
                del codes[stale]
            codes[code] = _Code(request, now + self.config.code_ttl)
        return code

    # -- grants --------------------------------------------------------------------------------

    def exchange_code(
        self, client_id: str, code: str, redirect_uri: str, code_verifier: str | None
    ) -> TokenSet:
        """grant_type=authorization_code (RFC 6749 section 4.1.3)."""
        now = self._clock()
        with self._lock:
            entry = self._stores.codes.get(code)
            if entry is None or entry.request.client_id != client_id:
                raise invalid_grant("invalid authorization code")
            if entry.used:
                # RFC 6749 section 4.1.2: a code used twice means it leaked; revoke what it gave.
                if entry.family is not None:
                    self._revoke_family(entry.family)
                raise invalid_grant("authorization code already used")
            if entry.expires_at <= now:
                raise invalid_grant("authorization code expired")
            request = entry.request
            # RFC 6749 section 4.1.3: redirect_uri must be identical to the authorize request's.
            if redirect_uri != request.redirect_uri:
                raise invalid_grant("redirect_uri does not match the authorization request")
            if request.code_challenge is None:
                # RFC 9700 section 2.1.1: a verifier without a challenge is a PKCE downgrade.
                if code_verifier is not None:
                    raise invalid_grant("code_verifier sent but no code_challenge was")
            elif code_verifier is None or not pkce_matches(
                # RFC 7636 section 4.3: no method means "plain".
                code_verifier,
                request.code_challenge,
                request.code_challenge_method or "plain",
            ):
                raise invalid_grant("code_verifier does not match the code_challenge")
            entry.used = True
            family = _Family(client_id, request.scope, now + self.config.refresh_ttl)
            self._stores.families.append(family)
            entry.family = family
            return self._issue(family, now, with_refresh="offline_access" in request.scope)

    def refresh(self, client_id: str, refresh_token: str, org_id: str | None) -> TokenSet:
        """grant_type=refresh_token (RFC 6749 section 6), with Auth0 rotation + reuse detection."""
        now = self._clock()
        with self._lock:
            entry = self._stores.refresh.get(refresh_token)
            if entry is None or entry.family.client_id != client_id:
                raise invalid_grant("unknown or invalid refresh token")
            family = entry.family
            if family.revoked:
                raise invalid_grant("refresh token revoked")
            if family.expires_at <= now:
                raise invalid_grant("refresh token expired")
            if entry.rotated_at is not None and now - entry.rotated_at > self.config.reuse_leeway:
                # Auth0 reuse detection: a rotated token came back, so one of the two parties
                # holding it is an attacker; the whole family dies.
                self._counters.add("reuse_detections")
                self._revoke_family(family)
                raise invalid_grant("refresh token reused; token family revoked")
            if org_id is not None:
                if family.org_id is None:
                    family.org_id = org_id  # the first org_id sent sticks to the family
                elif family.org_id != org_id:
                    raise invalid_grant(f"refresh token not valid for org {org_id}")
            if not self.config.rotation:
                # Auth0 without rotation: the same refresh token stays valid and the response
                # carries no new one.
                return self._issue(family, now, with_refresh=False)
            if entry.rotated_at is None:
                entry.rotated_at = now
            return self._issue(family, now, with_refresh=True)

    def revoke(self, client_id: str, token: str) -> None:
        """RFC 7009: revoke the refresh token's family; unknown tokens are silently ignored."""
        with self._lock:
            entry = self._stores.refresh.get(token)
            if entry is not None and entry.family.client_id == client_id:
                self._revoke_family(entry.family)

    def revoke_all(self, org_id: str | None = None) -> None:
        """Revoke every token family, or only those refreshed for ``org_id`` (one org's grant
        withdrawn while the client's other orgs keep theirs, issue 15)."""
        with self._lock:
            for family in self._stores.families:
                if org_id is None or family.org_id == org_id:
                    self._revoke_family(family)

    # -- resource server side ------------------------------------------------------------------

    def check_access(self, token: str) -> AccessInfo | None:
        """The token's grant if it is known, unexpired and not revoked, else None."""
        now = self._clock()
        with self._lock:
            entry = self._stores.access.get(token)
            if entry is None or entry.family.revoked or entry.expires_at <= now:
                return None
            family = entry.family
            return AccessInfo(self.subject, family.scope, family.org_id, family.client_id)

    def issued_to(self, token: str) -> tuple[str, str | None] | None:
        """(client id, org id) a token was issued to, valid or not: an API's rate limits count
        every request of a client, expired tokens' included; None for an unknown token."""
        with self._lock:
            entry = self._stores.access.get(token)
            return None if entry is None else (entry.family.client_id, entry.family.org_id)

    # -- internals (called with the lock held) -------------------------------------------------

    def _revoke_family(self, family: _Family) -> None:
        if not family.revoked:
            family.revoked = True
            self._counters.add("families_revoked")

    def _issue(self, family: _Family, now: float, with_refresh: bool) -> TokenSet:
        ttl = self.config.access_ttl
        expires_at = now + ttl
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.config.audience,
            "iat": int(now),
            # Whole seconds rounded down, so a client trusting `exp` never overestimates.
            "exp": int(expires_at),
            "azp": family.client_id,
            "scope": " ".join(family.scope),
            "jti": secrets.token_urlsafe(16),
        }
        if family.org_id is not None:
            claims["org_id"] = family.org_id
        access_token = self._jwt(claims)
        self._stores.access[access_token] = _Access(family, expires_at)
        refresh_token = None
        if with_refresh:
            refresh_token = "v1." + secrets.token_urlsafe(48)
            self._stores.refresh[refresh_token] = _Refresh(family)
        id_token = None
        if "openid" in family.scope:
            id_token = self._jwt(
                {
                    "iss": self.issuer,
                    "sub": self.subject,
                    "aud": family.client_id,
                    "iat": int(now),
                    "exp": int(now + 36_000),
                    "name": USER_NAME,
                    "email": USER_EMAIL,
                    "email_verified": True,
                }
            )
        return TokenSet(access_token, int(ttl), " ".join(family.scope), refresh_token, id_token)

    def _jwt(self, claims: dict[str, object]) -> str:
        header = _b64url(msgspec.json.encode({"alg": "HS256", "typ": "JWT", "kid": "sim-1"}))
        signing_input = f"{header}.{_b64url(msgspec.json.encode(claims))}"
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"
