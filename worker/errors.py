"""Every error rosesync raises on purpose.

One rule for the whole code base: ``str(error)`` is a single line that tells the operator what
to fix, and never contains a token, code or secret. The CLI prints exactly that line.

The transient/permanent split is what retries key on: tenacity (HTTP calls) and Celery
(``autoretry_for``) retry :class:`TransientError` and nothing else, so a revoked grant or a bad
setting fails once, loudly, instead of turning into a retry storm.
"""

from __future__ import annotations

from worker.logs import redact


class RoseSyncError(Exception):
    """Base class. The message is one line naming what to fix.

    The message is redacted as the error is made: text a server sent (an API error that quoted
    the Authorization header, issue 13) is in it, and an exception's text travels to log
    records, tracebacks and Celery's result backend before any exit could redact it.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class TransientError(RoseSyncError):
    """Retrying later may succeed: network trouble, 5xx, 429, a lease held by another run."""


class PermanentError(RoseSyncError):
    """Retrying cannot help until a person changes something."""


class ConfigError(PermanentError):
    """A setting or an argument is missing or malformed."""


class ReauthRequired(PermanentError):
    """The stored grant is gone (revoked, expired, client secret rotated): bootstrap again."""


class OAuthError(PermanentError):
    """The authorization server refused a request; ``error`` is the RFC 6749 error code."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class ClientRejected(OAuthError, ConfigError):
    """The authorization server refused the OAuth client itself (``invalid_client``,
    ``unauthorized_client``): a setting of ours is wrong, the grant is fine. Fixing
    ROSEROCKET_CLIENT_ID / ROSEROCKET_CLIENT_SECRET is enough; no re-bootstrap (issue 17)."""


class ApiError(PermanentError):
    """The data API answered with a 4xx that retrying cannot fix (never 401 or 429)."""


class NotFound(ApiError):
    """HTTP 404: the path or the record does not exist."""


class ServerError(TransientError):
    """A 5xx, a dropped connection or a timeout."""


class RateLimited(TransientError):
    """HTTP 429; ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(TransientError):
    """A body that is not the JSON we expect. Retried (proxies truncate), then it fails the run."""


class ListDrifted(TransientError):
    """Records were inserted or deleted so fast that an offset sweep could not read the list
    without a gap (source/sweep.py); the next run sweeps again."""


class OrderViolated(MalformedResponse):
    """The API stopped honouring what the probe proved (``updated_at`` order, the filters):
    the run re-probes the resource and pages it the way the API now allows."""


class EndpointMissing(ApiError):
    """The resource's list endpoint answered 404: the API has no such resource (here)."""


class Unauthorized(TransientError):
    """HTTP 401 from the data API even after refreshing the token (seed step 7)."""


class Unreachable(TransientError):
    """A configured service (database, broker, API, authorization server) refused the
    connection or its host name does not resolve. The message names the variable to check and
    the address (never a password). Not retried inside a run (issue 17: a refused connection is
    not worth five attempts; timeouts still are), but a Celery task may retry it later."""


class RefreshBlocked(TransientError):
    """A refresh cycle failed transiently (the token endpoint is down or rate limiting), and
    every process now waits out a shared back-off before asking it again (issue 13, item 3).

    Transient for Celery (a later run may succeed) but never retried within a run: the HTTP
    retry policy leaves it alone, so refresh retries cannot nest inside request retries.
    """


class QuarantineFull(PermanentError):
    """More records of one run could not be stored than SYNC_MAX_QUARANTINE allows: the
    source (or rosesync) is broken beyond a few poison records, so the run stops."""


class WarehouseUnavailable(TransientError):
    """The database behind DATABASE_URL refused or dropped the connection mid-run."""


class WarehouseFull(WarehouseUnavailable):
    """The warehouse's disk (or its size limit) is full: transient, since freeing space fixes
    it without any change to rosesync (issue 13, item 8)."""


class LeaseLost(TransientError):
    """Another process took over a lease this one thought it held; stop writing at once."""


class Interrupted(RoseSyncError):
    """SIGTERM or Ctrl-C arrived; the run stopped at a page boundary."""


class Yielded(Interrupted):
    """A task read its share of pages (SYNC_PAGES_PER_TASK) and makes way for other orgs'
    tasks; it is enqueued again and resumes from its committed cursor (issue 15, item 6)."""
