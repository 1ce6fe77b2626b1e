"""Paging: read every record of a resource changed in a time window, exactly once, even while
the data changes under us.

Plain ``limit``/``offset`` paging is not safe on a live TMS: a record updated behind the read
position moves to the end of the ``updated_at`` order, every later record shifts down by one,
and the record at the next page boundary is skipped - silently, and for good, because its
``updated_at`` is below the cursor the run then commits. So we page by key instead ("keyset"
paging through the API's ``updated_start_at`` filter): each request asks for records from the
last ``updated_at`` seen, skipping the ids already delivered at exactly that instant. An update
only moves a record forward, where the same pass still finds it; nothing shifts behind us.

Concurrency (issue 7) without giving that up: the window is cut into time *slices* at the
``updated_at`` of records found at evenly spaced offsets (a few ``limit=1`` probes, possible
when the API reports ``total``), and each slice is read by key on its own thread. Probes may be
stale by the time they are used; that only unbalances the slices, never loses a record, because
the slices are contiguous time ranges that together cover the window.

The last slice is open-ended, and once every slice is done one more "catch-up" read runs from
the newest position to the end. A record updated during the run moves ahead of every reader
that has not passed its new ``updated_at`` yet, so the catch-up (which starts after all slices
finished) finds whatever an earlier slice missed because it moved. That is what lets a full sync
mark a record deleted only when it was really gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from worker.clock import parse_timestamp
from worker.errors import MalformedResponse
from worker.source.api import RoseRocketClient
from worker.source.records import Page, Record
from worker.source.resources import Resource


@dataclass(frozen=True, slots=True)
class Slice:
    """The time range ``[lower, upper)`` of ``updated_at`` one fetcher reads (None: open)."""

    index: int
    lower: datetime | None
    upper: datetime | None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One page's worth of new records from a slice, with where the slice has read up to."""

    slice: int
    records: list[Record]
    position: datetime | None  # the slice has delivered everything before this instant
    at_position: frozenset[str]  # and these ids at exactly that instant
    done: bool  # nothing is left in the slice


class Pager:
    def __init__(
        self, client: RoseRocketClient, resource: Resource, page_size: int, concurrency: int
    ) -> None:
        self.client = client
        self.resource = resource
        self.page_size = page_size
        self.concurrency = concurrency

    def plan(self, lower: datetime | None) -> tuple[list[Slice], Page]:
        """Cut ``[lower, now)`` into slices of about equal size; also returns the first page,
        which the first slice reuses."""
        first = self._page(lower, None, offset=0, limit=self.page_size)
        total = first.total
        if total is None or self.concurrency == 1 or total <= 2 * self.page_size:
            return [Slice(0, lower, None)], first
        parts = min(self.concurrency, math.ceil(total / self.page_size))
        offsets = [total * k // parts for k in range(1, parts)]
        with ThreadPoolExecutor(max_workers=len(offsets), thread_name_prefix="probe") as pool:
            probes = list(pool.map(lambda o: self._page(lower, None, offset=o, limit=1), offsets))
        floor = self.updated_at(first.records[0]) if first.records else lower
        bounds = sorted(
            {
                self.updated_at(p.records[0])
                for p in probes
                if p.records and (floor is None or self.updated_at(p.records[0]) > floor)
            }
        )
        edges: list[datetime | None] = [lower, *bounds, None]
        return [Slice(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)], first

    def read(
        self, part: Slice, first: Page | None = None, delivered: frozenset[str] = frozenset()
    ) -> Iterator[Chunk]:
        """Every record of the slice, page by page, by key (see the module docstring);
        ``delivered``: ids at exactly ``part.lower`` that the caller already has."""
        start = part.lower
        delivered_at_start = set(delivered)  # ids delivered whose updated_at == start
        stalled = False
        page = first
        while True:
            if page is None:
                # Ties at `start` come back first: skip them by id, or by offset when a burst
                # of equal timestamps (a bulk import) would otherwise fill the page.
                ties = len(delivered_at_start)
                offset = ties if stalled or ties >= self.page_size // 2 else 0
                page = self._page(start, part.upper, offset=offset, limit=self.page_size)
            records: list[Record] = []
            updated: list[datetime] = []
            beyond = False
            previous = start
            for record in page.records:
                stamp = self.updated_at(record)
                if previous is not None and stamp < previous:
                    raise MalformedResponse(
                        f"{self.resource.name}: the API returned records out of "
                        f"{self.resource.cursor_field} order or ignored updated_start_at; "
                        "rosesync needs both to page safely"
                    )
                previous = stamp
                if part.upper is not None and stamp >= part.upper:  # an inclusive end bound
                    beyond = True
                    break
                if stamp == start and record.id in delivered_at_start:
                    continue
                records.append(record)
                updated.append(stamp)
            done = beyond or len(page.records) < self.page_size
            if updated:
                last = updated[-1]
                same = {r.id for r, u in zip(records, updated, strict=True) if u == last}
                if last == start:
                    delivered_at_start |= same
                else:
                    start, delivered_at_start = last, same
            yield Chunk(part.index, records, start, frozenset(delivered_at_start), done)
            if done:
                return
            if not updated and stalled:
                raise MalformedResponse(
                    f"{self.resource.name}: paging made no progress at {start}; the API's "
                    "order is not stable"
                )
            stalled = not updated
            page = None

    def _page(
        self, lower: datetime | None, upper: datetime | None, offset: int, limit: int
    ) -> Page:
        return self.client.list_page(
            self.resource, offset=offset, limit=limit, updated_start=lower, updated_end=upper
        )

    def updated_at(self, record: Record) -> datetime:
        if record.updated is None:
            raise MalformedResponse(
                f"{self.resource.name}: record {record.id!r} has no "
                f"{self.resource.cursor_field} timestamp"
            )
        try:
            return parse_timestamp(record.updated)
        except ValueError:
            raise MalformedResponse(
                f"{self.resource.name}: record {record.id!r} has an unreadable "
                f"{self.resource.cursor_field} {record.updated[:40]!r}"
            ) from None
