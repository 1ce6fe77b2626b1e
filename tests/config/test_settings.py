"""config/settings.py: contract names and defaults, .env precedence, one-line validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from config.settings import ENVIRONMENT_VARIABLES, Secret, load_settings
from worker.errors import ConfigError
from worker.source.resources import REGISTRY


def test_defaults_are_the_contracts() -> None:
    s = load_settings(environ={}, dotenv_path=None)
    assert s.redirect_uri == "http://127.0.0.1:8765/callback"
    assert s.auth_url == "https://a.roserocket.com"
    assert s.api_url == "https://platform.roserocket.com"
    assert s.audience == "https://roserocket.com"
    assert s.scope == "offline_access email profile"
    assert s.database_url == "sqlite:///var/rrsync.db"
    assert s.celery_broker_url == "sqla+sqlite:///var/broker.db"
    assert s.sync_schedule.cron == ("0", "2", "*", "*", "*")
    assert s.sync_resources == tuple(REGISTRY)
    assert s.refresh_margin_seconds == 300
    assert (s.log_level, s.log_format) == ("INFO", "text")
    assert s.client_id is None and s.client_secret is None and s.org_id is None
    assert s.credential_name == "default"
    # issue 12: Rose Rocket documents 50 a page; the strategy is probed per resource
    assert (s.sync_page_size, s.sync_strategy) == (50, "auto")
    assert s.registry["partners"].endpoint == "/api/v1/partner_carriers"


def test_endpoints_move_resources_and_derive_their_keys() -> None:
    s = load_settings(
        environ={
            "SYNC_ENDPOINTS": "partners=/api/v1/carriers, "
            "invoices=/api/v2/billing/invoices:items:item"
        },
        dotenv_path=None,
    )
    partners, invoices = s.registry["partners"], s.registry["invoices"]
    assert (partners.endpoint, partners.records_key, partners.item_key) == (
        "/api/v1/carriers",
        "carriers",
        "carrier",
    )
    assert (invoices.endpoint, invoices.records_key, invoices.item_key) == (
        "/api/v2/billing/invoices",
        "items",
        "item",
    )
    assert s.registry["orders"] == REGISTRY["orders"]


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ROSEROCKET_CLIENT_ID=from-file\nROSEROCKET_ORG_ID=org-file\n")
    s = load_settings(environ={"ROSEROCKET_CLIENT_ID": "from-env"}, dotenv_path=dotenv)
    assert s.client_id == "from-env"
    assert s.org_id == "org-file"
    assert s.credential_name == "org-file"


def test_secrets_never_show_in_repr() -> None:
    s = load_settings(
        environ={"ROSEROCKET_CLIENT_ID": "cid", "ROSEROCKET_CLIENT_SECRET": "s3cr3t-value"},
        dotenv_path=None,
    )
    assert "s3cr3t-value" not in repr(s)
    assert "s3cr3t-value" not in str(s.client_secret)
    assert isinstance(s.client_secret, Secret) and s.client_secret.reveal() == "s3cr3t-value"


def test_missing_client_is_an_error_only_when_needed() -> None:
    s = load_settings(environ={"ROSEROCKET_CLIENT_ID": "cid"}, dotenv_path=None)
    with pytest.raises(ConfigError, match=r"^ROSEROCKET_CLIENT_SECRET not set"):
        s.require_client()


def test_postgres_urls_use_psycopg3() -> None:
    for given in ("postgres://u@h/db", "postgresql://u@h/db"):
        s = load_settings(environ={"DATABASE_URL": given}, dotenv_path=None)
        assert s.database_url == "postgresql+psycopg://u@h/db"
        assert s.result_backend == "db+postgresql+psycopg://u@h/db"


def test_the_warehouse_url_says_where_things_land_on_postgresql() -> None:
    """issue 14, item 3: own tables in ROSESYNC_SCHEMA (default rosesync), rr_* tables in
    WAREHOUSE_SCHEMA when set; a URL that says so already wins; SQLite keeps one file."""
    plain = load_settings(environ={"DATABASE_URL": "postgresql://u@h/db"}, dotenv_path=None)
    assert plain.warehouse_url == "postgresql+psycopg://u@h/db?rrsync_own=rosesync"
    both = load_settings(
        environ={
            "DATABASE_URL": "postgresql://u@h/db?sslmode=require",
            "ROSESYNC_SCHEMA": "ops",
            "WAREHOUSE_SCHEMA": "analytics",
        },
        dotenv_path=None,
    )
    url = "postgresql+psycopg://u@h/db?sslmode=require&rrsync_own=ops&rrsync_data=analytics"
    assert both.warehouse_url == url
    given = load_settings(environ={"DATABASE_URL": url}, dotenv_path=None)
    assert given.warehouse_url == url
    # Celery's result backend gets the URL without them: the driver would refuse them
    assert given.result_backend == "db+postgresql+psycopg://u@h/db?sslmode=require"
    sqlite = load_settings(environ={"WAREHOUSE_SCHEMA": "analytics"}, dotenv_path=None)
    assert sqlite.warehouse_url == sqlite.database_url


def test_result_backend_follows_the_broker() -> None:
    redis = load_settings(environ={"CELERY_BROKER_URL": "redis://r:6379/0"}, dotenv_path=None)
    assert redis.result_backend == "redis://r:6379/0"
    embedded = load_settings(environ={}, dotenv_path=None)
    assert embedded.result_backend == "db+sqlite:///var/celery-results.db"
    # issue 14: Celery cannot keep results in DuckDB; they go to a SQLite file beside it
    duck = load_settings(environ={"DATABASE_URL": "duckdb:///w/x.duckdb"}, dotenv_path=None)
    assert duck.database_url == "duckdb:///w/x.duckdb"
    assert duck.result_backend == "db+sqlite:///w/celery-results.db"


BAD_VALUES = [
    ("ROSEROCKET_AUTH_URL", "a.roserocket.com", "http(s) URL"),
    ("ROSEROCKET_API_URL", "ftp://platform.roserocket.com", "http(s) URL"),
    ("ROSEROCKET_API_URL", "https://host:port", "numeric port"),
    ("ROSEROCKET_REDIRECT_URI", "localhost:8765/callback", "http(s) URL"),
    ("ROSEROCKET_REDIRECT_URI", "http://127.0.0.1:8765/cb#frag", "without a fragment"),
    ("DATABASE_URL", "mysql://root@localhost/db", "SQLAlchemy URL"),
    ("CELERY_BROKER_URL", "kafka://broker:9092", "redis://"),
    ("TOKEN_ENCRYPTION_KEY", "not-a-fernet-key", "Fernet key"),
    ("SYNC_SCHEDULE", "0 2 * *", "5-field cron"),
    ("SYNC_SCHEDULE", "61 2 * * *", "5-field cron"),
    ("SYNC_SCHEDULE", "@every soon", "5-field cron"),
    ("SYNC_RESOURCES", "orders,trucks", "comma-separated list"),
    ("SYNC_LOOKBACK_SECONDS", "five", "whole number"),
    ("SYNC_CLOCK_SKEW_SECONDS", "-1", "0 or more"),
    ("SYNC_CONCURRENCY", "0", "greater than 0"),
    ("SYNC_MAX_CONCURRENCY", "0", "greater than 0"),
    ("SYNC_MAX_CONCURRENCY", "65", "1 to 64"),
    ("SYNC_PAGE_SIZE", "5000", "1 to 1000"),
    ("SYNC_STRATEGY", "offset", "auto or keyset or sweep"),
    ("SYNC_SWEEP_INTERVAL_SECONDS", "-5", "0 or more"),
    ("SYNC_ENDPOINTS", "partners:/api/v1/partner_carriers", "RESOURCE=/path"),
    ("SYNC_ENDPOINTS", "lorries=/api/v1/lorries", "RESOURCE=/path"),
    ("SYNC_ENDPOINTS", "orders=api/v1/orders", "RESOURCE=/path"),
    ("SYNC_ENDPOINTS", "orders=/api/v1/o:orders", "RESOURCE=/path"),
    ("SYNC_WRITERS", "9", "1 to 8"),
    ("SYNC_MAX_QUARANTINE", "-1", "0 or more"),
    ("RUNS_RETENTION_DAYS", "-5", "0 or more"),
    ("RUNS_RETENTION_DAYS", "ninety", "a whole number"),
    ("WAREHOUSE_SCHEMA", 'public"; DROP', "a schema name"),
    ("ROSESYNC_SCHEMA", "9lives", "a schema name"),
    ("SYNC_ORGS", " , ", "comma-separated list of org ids"),
    ("SYNC_PAGES_PER_TASK", "-3", "0 or more"),
    ("API_RATE_LIMIT", "fast", "requests a second"),
    ("API_RATE_LIMIT", "-1", "0 (no limit) or more"),
    ("API_RATE_LIMIT", "inf", "finite number"),
    ("SYNC_SOFT_TIME_LIMIT", "1.5", "whole number"),
    ("SYNC_TIME_LIMIT", "x", "whole number"),
    ("SYNC_MAX_RETRIES", "many", "whole number"),
    ("SYNC_RETRY_BACKOFF_SECONDS", "0", "greater than 0"),
    ("LOCK_TTL_SECONDS", "0", "greater than 0"),
    ("REFRESH_MARGIN_SECONDS", "5m", "whole number"),
    ("REFRESH_INTERVAL_SECONDS", "0", "greater than 0"),
    ("HTTP_TIMEOUT_SECONDS", "soon", "number of seconds"),
    ("HTTP_MAX_ATTEMPTS", "0", "greater than 0"),
    ("HTTP_BACKOFF_SECONDS", "0", "greater than 0"),
    ("BROKER_VISIBILITY_TIMEOUT", "1h", "whole number"),
    ("RETRY_AFTER_CAP_SECONDS", "-5", "greater than 0"),
    ("LOG_LEVEL", "LOUD", "DEBUG or INFO"),
    ("LOG_FORMAT", "xml", "text or json"),
    ("ROSEROCKET_CLIENT_ID", "   ", "non-empty"),
    ("ROSEROCKET_CLIENT_SECRET", " ", "non-empty"),
    ("ROSEROCKET_AUDIENCE", " ", "non-empty"),
    ("ROSEROCKET_SCOPE", "\t", "non-empty"),
    ("ROSEROCKET_ORG_ID", " ", "non-empty"),
    ("CELERY_RESULT_BACKEND", " ", "non-empty"),
    ("TOKEN_KEY_FILE", " ", "non-empty"),
    ("ALERT_URLS", "not a url", "apprise URLs"),
    ("ALERT_AFTER_FAILURES", "0", "greater than 0"),
    ("DATABASE_PASSWORD", " ", "non-empty"),
    # issue 13, item 9: float() takes these, and every request then failed with OverflowError
    ("HTTP_TIMEOUT_SECONDS", "inf", "finite number"),
    ("HTTP_TIMEOUT_SECONDS", "nan", "finite number"),
    ("HTTP_BACKOFF_SECONDS", "Infinity", "finite number"),
    # issue 17: two slashes make "var" a host name
    ("DATABASE_URL", "sqlite://var/x.db", "three slashes"),
    ("DATABASE_URL", "duckdb://var/x.duckdb", "duckdb:///relative/path.duckdb (three slashes)"),
    ("DATABASE_URL", "mysql://u@h/db", "duckdb:///path/file.duckdb"),
    # issue 17: a bad cron field is named with its range, not reported as "not 5 fields"
    ("SYNC_SCHEDULE", "0 25 * * *", "the hour field (field 2 of 5) within 0-23"),
    ("SYNC_SCHEDULE", "0 0 0 * *", "the day of month field (field 3 of 5) within 1-31"),
    ("SYNC_SCHEDULE", "* * * 13 *", "the month field (field 4 of 5) within 1-12"),
    ("SYNC_SCHEDULE", "@fortnightly", "@daily"),
    ("SYNC_RESOURCES", "order", "did you mean orders?"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_VALUES)
def test_bad_value_is_one_line_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: value}, dotenv_path=None)
    message = str(caught.value)
    assert message.startswith(f"{variable}: expected ")
    assert expected in message
    assert "\n" not in message


def test_every_variable_has_a_bad_value_case() -> None:
    covered = {case[0] for case in BAD_VALUES}
    assert covered == set(ENVIRONMENT_VARIABLES)


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TOKEN_ENCRYPTION_KEY": "leaky-key-material"}, dotenv_path=None)
    assert "leaky-key-material" not in str(caught.value)


def test_soft_limit_must_be_below_hard_limit() -> None:
    with pytest.raises(ConfigError, match=r"^SYNC_SOFT_TIME_LIMIT: expected fewer seconds"):
        load_settings(
            environ={"SYNC_SOFT_TIME_LIMIT": "100", "SYNC_TIME_LIMIT": "100"}, dotenv_path=None
        )


def test_concurrency_starts_within_its_maximum() -> None:
    with pytest.raises(ConfigError, match=r"^SYNC_CONCURRENCY: expected at most SYNC_MAX_CONC"):
        load_settings(
            environ={"SYNC_CONCURRENCY": "9", "SYNC_MAX_CONCURRENCY": "8"}, dotenv_path=None
        )
    fixed = load_settings(
        environ={"SYNC_CONCURRENCY": "3", "SYNC_MAX_CONCURRENCY": "3"}, dotenv_path=None
    )
    assert (fixed.sync_concurrency, fixed.sync_max_concurrency) == (3, 3)


def test_visibility_timeout_must_outlast_the_hard_limit() -> None:
    with pytest.raises(ConfigError, match=r"^BROKER_VISIBILITY_TIMEOUT: expected more seconds"):
        load_settings(
            environ={
                "SYNC_TIME_LIMIT": "600",
                "SYNC_SOFT_TIME_LIMIT": "500",
                "BROKER_VISIBILITY_TIMEOUT": "600",
            },
            dotenv_path=None,
        )


def test_every_schedule_extension() -> None:
    s = load_settings(environ={"SYNC_SCHEDULE": "@every 90s"}, dotenv_path=None)
    assert s.sync_schedule.every_seconds == 90.0
    assert s.sync_schedule.cron is None


@pytest.mark.parametrize(
    ("text", "cron", "every"),
    [
        ("@hourly", ("0", "*", "*", "*", "*"), None),
        ("@daily", ("0", "0", "*", "*", "*"), None),
        ("@weekly", ("0", "0", "*", "*", "0"), None),
        ("@monthly", ("0", "0", "1", "*", "*"), None),
        ("@every 1h30m", None, 5400.0),
        ("@every 2d", None, 172800.0),
        ("*/15 8-18 * * mon-fri", ("*/15", "8-18", "*", "*", "mon-fri"), None),
    ],
)
def test_schedule_forms(
    text: str, cron: tuple[str, ...] | None, every: float | None
) -> None:
    """Issue 17: cron's nicknames and compound @every durations are accepted."""
    s = load_settings(environ={"SYNC_SCHEDULE": text}, dotenv_path=None)
    assert (s.sync_schedule.cron, s.sync_schedule.every_seconds) == (cron, every)
    assert s.sync_schedule.text == text


def test_a_dotenv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Issue 13, item 9: it used to be a UnicodeDecodeError traceback."""
    dotenv = tmp_path / ".env"
    dotenv.write_bytes("ROSEROCKET_ORG_ID=caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, dotenv_path=dotenv)
    assert str(caught.value) == (
        f"{dotenv.resolve()} is not UTF-8 text (byte 0xe9 at offset 21): save .env as UTF-8"
    )


def test_where_each_setting_came_from(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ROSEROCKET_ORG_ID=org-file\nSYNC_PAGE_SIZE=100\n")
    s = load_settings(environ={"SYNC_PAGE_SIZE": "50"}, dotenv_path=dotenv)
    assert s.origin.dotenv == dotenv.resolve()
    assert s.origin.source_of("ROSEROCKET_ORG_ID") == ".env"
    assert s.origin.source_of("SYNC_PAGE_SIZE") == "environment"
    assert s.origin.source_of("SYNC_SCHEDULE") == "default"
    missing = load_settings(environ={}, dotenv_path=tmp_path / "elsewhere" / ".env")
    assert missing.origin.dotenv is None
    assert missing.origin.dotenv_looked_for == tmp_path / "elsewhere" / ".env"


def test_unknown_variables_are_reported_with_a_suggestion(tmp_path: Path) -> None:
    """Issue 17: a misspelt SYNC_SCHEDUEL used to be ignored without a word."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("TOKEN_ENCRYPTON_KEY=x\n")
    s = load_settings(
        environ={"SYNC_SCHEDUEL": "@daily", "ROSEROCKET_WHATEVER": "1", "HOME": "/root"},
        dotenv_path=dotenv,
    )
    described = [u.describe() for u in s.origin.unknown]
    assert described == [
        "ROSEROCKET_WHATEVER in the environment is not a rosesync setting; it is ignored",
        "SYNC_SCHEDUEL in the environment is not a rosesync setting "
        "(did you mean SYNC_SCHEDULE?); it is ignored",
        "TOKEN_ENCRYPTON_KEY in the .env is not a rosesync setting "
        "(did you mean TOKEN_ENCRYPTION_KEY?); it is ignored",
    ]


def test_values_from_files(tmp_path: Path) -> None:
    """<NAME>_FILE reads the value from a file (Docker secrets, docker-compose.yml)."""
    secret = tmp_path / "client_secret"
    secret.write_text("from-a-file\n")
    password = tmp_path / "pg_password"
    password.write_text("p@ss word\n")
    s = load_settings(
        environ={
            "ROSEROCKET_CLIENT_SECRET_FILE": str(secret),
            "DATABASE_URL": "postgresql://rosesync@db:5432/rosesync",
            "DATABASE_PASSWORD_FILE": str(password),
        },
        dotenv_path=None,
    )
    assert s.client_secret == Secret("from-a-file")
    url = make_url(s.database_url)
    assert (url.drivername, url.host, url.password) == ("postgresql+psycopg", "db", "p@ss word")
    assert s.origin.source_of("ROSEROCKET_CLIENT_SECRET").startswith(f"file {secret}")
    with pytest.raises(ConfigError, match=r"^ROSEROCKET_CLIENT_SECRET: set .* not both$"):
        load_settings(
            environ={
                "ROSEROCKET_CLIENT_SECRET": "x",
                "ROSEROCKET_CLIENT_SECRET_FILE": str(secret),
            },
            dotenv_path=None,
        )
    with pytest.raises(ConfigError, match=r"^TOKEN_ENCRYPTION_KEY_FILE: cannot read .*nothing"):
        load_settings(
            environ={"TOKEN_ENCRYPTION_KEY_FILE": str(tmp_path / "nothing")}, dotenv_path=None
        )
