"""The one place rosesync reads its environment.

``load_settings()`` builds an immutable :class:`Settings` from the process environment and a
``.env`` file (python-dotenv; the real environment wins) and validates every value at load, so a
typo fails at start-up with one line naming the variable and the expected form, never hours later
in the middle of a nightly sync. No other module reads ``os.environ``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from config.schedule import Schedule, parse_schedule
from worker.errors import ConfigError
from worker.logs import register_secret, safe_url
from worker.source import resources

T = TypeVar("T")

VAR = Path("var")  # local state (SQLite files, key file, beat schedule), relative like DATABASE_URL
DEFAULT_DATABASE_URL: Final = "sqlite:///var/rrsync.db"


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A variable that looks like one of ours but is not (a typo is silently ignored otherwise)."""

    name: str
    source: str  # "environment" or ".env"
    suggestion: str | None

    def describe(self) -> str:
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return f"{self.name} in the {self.source} is not a rosesync setting{hint}; it is ignored"


@dataclass(frozen=True, slots=True)
class Origin:
    """Which configuration is in use (issue 17): the .env read, and each variable's source."""

    dotenv: Path | None = None  # the .env file read (absolute), None when there was none
    dotenv_looked_for: Path | None = None  # where one was looked for
    sources: Mapping[str, str] = field(default_factory=dict)  # variable -> environment, ...
    unknown: tuple[UnknownVariable, ...] = ()

    def source_of(self, variable: str) -> str:
        return self.sources.get(variable, "default")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting rosesync has. Names match the environment variables in README.md."""

    client_id: str | None = None
    client_secret: Secret | None = None
    redirect_uri: str = "http://127.0.0.1:8765/callback"
    auth_url: str = "https://a.roserocket.com"
    api_url: str = "https://platform.roserocket.com"
    audience: str = "https://roserocket.com"
    scope: str = "offline_access email profile"
    org_id: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    celery_broker_url: str = "sqla+sqlite:///var/broker.db"
    celery_result_backend: str | None = None  # None: derived, see result_backend
    token_encryption_key: Secret | None = None
    token_key_file: Path = VAR / "rrsync.key"
    sync_schedule: Schedule = field(default_factory=lambda: parse_schedule("0 2 * * *"))
    sync_resources: tuple[str, ...] = tuple(resources.REGISTRY)
    sync_orgs: tuple[str, ...] = ()  # the orgs beat syncs; empty: every stored credential's
    # Pages a sync task reads before it hands its worker slot to the next task and re-enqueues
    # itself (issue 15, item 6); 0: a task reads its resource to the end.
    sync_pages_per_task: int = 0
    # Requests a second to the API, per org and per client, across every process (issue 15,
    # item 4); 0: no shared limit.
    api_rate_limit: float = 0.0
    sync_lookback_seconds: int = 300
    sync_clock_skew_seconds: int = 60
    sync_concurrency: int = 2  # requests in flight per resource at the start of a run
    # ... and at most, as the run adapts it (worker/source/concurrency.py, issue 16)
    sync_max_concurrency: int = 8
    # Rose Rocket's documented maximum (issue 12); the probe lowers it to what the API gives.
    sync_page_size: int = 50
    sync_strategy: str = "auto"  # auto | keyset | sweep (worker/source/probe.py)
    sync_sweep_interval_seconds: int = 0  # 0: every run of a swept resource is a whole sweep
    sync_endpoints: Mapping[str, resources.Endpoint] = field(default_factory=dict)
    sync_writers: int = 2  # batches committed at once on PostgreSQL (worker/sync/commits.py)
    sync_max_quarantine: int = 100  # new poison records a run may quarantine (issue 13)
    runs_retention_days: int = 90  # run history kept (issue 14, item 6); 0 keeps it forever
    # Where things land on PostgreSQL (issue 14, item 3): the rr_* tables (None: the
    # connection's default schema) and rosesync's own tables. SQLite keeps one file.
    warehouse_schema: str | None = None
    rosesync_schema: str = "rosesync"
    sync_soft_time_limit: int = 3 * 3600
    sync_time_limit: int = 3 * 3600 + 900
    sync_max_retries: int = 3
    sync_retry_backoff_seconds: int = 30  # first retry's delay; doubles, at most an hour
    broker_visibility_timeout: int | None = None  # None: the hard time limit + 10 minutes
    lock_ttl_seconds: int = 300
    refresh_margin_seconds: int = 300
    refresh_interval_seconds: int = 60
    http_timeout_seconds: float = 30.0
    http_max_attempts: int = 5
    http_backoff_seconds: float = 0.5  # first retry's delay; doubles per attempt, capped at 30 s
    retry_after_cap_seconds: int = 120
    log_level: str = "INFO"
    log_format: str = "text"
    alert_urls: tuple[Secret, ...] = ()  # apprise URLs carry webhook tokens: secrets
    alert_after_failures: int = 2
    # Where each value came from: what `rosesync doctor` shows (not part of equality).
    origin: Origin = field(default_factory=lambda: Origin(), compare=False, repr=False)

    @property
    def credential_name(self) -> str:
        """The credential row this process uses: the org id, or ``default`` without one."""
        return self.org_id or "default"

    @property
    def registry(self) -> dict[str, resources.Resource]:
        """The resource registry as this deployment's API serves it (SYNC_ENDPOINTS applied)."""
        return resources.configured(self.sync_endpoints)

    @property
    def result_backend(self) -> str:
        """Task results: Redis with a Redis broker; else the warehouse database, except that
        SQLite gets a file of its own beside it so result writes never wait on sync writes,
        and so does DuckDB, which Celery's result backend cannot use (and whose file one
        process at a time may open)."""
        if self.celery_result_backend:
            return self.celery_result_backend
        if self.celery_broker_url.startswith(("redis://", "rediss://")):
            return self.celery_broker_url
        for embedded in ("sqlite:///", "duckdb:///"):
            if self.database_url.startswith(embedded):
                path = Path(self.database_url.removeprefix(embedded).split("?", 1)[0])
                return f"db+sqlite:///{path.with_name('celery-results.db')}"
        # not rosesync's own query parameters (warehouse_url): the driver would refuse them
        base, _, query = self.database_url.partition("?")
        kept = [
            p for p in query.split("&") if p and not p.startswith(("rrsync_own=", "rrsync_data="))
        ]
        return "db+" + base + ("?" + "&".join(kept) if kept else "")

    @property
    def warehouse_url(self) -> str:
        """DATABASE_URL with where things land (issue 14, item 3) for ``worker.warehouse``:
        on PostgreSQL, ``rrsync_own`` and ``rrsync_data`` query parameters that its engine
        reads and strips (worker/warehouse/db.py), unless the URL carries them already."""
        if not self.database_url.startswith("postgresql"):
            return self.database_url
        extra = []
        if "rrsync_own=" not in self.database_url:
            extra.append(f"rrsync_own={self.rosesync_schema}")
        if self.warehouse_schema and "rrsync_data=" not in self.database_url:
            extra.append(f"rrsync_data={self.warehouse_schema}")
        if not extra:
            return self.database_url
        joiner = "&" if "?" in self.database_url else "?"
        return self.database_url + joiner + "&".join(extra)

    @property
    def visibility_timeout(self) -> int:
        """Redis redelivers an unacked task after this long: it must outlast the hard limit."""
        return self.broker_visibility_timeout or self.sync_time_limit + 600

    def require_client(self) -> tuple[str, Secret]:
        """The OAuth client, or a one-line error for the commands that cannot work without it."""
        if not self.client_id or self.client_secret is None:
            missing = [
                name
                for name, value in (
                    ("ROSEROCKET_CLIENT_ID", self.client_id),
                    ("ROSEROCKET_CLIENT_SECRET", self.client_secret),
                )
                if not value
            ]
            raise ConfigError(
                f"{' and '.join(missing)} not set: put the OAuth client Rose Rocket gave you "
                "in the environment or in .env"
            )
        return self.client_id, self.client_secret


# ---------------------------------------------------------------------------------------------
# Parsing. Each parser returns the value or raises ValueError whose text is the expected form;
# _read() turns that into the one-line "VARIABLE: expected ..., got ..." message.

_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http(s) URL such as https://example.com")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError("an http(s) URL with a numeric port") from None
    return value.rstrip("/") if parts.path in ("", "/") else value


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite:", "duckdb:", "postgresql:", "postgresql+", "postgres:")):
        raise ValueError(
            "a SQLAlchemy URL: sqlite:///path/file.db, duckdb:///path/file.duckdb or "
            "postgresql://user@host/db"
        )
    for scheme, suffix in (("sqlite", "db"), ("duckdb", "duckdb")):
        if value.startswith(f"{scheme}:") and not (
            value.startswith(f"{scheme}:///") or value == f"{scheme}://"
        ):
            # sqlite://var/x.db reads "var" as a host name (issue 17)
            raise ValueError(
                f"{scheme}:///relative/path.{suffix} (three slashes) or "
                f"{scheme}:////absolute/path.{suffix}"
            )
    # psycopg 3 is the driver we ship; plain "postgresql://" would make SQLAlchemy (and Celery's
    # result backend) look for psycopg2. "postgres://" is the Heroku-style alias.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    return value


def _schema_name(value: str) -> str:
    """A PostgreSQL schema name rosesync can quote safely: letters, digits and underscores."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
        raise ValueError("a schema name: letters, digits and _, not starting with a digit")
    return value


def _broker_url(value: str) -> str:
    if not re.match(r"^(sqla\+\w+|redis|rediss|amqp|amqps|pyamqp|memory)://", value):
        raise ValueError("redis://host:6379/0, amqp://user:pass@host//, or sqla+sqlite:///path")
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("a whole number") from None
    if number <= 0:
        raise ValueError("a whole number greater than 0")
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("a whole number") from None
    if number < 0:
        raise ValueError("a whole number, 0 or more")
    return number


def _page_size(value: str) -> int:
    number = _positive_int(value)
    if number > 1000:
        raise ValueError("a whole number from 1 to 1000 (Rose Rocket documents 50 at most)")
    return number


STRATEGIES: Final = ("auto", "keyset", "sweep")


def _strategy(value: str) -> str:
    if value not in STRATEGIES:
        raise ValueError(" or ".join(STRATEGIES))
    return value


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _endpoints(value: str) -> dict[str, resources.Endpoint]:
    """``partners=/api/v1/partner_carriers,invoices=/api/v2/invoices:invoices:invoice``."""
    expected = (
        "comma-separated RESOURCE=/path entries, each optionally followed by "
        ":list_key:item_key, e.g. partners=/api/v1/partner_carriers"
    )
    found: dict[str, resources.Endpoint] = {}
    for entry in (e.strip() for e in value.split(",") if e.strip()):
        name, _, target = entry.partition("=")
        path, *keys = target.strip().split(":")
        name = name.strip()
        if (
            name not in resources.REGISTRY
            or name in found
            or not path.startswith("/")
            or len(keys) not in (0, 2)
            or not all(_KEY.match(k) for k in keys)
        ):
            raise ValueError(expected + f" (resources: {', '.join(resources.REGISTRY)})")
        found[name] = resources.Endpoint(path, *keys)
    return found


def _writers(value: str) -> int:
    number = _positive_int(value)
    if number > 8:  # each writer holds a connection; the engine's pool has 15
        raise ValueError("a whole number from 1 to 8")
    return number


def _max_concurrency(value: str) -> int:
    number = _positive_int(value)
    if number > 64:  # each is a fetcher thread
        raise ValueError("a whole number from 1 to 64")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a number of seconds") from None
    # float() accepts "inf" and "nan"; neither is a usable timeout or delay (issue 13, item 9:
    # HTTP_TIMEOUT_SECONDS=inf failed every request with OverflowError).
    if not math.isfinite(number) or not number > 0:
        raise ValueError("a finite number of seconds greater than 0")
    return number


def _fernet_key(value: str) -> Secret:
    try:
        raw = base64.urlsafe_b64decode(value.split(",")[0].strip().encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "a Fernet key (44 url-safe base64 characters; README, Encryption key), "
            "optionally followed by older keys separated by commas"
        )
    return Secret(value)


def _alert_urls(value: str) -> tuple[Secret, ...]:
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if not urls or not all(re.match(r"^[a-z][a-z0-9+.-]*://\S", url) for url in urls):
        raise ValueError(
            "comma-separated apprise URLs such as json://host/path or slack://token/ (hidden)"
        )
    return tuple(Secret(url) for url in urls)


def _org_list(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not names:
        raise ValueError("a comma-separated list of org ids (rosesync orgs lists them)")
    return names


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a number of requests a second") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError("a finite number of requests a second, 0 (no limit) or more")
    return number


def _resource_list(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in resources.REGISTRY]
    if unknown or not names:
        hint = resources.did_you_mean(unknown[0]) if unknown else ""
        raise ValueError(f"a comma-separated list of {', '.join(resources.REGISTRY)}{hint}")
    return names


def _redirect_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError("an http(s) URL without a fragment, e.g. http://127.0.0.1:8765/callback")
    return value


def _log_level(value: str) -> str:
    if value.upper() not in _LEVELS:
        raise ValueError(" or ".join(_LEVELS))
    return value.upper()


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError("text or json")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("a non-empty value")
    return value.strip()


def _secret(value: str) -> Secret:
    return Secret(_text(value))


# variable -> (Settings field, parser). Order is the README's order.
_VARIABLES: Final[dict[str, tuple[str, Callable[[str], object]]]] = {
    "ROSEROCKET_CLIENT_ID": ("client_id", _text),
    "ROSEROCKET_CLIENT_SECRET": ("client_secret", _secret),
    "ROSEROCKET_REDIRECT_URI": ("redirect_uri", _redirect_uri),
    "ROSEROCKET_AUTH_URL": ("auth_url", _http_url),
    "ROSEROCKET_API_URL": ("api_url", _http_url),
    "ROSEROCKET_AUDIENCE": ("audience", _text),
    "ROSEROCKET_SCOPE": ("scope", _text),
    "ROSEROCKET_ORG_ID": ("org_id", _text),
    "DATABASE_URL": ("database_url", _database_url),
    "CELERY_BROKER_URL": ("celery_broker_url", _broker_url),
    "CELERY_RESULT_BACKEND": ("celery_result_backend", _text),
    "TOKEN_ENCRYPTION_KEY": ("token_encryption_key", _fernet_key),
    "TOKEN_KEY_FILE": ("token_key_file", lambda v: Path(_text(v))),
    "SYNC_SCHEDULE": ("sync_schedule", parse_schedule),
    "SYNC_RESOURCES": ("sync_resources", _resource_list),
    "SYNC_ORGS": ("sync_orgs", _org_list),
    "SYNC_PAGES_PER_TASK": ("sync_pages_per_task", _non_negative_int),
    "API_RATE_LIMIT": ("api_rate_limit", _rate),
    "SYNC_LOOKBACK_SECONDS": ("sync_lookback_seconds", _non_negative_int),
    "SYNC_CLOCK_SKEW_SECONDS": ("sync_clock_skew_seconds", _non_negative_int),
    "SYNC_CONCURRENCY": ("sync_concurrency", _positive_int),
    "SYNC_MAX_CONCURRENCY": ("sync_max_concurrency", _max_concurrency),
    "SYNC_PAGE_SIZE": ("sync_page_size", _page_size),
    "SYNC_STRATEGY": ("sync_strategy", _strategy),
    "SYNC_ENDPOINTS": ("sync_endpoints", _endpoints),
    "SYNC_SWEEP_INTERVAL_SECONDS": ("sync_sweep_interval_seconds", _non_negative_int),
    "SYNC_WRITERS": ("sync_writers", _writers),
    "SYNC_MAX_QUARANTINE": ("sync_max_quarantine", _non_negative_int),
    "RUNS_RETENTION_DAYS": ("runs_retention_days", _non_negative_int),
    "WAREHOUSE_SCHEMA": ("warehouse_schema", _schema_name),
    "ROSESYNC_SCHEMA": ("rosesync_schema", _schema_name),
    "SYNC_SOFT_TIME_LIMIT": ("sync_soft_time_limit", _positive_int),
    "SYNC_TIME_LIMIT": ("sync_time_limit", _positive_int),
    "SYNC_MAX_RETRIES": ("sync_max_retries", _non_negative_int),
    "SYNC_RETRY_BACKOFF_SECONDS": ("sync_retry_backoff_seconds", _positive_int),
    "BROKER_VISIBILITY_TIMEOUT": ("broker_visibility_timeout", _positive_int),
    "LOCK_TTL_SECONDS": ("lock_ttl_seconds", _positive_int),
    "REFRESH_MARGIN_SECONDS": ("refresh_margin_seconds", _non_negative_int),
    "REFRESH_INTERVAL_SECONDS": ("refresh_interval_seconds", _positive_int),
    "HTTP_TIMEOUT_SECONDS": ("http_timeout_seconds", _positive_float),
    "HTTP_MAX_ATTEMPTS": ("http_max_attempts", _positive_int),
    "HTTP_BACKOFF_SECONDS": ("http_backoff_seconds", _positive_float),
    "RETRY_AFTER_CAP_SECONDS": ("retry_after_cap_seconds", _positive_int),
    "LOG_LEVEL": ("log_level", _log_level),
    "LOG_FORMAT": ("log_format", _log_format),
    "ALERT_URLS": ("alert_urls", _alert_urls),
    "ALERT_AFTER_FAILURES": ("alert_after_failures", _positive_int),
    # Not a field: merged into DATABASE_URL when the URL carries no password, so that the URL
    # can sit in .env or docker-compose.yml while the password is a Docker secret.
    "DATABASE_PASSWORD": ("database_password", _secret),
}

ENVIRONMENT_VARIABLES: Final = tuple(_VARIABLES)

# Any variable may instead be given as <NAME>_FILE, the path of a file holding its value: how
# Docker secrets reach a container without showing in `docker inspect` (docker-compose.yml).
FILE_SUFFIX: Final = "_FILE"
# Prefixes that are ours: an unknown name with one of them is most likely a typo (issue 17).
OWN_PREFIXES: Final = ("ROSEROCKET_", "SYNC_", "TOKEN_", "ALERT_")
# Variables that are not settings but belong to the deployment (docker-compose.yml).
DEPLOYMENT_VARIABLES: Final = frozenset({"FLOWER_BASIC_AUTH", "POSTGRES_PORT"})


def is_secret(variable: str) -> bool:
    """Whether a variable's value is never shown (doctor shows such settings as set/unset)."""
    return any(word in variable for word in ("SECRET", "KEY", "PASSWORD", "ALERT_URLS")) and (
        variable != "TOKEN_KEY_FILE"
    )


def _shown(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Schedule):
        return value.text
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    return str(value)


def describe_settings(settings: Settings) -> list[dict[str, str]]:
    """Every variable, the value in effect and where it came from (`rosesync doctor`). Secrets
    show only as set or unset; URLs with a password show it masked."""
    described = []
    for name, (attribute, _parse) in _VARIABLES.items():
        source = settings.origin.source_of(name)
        if is_secret(name):
            shown = "(unset)" if source == "default" else "(set)"
        else:
            shown = _shown(getattr(settings, attribute, None))
            if "://" in shown:
                shown = safe_url(shown)
        described.append({"variable": name, "value": shown, "source": source})
    return described


def _read(name: str, raw: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(raw)
    except ValueError as exc:
        shown = "(hidden)" if is_secret(name) else repr(raw)
        raise ConfigError(f"{name}: expected {exc}, got {shown}") from None


def _read_dotenv(path: Path) -> dict[str, str]:
    """The .env file's values; an unreadable or non-UTF-8 file is a one-line error (issue 13,
    item 9: it used to be a traceback)."""
    from dotenv import dotenv_values  # only when there is a .env: start-up time (issue 16)

    try:
        values = dotenv_values(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.resolve()} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start}): save .env as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path.resolve()}: {exc.strerror}") from None
    return {k: v for k, v in values.items() if v is not None}


def _value_from_file(name: str, path_text: str) -> str:
    path = Path(path_text)
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{name}{FILE_SUFFIX}: cannot read {path} ({why})") from None


def _unknown(values: Mapping[str, str], source: str) -> list[UnknownVariable]:
    known = [*_VARIABLES, *(name + FILE_SUFFIX for name in _VARIABLES)]
    found = []
    for name in sorted(values):
        if name in known or name in DEPLOYMENT_VARIABLES or not name.startswith(OWN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        found.append(UnknownVariable(name, source, close[0] if close else None))
    return found


def _with_password(url: str, password: Secret) -> str:
    """DATABASE_URL with DATABASE_PASSWORD filled in, unless the URL has a password itself."""
    # Imported here: settings are read by every command, SQLAlchemy only needed by most (issue 16).
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password is not None or url.startswith(("sqlite", "duckdb")):
        return url
    return parsed.set(password=password.reveal()).render_as_string(hide_password=False)


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")
) -> Settings:
    """Settings from ``environ`` (default: the process environment) over ``dotenv_path``."""
    from_file: dict[str, str] = {}
    dotenv_read: Path | None = None
    if dotenv_path is not None and dotenv_path.is_file():
        from_file = _read_dotenv(dotenv_path)
        dotenv_read = dotenv_path.resolve()
    environment = dict(os.environ if environ is None else environ)
    values = {**from_file, **environment}
    sources: dict[str, str] = {}
    kwargs: dict[str, object] = {}
    for name, (attribute, parse) in _VARIABLES.items():
        raw = values.get(name)
        indirect = values.get(name + FILE_SUFFIX)
        if raw and indirect:
            raise ConfigError(f"{name}: set {name} or {name}{FILE_SUFFIX}, not both")
        origin = "environment" if name in environment else ".env"
        if indirect:
            where = "environment" if name + FILE_SUFFIX in environment else ".env"
            raw, origin = _value_from_file(name, indirect), f"file {indirect} ({where})"
        if raw:
            kwargs[attribute] = _read(name, raw, parse)
            sources[name] = origin
    password = kwargs.pop("database_password", None)
    if isinstance(password, Secret):
        url = str(kwargs.get("database_url", DEFAULT_DATABASE_URL))
        kwargs["database_url"] = _with_password(url, password)
    for secret in (kwargs.get("client_secret"), kwargs.get("token_encryption_key"), password):
        if isinstance(secret, Secret):
            register_secret(secret.reveal())
    for url in kwargs.get("alert_urls") or ():  # type: ignore[attr-defined]
        register_secret(url.reveal())
    kwargs["origin"] = Origin(
        dotenv=dotenv_read,
        dotenv_looked_for=dotenv_path.resolve() if dotenv_path is not None else None,
        sources=sources,
        unknown=(*_unknown(environment, "environment"), *_unknown(from_file, ".env")),
    )
    settings = Settings(**kwargs)  # type: ignore[arg-type]
    if settings.sync_soft_time_limit >= settings.sync_time_limit:
        raise ConfigError(
            "SYNC_SOFT_TIME_LIMIT: expected fewer seconds than SYNC_TIME_LIMIT "
            f"({settings.sync_time_limit}), got {settings.sync_soft_time_limit}"
        )
    if settings.sync_concurrency > settings.sync_max_concurrency:
        raise ConfigError(
            "SYNC_CONCURRENCY: expected at most SYNC_MAX_CONCURRENCY "
            f"({settings.sync_max_concurrency}), got {settings.sync_concurrency}: it is where "
            "the number of requests in flight starts, and SYNC_MAX_CONCURRENCY its ceiling"
        )
    if settings.visibility_timeout <= settings.sync_time_limit:
        raise ConfigError(
            "BROKER_VISIBILITY_TIMEOUT: expected more seconds than SYNC_TIME_LIMIT "
            f"({settings.sync_time_limit}), got {settings.visibility_timeout}; a running task "
            "would be delivered a second time"
        )
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, loaded once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
