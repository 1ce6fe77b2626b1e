"""Fault injection: the failures a real network, proxy or multi-tenant API throws at a client.

A `FaultRule` says what goes wrong and when; a `FaultInjector` holds the active rules and decides,
per request, which one fires. Decisions use a seeded `random.Random` so a failing run can be
replayed exactly.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# echo: a 400 whose message quotes the request's Authorization header, as careless APIs do
# (issue 13, item 1: the token then reached rosesync's output and run table)
FAULT_KINDS = ("status", "unauthorized", "malformed", "truncate", "drop", "latency", "echo")


@dataclass(frozen=True)
class FaultRule:
    """One kind of failure and the requests it hits.

    Firing: the first `after` matching requests pass untouched; then the rule fires on every
    `every`-th matching request if `every` > 0, else with probability `rate` if `rate` > 0, else on
    every matching request; never more than `count` times when `count` is set.
    """

    kind: str
    status: int = 500
    retry_after: float = 1.0
    rate: float = 0.0
    every: int = 0
    after: int = 0
    count: int | None = None
    latency: float = 0.0
    path_prefix: str = "/api/"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("a status fault needs a 4xx or 5xx status")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        if self.every < 0 or self.after < 0 or (self.count is not None and self.count < 0):
            raise ValueError("every, after and count must be >= 0")
        if self.retry_after < 0 or self.latency < 0:
            raise ValueError("retry_after and latency must be >= 0")
        if not self.path_prefix.startswith("/"):
            raise ValueError("path_prefix must start with '/'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its JSON form (the admin endpoint), checking names and types."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown fault rule fields {unknown}")
        for name, value in data.items():
            _check_type(name, value)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(name: str, value: Any) -> None:
    # JSON gives us int/float/str/bool/None; bool is an int subclass, so reject it explicitly.
    numbers = {"retry_after", "rate", "latency"}
    integers = {"status", "every", "after", "count"}
    if isinstance(value, bool):
        ok = False
    elif name in numbers:
        ok = isinstance(value, int | float)
    elif name in integers:
        ok = isinstance(value, int) or (name == "count" and value is None)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"fault rule field {name!r} has the wrong type")


@dataclass(frozen=True)
class Decision:
    """What the injector decided for one request."""

    latency: float  # seconds to wait before answering (sum of the latency rules that fired)
    rule: FaultRule | None  # the non-latency rule that fired, if any
    fired: tuple[str, ...]  # kinds of every rule that fired, for the counters


class _RuleState:
    def __init__(self, rule: FaultRule) -> None:
        self.rule = rule
        self.seen = 0
        self.fired = 0

    def observe(self, rng: random.Random) -> bool:
        rule = self.rule
        self.seen += 1
        position = self.seen - rule.after  # 1-based among the requests after the grace period
        if position < 1 or (rule.count is not None and self.fired >= rule.count):
            return False
        if rule.every > 0:
            fires = position % rule.every == 0
        elif rule.rate > 0:
            fires = rng.random() < rule.rate
        else:
            fires = True
        if fires:
            self.fired += 1
        return fires


class FaultInjector:
    """The active fault rules, replaceable at runtime from any thread."""

    def __init__(self, rules: Iterable[FaultRule], seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"faults:{seed}")
        self._states = [_RuleState(rule) for rule in rules]

    def set(self, rules: Iterable[FaultRule]) -> None:
        """Replace every rule; the new ones start with fresh `after`/`every`/`count` state."""
        states = [_RuleState(rule) for rule in rules]
        with self._lock:
            self._states = states

    def rules(self) -> tuple[FaultRule, ...]:
        with self._lock:
            return tuple(state.rule for state in self._states)

    def decide(self, path: str) -> Decision:
        """Consult the rules in order for a request to `path`.

        Latency rules add up and let the request go on to the next rules; the first other rule
        that fires decides the outcome and the rules after it do not see the request (so their
        `after`/`every`/`count` bookkeeping is not consumed by requests that already failed).
        """
        latency = 0.0
        fired: list[str] = []
        with self._lock:
            for state in self._states:
                if not path.startswith(state.rule.path_prefix) or not state.observe(self._rng):
                    continue
                fired.append(state.rule.kind)
                if state.rule.kind == "latency":
                    latency += state.rule.latency
                else:
                    return Decision(latency, state.rule, tuple(fired))
        return Decision(latency, None, tuple(fired))
