"""worker/source/sweep.py over real HTTP: offset paging that loses nothing while the list shifts
under it (records deleted before the read position), on the documented API profile."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import World, make_world
from worker.simulator import SimulatorConfig
from worker.source import sweep as sweep_module
from worker.source.api import RoseRocketClient
from worker.source.chunks import Chunk
from worker.source.records import Page
from worker.source.resources import Resource
from worker.source.sweep import OVERLAP, PART_PAGES, Part, SweepPager


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    config = SimulatorConfig(records=200, profile="documented", max_limit=50)
    with make_world(sqlite_url, tmp_path, config) as w:
        yield w


class ShiftingClient(RoseRocketClient):
    """Calls ``before(offset)`` ahead of every list request and ``after(offset)`` once it is
    answered: where a test changes the list."""

    def __init__(self, world: World, before: Any, after: Any = None) -> None:
        super().__init__(world.settings, world.store)
        self.before = before
        self.after = after or (lambda _offset: None)
        self.offsets: list[int] = []

    def list_page(self, resource: Resource, **kwargs: Any) -> Page:
        offset = kwargs.get("offset", 0)
        self.before(offset)
        self.offsets.append(offset)
        page = super().list_page(resource, **kwargs)
        self.after(offset)
        return page


def sweep(pager: SweepPager) -> list[Chunk]:
    """Every part in turn on this thread, then the follow-up (what the run loop does)."""
    parts, first = pager.plan()
    chunks: list[Chunk] = []
    for part in parts:
        chunks += pager.read(part, first if part.index == 0 else None)
    return chunks + list(pager.follow_up())


def newest(world: World, count: int) -> list[str]:
    """The ids at the front of the documented list (newest created first)."""
    records = sorted(world.dump("orders"), key=lambda r: r["id"])
    records.sort(key=lambda r: r["created_at"], reverse=True)
    return [r["id"] for r in records[:count]]


def test_a_clamped_page_is_not_the_end(world: World) -> None:
    """The API gives 50 where 200 were asked: a short page, not the end (issue 12)."""
    pager = SweepPager(RoseRocketClient(world.settings, world.store), _orders(world), 200, 1)
    chunks = sweep(pager)
    delivered = {r.id for c in chunks for r in c.records}
    assert delivered == {r["id"] for r in world.dump("orders")}
    assert pager.complete


@pytest.mark.parametrize("max_parts", [3, 256])
def test_parts_cut_on_whole_strides_cost_no_request(
    world: World, max_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many parts (at most MAX_PARTS), the sweep makes the requests one reader would:
    each part ends on a full page reaching OVERLAP records into the next (issue 16)."""
    monkeypatch.setattr(sweep_module, "MAX_PARTS", max_parts)
    source = {r["id"] for r in world.dump("orders")}
    requests: dict[int, int] = {}
    for concurrency in (1, 2):
        client = ShiftingClient(world, lambda _offset: None)
        pager = SweepPager(client, _orders(world), 10, concurrency)
        parts, _first = pager.plan()
        assert len(parts) == (1 if concurrency == 1 else min(max_parts, 7))
        assert {r.id for c in sweep(pager) for r in c.records} == source
        assert pager.complete
        requests[len(parts)] = len(client.offsets) - 1  # sweep() plans again
    assert len(set(requests.values())) == 1, requests


def test_deletions_before_the_read_position_are_caught_by_the_overlap(world: World) -> None:
    deleted: list[str] = []

    def before(offset: int) -> None:
        if offset >= 3 * (10 - OVERLAP) and not deleted:
            # five records vanish from the front: every later record moves five places up,
            # more than the overlap, so a plain offset reader would skip three of them
            deleted.extend(newest(world, 5))
            world.sim.delete("orders", deleted)

    source = {r["id"] for r in world.dump("orders")}
    client = ShiftingClient(world, before)
    pager = SweepPager(client, _orders(world), 10, 1)
    delivered = {r.id for c in sweep(pager) for r in c.records}
    assert deleted and source - set(deleted) <= delivered
    assert pager.complete
    stepped_back = [b for a, b in zip(client.offsets, client.offsets[1:], strict=False) if b < a]
    assert stepped_back, "the reader had to step back to find the previous page again"


def test_a_junction_that_shifted_between_two_parts_is_bridged(world: World) -> None:
    part0_done = threading.Event()
    deleted: list[str] = []
    parts: list[Part] = []

    def after(offset: int) -> None:
        if parts and offset == parts[1].start - pager.stride:  # part 0's last page
            part0_done.set()

    def before(offset: int) -> None:
        if parts and offset == parts[1].start and not deleted:
            # part 1 reads its first page only after part 0 is done and the front shrank by
            # ten: there is now a gap between what part 0 and part 1 saw
            assert part0_done.wait(30)
            deleted.extend(newest(world, 10))
            world.sim.delete("orders", deleted)

    source = {r["id"] for r in world.dump("orders")}
    pager = SweepPager(ShiftingClient(world, before, after), _orders(world), 10, 2)
    planned, first = pager.plan()
    parts.extend(planned)
    # 25 strides of 8 records: parts of about PART_PAGES pages, cut at whole strides
    assert len(parts) == math.ceil(25 / PART_PAGES)
    assert [p.start % pager.stride for p in parts] == [0] * len(parts)
    assert [p.end for p in parts] == [p.start for p in parts[1:]] + [None]
    chunks: list[Chunk] = []
    readers = [
        threading.Thread(
            target=lambda p=part: chunks.extend(pager.read(p, first if p.index == 0 else None))
        )
        for part in parts
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    bridged = list(pager.follow_up())
    assert bridged and all(c.part >= len(parts) for c in bridged)
    delivered = {r.id for c in chunks + bridged for r in c.records}
    assert source - set(deleted) <= delivered
    assert pager.complete


def test_a_list_shifting_faster_than_it_can_be_read_fails_transiently(world: World) -> None:
    from worker.errors import ListDrifted, TransientError

    def before(offset: int) -> None:
        if offset > 0:  # every request, the front loses more records than the reader steps back
            world.sim.delete("orders", newest(world, 12))

    pager = SweepPager(ShiftingClient(world, before), _orders(world), 10, 1)
    with pytest.raises(ListDrifted) as raised:
        sweep(pager)
    assert isinstance(raised.value, TransientError)
    assert not pager.complete


def _orders(world: World) -> Resource:
    return world.settings.registry["orders"]
