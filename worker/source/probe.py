"""What a resource's endpoint can really do, found with a handful of small requests.

Rose Rocket's own v1 description promises little: `limit` up to 50, `offset`, `created_*`
filters on orders only, no sort and no `updated_*` filter (ROSE_ROCKET_API.md, "Read this
first"). A server may well do more, and keyset paging (keyset.py: cheap incremental runs, a
request or two when nothing changed) needs more: `updated_start_at`/`updated_end_at` honoured,
records in `updated_at` order, and `total`. So rosesync asks rather than assumes (issue 12),
and pages by offset over everything (sweep.py) unless every one of those is proven.

Each capability is observed, never inferred from a status code alone:

- the page size: ask for SYNC_PAGE_SIZE, read the echoed ``limit`` and the page's length
  against ``total``; a 400 for a large limit is answered by asking for less;
- ``updated_start_at`` honoured: a start in the future must return nothing (and an end in the
  distant past too); records in ``updated_at`` order: the first page is ascending and the last
  record is not older than the first page;
- whether each bound includes itself: two one-millisecond windows around a record whose
  neighbours are further apart, so that live changes elsewhere cannot disturb the counts;
- ``created_start_at`` honoured (a start in the future returns nothing); ``total`` present;
- GET by id: the route answers for a live id, so that a later 404 really means "deleted";
- the endpoint itself: a 404 on the list is reported, and the resource skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from worker.clock import parse_timestamp, utcnow
from worker.errors import ApiError, NotFound
from worker.source.resources import Resource

if TYPE_CHECKING:  # annotations only: `status` reads Capabilities without HTTP (issue 16)
    from worker.source.api import RoseRocketClient
    from worker.source.records import Page, Record

Strategy = Literal["keyset", "sweep"]

FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
PAST = datetime(1971, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
# Page sizes tried, after SYNC_PAGE_SIZE, when the API refuses a limit with a 400.
FALLBACK_LIMITS = (50, 20)
# A probe is redone after this long: APIs change, and it costs a handful of requests.
MAX_AGE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the probe saw for one resource. ``None``: could not tell (an empty resource, say)."""

    resource: str
    endpoint: str
    probed_at: datetime
    exists: bool  # False: the list endpoint answered 404
    page_size: int | None = None  # records a full page really holds
    total: bool | None = None  # list bodies carry "total"
    updated_filters: bool | None = None  # updated_start_at and updated_end_at honoured
    updated_order: bool | None = None  # records come in updated_at order, oldest first
    start_inclusive: bool | None = None  # updated_start_at includes records at the bound
    end_inclusive: bool | None = None  # updated_end_at includes records at the bound
    created_filter: bool | None = None  # created_start_at honoured
    by_id: bool | None = None  # GET <endpoint>/<id> answers for a live record
    requests: int = 0
    message: str | None = field(default=None)  # why the endpoint is unusable, if it is

    @property
    def conclusive(self) -> bool:
        """Whether everything the choice depends on was observed (not an empty resource)."""
        return not self.exists or None not in (
            self.page_size,
            self.total,
            self.updated_filters,
            self.updated_order,
        )

    @property
    def stale(self) -> bool:
        return not self.conclusive or utcnow() - self.probed_at > MAX_AGE

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["probed_at"] = self.probed_at.isoformat()
        return values


def choose(capabilities: Capabilities, setting: str) -> tuple[Strategy, str]:
    """The paging strategy for a resource, and why (shown by `rosesync resources`)."""
    if setting == "keyset":
        return "keyset", "SYNC_STRATEGY=keyset"
    if setting == "sweep":
        return "sweep", "SYNC_STRATEGY=sweep"
    missing = [
        text
        for proven, text in (
            (capabilities.total, "the list has no total"),
            (capabilities.updated_filters, "updated_start_at/updated_end_at are not honoured"),
            (capabilities.updated_order, "records are not in updated_at order"),
            (
                capabilities.start_inclusive is not None and capabilities.end_inclusive is not None,
                "the filters' bounds could not be determined",
            ),
        )
        if not proven
    ]
    if not missing:
        return "keyset", "the API honours updated_* filters in updated_at order, with totals"
    return "sweep", "; ".join(missing) + " (probed " + capabilities.probed_at.strftime(
        "%Y-%m-%d %H:%M"
    ) + " UTC)"


class Probe:
    """One probe of one resource; ``run()`` returns its :class:`Capabilities`."""

    def __init__(self, client: RoseRocketClient, resource: Resource, page_size: int) -> None:
        self.client = client
        self.resource = resource
        self.page_size = page_size
        self.requests = 0

    def run(self) -> Capabilities:
        now = utcnow()
        name, endpoint = self.resource.name, self.resource.endpoint
        try:
            first, page_size = self._first_page()
        except NotFound as exc:
            return Capabilities(
                name, endpoint, now, exists=False, requests=self.requests, message=str(exc)
            )
        found: dict[str, Any] = {"page_size": page_size, "total": first.total is not None}
        records = [r for r in first.records if _stamp(r) is not None]
        if records:
            found["updated_filters"] = self._honoured(
                {"updated_start": FUTURE}, {"updated_end": PAST}
            )
            found["updated_order"] = self._ordered(first, records)
            if found["updated_filters"] and found["updated_order"] and first.total is not None:
                found.update(self._bounds(records))
            found["created_filter"] = self._honoured({"created_start": FUTURE})
            found["by_id"] = self._by_id(records[0])
        return Capabilities(name, endpoint, now, exists=True, requests=self.requests, **found)

    # -- the observations ---------------------------------------------------------------------

    def _list(self, limit: int, **filters: Any) -> Page:
        self.requests += 1
        return self.client.list_page(self.resource, limit=limit, **filters)

    def _first_page(self) -> tuple[Page, int]:
        """The first page at the largest size the API accepts, and the size it really gives."""
        for limit in (self.page_size, *(n for n in FALLBACK_LIMITS if n < self.page_size)):
            try:
                page = self._list(limit)
            except NotFound:
                raise
            except ApiError:  # 400 "limit must not be greater than ...": ask for less
                if limit == min(self.page_size, FALLBACK_LIMITS[-1]):
                    raise
                continue
            given = len(page.records)
            if page.limit is not None and page.limit < limit:
                return page, page.limit  # the API says what it clamped to
            if page.total is not None and given < min(limit, page.total):
                return page, given  # clamped silently: fewer than asked although more exist
            if page.total is None and 0 < given < limit:
                # End of data, or a silent clamp: the next offset tells.
                more = self.client.list_page(self.resource, offset=given, limit=limit)
                self.requests += 1
                return page, given if more.records else limit
            return page, limit
        raise AssertionError("unreachable: the last limit re-raises")  # pragma: no cover

    def _honoured(self, *impossible: dict[str, datetime]) -> bool:
        """Each filter, set to match nothing (a start in the future, an end in the distant
        past), must return nothing; an API that ignores it returns records as usual, one that
        refuses it answers a 4xx."""
        for filters in impossible:
            try:
                page = self._list(1, **filters)
            except ApiError:
                return False
            if page.records or page.total:
                return False
        return True

    def _ordered(self, first: Page, records: list[Record]) -> bool:
        """Oldest first: ascending within the first page, and the last record no older."""
        stamps = [_stamp(r) for r in records]
        if any(a > b for a, b in pairwise(stamps)):  # type: ignore[operator]
            return False
        if first.total is None or first.total <= len(first.records):
            return True
        last = [r for r in self._list(1, offset=first.total - 1).records if _stamp(r)]
        return all(_stamp(r) >= stamps[-1] for r in last)  # type: ignore[operator]

    def _bounds(self, records: list[Record]) -> dict[str, bool | None]:
        """Whether each updated_* bound includes a record stamped exactly at it.

        Counted in one-millisecond windows around a record whose neighbours are further than
        that away: [t, t+1ms) holds it only if the start is inclusive, [t-1ms, t] only if the
        end is, and nothing else can fall into either window.
        """
        stamps = [_stamp(r) for r in records]
        for i in range(1, len(stamps) - 1):
            before, at, after = stamps[i - 1], stamps[i], stamps[i + 1]
            assert before is not None and at is not None and after is not None
            if at - before > MILLISECOND and after - at > MILLISECOND:
                start = self._list(1, updated_start=at, updated_end=at + MILLISECOND).total
                end = self._list(1, updated_start=at - MILLISECOND, updated_end=at).total
                return {
                    "start_inclusive": None if start is None else start > 0,
                    "end_inclusive": None if end is None else end > 0,
                }
        return {}

    def _by_id(self, record: Record) -> bool:
        """The route exists only if it answers for a record the list just returned."""
        self.requests += 1
        try:
            found = self.client.get_record(self.resource, record.id)
        except ApiError:
            return False
        return found is not None and found.id == record.id


def _stamp(record: Record) -> datetime | None:
    try:
        return parse_timestamp(record.updated) if record.updated else None
    except ValueError:
        return None
