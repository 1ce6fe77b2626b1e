"""Finding deletions without a change feed, cheaply, on every incremental run.

Rose Rocket has no feed of deletions: a deleted record simply stops appearing. A full sync
finds them by reading everything; this finds them by *counting*. Below the cursor the warehouse
should hold exactly what the source holds, so for a time range we compare the API's ``total``
(one ``limit=1`` request) with a ``COUNT`` of live rows. Equal: nothing to do. Different: split
the range at the warehouse's median ``updated_at`` and look again, down to ranges of a couple of
pages, which are listed in full. A row the listing lacks is only a *candidate*: it may have
been updated (moved past the range) rather than deleted, so each candidate is fetched by id, and
marked deleted only on a 404; otherwise its new version is stored.

With nothing deleted this costs one request and one indexed COUNT; ``d`` deletions cost about
``d x log2(rows / page)`` counting requests plus a page or two each.

Counting stops at the cursor, and the cursor stays behind the run's start by the clock-skew
allowance, so a record changed and then deleted in the last moments would wait for a later run
to be counted. The run has just listed everything from where it started reading, though: a live
row in that window which the listing did not return (``synced_at`` before the run) is a
candidate too (found by the ``make soak`` seeds that delete a freshly updated order).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from worker.source.api import RoseRocketClient
from worker.source.keyset import Pager, Slice
from worker.source.records import Record
from worker.source.resources import Resource
from worker.warehouse.load import Fence, Loader

Store = Callable[[list[Record]], None]


def reconcile(
    client: RoseRocketClient,
    pager: Pager,
    loader: Loader,
    resource: Resource,
    upper: datetime,
    store: Store,
    fence: Fence,
    read: tuple[datetime | None, datetime],
) -> int:
    """Mark the rows whose records are gone, below ``upper`` or in the window this run read
    (``read``: where it started reading, and when the run started); returns how many."""
    leaf_size = 2 * pager.page_size
    candidates: set[str] = set()
    ranges: list[tuple[datetime | None, datetime]] = [(None, upper)]
    while ranges:
        lower, high = ranges.pop()
        source = client.list_page(resource, limit=1, updated_start=lower, updated_end=high).total
        if source is None:  # an API without totals cannot be reconciled by counting
            break
        ours = loader.count_live(lower, high)
        if source == ours:
            continue
        middle = loader.median_updated_at(lower, high)
        splittable = middle is not None and middle != lower and (lower is None or middle > lower)
        if ours > leaf_size and splittable:
            assert middle is not None
            ranges += [(lower, middle), (middle, high)]
            continue
        listed: set[str] = set()
        for chunk in pager.read(Slice(0, lower, high)):
            listed.update(r.id for r in chunk.records)
            store(chunk.records)
        candidates |= loader.live_ids(lower, high) - listed
    candidates |= loader.unseen_ids(*read)  # after the listings above, which count as seen
    gone = []
    for record_id in sorted(candidates):
        record = client.get_record(resource, record_id)
        if record is None:
            gone.append(record_id)
        else:
            pager.updated_at(record)  # the same check every paged record passes
            store([record])
    return loader.mark_gone(gone, fence)
