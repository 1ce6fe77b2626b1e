"""The shared rate budget (issue 15, item 4): at most ``API_RATE_LIMIT`` requests a second per
org and per OAuth client, whichever process or machine sends them.

A token bucket per org and per client. Each request takes one token from both at once, or none
(then it waits as long as the emptier bucket needs to hold one again). With a Redis broker the
buckets live in that Redis and one Lua script reads, refills and takes atomically, against
Redis's own clock: no lock per request, and every worker on every machine draws on the same
buckets. With another broker each process keeps its own buckets (the limit then holds per
process, not across them: README says so).

A bucket holds at most ``CAPACITY`` token, so in any one second at most ``API_RATE_LIMIT +
CAPACITY`` requests go out: the stated burst. A 429 from the API halves the bucket's rate
(multiplicative decrease, never below ``MIN_FACTOR`` of the limit) and empties it for the
Retry-After, so every process holds back at once; the rate then grows back by
``RECOVERY_PER_SECOND`` of the limit each second (additive increase). Requests wait for the
budget; they never fail for it.

This is a gate the API client passes through right before each request (worker/source/api.py),
separate from the per-run concurrency throttle, so the two compose.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.settings import Settings
from worker.errors import ServerError
from worker.logs import safe_url

# redis-py costs a sync about 35 ms of start-up (issue 16, target 2): imported by the one budget
# that uses it, when API_RATE_LIMIT is set and the broker is Redis.
if TYPE_CHECKING:
    import redis

CAPACITY = 1.0  # tokens a bucket holds: the burst above the limit in any one second
MIN_FACTOR = 0.1  # a run of 429s never slows a bucket below a tenth of the limit
RECOVERY_PER_SECOND = 0.05  # after a 429, the rate grows back by 5 % of the limit a second
IDLE_SECONDS = 3600  # a bucket nobody used for this long is dropped (Redis EXPIRE)
KEY_PREFIX = "rrsync:budget:"

# KEYS: the buckets; ARGV: rate, capacity, recovery per second, min factor, idle TTL, and the
# pause after a 429 in seconds ("" to take a token instead). Returns the seconds to wait as a
# string (a Lua number would be truncated to an integer), "0" when a token was taken.
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local recovery, floor, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local pause = tonumber(ARGV[6])
local tokens, factors = {}, {}
local wait = 0
for i, key in ipairs(KEYS) do
  local saved = redis.call('HMGET', key, 'tokens', 'at', 'factor')
  local at = tonumber(saved[2]) or now
  local elapsed = math.max(0, now - at)
  local factor = math.min(1, (tonumber(saved[3]) or 1) + elapsed * recovery)
  local level = math.min(capacity, (tonumber(saved[1]) or capacity) + elapsed * rate * factor)
  if pause then
    factor = math.max(floor, factor / 2)
    level = math.min(level, 0) - pause * rate * factor
  elseif level < 1 then
    wait = math.max(wait, (1 - level) / (rate * factor))
  end
  tokens[i], factors[i] = level, factor
end
for i, key in ipairs(KEYS) do
  local level = tokens[i]
  if not pause and wait == 0 then level = level - 1 end
  redis.call('HSET', key, 'tokens', tostring(level), 'at', tostring(now),
             'factor', tostring(factors[i]))
  redis.call('EXPIRE', key, ttl)
end
return tostring(wait)
"""


class RateBudget(ABC):
    """What the API client needs: wait for a request's turn; report a 429."""

    @abstractmethod
    def take(self) -> float:
        """Take a request's token: 0.0 when taken, else the seconds until one may be."""

    @abstractmethod
    def rate_limited(self, retry_after: float) -> None:
        """The API answered 429: shrink the rate, and pause for ``retry_after`` seconds."""

    def wait(self) -> None:
        """Block until this request's token is taken (a run waits; it never fails for it)."""
        while (delay := self.take()) > 0:
            time.sleep(delay)


class Unlimited(RateBudget):
    """API_RATE_LIMIT=0: no shared limit (the per-run throttle still reacts to 429s)."""

    def take(self) -> float:
        return 0.0

    def rate_limited(self, retry_after: float) -> None:
        return None


@dataclass
class _Bucket:
    tokens: float
    at: float
    factor: float = 1.0


class LocalBudget(RateBudget):
    """The fallback when the broker is not Redis: the same buckets, kept in this process and
    shared by every client in it (module-level ``_local``)."""

    def __init__(self, keys: tuple[str, ...], rate: float) -> None:
        self.keys = keys
        self.rate = rate

    def take(self) -> float:
        return self._step(None)

    def rate_limited(self, retry_after: float) -> None:
        self._step(retry_after)

    def _step(self, pause: float | None) -> float:
        """The Lua script's algorithm, under this process's lock."""
        with _local_lock:
            now = time.monotonic()
            buckets = [_local.setdefault(key, _Bucket(CAPACITY, now)) for key in self.keys]
            wait = 0.0
            for bucket in buckets:
                elapsed = max(0.0, now - bucket.at)
                bucket.factor = min(1.0, bucket.factor + elapsed * RECOVERY_PER_SECOND)
                rate = self.rate * bucket.factor
                bucket.tokens = min(CAPACITY, bucket.tokens + elapsed * rate)
                bucket.at = now
                if pause is not None:
                    bucket.factor = max(MIN_FACTOR, bucket.factor / 2)
                    bucket.tokens = min(bucket.tokens, 0.0) - pause * self.rate * bucket.factor
                elif bucket.tokens < 1:
                    wait = max(wait, (1 - bucket.tokens) / rate)
            if pause is None and wait == 0:
                for bucket in buckets:
                    bucket.tokens -= 1
            return wait


_local: dict[str, _Bucket] = {}
_local_lock = threading.Lock()


class RedisBudget(RateBudget):
    """The buckets in the broker's Redis, shared by every process and machine."""

    def __init__(self, url: str, keys: tuple[str, ...], rate: float) -> None:
        self.url = url
        self.keys = [KEY_PREFIX + key for key in keys]
        self.rate = rate
        self._script = _client(url).register_script(_SCRIPT)

    def take(self) -> float:
        return self._call("")

    def rate_limited(self, retry_after: float) -> None:
        self._call(repr(retry_after))

    def _call(self, pause: str) -> float:
        import redis

        arguments: list[str | float] = [
            self.rate,
            CAPACITY,
            RECOVERY_PER_SECOND,
            MIN_FACTOR,
            IDLE_SECONDS,
            pause,
        ]
        try:
            return float(self._script(keys=self.keys, args=arguments))
        except redis.RedisError as exc:
            raise ServerError(
                f"API_RATE_LIMIT: the rate budget in the broker's Redis at {safe_url(self.url)} "
                f"failed ({exc.__class__.__name__}); the request is retried"
            ) from None


_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    """One connection pool per process and URL (a pool must not cross a fork)."""
    key = (os.getpid(), url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import redis

            client = _clients[key] = redis.Redis.from_url(url)
        return client


def budget_for(settings: Settings, org: str) -> RateBudget:
    """The budget a client reading ``org`` draws on: that org's bucket and the client's."""
    if not settings.api_rate_limit:
        return Unlimited()
    keys = (f"client:{settings.client_id or 'none'}", f"org:{org}")
    if settings.celery_broker_url.startswith(("redis://", "rediss://")):
        return RedisBudget(settings.celery_broker_url, keys, settings.api_rate_limit)
    return LocalBudget(keys, settings.api_rate_limit)
