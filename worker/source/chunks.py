"""What a pager hands the run loop: one page's worth of new records, and how far its part got.

Both paging strategies (keyset.py, sweep.py) read a resource in parts, one thread each, and
yield :class:`Chunk` values; the run loop (sync/run.py) turns them into rows and checkpoints
without caring which strategy produced them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from worker.source.records import Page, Record

P = TypeVar("P", contravariant=True)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One page's worth of new records from a part, with where the part has read up to."""

    part: int
    records: list[Record]
    # keyset: the part has delivered every record before this instant, and these ids at it;
    # sweep: None (an offset is no cursor: the next run sweeps again)
    position: datetime | None
    at_position: frozenset[str]
    done: bool  # nothing is left in the part


class Pager(Protocol[P]):
    """A paging strategy: reads one part of a resource; then, once every part is done, whatever
    the parts' reads left to be read again (keyset's catch-up, sweep's bridges)."""

    def read(self, part: P, first: Page | None = None) -> Iterator[Chunk]: ...

    def follow_up(self) -> Iterator[Chunk]: ...
