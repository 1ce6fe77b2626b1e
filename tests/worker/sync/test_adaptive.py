"""Adaptive concurrency in a real sync (issue 16, target 3): against the simulator with latency
on every request, a run raises the number of requests in flight above SYNC_CONCURRENCY, and
halves it when the API answers 429; the warehouse still ends equal to the source.

The assertions are on the controller's decisions, which the run returns, never on time.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import assert_matches_source, make_world
from worker.simulator import FaultRule, SimulatorConfig
from worker.source.concurrency import Decision
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource

# 50 records a page (the documented profile): 2,500 orders are 50 pages
CONFIG = SimulatorConfig(records=0, records_by_resource={"orders": 2500}, profile="documented")
LATENCY = FaultRule(kind="latency", latency=0.05)


def test_a_sync_raises_concurrency_while_latency_dominates(sqlite_url: str, tmp_path: Path) -> None:
    with make_world(sqlite_url, tmp_path, CONFIG, SYNC_CONCURRENCY="2") as world:
        world.sim.set_faults(LATENCY)
        result = sync_resource(world.settings, world.engine, world.store, REGISTRY["orders"])
        assert result.ok, result.run.error
        summary = result.concurrency
        assert summary is not None and summary.start == 2
        assert summary.highest > 2
        assert summary.decisions[0] == Decision(2, 4, "slow start")
        assert all(d.after <= world.settings.sync_max_concurrency for d in summary.decisions)
        assert_matches_source(world, "orders")


def test_a_sync_halves_concurrency_on_429(sqlite_url: str, tmp_path: Path) -> None:
    with make_world(sqlite_url, tmp_path, CONFIG, SYNC_CONCURRENCY="4") as world:
        # latency throughout; after 30 requests, three answered 429 (and retried)
        world.sim.set_faults(
            FaultRule(kind="status", status=429, retry_after=0.05, after=30, count=3), LATENCY
        )
        result = sync_resource(world.settings, world.engine, world.store, REGISTRY["orders"])
        assert result.ok, result.run.error
        assert result.run.rate_limited == 3
        summary = result.concurrency
        assert summary is not None
        cuts = [d for d in summary.decisions if d.reason == "rate limited"]
        assert cuts
        assert all(d.after == max(1, d.before // 2) for d in cuts)
        assert_matches_source(world, "orders")
