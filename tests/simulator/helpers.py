"""Test helpers: an OAuth client for the simulator, raw-socket access, polling."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import requests

CLIENT_ID = "rrsync-demo"
CLIENT_SECRET = "rrsync-demo-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
AUDIENCE = "https://roserocket.com"
SCOPE = "offline_access email profile"


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def location_params(response: requests.Response) -> dict[str, str]:
    """The query parameters of a redirect's Location (each must appear once)."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in params.values()), params
    return {name: values[0] for name, values in params.items()}


def jwt_claims(token: str) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    assert header and signature
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = msgspec.json.decode(base64.urlsafe_b64decode(padded))
    return claims


def consent_transaction(page: str) -> str:
    match = re.search(r'name="transaction" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


class OAuthClient:
    """The flows the real worker performs, against one simulator, with overridable fields."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def authorize(self, **overrides: str | None) -> requests.Response:
        params: dict[str, str | None] = {
            "audience": AUDIENCE, "response_type": "code", "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI, "scope": SCOPE, "state": "st-123",
        }
        params.update(overrides)
        return self.session.get(f"{self.base_url}/authorize",
                                params={k: v for k, v in params.items() if v is not None},
                                allow_redirects=False, timeout=10)

    def decide(self, transaction: str, decision: str) -> requests.Response:
        return self.session.post(f"{self.base_url}/authorize/decision",
                                 data={"transaction": transaction, "decision": decision},
                                 allow_redirects=False, timeout=10)

    def code(self, **overrides: str | None) -> str:
        """An authorization code, approving the consent page if the simulator shows one."""
        response = self.authorize(**overrides)
        if response.status_code == 200:
            response = self.decide(consent_transaction(response.text), "approve")
        return location_params(response)["code"]

    def token(self, **fields: str | None) -> requests.Response:
        data: dict[str, str | None] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        data.update(fields)
        return self.session.post(f"{self.base_url}/oauth/token",
                                 data={k: v for k, v in data.items() if v is not None},
                                 timeout=10)

    def exchange(self, code: str, **fields: str | None) -> requests.Response:
        return self.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI,
                          **fields)

    def refresh(self, refresh_token: str, **fields: str | None) -> requests.Response:
        return self.token(grant_type="refresh_token", refresh_token=refresh_token, **fields)

    def login(self, **overrides: str | None) -> dict[str, Any]:
        response = self.exchange(self.code(**overrides))
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def api(self, path: str, token: str | None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.session.get(f"{self.base_url}/api/v1/{path}", params=params,
                                headers=headers, timeout=10)


def error_of(response: requests.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["error"])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.05) -> None:
    """Poll `predicate` until true; fail after `timeout` (generous, for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, then read until the server closes (or `timeout`); returns what came back.

    A server that neither answers nor closes within `timeout` fails the test (no hangs).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may refuse before we finished sending; then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError as error:
                raise AssertionError(f"server neither answered nor closed: {received!r}") from error
            if not chunk:
                break
            received += chunk
    return received


def status_of(raw: bytes) -> int | None:
    """The status code of a raw HTTP response, None if the server closed without answering."""
    if not raw:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    assert match, raw[:200]
    return int(match.group(1))
