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

All of this needs an API that honours ``updated_*`` in ``updated_at`` order, which Rose Rocket
does not promise: probe.py checks it first, and finds whether each bound includes itself; the
end of a slice is an empty page or its ``total`` reached, never a short page (an API may clamp
the page size: issue 12).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.clock import parse_timestamp
from worker.errors import MalformedResponse, OrderViolated
from worker.source.api import RoseRocketClient
from worker.source.chunks import Chunk
from worker.source.records import Page, Record
from worker.source.resources import Resource

# The API's timestamps are milliseconds (format_timestamp): the instant before a bound.
MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Slice:
    """The time range ``[lower, upper)`` of ``updated_at`` one fetcher reads (None: open)."""

    index: int
    lower: datetime | None
    upper: datetime | None


class KeysetPager:
    def __init__(
        self,
        client: RoseRocketClient,
        resource: Resource,
        page_size: int,
        concurrency: int,
        start_inclusive: bool = True,
    ) -> None:
        self.client = client
        self.resource = resource
        self.page_size = page_size
        self.concurrency = concurrency
        self.start_inclusive = start_inclusive
        self._reached: dict[int, tuple[datetime | None, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def plan(self, lower: datetime | None) -> tuple[list[Slice], Page]:
        """Cut ``[lower, now)`` into slices of about equal size; also returns the first page,
        which the first slice reuses."""
        first = self._page(lower, None, offset=0, limit=self.page_size)
        total = first.total
        if total is None or self.concurrency == 1 or total <= 2 * self.page_size:
            return [Slice(0, lower, None)], first
        # at least two pages a slice: a slice costs a probe request, and since the number of
        # slices is SYNC_MAX_CONCURRENCY (issue 16), a small window would be all probes
        parts = min(self.concurrency, math.ceil(total / (2 * self.page_size)))
        offsets = [total * k // parts for k in range(1, parts)]
        with ThreadPoolExecutor(max_workers=len(offsets), thread_name_prefix="probe") as pool:
            probes = list(pool.map(lambda o: self._page(lower, None, offset=o, limit=1), offsets))
        floor = self._first_stamp(first) or lower
        stamps = [self._first_stamp(p) for p in probes]
        bounds = sorted(
            {stamp for stamp in stamps if stamp is not None and (floor is None or stamp > floor)}
        )
        edges: list[datetime | None] = [lower, *bounds, None]
        return [Slice(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)], first

    def follow_up(self) -> Iterator[Chunk]:
        """The catch-up read (module docstring): from the newest position any slice reached to
        the end, once every slice is done. A single slice read to its end already was it."""
        with self._lock:
            reached = dict(self._reached)
        if len(reached) < 2:
            return
        known = [(p, ids) for p, ids in reached.values() if p is not None]
        newest, at_newest = max(known, key=lambda item: item[0]) if known else (None, frozenset())
        yield from self.read(Slice(len(reached), newest, None), delivered=at_newest)

    def read(
        self, part: Slice, first: Page | None = None, delivered: frozenset[str] = frozenset()
    ) -> Iterator[Chunk]:
        """Every record of the slice, page by page, by key (see the module docstring);
        ``delivered``: ids at exactly ``part.lower`` that the caller already has."""
        start = part.lower
        delivered_at_start = set(delivered)  # ids delivered whose updated_at == start
        # Records without a position (Record.problem) read since ``start`` last moved: skipped
        # by offset like ties, or a page holding only those would be read again and again.
        positionless = 0
        stalled = False
        page = first
        offset = 0
        while True:
            if page is None:
                # Ties at `start` come back first: skip them by id, or by offset when a burst
                # of equal timestamps (a bulk import) would otherwise fill the page.
                ties = len(delivered_at_start) + positionless
                offset = ties if stalled or ties >= self.page_size // 2 else 0
                page = self._page(start, part.upper, offset=offset, limit=self.page_size)
            records: list[Record] = []
            keyed: list[tuple[Record, datetime]] = []
            beyond = False
            previous: datetime | None = None
            for record in page.records:
                if record.problem is not None:  # no position to take from it (issue 13):
                    records.append(record)  # the loader quarantines it
                    positionless += 1
                    continue
                if beyond:
                    continue
                stamp = self.updated_at(record)
                if previous is not None and stamp < previous:
                    raise OrderViolated(
                        f"{self.resource.name}: the API returned records out of "
                        f"{self.resource.cursor_field} order; it no longer pages as probed"
                    )
                previous = stamp
                if start is not None and stamp < start:
                    if self.start_inclusive:
                        raise OrderViolated(
                            f"{self.resource.name}: the API ignored updated_start_at; it no "
                            "longer pages as probed"
                        )
                    continue  # asked from the instant before an exclusive start
                if part.upper is not None and stamp >= part.upper:  # an inclusive end bound
                    beyond = True
                    continue
                if stamp == start and record.id in delivered_at_start:
                    continue
                records.append(record)
                keyed.append((record, stamp))
            # The end: an empty page or the total reached, never a short page (issue 12).
            ended = not page.records or (
                page.total is not None and offset + len(page.records) >= page.total
            )
            done = beyond or ended
            if keyed:
                last = keyed[-1][1]
                same = {r.id for r, stamp in keyed if stamp == last}
                if last == start:
                    delivered_at_start |= same
                else:
                    start, delivered_at_start, positionless = last, same, 0
            position = (start, frozenset(delivered_at_start))
            with self._lock:
                self._reached[part.index] = position
            yield Chunk(part.index, records, *position, done)
            if done:
                return
            if not records and stalled:
                raise OrderViolated(
                    f"{self.resource.name}: paging made no progress at {start}; the API's "
                    "order is not stable"
                )
            stalled = not keyed
            page = None

    def count(self, lower: datetime | None, upper: datetime) -> int | None:
        """The API's count of records from ``lower`` to ``upper`` (None: it gives no totals)."""
        return self._page(lower, upper, offset=0, limit=1).total

    def _page(
        self, lower: datetime | None, upper: datetime | None, offset: int, limit: int
    ) -> Page:
        if lower is not None and not self.start_inclusive:
            lower -= MILLISECOND
        return self.client.list_page(
            self.resource, offset=offset, limit=limit, updated_start=lower, updated_end=upper
        )

    def _first_stamp(self, page: Page) -> datetime | None:
        """The position of the page's first record that has one."""
        usable = next((r for r in page.records if r.problem is None), None)
        return None if usable is None else self.updated_at(usable)

    def updated_at(self, record: Record) -> datetime:
        if record.stamp is not None:  # read by the decoder already
            return record.stamp
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
