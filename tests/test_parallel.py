"""What lets `make test` run the suite in pytest-xdist processes (DEVELOPERS.md, "What make test
runs"): no two processes get the same port or Redis database."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import REDIS_CLAIM
from tests.support import free_port


def test_each_xdist_worker_draws_ports_from_a_slice_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    for worker, low in (("gw0", 20_000), ("gw1", 23_000), ("gw3", 29_000)):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        assert all(low <= free_port() < low + 3_000 for _ in range(50))


def test_a_redis_database_stays_claimed_while_its_test_runs(redis_url: str) -> None:
    server, index = redis_url.rsplit("/", 1)
    claims = redis.Redis.from_url(f"{server}/0")
    try:
        assert claims.get(REDIS_CLAIM.format(index)) is not None
        # what the fixture of a test starting now tries first: taken, so it goes on to the next
        assert not claims.set(REDIS_CLAIM.format(index), "another test", nx=True)
    finally:
        claims.close()
