"""worker/credentials/store.py without a token server: the near-expiry rule, encrypted rows,
the cache, statuses, and the cases that must make no token request at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.clock import utcnow
from worker.credentials.oauth import TokenGrant
from worker.credentials.store import (
    CredentialStore,
    credential_statuses,
    expires_at,
    is_due,
    needs_refresh,
    refresh_due_credentials,
)
from worker.errors import ConfigError, ReauthRequired
from worker.warehouse import credentials as rows
from worker.warehouse.credentials import REAUTH_REQUIRED
from worker.warehouse.schema import credentials as table

KEY = Fernet.generate_key().decode()
ACCESS = "eyJhbGciOi.access-token-text.sig"
REFRESH = "v1.refresh-token-text-0123456789"
NOWHERE = "http://127.0.0.1:9"  # discard port: any token request would fail loudly


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        DATABASE_URL=database_url,
        TOKEN_ENCRYPTION_KEY=KEY,
        ROSEROCKET_CLIENT_ID="id",
        ROSEROCKET_CLIENT_SECRET="secret-value",
        ROSEROCKET_AUTH_URL=NOWHERE,
        HTTP_MAX_ATTEMPTS="1",
    )


def store_credential(
    settings: Settings, engine: Engine, age: float = 0.0, ttl: float = 3600.0, **kwargs: Any
) -> CredentialStore:
    """A credential obtained ``age`` seconds ago with an ``ttl``-second access token."""
    store = CredentialStore(settings, engine, **kwargs)
    grant = TokenGrant(ACCESS, REFRESH, ttl, "offline_access email profile")
    store.replace(grant, utcnow() - timedelta(seconds=age))
    return store


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    sa.event.listen(engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", record)


def test_the_near_expiry_rule() -> None:
    now = utcnow()
    issued = now - timedelta(seconds=3000)
    # A one-hour token: due once less than the margin (300 s) is left.
    assert not needs_refresh(now + timedelta(seconds=301), issued, now, 300)
    assert needs_refresh(now + timedelta(seconds=299), issued, now, 300)
    # A 10-second token: half its lifetime, not the margin, or it would always be due.
    short = now + timedelta(seconds=10)
    assert not needs_refresh(short, now, now, 300)
    assert needs_refresh(short, now, now + timedelta(seconds=5.5), 300)
    assert needs_refresh(now - timedelta(seconds=1), issued, now, 300)  # expired


def test_expiry_allows_for_clock_skew_but_not_more_than_half_the_lifetime() -> None:
    now = utcnow()
    assert expires_at(now, 3600) == now + timedelta(seconds=3570)
    assert expires_at(now, 2) == now + timedelta(seconds=1)


def test_no_credential(settings: Settings, engine: Engine) -> None:
    with pytest.raises(
        ReauthRequired, match=r"no credential for org 'default': run `rosesync bootstrap`$"
    ):
        CredentialStore(settings, engine).access_token()
    with pytest.raises(ReauthRequired, match="run `rosesync bootstrap --org acme`"):
        CredentialStore(settings, engine, org="acme").access_token()


def test_tokens_are_encrypted_at_rest(settings: Settings, engine: Engine) -> None:
    store_credential(settings, engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(table)).one()
    for column in (row.access_token, row.refresh_token):
        assert ACCESS not in column and REFRESH not in column
        assert Fernet(KEY.encode()).decrypt(column.encode()).decode() in (ACCESS, REFRESH)
    assert (row.org, row.state, row.scope) == ("default", "ok", "offline_access email profile")
    stored = rows.read(engine, "default")
    assert stored is not None and row.access_token not in repr(stored)


def test_a_valid_token_is_served_from_memory(
    settings: Settings, engine: Engine, statements: list[str]
) -> None:
    store = store_credential(settings, engine)
    statements.clear()
    assert store.access_token() == ACCESS
    assert statements == []
    other = CredentialStore(settings, engine)  # a new process's store reads the row once
    assert other.access_token() == ACCESS
    reads = len(statements)
    assert reads >= 1
    for _ in range(10):
        assert other.access_token() == ACCESS
    assert len(statements) == reads
    assert other.refreshes == 0
    assert ACCESS not in repr(other)


def test_a_reauth_required_credential_stops_at_once(settings: Settings, engine: Engine) -> None:
    store_credential(settings, engine)
    with engine.begin() as conn:
        rows.record_error(
            conn, "default", "the token refresh failed: invalid_grant", REAUTH_REQUIRED
        )
    with pytest.raises(ReauthRequired) as caught:
        CredentialStore(settings, engine).access_token()
    message = str(caught.value)
    assert "run `rosesync bootstrap` again" in message and "invalid_grant" in message
    (outcome,) = refresh_due_credentials(settings, engine, force=True)
    assert outcome.action == "skipped_reauth_required"
    assert outcome.error == message


def test_wrong_key_is_a_config_error(
    settings: Settings, engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    store_credential(settings, engine)
    other_key = make_settings(
        DATABASE_URL=settings.database_url, TOKEN_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    with pytest.raises(ConfigError, match=r"^TOKEN_ENCRYPTION_KEY cannot decrypt"):
        CredentialStore(other_key, engine).access_token()


def test_statuses_never_show_tokens(settings: Settings, engine: Engine) -> None:
    store_credential(settings, engine)
    store_credential(settings, engine, org="expiring-org", age=3500)
    store_credential(settings, engine, org="revoked-org")
    with engine.begin() as conn:
        rows.record_error(conn, "revoked-org", "gone", REAUTH_REQUIRED)
    statuses = {s.org: s for s in credential_statuses(settings, engine)}
    assert {org: s.state for org, s in statuses.items()} == {
        "default": "ok",
        "expiring-org": "expiring",
        "revoked-org": "reauth_required",
    }
    assert 3500 < statuses["default"].seconds_left <= 3570
    assert statuses["revoked-org"].last_error == "gone"
    text = repr(statuses) + repr([s.as_dict() for s in statuses.values()])
    assert ACCESS not in text and REFRESH not in text


def test_not_due_makes_no_token_request(settings: Settings, engine: Engine) -> None:
    store_credential(settings, engine)
    (outcome,) = refresh_due_credentials(settings, engine)
    assert outcome.action == "not_due" and outcome.error is None


def test_due_rules(settings: Settings, engine: Engine) -> None:
    now = utcnow()
    store_credential(settings, engine, org="fresh")
    store_credential(settings, engine, org="near", age=3400)
    store_credential(settings, engine, org="idle", age=25 * 3600, ttl=48 * 3600)
    due = {
        row.org: is_due(row, now, settings.refresh_margin_seconds) for row in rows.read_all(engine)
    }
    assert due == {"fresh": False, "near": True, "idle": True}


def test_a_failed_refresh_is_an_outcome_not_an_exception(
    settings: Settings, engine: Engine
) -> None:
    store_credential(settings, engine, age=3500)
    (outcome,) = refresh_due_credentials(settings, engine)
    assert outcome.action == "failed"
    # nothing listens there: one attempt, naming the variable (issue 17)
    assert outcome.error is not None and "(connection refused): check ROSEROCKET_AUTH_URL" in (
        outcome.error
    )
    status = CredentialStore(settings, engine).status()
    assert status is not None and status.state == "expiring"
    assert status.last_error is not None and status.last_error in outcome.error


def test_refreshing_an_unknown_org(settings: Settings, engine: Engine) -> None:
    (outcome,) = refresh_due_credentials(settings, engine, org="acme")
    assert outcome.action == "failed"
    assert outcome.error == "no credential for org 'acme': run `rosesync bootstrap --org acme`"
