"""The Rose Rocket data API client: bearer auth, retries, 401 -> refresh, one page per call.

A client serves one sync run of one resource and may be shared by its fetcher threads. It
counts what the run history records (requests, retries, 401s, 429s) and owns
the :class:`Throttle` through which every request passes, so that a 429 slows the whole
resource down rather than the one request that happened to receive it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

import msgspec
import requests

from config.settings import Settings
from worker.clock import format_timestamp
from worker.errors import ApiError, NotFound, Unauthorized
from worker.source import http
from worker.source.budget import budget_for
from worker.source.concurrency import ConcurrencyController
from worker.source.records import Decoder, Page, Record
from worker.source.resources import Resource

T = TypeVar("T")


class TokenSource(Protocol):
    """What the client needs from the credentials layer (``CredentialStore`` is one)."""

    refreshes: int  # token refreshes this source has made, for the run history
    org: str  # whose records its tokens read: the run stores them under this org (issue 15)

    def access_token(self) -> str: ...

    def refresh_after_401(self, rejected: str) -> str: ...


@dataclass
class RequestStats:
    """Counters for the run history; updated from several threads."""

    requests: int = 0
    retries: int = 0
    unauthorized: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "unauthorized": self.unauthorized,
                "rate_limited": self.rate_limited,
            }


class Throttle:
    """Shared pacing for one resource's concurrent requests: how many may be in flight, which
    :class:`~worker.source.concurrency.ConcurrencyController` decides from their latency,
    throughput and 429s (issue 16), and a pause of every fetcher until a 429's Retry-After has
    passed, so a rate-limited API sees the load drop at once."""

    def __init__(self, start: int, maximum: int) -> None:
        self.controller = ConcurrencyController(start, maximum)
        self._in_flight = 0
        self._resume_at = 0.0
        self._tickets = 0  # handed out, one per acquire
        self._serving = 0  # the ticket whose turn it is
        self._abandoned: set[int] = set()  # tickets given up while waiting
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        return self.controller.limit

    def acquire(self) -> float:
        """Wait for a slot, first come first served (so that the fetchers' parts advance
        evenly and finish together); returns when the request may start (monotonic seconds)."""
        with self._cond:
            ticket = self._tickets
            self._tickets += 1
            try:
                while True:
                    now = time.monotonic()
                    wait = self._resume_at - now
                    if wait <= 0 and ticket == self._serving and self._in_flight < self.limit:
                        self._in_flight += 1
                        self._next_turn()
                        return now
                    self._cond.wait(timeout=wait if wait > 0 else None)
            except BaseException:  # Ctrl-C while waiting: the tickets behind must not wait on
                if ticket == self._serving:
                    self._next_turn()
                else:
                    self._abandoned.add(ticket)
                raise

    def _next_turn(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def release(self, started: float, rate_limited_for: float | None = None) -> None:
        with self._cond:
            self._in_flight -= 1
            now = time.monotonic()
            self.controller.observe(started, now, rate_limited=rate_limited_for is not None)
            if rate_limited_for is not None:
                self._resume_at = max(self._resume_at, now + rate_limited_for)
            self._cond.notify_all()


class RoseRocketClient:
    def __init__(
        self, settings: Settings, tokens: TokenSource, concurrency: int | None = None
    ) -> None:
        """``concurrency``: a fixed number of requests in flight; by default it starts at
        SYNC_CONCURRENCY and adapts up to SYNC_MAX_CONCURRENCY (worker/source/concurrency.py)."""
        self.base_url = settings.api_url.rstrip("/")
        self.tokens = tokens
        self.timeout = http.timeouts(settings.http_timeout_seconds)
        self.stats = RequestStats()
        self.throttle = (
            Throttle(concurrency, concurrency)
            if concurrency is not None
            else Throttle(settings.sync_concurrency, settings.sync_max_concurrency)
        )
        # API_RATE_LIMIT, shared with every process reading the same org or client (issue 15)
        self.budget = budget_for(settings, tokens.org)
        self._decoders: dict[str, Decoder] = {}
        self._retrying = http.retrying(
            settings, on_retry=lambda _exc, _sleep: self.stats.add(retries=1)
        )

    def list_page(
        self,
        resource: Resource,
        *,
        offset: int = 0,
        limit: int,
        updated_start: datetime | None = None,
        updated_end: datetime | None = None,
        created_start: datetime | None = None,
    ) -> Page:
        """One page of ``resource``, in whatever order the API lists it, with the filters the
        caller knows the API honours (worker/source/probe.py finds out which it does)."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        for name, value in (
            ("updated_start_at", updated_start),
            ("updated_end_at", updated_end),
            ("created_start_at", created_start),
        ):
            if value is not None:
                params[name] = format_timestamp(value)
        what = f"{resource.name}: GET {self.base_url}{resource.endpoint}"
        decoder = self._decoder(resource)
        return self._get(resource.endpoint, params, what, lambda body: decoder.page(body, what))

    def get_record(self, resource: Resource, record_id: str) -> Record | None:
        """One record by id, or None when the API says it does not exist (404). Whether a 404
        means "deleted" is the caller's judgement: only once the probe has seen this route
        answer for a live id (an API without the route answers 404 for every id)."""
        path = f"{resource.endpoint}/{record_id}"
        what = f"{resource.name}: GET {self.base_url}{path}"
        decoder = self._decoder(resource)
        try:
            return self._get(path, {}, what, lambda body: decoder.item(body, what))
        except NotFound:
            return None

    def _decoder(self, resource: Resource) -> Decoder:
        decoder = self._decoders.get(resource.name)
        if decoder is None:
            decoder = self._decoders[resource.name] = Decoder(resource)
        return decoder

    def _get(
        self,
        path: str,
        params: dict[str, str | int],
        what: str,
        decode: Callable[[bytes], T],
    ) -> T:
        """Every GET goes through here. The body is decoded inside the retry: a truncated or
        malformed 200 (a proxy's error page, a connection cut mid-body) raises
        :class:`~worker.errors.MalformedResponse`, a transient error, and is fetched again
        like a 502 would be (issue 13, item 4)."""
        url = self.base_url + path
        for attempt in self._retrying:
            with attempt:
                return decode(self._attempt(url, params, what))
        raise AssertionError("tenacity reraises the last error")  # pragma: no cover

    def _attempt(self, url: str, params: dict[str, str | int], what: str) -> bytes:
        """One try: a 401 refreshes the token and re-sends once (seed step 7); a second 401
        in the same try is an :class:`Unauthorized` that tenacity may retry a bounded number of
        times, never a loop."""
        token = self.tokens.access_token()
        response, body = self._send(url, params, token, what)
        if response.status_code == 401:
            self.stats.add(unauthorized=1)
            token = self.tokens.refresh_after_401(token)
            response, body = self._send(url, params, token, what)
            if response.status_code == 401:
                self.stats.add(unauthorized=1)
                raise Unauthorized(
                    f"{what}: HTTP 401 even with a freshly refreshed token; check that the "
                    "OAuth client has API access to this organization (ROSEROCKET_ORG_ID)"
                )
        if response.status_code == 429:
            self.stats.add(rate_limited=1)
        http.raise_for_transient(response, what)
        if response.status_code == 404:
            raise NotFound(f"{what}: HTTP 404: {_message(response, body)}")
        if response.status_code >= 400:
            raise ApiError(f"{what}: HTTP {response.status_code}: {_message(response, body)}")
        return body

    def _send(
        self, url: str, params: dict[str, str | int], token: str, what: str
    ) -> tuple[requests.Response, bytes]:
        self.stats.add(requests=1)
        started = self.throttle.acquire()
        rate_limited_for: float | None = None
        try:
            # Last, right before the request: a token taken earlier could go out in a clump.
            self.budget.wait()
            response, body = http.fetch(
                "GET",
                url,
                what,
                self.timeout,
                "ROSEROCKET_API_URL",
                params=params,
                auth=http.BearerAuth(token),
            )
            if response.status_code == 429:
                rate_limited_for = http.retry_after(response) or 1.0
                self.budget.rate_limited(rate_limited_for)
            return response, body
        finally:
            self.throttle.release(started, rate_limited_for)


def _message(response: requests.Response, content: bytes) -> str:
    """The API's error as one short line, from either envelope Rose Rocket uses: the v1
    description's ``{error_code, error_message}`` or the platform's ``{statusCode, message,
    error}`` (whose ``message`` is a list for a 400)."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        body = None
    message: object = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error_message")
        if isinstance(message, list):
            message = "; ".join(str(m) for m in message)
        code = body.get("error_code")
        if message and isinstance(code, str) and code:
            message = f"{message} ({code})"
    text = str(message or response.reason or "no details")
    return " ".join(text.split())[:300]
