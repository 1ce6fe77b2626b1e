"""worker/logs.py: every kind of secret is redacted, in messages and in exception text."""

from __future__ import annotations

import json
import logging

import pytest

from worker.logs import JsonFormatter, RedactingFormatter, redact, register_secret

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz"
REFRESH = "v1.MRrtD9a8Gx3kq0sQ2Zp7LmNbVcXzAsDfGhJkL"
SECRET = "client-secret-9f8e7d6c"
CODE = "SplxlOBeZQQYbYS6WxSbIA"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

CARRIERS = {
    "bearer header": f"GET /api/v1/orders headers={{'Authorization': 'Bearer {JWT}'}}",
    "authorization header": f"Authorization: Bearer {JWT}",
    "bare jwt": f"token was {JWT} and expired",
    "refresh token form": f"grant_type=refresh_token&refresh_token={REFRESH}&org_id=o1",
    "refresh token json": f'{{"refresh_token": "{REFRESH}", "expires_in": 3600}}',
    "client secret form": f"client_id=abc&client_secret={SECRET}&code={CODE}",
    "client secret repr": f"{{'client_secret': '{SECRET}'}}",
    "authorization code query": f"GET /callback?code={CODE}&state=xyz HTTP/1.1",
    "code verifier": f"code_verifier={VERIFIER}",
    "access token json": f'{{"access_token": "{JWT}", "token_type": "Bearer"}}',
    "free text": f"refresh_token: {REFRESH}",
}
VALUES = (JWT, REFRESH, SECRET, CODE, VERIFIER)


def _leaks(text: str) -> list[str]:
    return [v for v in VALUES if v in text]


@pytest.mark.parametrize("carrier", list(CARRIERS))
def test_log_line_is_redacted(carrier: str, caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (CARRIERS[carrier],), None)
    text = RedactingFormatter("%(message)s").format(record)
    assert _leaks(text) == []
    assert "[REDACTED]" in text


@pytest.mark.parametrize("carrier", list(CARRIERS))
def test_exception_text_is_redacted(carrier: str) -> None:
    try:
        raise RuntimeError(CARRIERS[carrier])
    except RuntimeError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    for formatter in (RedactingFormatter("%(message)s"), JsonFormatter()):
        text = formatter.format(record)
        assert "RuntimeError" in text
        assert _leaks(text) == [], formatter


def test_json_lines_are_json_and_redacted() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s", (JWT,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "INFO" and entry["logger"] == "t"
    assert JWT not in entry["message"]


def test_registered_secrets_are_scrubbed_anywhere() -> None:
    opaque = "opaque-token-without-any-shape-1234"
    assert redact(f"x {opaque} y") == f"x {opaque} y"
    register_secret(opaque)
    assert redact(f"x {opaque} y") == "x [REDACTED] y"


def test_ordinary_text_survives() -> None:
    for text in (
        "status code: 500 for https://platform.roserocket.com/api/v1/orders?offset=200",
        "credential default state=ok, expires in 3599 s",
        "synced 1200 orders in 3 pages",
    ):
        assert redact(text) == text


def test_ordinary_words_after_re_authorization_survive() -> None:
    """Issue 17, finding 11: "re-authorization: run" lost the word "run"."""
    text = "the credential for org 'default' needs re-authorization: run `rosesync bootstrap` again"
    assert redact(text) == text
    assert redact("Authorization: s3cr3tvalue") == "Authorization: [REDACTED]"
    # our own messages name variables in capitals; the word after them is not a secret
    variable = "TOKEN_ENCRYPTION_KEY: expected a Fernet key, got (hidden)"
    assert redact(variable) == variable
