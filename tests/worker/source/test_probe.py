"""worker/source/probe.py over real HTTP: what each simulated API really does, observed with a
handful of requests, and the strategy that follows (keyset on the extended profile, sweep on the
documented one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import World, make_world
from worker.simulator import SimulatorConfig
from worker.source.api import RoseRocketClient
from worker.source.probe import Capabilities, Probe, choose
from worker.source.resources import REGISTRY


@pytest.fixture
def probe(sqlite_url: str, tmp_path: Path) -> Iterator[Any]:
    """``probe(resource, page_size=50, **simulator config)``: the resource's capabilities."""
    worlds: list[Any] = []

    def run(resource: str, page_size: int = 50, **config: Any) -> Capabilities:
        context = make_world(sqlite_url, tmp_path / str(len(worlds)), SimulatorConfig(**config))
        world: World = context.__enter__()
        worlds.append(context)
        client = RoseRocketClient(world.settings, world.store)
        return Probe(client, world.settings.registry[resource], page_size).run()

    yield run
    for context in worlds:
        context.__exit__(None, None, None)


def test_the_extended_api_proves_keyset_paging(probe: Any) -> None:
    found = probe("orders", page_size=200, records=300)
    assert found.exists and found.total and found.updated_filters and found.updated_order
    assert (found.page_size, found.start_inclusive, found.end_inclusive) == (200, True, False)
    assert found.created_filter and found.by_id
    assert found.conclusive and not found.stale
    assert found.requests <= 10  # a handful of small requests
    assert choose(found, "auto")[0] == "keyset"


def test_the_documented_api_gets_a_sweep_and_says_why(probe: Any) -> None:
    found = probe("orders", page_size=200, records=300, profile="documented")
    assert (found.page_size, found.total, found.updated_filters) == (50, True, False)
    assert found.updated_order is False and found.created_filter and found.by_id
    strategy, reason = choose(found, "auto")
    assert strategy == "sweep"
    assert "updated_start_at/updated_end_at are not honoured" in reason
    customers = probe("customers", records=30, profile="documented")
    assert customers.created_filter is False  # no date filter on customers


@pytest.mark.parametrize(
    ("config", "page_size"),
    [
        ({"max_limit": 50, "oversize_limit": "clamp"}, 50),  # clamped, the limit echoed
        ({"max_limit": 50, "oversize_limit": "reject"}, 50),  # refused with a 400: ask for less
        ({"profile": "documented", "oversize_limit": "reject"}, 50),
        ({"max_limit": 30, "oversize_limit": "clamp", "include_total": False}, 30),
    ],
)
def test_the_page_size_is_what_the_api_gives(
    probe: Any, config: dict[str, Any], page_size: int
) -> None:
    assert probe("orders", page_size=200, records=300, **config).page_size == page_size


def test_bounds_and_the_by_id_route_are_observed(probe: Any) -> None:
    assert probe("orders", records=200, end_inclusive=True).end_inclusive is True
    assert probe("orders", records=200, by_id=False).by_id is False


def test_a_missing_endpoint_is_reported(probe: Any) -> None:
    found = probe("invoices", profile="documented")
    assert not found.exists and found.conclusive
    assert "HTTP 404" in (found.message or "")
    assert found.endpoint == REGISTRY["invoices"].endpoint


def test_without_totals_or_records_the_probe_cannot_prove_keyset(probe: Any) -> None:
    no_total = probe("orders", records=120, include_total=False)
    assert no_total.total is False and choose(no_total, "auto")[0] == "sweep"
    empty = probe("orders", records_by_resource={"orders": 0})
    assert empty.exists and not empty.conclusive and empty.stale  # probed again next run
    assert choose(empty, "auto")[0] == "sweep"


def test_the_setting_overrides_the_choice(probe: Any) -> None:
    documented = probe("orders", records=60, profile="documented")
    assert choose(documented, "keyset") == ("keyset", "SYNC_STRATEGY=keyset")
    extended = probe("orders", records=60)
    assert choose(extended, "sweep") == ("sweep", "SYNC_STRATEGY=sweep")
