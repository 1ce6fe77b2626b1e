"""worker/source/keyset.py over real HTTP: the end of a slice is an empty page or its total
reached, never a page shorter than asked for (an API may clamp the page size: issue 12)."""

from __future__ import annotations

from pathlib import Path

from tests.support import make_world
from worker.simulator import SimulatorConfig
from worker.source.api import RoseRocketClient
from worker.source.keyset import KeysetPager


def test_a_clamped_page_is_not_the_end(sqlite_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=300, max_limit=50, oversize_limit="clamp")
    with make_world(sqlite_url, tmp_path, config) as world:
        client = RoseRocketClient(world.settings, world.store)
        pager = KeysetPager(client, world.settings.registry["orders"], 200, concurrency=3)
        slices, first = pager.plan(None)
        assert len(first.records) == 50  # asked for 200
        delivered = [
            r.id
            for part in slices
            for chunk in pager.read(part, first if part.index == 0 else None)
            for r in chunk.records
        ]
        delivered += [r.id for chunk in pager.follow_up() for r in chunk.records]
        assert set(delivered) == {r["id"] for r in world.dump("orders")}
