"""worker/sync/strategy.py through whole runs: probed on first use and stored, keyset where the
API proves it and sweep where it does not, probed again when the API changes under a run, a
missing endpoint reported and skipped, and no record lost to an API that clamps its pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import World, assert_matches_source, make_world, warehouse_rows
from worker.errors import EndpointMissing
from worker.simulator import RESOURCES, SimulatorConfig
from worker.sync.run import SyncResult, sync_resource, sync_resources
from worker.sync.strategy import known_paging

SMALL_PAGES = {"SYNC_PAGE_SIZE": "40", "SYNC_CONCURRENCY": "4"}


def sync(world: World, resource: str, full: bool = False) -> SyncResult:
    registry = world.settings.registry
    return sync_resource(world.settings, world.engine, world.store, registry[resource], full=full)


def test_the_first_run_probes_and_the_choice_is_stored(
    database_url: str, api_profile: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=200, profile=api_profile)
    with make_world(database_url, tmp_path, config) as world:
        first = sync(world, "orders")
        assert first.ok, first.run.error
        orders = [world.settings.registry["orders"]]
        paging = known_paging(world.settings, world.engine, orders, "default")["orders"]
        assert paging is not None
        expected = "sweep" if world.sim.config.documented else "keyset"
        assert paging.strategy == expected, paging.reason
        assert paging.page_size == 50
        probed_at = paging.capabilities.probed_at
        second = sync(world, "orders")
        assert second.ok and second.run.requests < first.run.requests
        again = known_paging(world.settings, world.engine, orders, "default")["orders"]
        assert again is not None and again.capabilities.probed_at == probed_at  # not re-probed
        assert_matches_source(world, "orders")


def test_an_api_that_stops_honouring_its_probe_is_probed_again_mid_run(
    database_url: str, tmp_path: Path
) -> None:
    with make_world(database_url, tmp_path, SimulatorConfig(records=300)) as world:
        assert sync(world, "orders").ok
        # The API now ignores updated_* and lists newest-created first: the incremental keyset
        # read sees records out of order, probes again and sweeps instead, in the same run.
        world.sim.change_api(profile="documented")
        world.sim.mutate(15, resource="orders")
        result = sync(world, "orders")
        assert result.ok, result.run.error
        registry = world.settings.registry
        paging = known_paging(world.settings, world.engine, [registry["orders"]], "default")
        assert paging["orders"] is not None and paging["orders"].strategy == "sweep"
        assert_matches_source(world, "orders")


def test_a_missing_endpoint_is_reported_by_name_and_the_rest_sync(
    database_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=60, profile="documented")
    with make_world(database_url, tmp_path, config) as world:
        registry = world.settings.registry
        results = sync_resources(
            world.settings, world.engine, world.store, [registry[name] for name in RESOURCES]
        )
        outcome = {r.run.resource: r for r in results}
        assert set(outcome) == set(RESOURCES)  # the missing one did not stop the others
        invoices = outcome.pop("invoices")
        assert invoices.run.status == "failed" and isinstance(invoices.error, EndpointMissing)
        assert "invoices:" in (invoices.run.error or "")
        assert "SYNC_ENDPOINTS=invoices=" in (invoices.run.error or "")
        assert all(r.ok for r in outcome.values())
        for name in outcome:
            assert_matches_source(world, name)


def test_sync_endpoints_points_a_resource_elsewhere(database_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=60)
    wrong = {"SYNC_ENDPOINTS": "partners=/api/v1/partners"}
    with make_world(database_url, tmp_path / "wrong", config, **wrong) as world:
        result = sync(world, "partners")
        assert isinstance(result.error, EndpointMissing)
        assert "/api/v1/partners" in (result.run.error or "")
    right = {"SYNC_ENDPOINTS": "partners=/api/v1/partner_carriers:partner_carriers:partner_carrier"}
    with make_world(database_url, tmp_path / "right", config, **right) as world:
        assert sync(world, "partners").ok
        assert_matches_source(world, "partners")


@pytest.mark.parametrize("oversize", ["clamp", "reject"])
def test_an_api_that_clamps_pages_to_50_loses_nothing(
    database_url: str, api_profile: str, tmp_path: Path, oversize: str
) -> None:
    """rosesync asks for 200 a page; the API gives (or accepts) 50 at most."""
    config = SimulatorConfig(
        records=500, profile=api_profile, max_limit=50, oversize_limit=oversize
    )
    with make_world(database_url, tmp_path, config, SYNC_PAGE_SIZE="200") as world:
        for full in (True, False):
            result = sync(world, "orders", full=full)
            assert result.ok, result.run.error
        assert_matches_source(world, "orders")


def test_between_sweeps_a_created_window_picks_up_new_records(
    database_url: str, tmp_path: Path
) -> None:
    config = SimulatorConfig(records=300, profile="documented")
    interval = {"SYNC_SWEEP_INTERVAL_SECONDS": "3600", **SMALL_PAGES}
    with make_world(database_url, tmp_path, config, **interval) as world:
        assert sync(world, "orders").ok  # the first run sweeps
        before = {r["id"] for r in world.dump("orders")}
        created: set[str] = set()
        while len(created) < 3:
            world.sim.mutate(5, resource="orders")
            created = {r["id"] for r in world.dump("orders")} - before
        window = sync(world, "orders")
        assert window.ok, window.run.error
        assert window.run.requests <= 3  # the orders created since the sweep: one page
        assert created <= set(warehouse_rows(world.engine, "orders"))
        # customers have no created filter: every run is a whole sweep
        assert sync(world, "customers").ok
        again = sync(world, "customers")
        assert again.run.records >= 300
        full = sync(world, "orders", full=True)  # a sweep: updates and deletions too
        assert full.ok
        assert_matches_source(world, "orders")
