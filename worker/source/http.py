"""HTTP plumbing shared by the OAuth calls and the data API: the session, error mapping, retries.

One ``requests.Session`` per process (keep-alive and connection pooling; a session must not
cross a fork, hence the pid check). Every failure becomes one of the errors in ``errors.py`` so
tenacity retries exactly the :class:`~worker.errors.TransientError` ones, honouring
``Retry-After`` (RFC 9110 section 10.2.3) up to a cap, and backing off exponentially with jitter
otherwise so that a fleet of workers does not retry in lockstep.
"""

from __future__ import annotations

import email.utils
import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.exceptions import NameResolutionError

from config.settings import Settings
from worker import __version__
from worker.errors import RateLimited, RefreshBlocked, ServerError, TransientError, Unreachable

if TYPE_CHECKING:  # the stubs' name for what merge_environment_settings returns
    from requests.sessions import _Settings

USER_AGENT = f"rosesync/{__version__}"
POOL_SIZE = 16

_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


class Session(requests.Session):
    """A session that asks the environment about an origin once, not on every request.

    requests reads the process environment on every call (``merge_environment_settings``:
    HTTPS_PROXY/HTTP_PROXY/ALL_PROXY filtered through NO_PROXY, then REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE), about a sixth of its CPU per request on a fast sync (issue 16). Its answer
    depends on the request's origin and on variables that do not change under a running
    process, so this session keeps requests' own answer per origin, taken at the first request
    to it, and operators keep every variable requests honours, with its exact meaning.

    ``.netrc``, the other thing requests looks up per request, is left as it is: requests
    consults it only for a request without ``auth=``, and every data API request sends its
    own Authorization (:class:`BearerAuth`), so no page pays for it; the few OAuth calls,
    which carry their client credentials in the form, keep requests' behaviour.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[str, _Settings] = {}

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if proxies or verify is not None or cert is not None:
            # a caller's own settings: requests merges them as usual (rosesync passes none)
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url.decode() if isinstance(url, bytes) else str(url))
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._environment.get(origin)
        if found is None:
            # a race between two threads reads the environment twice, to the same effect
            found = self._environment[origin] = super().merge_environment_settings(
                origin + "/", {}, None, None, None
            )
        # a copy each time: send() is handed the proxies and may adjust them on a redirect;
        # ``stream`` is the caller's (fetch's), nothing the environment says
        return {
            **found,
            "proxies": dict(found["proxies"]),
            "stream": self.stream if stream is None else stream,
        }


def session() -> requests.Session:
    """This process's session (created on first use)."""
    pid = os.getpid()
    with _sessions_lock:
        current = _sessions.get(pid)
        if current is None:
            current = Session()
            current.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
            current.mount("http://", adapter)
            current.mount("https://", adapter)
            _sessions[pid] = current
        return current


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` (RFC 6750 section 2.1).

    As an ``auth=`` rather than a header, so that requests does not also look for a ~/.netrc
    entry on every request (a file-system check per page, measurable on a fast sync).
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(**********)"


def retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def raise_for_transient(response: requests.Response, what: str) -> None:
    """429 and 5xx become retryable errors naming ``what`` (never a token)."""
    status = response.status_code
    if status == 429:
        raise RateLimited(f"{what}: rate limited (HTTP 429)", retry_after(response))
    if status >= 500:
        raise ServerError(f"{what}: server error (HTTP {status})")


# Connection failures that will not fix themselves within a run's retries (issue 17).
_UNREACHABLE = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
}


def _unreachable_cause(exc: BaseException) -> str | None:
    """Why a connection could not even be opened ("connection refused", "unknown host"), or
    None for a failure worth retrying (reset, timeout, a dropped keep-alive connection)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NameResolutionError):
            return "unknown host"
        if isinstance(seen, OSError) and seen.errno in _UNREACHABLE:
            return _UNREACHABLE[seen.errno]
        reason = getattr(seen, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        seen = (
            nested
            or seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )
    return None


@contextmanager
def _connection_errors(
    url: str, what: str, timeout: tuple[float, float], setting: str | None
) -> Iterator[None]:
    """Connection-level failures become :class:`ServerError`, or :class:`Unreachable` (naming
    ``setting``, the variable holding the address) when the server cannot be reached at all."""
    try:
        yield
    except requests.Timeout:
        raise ServerError(f"{what}: timed out after {timeout[1]:g} s") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        cause = _unreachable_cause(exc)
        if cause is not None:
            parts = urlsplit(url)
            check = f": check {setting}" if setting else ""
            raise Unreachable(
                f"{what}: cannot connect to {parts.scheme}://{parts.netloc} ({cause}){check}"
            ) from None
        raise ServerError(f"{what}: connection failed ({exc.__class__.__name__})") from None


def send(
    method: str,
    url: str,
    what: str,
    timeout: tuple[float, float],
    setting: str | None = None,
    **kwargs: object,
) -> requests.Response:
    """One request (see :func:`_connection_errors` for what its failures become)."""
    with _connection_errors(url, what, timeout, setting):
        return session().request(method, url, timeout=timeout, **kwargs)  # type: ignore[arg-type]


def fetch(
    method: str,
    url: str,
    what: str,
    timeout: tuple[float, float],
    setting: str | None = None,
    **kwargs: Any,
) -> tuple[requests.Response, bytes]:
    """:func:`send`, and the body read in one piece (whatever the status: reading it to the end
    hands the connection back to the pool). requests' ``content`` reads a body in 10 KB pieces,
    each through urllib3's generators and its own: about a tenth of the client's CPU per
    50-record page (issue 16). A body cut short fails as in :func:`send`."""
    response = send(method, url, what, timeout, setting, stream=True, **kwargs)
    with _connection_errors(url, what, timeout, setting):
        return response, b"".join(response.iter_content(chunk_size=None))


def timeouts(read_seconds: float) -> tuple[float, float]:
    """(connect, read): connecting should be quick even when an answer may take long."""
    return (min(10.0, read_seconds), read_seconds)


def retrying(
    settings: Settings,
    on_retry: Callable[[BaseException, float], None] | None = None,
    attempts: int | None = None,
) -> Retrying:
    """A tenacity policy: transient errors only, at most HTTP_MAX_ATTEMPTS tries, Retry-After
    honoured up to RETRY_AFTER_CAP_SECONDS, else exponential backoff from HTTP_BACKOFF_SECONDS
    with as much jitter (``attempts``: fewer tries than HTTP_MAX_ATTEMPTS). Never
    :class:`RefreshBlocked`: a failed refresh cycle already made its own retries, and repeating
    it per request attempt is the storm of issue 13, item 3."""
    start = settings.http_backoff_seconds
    tries = settings.http_max_attempts
    backoff = wait_exponential_jitter(multiplier=start, max=30.0, jitter=start)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, settings.retry_after_cap_seconds)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and exc is not None:
            on_retry(exc, state.upcoming_sleep)

    return Retrying(
        # Unreachable: a refused connection is refused again a second later (issue 17).
        retry=retry_if_exception_type(TransientError)
        & retry_if_not_exception_type((Unreachable, RefreshBlocked)),
        stop=stop_after_attempt(min(attempts or tries, tries)),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
