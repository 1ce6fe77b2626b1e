"""Sweep paging: every record of a resource, by offset, in whatever order the API lists it.

For an API that offers no usable ``updated_*`` filter or order (Rose Rocket's v1 as documented:
newest-created first, no sort, 50 a page), the only complete read is ``limit``/``offset`` over
the whole list. Offsets drift while the data changes: a record deleted before the read position
shifts every later record one slot towards the start, so the record at the next page boundary
slips into a page already read and would be silently skipped (an insert shifts the other way,
which only repeats a record).

So consecutive pages overlap by :data:`OVERLAP` records, and a page is accepted only if it
shares at least one record with the page before it. Two unchanged records keep their relative
order, so a shared record proves that nothing between the two pages was skipped, however far
the list shifted meanwhile (the proof does not need the shared record to sit at the expected
offset). A page that shares nothing means the list moved by more than the overlap: the reader
steps back, further each time, until it finds the previous page again. The end of the data is
an empty page, or a page that reaches ``total`` as reported with it, never a merely short page
(an API may clamp a page below the size asked for: issue 12).

Concurrency: the list is cut into parts at offsets known from the first page's ``total``, many
small ones (:data:`PART_PAGES`) that the fetcher threads take in turn, each read with the same
rule, and each part reads a little past its end into the next part's first page. Once all are
done, :meth:`SweepPager.follow_up` checks each junction the same way (the last page of one part
shares a record with the first pages of the next) and, where the list moved between the two
reads, bridges the gap by reading on from the earlier part until it meets the later one. Only a
sweep whose every junction holds is ``complete``: only then may records it did not see be
treated as deletion candidates (sync/reconcile.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from worker.errors import ListDrifted
from worker.source.api import RoseRocketClient
from worker.source.chunks import Chunk
from worker.source.records import Page, Record
from worker.source.resources import Resource

# Records each page shares with the one before it (about 4% more requests at 50 a page).
OVERLAP = 2
# Pages a part holds at most, about. The fetcher threads take the parts in turn, each the next
# one when it is done, and the run ends when its last part does: with parts of 60 pages the last
# one or two were read alone for the run's last two seconds at 100 ms a request (issue 16). A
# part of a few pages ends within a few requests of the others. Smaller parts cost no requests
# (see plan), and while the list changes slowly they need fewer bridges, not more: a junction
# breaks only when the list moves by more than OVERLAP between the reads of its two sides, which
# are a part's reading time apart, so halving the parts doubles the junctions but divides each
# one's chance by about four.
PART_PAGES = 4
# ...but no more parts than this: each keeps the ids of its first two pages and of its last one
# until the junctions are checked (about 22 KB a part), so a list of 700,000 records would
# otherwise hold 80 MB of them. 256 parts are about 5.5 MB; a longer list's parts grow instead.
MAX_PARTS = 256
# How often a reader steps back (doubling the distance each time) to find the previous page
# again before it gives up on this run; under any realistic rate of change one or two suffice.
MAX_STEPS_BACK = 12


@dataclass(frozen=True, slots=True)
class Part:
    """Offsets ``[start, end)`` of the list, as they were when the sweep was planned; the last
    part is open-ended (``end`` None) and reads until the data ends."""

    index: int
    start: int
    end: int | None


@dataclass
class _Trace:
    """What a part read, for checking the junctions afterwards."""

    landing: set[str]  # ids of its first two accepted pages
    pages: int = 0
    last_offset: int = 0
    last_ids: tuple[str, ...] = ()
    done: bool = False


class SweepPager:
    """Sweeps the whole list, or only the records created since ``created_start`` (a window
    between sweeps, where the API honours ``created_start_at``). ``concurrency``: the fewest
    parts to plan (1: the list is read by one reader, in one part)."""

    def __init__(
        self,
        client: RoseRocketClient,
        resource: Resource,
        page_size: int,
        concurrency: int,
        created_start: datetime | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.page_size = page_size
        self.concurrency = concurrency
        self.created_start = created_start
        self.stride = max(1, page_size - OVERLAP)
        self._traces: dict[int, _Trace] = {}
        self._lock = threading.Lock()
        self.complete = False

    def plan(self) -> tuple[list[Part], Page]:
        """Parts of about equal size from the first page's ``total``; also returns that page,
        which the first part reuses."""
        first = self._page(0)
        total = first.total
        if total is None or self.concurrency == 1 or total <= 2 * self.page_size:
            return [Part(0, 0, None)], first
        strides = math.ceil(total / self.stride)  # the pages one reader would need
        # At least ``concurrency`` parts, and more where the list is long, so that each holds
        # about PART_PAGES pages, up to MAX_PARTS; at least two pages a part, as in keyset.py.
        wanted = min(MAX_PARTS, math.ceil(strides / PART_PAGES))
        count = min(strides // 2, max(self.concurrency, wanted))
        # Cut at whole strides from 0: a part's last page is then a full page that reaches
        # OVERLAP records into the next part, so a cut costs no request (cut anywhere else,
        # each part ended on a short extra page: 14 more requests in 1,060, issue 16).
        edges = [self.stride * (strides * k // count) for k in range(count)]
        parts = [Part(i, edges[i], edges[i + 1]) for i in range(count - 1)]
        return [*parts, Part(count - 1, edges[-1], None)], first

    def read(self, part: Part, first: Page | None = None) -> Iterator[Chunk]:
        trace = _Trace(landing=set())
        with self._lock:
            self._traces[part.index] = trace
        yield from self._chain(part.index, part.start, part.end, trace, first, previous=None)

    def follow_up(self) -> Iterator[Chunk]:
        """Bridge every junction where the list moved between the two parts' reads; then the
        sweep is ``complete``."""
        traces = [self._traces[i] for i in sorted(self._traces)]
        for index, (earlier, later) in enumerate(pairwise(traces)):
            if set(earlier.last_ids) & later.landing:
                continue
            # Read on from where the earlier part stopped until it meets the later part.
            bridge = _Trace(landing=set())
            yield from self._chain(
                len(traces) + index,
                earlier.last_offset + max(1, len(earlier.last_ids) - OVERLAP),
                None,
                bridge,
                None,
                previous=set(earlier.last_ids),
                meet=later.landing,
            )
        self.complete = all(t.done for t in traces)

    def _chain(
        self,
        index: int,
        offset: int,
        end: int | None,
        trace: _Trace,
        page: Page | None,
        previous: set[str] | None,
        meet: set[str] | None = None,
    ) -> Iterator[Chunk]:
        """Pages from ``offset``, each sharing a record with the one before, until ``end`` (as
        planned), until a page shares a record with ``meet`` (a bridge), or the data ends."""
        steps = 0
        while True:
            if page is None:
                # A part's last page asks only for what reaches OVERLAP records into the next
                # part: the rest would be read (and written) twice.
                wanted = self.page_size if end is None else end + OVERLAP - offset
                page = self._page(offset, max(OVERLAP + 1, min(self.page_size, wanted)))
            ids = [r.id for r in page.records if r.id]  # not "": a record without one (issue 13)
            if previous is not None and not previous.intersection(ids):
                # Lost the thread: the list moved by more than the overlap since the last page
                # (or the data now ends before this offset). Step back and look again.
                steps += 1
                if steps > MAX_STEPS_BACK or offset == 0:
                    raise ListDrifted(
                        f"{self.resource.name}: the list kept shifting under the sweep (records "
                        "inserted or deleted faster than it could be read); the next run retries"
                    )
                offset, page = max(0, offset - OVERLAP * 2**steps), None
                continue
            steps = 0
            fresh = _fresh(page.records, previous)
            trace.pages += 1
            if trace.pages <= 2:
                trace.landing.update(ids)
            trace.last_offset, trace.last_ids = offset, tuple(ids)
            reached = offset + len(ids)
            # The end: an empty page, the total reached, or (without a total) nothing new.
            ended = (not ids or reached >= page.total) if page.total is not None else not fresh
            met = meet is not None and bool(meet.intersection(ids))
            passed = end is not None and reached - OVERLAP >= end
            done = ended or met or passed
            trace.done = done
            yield Chunk(index, fresh, None, frozenset(), done)
            if done:
                return
            previous = set(ids)
            offset, page = offset + max(1, len(ids) - OVERLAP), None

    def _page(self, offset: int, limit: int | None = None) -> Page:
        return self.client.list_page(
            self.resource,
            offset=offset,
            limit=limit or self.page_size,
            created_start=self.created_start,
        )


def _fresh(records: list[Record], previous: set[str] | None) -> list[Record]:
    """A page's records less those the page before already delivered (the overlap)."""
    if previous is None:
        return records
    # A record without an id (Record.problem) is always passed on: the quarantine keys it by
    # its text, so a repeat is harmless, and "" would match every other such record.
    return [r for r in records if not r.id or r.id not in previous]
