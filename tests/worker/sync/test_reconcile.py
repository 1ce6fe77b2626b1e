"""worker/sync/reconcile.py: deletions found without a change feed, and nothing live ever marked
deleted: counting the same range on both sides whatever the API's end bound (issue 13, item 2),
a 404 trusted only where the by-id route is proven (item 6), and under live changes and faults
on both API profiles (issue 12)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import World, assert_matches_source, make_world, warehouse_rows
from worker.clock import utcnow
from worker.simulator import FaultRule, SimulatorConfig
from worker.sync.run import SyncResult, sync_resource
from worker.warehouse.schema import resource_tables

SMALL_PAGES = {"SYNC_PAGE_SIZE": "40", "SYNC_CONCURRENCY": "4"}


def sync(world: World, resource: str, full: bool = False) -> SyncResult:
    registry = world.settings.registry
    return sync_resource(world.settings, world.engine, world.store, registry[resource], full=full)


def delete_some(world: World, resource: str, count: int) -> set[str]:
    ids = [r["id"] for r in world.dump(resource)[:: max(1, len(world.dump(resource)) // count)]]
    world.sim.delete(resource, ids[:count])
    return set(ids[:count])


def by_id_requests(world: World) -> int:
    return sum(n for key, n in world.sim.counters()["requests"].items() if "{id}" in key)


def test_an_inclusive_end_bound_is_counted_the_same_on_both_sides(
    database_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=600, end_inclusive=True)
    with make_world(database_url, tmp_path, config, **SMALL_PAGES) as world:
        assert sync(world, "orders", full=True).ok
        quiet = sync(world, "orders")
        # one page of the lookback window, one count: not the whole resource again
        assert quiet.ok and quiet.run.requests == 2 and quiet.run.records < 10
        gone = delete_some(world, "orders", 5)
        result = sync(world, "orders")
        assert result.ok, result.run.error
        assert result.run.deleted == len(gone)
        assert_matches_source(world, "orders")


def test_without_a_by_id_route_a_404_proves_nothing(database_url: str, tmp_path: Path) -> None:
    """The run's window holds a row the listing does not return (the warehouse's copy is
    stamped later than the source's). On an API without GET by id, fetching it answers 404
    like any unknown path: that must not mark a live record deleted."""
    config = SimulatorConfig(records=300, by_id=False)
    with make_world(database_url, tmp_path, config, **SMALL_PAGES) as world:
        assert sync(world, "orders", full=True).ok
        live = world.dump("orders")[0]["id"]
        table = resource_tables["orders"]
        with world.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.id == live)
                .values(
                    updated_at=utcnow() - timedelta(seconds=10),
                    synced_at=utcnow() - timedelta(days=1),
                )
            )
        gone = delete_some(world, "orders", 4)
        result = sync(world, "orders")
        assert result.ok, result.run.error
        assert result.run.deleted == 0  # unconfirmable: left to the next full sync
        assert by_id_requests(world) == 0
        assert warehouse_rows(world.engine, "orders")[live]["deleted_at"] is None
        full = sync(world, "orders", full=True)
        assert full.ok and full.run.deleted == len(gone)
        assert_matches_source(world, "orders")


def test_a_sweep_without_a_by_id_route_waits_for_a_second_sweep(
    database_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=200, profile="documented", by_id=False)
    with make_world(database_url, tmp_path, config, **SMALL_PAGES) as world:
        assert sync(world, "customers").ok
        gone = delete_some(world, "customers", 3)
        first = sync(world, "customers")
        assert first.ok and first.run.deleted == 0  # unseen once: could have moved
        second = sync(world, "customers")
        assert second.ok and second.run.deleted == len(gone)  # unseen by two complete sweeps
        assert by_id_requests(world) == 0
        assert_matches_source(world, "customers")


def test_any_answer_but_404_keeps_the_row(
    database_url: str, api_profile: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=200, profile=api_profile)
    with make_world(database_url, tmp_path, config, **SMALL_PAGES) as world:
        assert sync(world, "orders", full=True).ok
        gone = delete_some(world, "orders", 3)
        world.sim.set_faults(FaultRule(kind="status", status=403, path_prefix="/api/v1/orders/"))
        refused = sync(world, "orders")
        assert refused.ok and refused.run.deleted == 0
        rows = warehouse_rows(world.engine, "orders")
        assert all(rows[i]["deleted_at"] is None for i in gone)
        world.sim.set_faults()
        assert sync(world, "orders").run.deleted == len(gone)
        assert_matches_source(world, "orders")


@pytest.mark.soak
def test_live_changes_and_faults_lose_nothing_unchanged_and_delete_nothing_live(
    database_url: str, api_profile: str, tmp_path: Path, soak_seed: int
) -> None:
    """Issue 12's acceptance: while records are updated, created and deleted and the API
    fails now and then, every record that existed before a run and was not changed during it
    is in the warehouse after the run, and nothing marked deleted exists at the source."""
    config = SimulatorConfig(
        records=300, seed=soak_seed, mutation_per_request=2, profile=api_profile
    )
    faults = (
        FaultRule(kind="status", status=500, rate=0.03),
        FaultRule(kind="status", status=429, rate=0.03, retry_after=0.2),
        FaultRule(kind="drop", rate=0.02),
        FaultRule(kind="unauthorized", every=17),
    )
    pages = {"SYNC_PAGE_SIZE": "20", "SYNC_CONCURRENCY": "3"}
    with make_world(database_url, tmp_path, config, **pages) as world:
        world.sim.set_faults(*faults)
        for full in (True, False, False):
            for resource in ("orders", "customers"):
                before = _versions(world.dump(resource))
                result = sync(world, resource, full=full)
                assert result.ok, result.run.error
                after = _versions(world.dump(resource))
                unchanged = {i for i, v in before.items() if after.get(i) == v}
                rows = warehouse_rows(world.engine, resource)
                live = {i for i, row in rows.items() if row["deleted_at"] is None}
                assert unchanged <= live, f"{len(unchanged - live)} unchanged records missing"
                marked = set(rows) - live
                assert not marked & set(after), "a record that exists was marked deleted"
        world.sim.set_faults()
        world.sim.set_mutation(per_request=0)
        for resource in ("orders", "customers"):
            assert sync(world, resource).ok
            assert_matches_source(world, resource)


def _versions(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {r["id"]: (r["updated_at"], r["version"]) for r in records}
