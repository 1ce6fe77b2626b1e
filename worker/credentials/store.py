"""The credential store: encrypted rows, an in-memory cache, and a refresh that happens once.

Why the refresh is built this way: Auth0 rotates refresh tokens and, when a rotated one is used
again, revokes the whole token family (reuse detection). Two workers that both notice an
expiring token and both refresh with the same refresh token would therefore lose the grant for
everyone. So a refresh is single-flight at two levels:

* in this process, a ``threading.Lock`` (sync threads share one store);
* across processes and machines, the credential row's lock (``warehouse/credentials.py``): take
  it, re-read the row, and if someone else refreshed meanwhile, use their token. Otherwise ask
  the server while holding the lock and write the new access AND refresh token in that same
  transaction, so the rotated refresh token is durable before anything can use it.

The near-expiry rule (:func:`needs_refresh`) is written once and used by the hot path, the
scheduled refresh and ``rosesync token status``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.clock import utcnow
from worker.credentials.cipher import TokenCipher, load_cipher
from worker.errors import (
    ConfigError,
    OAuthError,
    ReauthRequired,
    RefreshBlocked,
    RoseSyncError,
    TransientError,
    Unreachable,
)
from worker.logs import register_secret
from worker.warehouse import credentials as rows
from worker.warehouse.credentials import OK, REAUTH_REQUIRED, CredentialRow

if TYPE_CHECKING:
    from worker.credentials.oauth import TokenGrant

log = logging.getLogger(__name__)

# Subtracted from expires_in: the token may have been issued a moment before we sent the
# request, and our clock may differ from the server's. Never more than half the lifetime, so a
# test server's 2-second tokens still get a second.
CLOCK_SKEW_SECONDS: Final = 30.0
# Auth0's refresh-token inactivity lifetime is typically a day or more: refreshing at least this
# often keeps the grant alive through weeks without a sync.
MAX_IDLE: Final = timedelta(hours=24)

# Issue 13, item 3: with the token endpoint down, retries nested in retries across resources
# made 75 token requests in one run. Now a refresh cycle makes at most REFRESH_ATTEMPTS requests;
# when it fails, the credential row holds every process's token requests back for
# BLOCK_FIRST, doubling with each failed cycle in a row up to BLOCK_MAX.
REFRESH_ATTEMPTS: Final = 3
BLOCK_FIRST: Final = timedelta(seconds=60)
BLOCK_MAX: Final = timedelta(hours=1)

# The credential name without ROSEROCKET_ORG_ID (Settings.credential_name): no org_id is sent.
NO_ORG: Final = "default"

Action = Literal["refreshed", "not_due", "skipped_reauth_required", "failed"]
# key_error: the stored credential cannot be decrypted with this deployment's key
State = Literal["ok", "expiring", "reauth_required", "key_error"]


def expires_at(requested_at: datetime, expires_in: float) -> datetime:
    """When we treat a token as expired: counted from when we ASKED for it (it cannot be older
    than that), less the clock skew allowance."""
    return requested_at + timedelta(seconds=expires_in - min(CLOCK_SKEW_SECONDS, expires_in / 2))


def needs_refresh(expires: datetime, issued: datetime, now: datetime, margin: float) -> bool:
    """THE near-expiry rule: less than min(REFRESH_MARGIN_SECONDS, half the lifetime) left.

    Half the lifetime keeps very short lifetimes (tests, a misconfigured tenant) from refreshing
    on every call: a fresh token is never "near expiry" at once.
    """
    lifetime = (expires - issued).total_seconds()
    return (expires - now).total_seconds() < min(margin, lifetime / 2)


def is_due(row: CredentialRow, now: datetime, margin: float) -> bool:
    """Due for the scheduled refresh: near expiry, or not refreshed for :data:`MAX_IDLE`."""
    return needs_refresh(row.expires_at, row.issued_at, now, margin) or (
        now - row.issued_at >= MAX_IDLE
    )


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    expires_at: datetime
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What the scheduled refresh did for one org. ``error`` is one line without secrets."""

    org: str
    action: Action
    expires_at: datetime | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "org": self.org,
            "action": self.action,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """A credential's health, for `rosesync token status` and `rosesync status`; never token
    text."""

    org: str
    state: State
    expires_at: datetime
    seconds_left: int
    obtained_at: datetime
    refreshed_at: datetime | None
    scope: str
    last_error: str | None
    refresh_blocked_until: datetime | None = None  # the shared back-off, while it lasts
    paused_at: datetime | None = None  # set: beat does not sync the org (issue 15)

    @classmethod
    def of(cls, row: CredentialRow, now: datetime, margin: float) -> CredentialStatus:
        state: State = (
            "reauth_required"
            if row.state == REAUTH_REQUIRED
            else "expiring"
            if needs_refresh(row.expires_at, row.issued_at, now, margin)
            else "ok"
        )
        return cls(
            org=row.org,
            state=state,
            expires_at=row.expires_at,
            seconds_left=max(0, int((row.expires_at - now).total_seconds())),
            obtained_at=row.obtained_at,
            refreshed_at=row.refreshed_at,
            scope=row.scope,
            last_error=row.last_error,
            refresh_blocked_until=(
                row.refresh_blocked_until
                if row.refresh_blocked_until and row.refresh_blocked_until > now
                else None
            ),
            paused_at=row.paused_at,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "org": self.org,
            "state": self.state,
            "expires_at": self.expires_at.isoformat(),
            "seconds_left": self.seconds_left,
            "obtained_at": self.obtained_at.isoformat(),
            "refreshed_at": self.refreshed_at.isoformat() if self.refreshed_at else None,
            "scope": self.scope,
            "last_error": self.last_error,
            "refresh_blocked_until": (
                self.refresh_blocked_until.isoformat() if self.refresh_blocked_until else None
            ),
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
        }


def _bootstrap_command(settings: Settings, org: str) -> str:
    flag = "" if org == settings.credential_name else f" --org {org}"
    return f"`rosesync bootstrap{flag}`"


def reauth_required(settings: Settings, org: str, reason: str | None) -> ReauthRequired:
    """The one message for a grant that is gone: which org, what to run, and why."""
    return ReauthRequired(
        f"the credential for org {org!r} needs re-authorization: run "
        f"{_bootstrap_command(settings, org)} again ({reason or 'reason unknown'})"
    )


class CredentialStore:
    """One org's credential for this process. Thread-safe; share one instance between threads.

    ``access_token()`` is the hot path (before every API request): no database access while the
    cached token is comfortably valid.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        org: str | None = None,
        cipher: TokenCipher | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.org = org or settings.credential_name
        self.refreshes = 0  # refreshes this instance performed (run statistics)
        self._cipher = cipher
        self._lock = threading.Lock()
        self._token: _Token | None = None

    def __repr__(self) -> str:
        return f"CredentialStore(org={self.org!r})"

    # -- public ------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token, refreshed (once, for everyone) when near expiry.

        Raises :class:`ReauthRequired` when no credential is stored or the grant is gone.
        """
        token = self._token
        if token is not None and not self._near_expiry(token.expires_at, token.issued_at):
            return token.value
        with self._lock:
            token = self._token
            if token is not None and not self._near_expiry(token.expires_at, token.issued_at):
                return token.value
            row = self._usable(rows.read(self.engine, self.org))
            if not self._near_expiry(row.expires_at, row.issued_at):
                return self._adopt(row).value
            wanted = lambda r: self._near_expiry(r.expires_at, r.issued_at)  # noqa: E731
            return self._refresh(wanted, keep_valid=True).value

    def refresh_after_401(self, rejected: str) -> str:
        """The API refused ``rejected`` (seed step 7): refresh, unless that token was already
        replaced (by another thread or process), and return the current token."""
        register_secret(rejected)
        with self._lock:
            token = self._token
            if token is not None and token.value != rejected:
                return token.value
            return self._refresh(
                lambda r: self._cipher_().decrypt(r.access_token, self.org) == rejected
            ).value

    def refresh(self, force: bool = False) -> RefreshOutcome:
        """The scheduled refresh for this org: refresh if due (or ``force``), never raising for a
        refresh that failed (the outcome says why), except for a configuration problem."""
        with self._lock:
            before = self.refreshes
            try:
                token = self._refresh(
                    lambda r: force or is_due(r, utcnow(), self.settings.refresh_margin_seconds)
                )
            except ConfigError:
                raise
            except RoseSyncError as exc:
                return RefreshOutcome(self.org, "failed", error=str(exc))
            action: Action = "refreshed" if self.refreshes > before else "not_due"
            return RefreshOutcome(self.org, action, expires_at=token.expires_at)

    def replace(self, grant: TokenGrant, requested_at: datetime) -> None:
        """Store a bootstrap's tokens, replacing whatever the org had (re-authorization)."""
        assert grant.refresh_token is not None  # exchange_code guarantees it
        cipher = self._cipher_()
        expires = expires_at(requested_at, grant.expires_in)
        rows.replace(
            self.engine,
            CredentialRow(
                org=self.org,
                access_token=cipher.encrypt(grant.access_token),
                refresh_token=cipher.encrypt(grant.refresh_token),
                expires_at=expires,
                scope=grant.scope or self.settings.scope,
                obtained_at=requested_at,
                refreshed_at=None,
                state=OK,
                last_error=None,
            ),
        )
        with self._lock:
            self._token = _Token(grant.access_token, expires, requested_at)

    def status(self) -> CredentialStatus | None:
        row = rows.read(self.engine, self.org)
        margin = self.settings.refresh_margin_seconds
        return None if row is None else CredentialStatus.of(row, utcnow(), margin)

    # -- internals ---------------------------------------------------------------------------

    def _near_expiry(self, expires: datetime, issued: datetime) -> bool:
        return needs_refresh(expires, issued, utcnow(), self.settings.refresh_margin_seconds)

    def _cipher_(self) -> TokenCipher:
        if self._cipher is None:
            self._cipher = load_cipher(self.settings)
        return self._cipher

    def _usable(self, row: CredentialRow | None) -> CredentialRow:
        """The row, or :class:`ReauthRequired` (forgetting any cached token) when there is none
        or its grant is gone."""
        if row is not None and row.state != REAUTH_REQUIRED:
            return row
        self._token = None
        if row is None:
            command = _bootstrap_command(self.settings, self.org)
            raise ReauthRequired(f"no credential for org {self.org!r}: run {command}")
        raise reauth_required(self.settings, self.org, row.last_error)

    def _adopt(self, row: CredentialRow) -> _Token:
        value = self._cipher_().decrypt(row.access_token, self.org)
        register_secret(value)
        self._token = _Token(value, row.expires_at, row.issued_at)
        return self._token

    def _refresh(self, wanted: Callable[[CredentialRow], bool], keep_valid: bool = False) -> _Token:
        """Single-flight refresh; the caller holds ``self._lock``.

        Retries (network errors, 5xx, 429 with Retry-After; bounded by HTTP_MAX_ATTEMPTS) wrap
        whole attempts, each taking and releasing the row lock, so backing off never holds the
        lock (on SQLite: the database's write lock, which every sync write waits for), and each
        attempt re-reads the row: if another worker refreshed during our back-off, we use its
        token instead of retrying.

        A retry after a LOST RESPONSE (the server rotated the token, the answer never arrived)
        presents the old refresh token again. We retry anyway: without the answer the old token
        is all we have, so not retrying loses the grant just the same one refresh later; with
        Auth0's reuse interval (leeway) configured, the retry is exactly what recovers it.

        A cycle makes at most :data:`REFRESH_ATTEMPTS` tries. When they all fail transiently,
        the row records a back-off that every process honours (:meth:`_block`), and the caller
        gets :class:`RefreshBlocked`, which no request retry repeats (issue 13, item 3).
        ``keep_valid``: while refreshes are held back, a token near expiry but still valid is
        used rather than refused.
        """
        # HTTP (requests, tenacity) only once a refresh happens: `rosesync status` reads the
        # store and never refreshes, and they were a tenth of its start-up (issue 16).
        from worker.source.http import retrying

        policy = retrying(
            self.settings,
            on_retry=lambda exc, wait: log.warning(
                "token refresh for org %s failed (%s); retrying in %.1f s", self.org, exc, wait
            ),
            attempts=REFRESH_ATTEMPTS,
        )
        started = utcnow()
        try:
            return policy(self._attempt, wanted, keep_valid)
        except (RefreshBlocked, Unreachable):  # nothing listens there: one request, no storm,
            raise  # and the fix is a setting (issue 17), not a wait
        except TransientError as exc:
            raise self._block(exc, started) from None

    def _block(self, failure: TransientError, started: datetime) -> RefreshBlocked:
        """After a failed cycle: hold every process's token requests back (the row's
        ``refresh_blocked_until``), doubling the wait with each failed cycle in a row."""
        with self.engine.begin() as conn:
            row = self._usable(rows.lock(conn, self.org))
            if row.issued_at >= started:  # another process's refresh succeeded meanwhile
                return RefreshBlocked(str(failure))
            failures = row.refresh_failures + 1
            until = utcnow() + min(BLOCK_MAX, BLOCK_FIRST * 2 ** min(failures - 1, 16))
            rows.block_refresh(conn, self.org, str(failure), until)
        log.error(
            "token refresh for org %s failed %d time(s) in a row (%s); no process asks the "
            "token endpoint again before %s",
            self.org,
            failures,
            failure,
            until.isoformat(timespec="seconds"),
        )
        return self._blocked(str(failure), until)

    def _blocked(self, reason: str | None, until: datetime) -> RefreshBlocked:
        seconds = max(0.0, (until - utcnow()).total_seconds())
        return RefreshBlocked(
            f"the token refresh for org {self.org!r} failed ({reason or 'reason unknown'}); "
            f"no rosesync process asks for a token before {until.isoformat(timespec='seconds')} "
            f"(in {seconds:.0f} s); check the authorization server at ROSEROCKET_AUTH_URL if "
            "this persists"
        )

    def _attempt(self, wanted: Callable[[CredentialRow], bool], keep_valid: bool) -> _Token:
        failure: RoseSyncError | None = None
        with self.engine.begin() as conn:
            row = self._usable(rows.lock(conn, self.org))
            if not wanted(row):  # another thread or process refreshed while we waited
                return self._adopt(row)
            now = utcnow()
            blocked = row.refresh_blocked_until
            if blocked is not None and now < blocked:  # the shared back-off: no request
                if keep_valid and row.expires_at > now:
                    return self._adopt(row)
                raise self._blocked(row.last_error, blocked)
            cipher = self._cipher_()
            refresh_token = cipher.decrypt(row.refresh_token, self.org)
            register_secret(refresh_token)
            org_id = None if self.org == NO_ORG else self.org
            requested_at = utcnow()
            from worker.credentials import oauth  # HTTP: see _refresh

            try:
                # cached after the process's first call; inside the try, so that an unreachable
                # authorization server is recorded like any other failed refresh
                endpoints = oauth.discover(self.settings)
                grant = oauth.refresh(self.settings, endpoints, refresh_token, org_id)
            except OAuthError as exc:
                if exc.error in oauth.REAUTH_ERRORS:
                    rows.record_error(conn, self.org, str(exc), REAUTH_REQUIRED)
                    failure = reauth_required(self.settings, self.org, str(exc))
                else:
                    rows.record_error(conn, self.org, str(exc), OK)
                    failure = exc
            except TransientError as exc:
                rows.record_error(conn, self.org, str(exc), OK)
                failure = exc
            else:
                # THE UNSAFE WINDOW opens here: the server has rotated the refresh token and
                # only this process knows the new one. A crash before the commit below loses it,
                # and the next refresh (with the old one) trips reuse detection: re-authorization
                # needed. So nothing happens here but encrypting and one UPDATE; logging, cache
                # and counters wait until after the commit.
                token = _Token(
                    grant.access_token, expires_at(requested_at, grant.expires_in), requested_at
                )
                rows.save_refresh(
                    conn,
                    self.org,
                    access_token=cipher.encrypt(grant.access_token),
                    # RFC 6749 section 6: the server MAY issue a new refresh token; if it does
                    # not (rotation off), the old one stays valid.
                    refresh_token=cipher.encrypt(grant.refresh_token or refresh_token),
                    expires_at=token.expires_at,
                    scope=grant.scope or row.scope,
                    refreshed_at=requested_at,
                )
        # Committed (or rolled back by an exception): the unsafe window is closed.
        if failure is not None:
            if isinstance(failure, ReauthRequired):
                self._token = None
                log.error("%s", failure)
            raise failure
        self.refreshes += 1
        self._token = token
        seconds = (token.expires_at - utcnow()).total_seconds()
        log.info("refreshed the access token for org %s; valid for %.0f s", self.org, seconds)
        return token


def refresh_due_credentials(
    settings: Settings, engine: Engine, force: bool = False, org: str | None = None
) -> list[RefreshOutcome]:
    """Refresh every stored credential that is due (all orgs, or just ``org``): the beat task
    ``refresh_tokens`` and `rosesync token refresh` run this. A ``reauth_required`` credential
    makes no token request; a missing ``org`` is a failed outcome."""
    now = utcnow()
    found = rows.read_all(engine)
    if org is not None:
        found = [row for row in found if row.org == org]
        if not found:  # the store's own check makes the "run `rosesync bootstrap`" outcome
            return [CredentialStore(settings, engine, org=org).refresh(force)]
    outcomes: list[RefreshOutcome] = []
    for row in found:
        if row.state == REAUTH_REQUIRED:
            message = str(reauth_required(settings, row.org, row.last_error))
            outcomes.append(
                RefreshOutcome(row.org, "skipped_reauth_required", row.expires_at, message)
            )
        elif not (force or is_due(row, now, settings.refresh_margin_seconds)):
            outcomes.append(RefreshOutcome(row.org, "not_due", row.expires_at))
        else:
            outcomes.append(CredentialStore(settings, engine, org=row.org).refresh(force))
    return outcomes


def credential_statuses(settings: Settings, engine: Engine) -> list[CredentialStatus]:
    """Every stored credential's health, including whether this deployment's encryption key
    opens it: a changed TOKEN_ENCRYPTION_KEY showed ``ok`` here and failed only in the next
    sync (issue 17). The tokens are decrypted and dropped, never returned."""
    now = utcnow()
    statuses = []
    for row in rows.read_all(engine):
        status = CredentialStatus.of(row, now, settings.refresh_margin_seconds)
        problem = key_problem(settings, row)
        if problem is not None:
            status = replace(status, state="key_error", last_error=problem)
        statuses.append(status)
    return statuses


def key_problem(settings: Settings, row: CredentialRow) -> str | None:
    """Why this deployment's key cannot decrypt ``row`` (one line), or None when it can."""
    try:
        cipher = load_cipher(settings)
        register_secret(cipher.decrypt(row.access_token, row.org))
        register_secret(cipher.decrypt(row.refresh_token, row.org))
    except ConfigError as exc:
        return str(exc)
    return None
