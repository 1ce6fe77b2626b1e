"""Logging: one configuration for the CLI, the Celery worker and beat, with secret redaction.

Redaction happens in the formatter, after the message and any traceback are rendered, so it
covers our own log lines, third-party libraries (urllib3 debug lines carry URLs and headers) and
exception text alike. Two layers: patterns for anything shaped like a secret (bearer tokens,
JWTs, Auth0 refresh tokens, ``client_secret=...``-style pairs in query strings, form bodies,
JSON and reprs), and the exact values rosesync knows to be secret (registered as they appear).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

REDACTED: Final = "[REDACTED]"
T = TypeVar("T")

# Names whose value is a secret wherever they appear as key=value (query strings, form bodies).
_KEYS: Final = (
    r"access_token|refresh_token|id_token|client_secret|code_verifier|code|password|token|secret"
    r"|api_key|token_encryption_key"
)
# Unambiguous names: also redacted as "key: value" (bare "code: 500" is ordinary text).
_STRICT_KEYS: Final = (
    r"access_token|refresh_token|id_token|client_secret|code_verifier|password|api_key"
    r"|token_encryption_key"
)

_Replacement = str | Callable[[re.Match[str]], str]

_PATTERNS: Final[tuple[tuple[re.Pattern[str], _Replacement], ...]] = (
    # Authorization headers and "Bearer xxx" anywhere (RFC 6750 section 2.1).
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    (
        # Not "re-authorization: run ..." (issue 17): the header name stands alone.
        re.compile(
            r"(?i)(?<![\w-])(authorization)(\s*:\s*)(?!\[REDACTED\]|bearer|basic)[^\s,'\"}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # JWTs (Auth0 access tokens are JWTs): three base64url parts, the first a JSON header.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Auth0 refresh tokens: "v1." and a long opaque string.
    (re.compile(r"\bv1\.[A-Za-z0-9_-]{20,}"), REDACTED),
    # key=value in query strings and form bodies.
    (re.compile(rf"(?i)\b({_KEYS})=(?!\[REDACTED\])[^&\s\"',;)}}\]]+"), rf"\1={REDACTED}"),
    # key: value in free text. Lower case only, as protocols write these names: our own
    # messages name a variable in capitals ("TOKEN_ENCRYPTION_KEY: expected a Fernet key").
    (
        re.compile(rf"\b({_STRICT_KEYS})(\s*:\s*)(?!\[REDACTED\])[^\s,;'\"}}\]]+"),
        rf"\1\2{REDACTED}",
    ),
    # "key": "value" in JSON and 'key': 'value' in Python reprs.
    (
        re.compile(rf"""(?i)(["'])({_KEYS}|authorization)\1(\s*:\s*)(["'])(?:(?!\4).)*\4"""),
        rf"\1\2\1\3\4{REDACTED}\4",
    ),
)

_known_lock = threading.Lock()
_known: OrderedDict[str, None] = OrderedDict()
_KNOWN_MAX: Final = 1000  # tokens rotate; keep the recent ones, forget the oldest


def register_secret(value: str | None) -> None:
    """Scrub this exact value from every future log line (tokens, codes, client secrets)."""
    if not value or len(value) < 6:  # a 1-5 character "secret" would shred ordinary text
        return
    with _known_lock:
        _known[value] = None
        _known.move_to_end(value)
        while len(_known) > _KNOWN_MAX:
            _known.popitem(last=False)


def registered_secrets() -> list[str]:
    """The values :func:`register_secret` has seen (for tests that prove nothing leaked)."""
    with _known_lock:
        return list(_known)


def safe_url(url: str) -> str:
    """A service URL fit to print: the password (if any) replaced, everything else kept, so
    that an error can say which address it tried (issue 17)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_data(value: T) -> T:
    """``value`` (JSON-like: dicts, lists, strings) with every string redacted: task results."""
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value


def redact(text: str) -> str:
    """``text`` with every secret-looking part and every registered secret replaced."""
    for value in registered_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A text formatter whose output, traceback included, has gone through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers; redacted like the text format."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        for key in ("resource", "run_id", "org", "task_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, default=str)


TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route every logger to stderr through a redacting formatter. Safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty at INFO and below without telling an operator anything: urllib3 (every request
    # line), alembic (plugin set-up on every migration check).
    quiet = max(logging.getLevelName(level), logging.WARNING)
    for name in ("urllib3", "alembic"):
        logging.getLogger(name).setLevel(quiet)
