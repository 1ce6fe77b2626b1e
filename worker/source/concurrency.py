"""How many requests one resource's fetchers keep in flight, decided as the run goes (issue 16).

On the documented API (50 records a page) a sync is thousands of requests, and at 100-300 ms
each the wall time is set by how many are in flight, not by the database. No fixed number fits:
a distant API wants many, a local one gains nothing past two (the fetchers then only contend for
the GIL), and a rate-limited one wants fewer. So the limit is a hill climb on the measured
throughput, with multiplicative decrease:

* it starts at SYNC_CONCURRENCY and, after each *window* (``2 x limit`` completed requests, at
  least :data:`MIN_WINDOW`), compares the window's throughput (requests per second) and median
  latency with what it has seen;
* *slow start* (as TCP's): while each step pays in proportion, it doubles the limit (never
  past SYNC_MAX_CONCURRENCY), so 2 -> 4 -> 8 takes two windows, not six (issue 16: at 100 ms a
  request the one-step climb cost about a second of an 18 s run, and a noisy window at 7 could
  stop it short of 8 for seconds). A doubling must raise throughput by :data:`SLOW_START_GAIN`
  (proportional would be 2x); one that raised it by less than :data:`GAIN` is undone, and one
  in between is kept. Either way slow start ends there, as it does at the maximum or on
  anything below that cuts the limit; it never comes back in that run;
* then it *probes* one step up and keeps the step only if throughput grew by :data:`GAIN`,
  which happens while latency dominates: one more request in flight is one more request per
  latency period. When it did not grow, the step is undone and the limit *holds* for
  :data:`HOLD_WINDOWS` windows before probing again;
* a 429 halves the limit at once (once per window: the requests already in flight may answer
  429 too), and a median latency :data:`LATENCY_RISE` times the best seen (the API is
  queueing) steps it down.

:class:`ConcurrencyController` is the pure decision logic (time is passed in, so it is tested
without sleeping); :class:`Throttle` in worker/source/api.py applies it to the requests. The
controller decides how many requests are in flight; how fast they may start (a rate budget,
Retry-After) is decided elsewhere, and time spent waiting for that counts as latency here,
which is right: more requests in flight would only wait longer.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

MIN_WINDOW: Final = 4  # completed requests; fewer make throughput mostly noise
GAIN: Final = 1.10  # a probe step stays when throughput grew by 10%
# Slow start goes on while a doubling raised throughput by half: proportional is 2x, and a window
# of a dozen requests is noisy enough (10-20% on a loaded machine) that a 10% test would end it
# by chance, which the additive probes then take seconds to make up.
SLOW_START_GAIN: Final = 1.5
LATENCY_RISE: Final = 1.5  # median latency this many times the best window's: step down
HOLD_WINDOWS: Final = 8  # windows without probing after a step down

Reason = Literal["slow start", "probe", "no gain", "rate limited", "latency rose"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One change of the limit and why, for the tests, the logs and the benchmark."""

    before: int
    after: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run's controller did: where it started, what it settled on, every change."""

    start: int
    settled: int
    decisions: tuple[Decision, ...]

    @property
    def highest(self) -> int:
        return max([self.start, *(d.after for d in self.decisions)])


@dataclass
class ConcurrencyController:
    """The limit on requests in flight; feed it every finished request with :meth:`observe`."""

    start: int
    maximum: int
    limit: int = field(init=False)
    decisions: list[Decision] = field(default_factory=list, init=False)
    completed_at: Counter[int] = field(default_factory=Counter, init=False)  # limit -> requests
    _latencies: list[float] = field(default_factory=list, init=False)
    _window_start: float | None = field(default=None, init=False)
    _best_latency: float | None = field(default=None, init=False)
    _rate_before_probe: float | None = field(default=None, init=False)  # set while probing
    _limit_before_probe: int = field(default=0, init=False)  # where a step that fails goes back
    _slow_start: bool = field(default=True, init=False)
    _hold: int = field(default=0, init=False)
    _cut_this_window: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.maximum:
            raise ValueError(f"start {self.start} must be within 1..maximum {self.maximum}")
        self.limit = self.start

    @property
    def settled(self) -> int:
        """The limit most requests completed under: what the run settled on."""
        if not self.completed_at:
            return self.limit
        return max(self.completed_at, key=lambda limit: (self.completed_at[limit], limit))

    def summary(self) -> Summary:
        return Summary(self.start, self.settled, tuple(self.decisions))

    def observe(self, started: float, finished: float, rate_limited: bool = False) -> None:
        """A request that was sent at ``started`` and answered at ``finished`` (monotonic
        seconds); ``rate_limited``: it was answered 429."""
        if rate_limited:
            if not self._cut_this_window:
                self._cut_this_window = True
                self._decide(max(1, self.limit // 2), "rate limited")
            return
        self.completed_at[self.limit] += 1
        if self._window_start is None:
            self._window_start = started
        self._latencies.append(finished - started)
        if len(self._latencies) >= max(MIN_WINDOW, 2 * self.limit):
            self._end_window(finished)

    def _end_window(self, now: float) -> None:
        assert self._window_start is not None
        rate = len(self._latencies) / max(now - self._window_start, 1e-6)
        latency = statistics.median(self._latencies)
        best = latency if self._best_latency is None else min(self._best_latency, latency)
        self._best_latency = best
        probed_from = self._rate_before_probe
        self._cut_this_window = False
        if probed_from is not None and rate < GAIN * probed_from:
            # undone whole, before looking at latency: a doubling that bought nothing would
            # otherwise only come down one step at a time
            self._decide(self._limit_before_probe, "no gain")
        elif latency > LATENCY_RISE * best and self.limit > 1:
            self._decide(self.limit - 1, "latency rose")
        elif self._hold > 0:
            self._hold -= 1
            self._new_window()
        elif self.limit >= self.maximum:
            self._slow_start = False
            self._new_window()
        else:
            if probed_from is not None and rate < SLOW_START_GAIN * probed_from:
                self._slow_start = False  # it paid, but less than in proportion: nearly there
            slow_start = self._slow_start
            step = self.limit if slow_start else 1
            before = self.limit
            self._decide(min(self.maximum, before + step), "slow start" if slow_start else "probe")
            self._rate_before_probe, self._limit_before_probe = rate, before

    def _decide(self, limit: int, reason: Reason) -> None:
        if reason not in ("slow start", "probe"):
            self._hold = HOLD_WINDOWS
            self._slow_start = False
        if limit != self.limit:
            self.decisions.append(Decision(self.limit, limit, reason))
        self.limit = limit
        self._new_window()

    def _new_window(self) -> None:
        self._latencies = []
        self._window_start = None
        self._rate_before_probe = None
