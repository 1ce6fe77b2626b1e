"""worker/source/budget.py: the shared rate budget (issue 15, item 4), on the broker's real
Redis (one Lua script) and in-process when the broker is not Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from worker.source import budget
from worker.source.budget import CAPACITY, LocalBudget, RateBudget, RedisBudget, budget_for

RATE = 20.0


@pytest.fixture(params=["redis", "local"])
def make_budget(
    request: pytest.FixtureRequest,
) -> Callable[[tuple[str, ...]], RateBudget]:
    if request.param == "local":
        budget._local.clear()
        return lambda keys: LocalBudget(keys, RATE)
    url = str(request.getfixturevalue("redis_url"))
    return lambda keys: RedisBudget(url, keys, RATE)


def test_a_full_bucket_lets_one_request_through_then_paces(
    make_budget: Callable[[tuple[str, ...]], RateBudget],
) -> None:
    paced = make_budget(("client:c", "org:a"))
    assert CAPACITY == 1.0
    assert paced.take() == 0.0
    delay = paced.take()
    assert 0 < delay <= 1 / RATE  # the next token, at 20 a second


def test_the_client_bucket_is_shared_between_orgs(
    make_budget: Callable[[tuple[str, ...]], RateBudget],
) -> None:
    assert make_budget(("client:c", "org:a")).take() == 0.0
    assert make_budget(("client:c", "org:b")).take() > 0  # same client: it waits
    assert make_budget(("client:other", "org:b")).take() == 0.0  # another client, org b


def test_a_429_pauses_and_halves_the_rate(
    make_budget: Callable[[tuple[str, ...]], RateBudget],
) -> None:
    paced = make_budget(("client:c", "org:a"))
    paced.rate_limited(2.0)
    delay = paced.take()
    # emptied for the Retry-After, then one token at half the rate
    assert delay >= 2.0 + 1 / RATE
    assert make_budget(("client:c", "org:z")).take() >= 2.0  # the client's bucket too


def test_budget_for_picks_by_setting_and_broker(redis_url: str, tmp_path: Path) -> None:
    assert budget_for(Settings(), "a").take() == 0.0  # API_RATE_LIMIT=0: unlimited
    on_redis = budget_for(Settings(api_rate_limit=5, celery_broker_url=redis_url), "a")
    assert isinstance(on_redis, RedisBudget)
    broker = f"sqla+sqlite:///{tmp_path / 'b.db'}"
    assert isinstance(
        budget_for(Settings(api_rate_limit=5, celery_broker_url=broker), "a"), LocalBudget
    )


def test_processes_share_the_redis_budget(redis_url: str) -> None:
    """Two processes, four threads each, 2 s: together they take at most the tokens the
    bucket allows (capacity + rate x elapsed, by Redis's clock)."""
    code = (
        "import sys, threading, time\n"
        "from worker.source.budget import RedisBudget\n"
        f"b = RedisBudget({redis_url!r}, ('client:p', 'org:p'), {RATE})\n"
        "n = [0]; lock = threading.Lock(); end = time.monotonic() + 2.0\n"
        "def run():\n"
        "    while time.monotonic() < end:\n"
        "        if b.take() == 0.0:\n"
        "            with lock: n[0] += 1\n"
        "ts = [threading.Thread(target=run) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(n[0])\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    taken = sum(int(child.communicate(timeout=60)[0]) for child in children)
    # each ran 2 s, the start-ups overlapping or not: at most 4 s of tokens between them
    # (unlimited, each thread would take millions)
    assert 0 < taken <= CAPACITY + RATE * 4
