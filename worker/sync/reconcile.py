"""Finding deletions without a change feed: by counting (keyset), or after a sweep.

Rose Rocket has no feed of deletions: a deleted record simply stops appearing, so every way of
finding one ends the same: a row whose record was not listed is only a *candidate* (it may have
been updated and moved, rather than deleted), confirmed by fetching it by id. A 404 marks it
deleted, a record found is stored; any other answer (403, 410, a 5xx after retries) leaves it
alone. And a 404 means "deleted" only where the probe saw the by-id route answer for a live
record: an API without the route says 404 for every id (issue 13).

**Keyset runs** count. Below the cursor the warehouse should hold exactly what the source holds,
so for a time range we compare the API's ``total`` (one ``limit=1`` request) with a ``COUNT``
of live rows over the same range: the bounds are cut to the API's millisecond precision and the
end includes itself on both sides exactly when the probe found that the API's does. Equal:
nothing to do. Different: split the range at the warehouse's median ``updated_at`` and look
again, down to ranges of a couple of pages, which are listed in full. With nothing deleted this
costs one request and one indexed COUNT; ``d`` deletions cost about ``d x log2(rows / page)``
counting requests plus a page or two each.

Counting stops at the cursor, and the cursor stays behind the run's start by the clock-skew
allowance, so a record changed and then deleted in the last moments would wait for a later run
to be counted. The run has just listed everything from where it started reading, though: a live
row in that window which the listing did not return (``synced_at`` before the run) is a
candidate too (found by the ``make soak`` seeds that delete a freshly updated order).

**Sweeps** see every record, so after a complete one (source/sweep.py) the live rows it did not
stamp are the candidates. Without a by-id route they are confirmed by time instead: a row that
neither this sweep nor the previous complete one saw is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from worker.clock import to_millisecond
from worker.errors import ApiError
from worker.source.api import RoseRocketClient
from worker.source.keyset import KeysetPager, Slice
from worker.source.records import Record
from worker.source.resources import Resource
from worker.warehouse.load import Fence, Loader

log = logging.getLogger(__name__)

Store = Callable[[list[Record]], None]

# Candidates confirmed by id in one run; more wait for the next (a sweep of a resource whose
# listing suddenly lacks most records is more likely a wrong endpoint than mass deletion).
MAX_CONFIRMATIONS = 1000


def reconcile(
    client: RoseRocketClient,
    pager: KeysetPager,
    loader: Loader,
    resource: Resource,
    upper: datetime,
    store: Store,
    fence: Fence,
    read: tuple[datetime | None, datetime],
    *,
    end_inclusive: bool,
    by_id: bool,
) -> int:
    """Mark the rows whose records are gone, below ``upper`` or in the window this run read
    (``read``: where it started reading, and when the run started); returns how many."""
    leaf_size = 2 * pager.page_size
    candidates: set[str] = set()
    ranges: list[tuple[datetime | None, datetime]] = [(None, to_millisecond(upper))]
    while ranges:
        lower, high = ranges.pop()
        source = pager.count(lower, high)
        if source is None:  # an API without totals cannot be reconciled by counting
            break
        ours = loader.count_live(lower, high, end_inclusive)
        if source == ours:
            continue
        middle = loader.median_updated_at(lower, high)
        if middle is not None:
            middle = to_millisecond(middle)
        splittable = middle is not None and (lower is None or middle > lower) and middle < high
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
    if not by_id:
        if candidates:
            log.info(
                "%s: %d rows were not listed; without a by-id route to confirm them, the next "
                "full sync decides",
                resource.name,
                len(candidates),
            )
        return 0
    gone = confirm(client, resource, sorted(candidates), store, pager.updated_at)
    return loader.mark_gone(gone, fence)


def sweep_deletions(
    client: RoseRocketClient,
    loader: Loader,
    resource: Resource,
    by_id: bool | None,
    sweeps: tuple[datetime, datetime | None],
    store: Store,
    fence: Fence,
) -> int:
    """After a complete sweep that started at ``sweeps[0]`` (the previous complete one at
    ``sweeps[1]``): mark the rows whose records are gone; returns how many."""
    started, previous = sweeps
    if by_id:
        candidates = sorted(loader.unseen_ids(None, started))
        gone = confirm(client, resource, candidates, store)
    else:
        gone = sorted(loader.unseen_ids(None, previous)) if previous else []
    return loader.mark_gone(gone, fence)


def confirm(
    client: RoseRocketClient,
    resource: Resource,
    candidates: Iterable[str],
    store: Store,
    check: Callable[[Record], object] | None = None,
) -> list[str]:
    """Fetch each candidate by id: the ids the API says are gone (404); a record found is
    stored (``check``ed first, like every paged record); any other answer leaves it alone."""
    gone: list[str] = []
    unknown = 0
    for count, record_id in enumerate(candidates):
        if count == MAX_CONFIRMATIONS:
            log.warning(
                "%s: more than %d rows to confirm; the rest wait for the next run",
                resource.name,
                MAX_CONFIRMATIONS,
            )
            break
        try:
            record = client.get_record(resource, record_id)
        except ApiError:  # 403, 410, 400...: not a confirmation of anything
            unknown += 1
            continue
        if record is None:
            gone.append(record_id)
            continue
        if check is not None and record.problem is None:  # else it is quarantined, as a paged
            check(record)  # one would be
        store([record])
    if unknown:
        log.warning(
            "%s: %d rows could not be confirmed gone (the API refused GET by id); kept",
            resource.name,
            unknown,
        )
    return gone
