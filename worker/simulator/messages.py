"""Transport-free request and response values, and the response shapes every handler shares.

Handlers take a `Request` and return a `Response`; only `server` touches sockets. That keeps the
OAuth and API logic readable and lets the server add framing (Content-Length, gzip, keep-alive)
in one place.
"""

from __future__ import annotations

import html
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any

import msgspec

Headers = tuple[tuple[str, str], ...]

# More fields than any endpoint takes; parse_qsl refuses beyond this instead of building a
# huge dict from a hostile query string.
MAX_FIELDS = 100

# RFC 6749 section 5.1 (token responses) and good practice for anything carrying credentials.
NO_STORE: Headers = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: str  # raw query string, without "?"
    headers: Message
    body: bytes
    peer: str  # the client's IP address

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_count(self, name: str) -> int:
        return len(self.headers.get_all(name) or [])


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: Headers = field(default=())


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def json_response(status: int, payload: Any, headers: Headers = ()) -> Response:
    return Response(status, msgspec.json.encode(payload), headers=headers)


def api_error(status: int, message: str | list[str], headers: Headers = ()) -> Response:
    """The data API's (NestJS) error envelope; `message` is a list for validation errors (400)."""
    return json_response(
        status, {"statusCode": status, "message": message, "error": reason(status)}, headers
    )


def v1_error(response: Response) -> Response:
    """The same error in the 2018 v1 envelope, ``{"error_code", "error_message"}``, which the
    documented profile answers with (Rose Rocket's swagger; ROSE_ROCKET_API.md)."""
    nest = msgspec.json.decode(response.body)
    message = nest["message"]
    text = "; ".join(message) if isinstance(message, list) else str(message)
    code = str(nest["error"]).lower().replace(" ", "_")
    return json_response(
        response.status, {"error_code": code, "error_message": text}, response.headers
    )


def html_page(status: int, title: str, body_html: str, headers: Headers = ()) -> Response:
    document = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body_html}</body></html>"
    )
    # X-Frame-Options: login and consent pages must not be framed (RFC 6749 section 10.13,
    # clickjacking).
    return Response(
        status,
        document.encode(),
        "text/html; charset=utf-8",
        (*NO_STORE, ("X-Frame-Options", "DENY"), *headers),
    )


def error_page(message: str) -> Response:
    """An authorization error shown to the user instead of redirecting (RFC 6749 4.1.2.1)."""
    return html_page(
        400, "Authorization error", f"<h1>Authorization error</h1><p>{html.escape(message)}</p>"
    )


def redirect(location: str) -> Response:
    return Response(302, b"", None, (("Location", location), *NO_STORE))


def parse_params(text: str) -> tuple[dict[str, str], frozenset[str]]:
    """Parse a query string or form body into (last value per name, names that repeat).

    Raises ValueError for input that is not valid (bad UTF-8 percent-escapes, too many fields).
    Callers decide what a repeated name means: OAuth (RFC 6749 section 3.1) and the API both
    reject it, naming the parameter.
    """
    pairs = urllib.parse.parse_qsl(
        text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
    )
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name in params:
            repeated.add(name)
        params[name] = value
    return params, frozenset(repeated)


def bearer_token(request: Request) -> str | None:
    """The token of a single `Authorization: Bearer` header (scheme is case-insensitive)."""
    if request.header_count("Authorization") != 1:
        return None
    scheme, _, token = (request.header("Authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def unauthorized(request: Request, description: str = "invalid or expired token") -> Response:
    """401 for a missing or bad bearer token, with the RFC 6750 section 3 challenge."""
    if request.header("Authorization") is None:
        # RFC 6750 section 3.1: no credentials at all -> no error code in the challenge.
        challenge = 'Bearer realm="roserocket"'
    else:
        challenge = (
            f'Bearer realm="roserocket", error="invalid_token", error_description="{description}"'
        )
    return api_error(401, "Unauthorized", (("WWW-Authenticate", challenge),))
