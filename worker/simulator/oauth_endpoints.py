"""The authorization server's HTTP face: discovery, /authorize, consent, /oauth/token, revoke.

Parsing and validation live here, state lives in `oauth.AuthorizationServer`. The checks follow
RFC 6749 (and RFC 7636 for PKCE, RFC 7009 for revocation) in the order a real server applies
them, with Auth0's quirks where a client would notice them (403 for invalid_grant, 429 on the
token endpoint, reuse detection).
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable

from worker.simulator.config import SimulatorConfig
from worker.simulator.counters import Counters
from worker.simulator.messages import (
    NO_STORE,
    Headers,
    Request,
    Response,
    bearer_token,
    error_page,
    html_page,
    json_response,
    parse_params,
    redirect,
    unauthorized,
)
from worker.simulator.oauth import (
    USER_EMAIL,
    USER_NAME,
    AuthorizationRequest,
    AuthorizationServer,
    OAuthError,
    TokenSet,
)

SCOPES_SUPPORTED = ("openid", "profile", "email", "offline_access")
# RFC 6749 section 3.3: with no scope the server applies a pre-defined default.
DEFAULT_SCOPE = ("openid", "profile", "email")
GRANT_TYPES = ("authorization_code", "refresh_token")
# RFC 7636 section 4.2: code_challenge is 43-128 characters of the unreserved set.
PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
FORM_TYPE = "application/x-www-form-urlencoded"


class SlidingWindowLimiter:
    """At most `limit` accepted calls in any `window` seconds (Auth0 rate-limits /oauth/token)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self._limit = limit
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted: deque[float] = deque()

    def retry_after(self) -> float:
        """0 if this call is accepted (and counted), else seconds until a slot frees up."""
        now = self._clock()
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self._window:
                self._accepted.popleft()
            if len(self._accepted) < self._limit:
                self._accepted.append(now)
                return 0.0
            return self._accepted[0] + self._window - now


def oauth_error_response(error: OAuthError) -> Response:
    payload = {"error": error.error, "error_description": error.description}
    return json_response(error.status, payload, (*NO_STORE, *error.headers))


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urllib.parse.urlencode(params)


class OAuthEndpoints:
    def __init__(
        self, config: SimulatorConfig, server: AuthorizationServer, counters: Counters
    ) -> None:
        self.config = config
        self.server = server
        self.counters = counters
        self._limiter = (
            SlidingWindowLimiter(*config.token_rate_limit) if config.token_rate_limit else None
        )

    # -- discovery -----------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response:
        base = self.server.issuer.rstrip("/")
        return json_response(
            200,
            {
                "issuer": self.server.issuer,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "userinfo_endpoint": f"{base}/userinfo",
                "device_authorization_endpoint": f"{base}/oauth/device/code",
                "scopes_supported": list(SCOPES_SUPPORTED),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": list(GRANT_TYPES),
                "code_challenge_methods_supported": ["S256", "plain"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "revocation_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"],
            },
        )

    # -- authorization endpoint ----------------------------------------------------------------

    def authorize(self, request: Request) -> Response:
        try:
            raw, repeated = parse_params(request.query)
        except ValueError:
            return error_page("The authorization request could not be parsed.")
        # RFC 6749 section 3.1: a parameter sent without a value is treated as omitted.
        params = {name: value for name, value in raw.items() if value}
        # RFC 6749 section 4.1.2.1: with a missing/invalid client or redirect URI, inform the
        # user and never redirect (that would make us an open redirector).
        if repeated & {"client_id", "redirect_uri"}:
            return error_page("client_id and redirect_uri must be sent once.")
        client_id = params.get("client_id")
        if client_id is None or not self.server.is_client(client_id):
            return error_page("Unknown client_id.")
        if params.get("redirect_uri") != self.config.redirect_uri:
            # Exact string comparison, no normalisation (RFC 6749 section 3.1.2.3).
            return error_page("redirect_uri is missing or is not registered for this client.")
        redirect_uri = self.config.redirect_uri
        state = None if "state" in repeated else params.get("state")

        def fail(error: str, description: str) -> Response:
            reply = {"error": error, "error_description": description}
            if state is not None:
                reply["state"] = state
            return redirect(_with_query(redirect_uri, reply))

        if repeated:
            names = ", ".join(sorted(repeated))
            return fail("invalid_request", f"parameters must not repeat: {names}")
        response_type = params.get("response_type")
        if response_type is None:
            return fail("invalid_request", "response_type is required")
        if response_type != "code":
            return fail("unsupported_response_type", "only response_type=code is supported")
        if state is None:
            # Auth0 allows a missing state; we demand it, as CSRF protection (RFC 6749 10.12).
            return fail("invalid_request", "state is required")
        if params.get("audience") != self.config.audience:
            return fail("invalid_request", "audience is missing or is not a known API")
        scope = tuple(dict.fromkeys(params.get("scope", " ".join(DEFAULT_SCOPE)).split()))
        unknown = [item for item in scope if item not in SCOPES_SUPPORTED]
        if unknown or not scope:
            return fail("invalid_scope", f"unsupported scope: {' '.join(unknown)}")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if method is not None and challenge is None:
            return fail("invalid_request", "code_challenge_method without code_challenge")
        if method not in (None, "S256", "plain"):
            return fail("invalid_request", "code_challenge_method must be S256 or plain")
        if challenge is not None and not PKCE_VALUE.fullmatch(challenge):
            return fail("invalid_request", "code_challenge must be 43-128 unreserved characters")

        authorization = AuthorizationRequest(
            client_id, redirect_uri, scope, state, challenge, method
        )
        if self.config.consent == "approve":
            return self._approve(authorization)
        if self.config.consent == "deny":
            return self._deny(authorization)
        return self._consent_page(authorization)

    def decision(self, request: Request) -> Response:
        """The consent form's answer: approve or deny the parked authorization request."""
        try:
            params, repeated = self._form(request)
        except OAuthError as error:
            return error_page(error.description)
        choice = params.get("decision")
        if repeated or choice not in ("approve", "deny"):
            return error_page("Invalid consent form submission.")
        authorization = self.server.finish_consent(params.get("transaction", ""))
        if authorization is None:
            return error_page("This login has expired or was already used; start again.")
        return self._approve(authorization) if choice == "approve" else self._deny(authorization)

    def _approve(self, authorization: AuthorizationRequest) -> Response:
        code = self.server.issue_code(authorization)
        return redirect(
            _with_query(authorization.redirect_uri, {"code": code, "state": authorization.state})
        )

    def _deny(self, authorization: AuthorizationRequest) -> Response:
        return redirect(
            _with_query(
                authorization.redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The user denied access",
                    "state": authorization.state,
                },
            )
        )

    def _consent_page(self, authorization: AuthorizationRequest) -> Response:
        # The form carries only an opaque transaction id: the parameters stay on the server, so
        # the page cannot be used to smuggle a different redirect_uri or scope.
        transaction = self.server.begin_consent(authorization)
        scopes = "".join(f"<li>{html.escape(item)}</li>" for item in authorization.scope)
        body = (
            "<h1>Rose Rocket</h1>"
            f"<p>Signed in as {html.escape(USER_NAME)} ({html.escape(USER_EMAIL)})</p>"
            f"<p><strong>{html.escape(authorization.client_id)}</strong> is requesting access to "
            f"your Rose Rocket account:</p><ul>{scopes}</ul>"
            '<form method="post" action="/authorize/decision">'
            f'<input type="hidden" name="transaction" value="{html.escape(transaction)}">'
            '<button type="submit" name="decision" value="approve">Approve</button> '
            '<button type="submit" name="decision" value="deny">Deny</button>'
            "</form>"
        )
        return html_page(200, "Authorize application", body)

    # -- token endpoint ------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        try:
            tokens, grant_type = self._grant(request)
        except OAuthError as error:
            self.counters.add_to("token_errors", error.error)
            return oauth_error_response(error)
        self.counters.add_to("grants", grant_type)
        payload: dict[str, object] = {
            "access_token": tokens.access_token,
            "token_type": "Bearer",
            "expires_in": tokens.expires_in,
            "scope": tokens.scope,
        }
        if tokens.refresh_token is not None:
            payload["refresh_token"] = tokens.refresh_token
        if tokens.id_token is not None:
            payload["id_token"] = tokens.id_token
        return json_response(200, payload, NO_STORE)

    def _grant(self, request: Request) -> tuple[TokenSet, str]:
        if self._limiter is not None:
            wait = self._limiter.retry_after()
            if wait > 0:
                raise OAuthError(
                    "too_many_requests",
                    "Global limit has been reached",
                    429,
                    (("Retry-After", str(math.ceil(wait))),),
                )
        params, repeated = self._form(request)
        if repeated:
            raise OAuthError(
                "invalid_request", f"parameters must not repeat: {', '.join(sorted(repeated))}"
            )
        client_id = self._client(request, params)
        grant_type = params.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type == "authorization_code":
            code, redirect_uri = params.get("code"), params.get("redirect_uri")
            if code is None or redirect_uri is None:
                raise OAuthError("invalid_request", "code and redirect_uri are required")
            return self.server.exchange_code(
                client_id, code, redirect_uri, params.get("code_verifier")
            ), grant_type
        if grant_type == "refresh_token":
            refresh_token = params.get("refresh_token")
            if refresh_token is None:
                raise OAuthError("invalid_request", "refresh_token is required")
            return self.server.refresh(client_id, refresh_token, params.get("org_id")), grant_type
        raise OAuthError("unsupported_grant_type", f"grant type {grant_type!r} is not supported")

    # -- revocation, device flow, userinfo -----------------------------------------------------

    def revoke(self, request: Request) -> Response:
        """RFC 7009: 200 whether or not the token was known, so tokens cannot be probed."""
        try:
            params, repeated = self._form(request)
            if repeated:
                raise OAuthError("invalid_request", "parameters must not repeat")
            client_id = self._client(request, params)
            token = params.get("token")
            if token is None:
                raise OAuthError("invalid_request", "token is required")
        except OAuthError as error:
            return oauth_error_response(error)
        self.server.revoke(client_id, token)
        return Response(200, b"", None, NO_STORE)

    def device_code(self, request: Request) -> Response:
        # The endpoint exists on Rose Rocket's Auth0 tenant, but the grant is not enabled for
        # this client, which is how Auth0 answers.
        return oauth_error_response(
            OAuthError(
                "unauthorized_client", "the device code grant is not enabled for this client", 403
            )
        )

    def userinfo(self, request: Request) -> Response:
        token = bearer_token(request)
        info = self.server.check_access(token) if token else None
        if info is None:
            return unauthorized(request)
        return json_response(
            200,
            {"sub": info.subject, "name": USER_NAME, "email": USER_EMAIL, "email_verified": True},
        )

    # -- shared parsing ------------------------------------------------------------------------

    @staticmethod
    def _form(request: Request) -> tuple[dict[str, str], frozenset[str]]:
        """The form body (RFC 6749 section 4.1.3 requires application/x-www-form-urlencoded)."""
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            raise OAuthError("invalid_request", f"the body must be {FORM_TYPE}")
        try:
            raw, repeated = parse_params(request.body.decode("utf-8"))
        except ValueError as error:
            raise OAuthError("invalid_request", "the body is not a valid form") from error
        # RFC 6749 section 3.1: a parameter sent without a value is treated as omitted.
        return {name: value for name, value in raw.items() if value}, repeated

    def _client(self, request: Request, params: dict[str, str]) -> str:
        """Authenticate the client (RFC 6749 section 2.3.1); returns its client_id."""
        authorization = request.header("Authorization")
        if authorization is not None and authorization[:6].lower() == "basic ":
            if "client_secret" in params:
                # RFC 6749 section 2.3: one authentication method per request.
                raise OAuthError("invalid_request", "use one client authentication method")
            client_id, client_secret = self._basic(authorization[6:])
            if params.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
            challenge: Headers = (("WWW-Authenticate", 'Basic realm="roserocket"'),)
        else:
            client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
            challenge = ()
        if not client_id or not client_secret:
            # RFC 6749 section 5.2: "no client authentication included" is invalid_client.
            raise OAuthError("invalid_client", "client authentication is required", 401, challenge)
        if not self.server.authenticate(client_id, client_secret):
            # RFC 6749 section 5.2: 401, plus a Basic challenge when Basic was attempted.
            raise OAuthError("invalid_client", "client authentication failed", 401, challenge)
        return client_id

    @staticmethod
    def _basic(credentials: str) -> tuple[str, str]:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as error:
            raise OAuthError(
                "invalid_client",
                "malformed Basic credentials",
                401,
                (("WWW-Authenticate", 'Basic realm="roserocket"'),),
            ) from error
        client_id, _, client_secret = decoded.partition(":")
        # RFC 6749 section 2.3.1: id and secret are form-urlencoded before Basic encoding.
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(client_secret)
