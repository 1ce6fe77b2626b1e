"""One sync run of one resource: pages in, rows and checkpoints out, a run row that tells.

The loop (keyset.py reads, warehouse/load.py writes):

1. take the resource's lease, or record the run as ``skipped``;
2. record the run's start, read the cursor; the window starts at ``cursor - lookback``
   (nothing for ``full``) so that a record committed at the cursor's instant is read again;
   the upsert makes that overlap harmless;
3. fetcher threads read the slices and hand pages to this thread through a bounded queue (memory
   stays flat: at most ``2 x SYNC_CONCURRENCY`` pages or :data:`QUEUE_RECORDS` records wait,
   however many requests are in flight: worker/source/concurrency.py adapts that, issue 16),
   which gathers them into batches for the writers (commits.py), each batch one transaction
   with its checkpoint; then a catch-up read from the newest position picks up what moved
   meanwhile;
4. the cursor only advances to where *every* slice before it is complete, and never past the
   run's start less the clock-skew allowance: a record written as the run started, with a
   server clock a little behind ours, is read again next time instead of skipped;
5. a full run that completed marks the rows it did not see as deleted (and releases the
   quarantined records it did not see); an incremental run fetches the records earlier runs
   quarantined again by id (issue 13, item 5);
6. the run row gets its outcome, whatever happened.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.clock import utcnow
from worker.errors import (
    ApiError,
    ConfigError,
    EndpointMissing,
    Interrupted,
    OrderViolated,
    ReauthRequired,
    RefreshBlocked,
    RoseSyncError,
    Unreachable,
    WarehouseUnavailable,
    Yielded,
)
from worker.logs import redact
from worker.source.api import RoseRocketClient, TokenSource
from worker.source.chunks import Chunk, Pager
from worker.source.concurrency import Summary
from worker.source.fields import Shape
from worker.source.keyset import KeysetPager
from worker.source.records import Page, Record
from worker.source.resources import Resource
from worker.source.sweep import SweepPager
from worker.sync import collector, strategy
from worker.sync.commits import Committer, Covered
from worker.sync.lease import Lease
from worker.sync.reconcile import reconcile, sweep_deletions
from worker.warehouse import drift
from worker.warehouse import leases as lease_rows
from worker.warehouse.db import disk_full, is_disk_full
from worker.warehouse.load import Loader
from worker.warehouse.rows import Row
from worker.warehouse.runs import (
    RunRow,
    advance_cursor,
    finish_run,
    get_run,
    mark_full_sync,
    start_run,
    sweep_marks,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]  # resource, records so far, expected total


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The run as recorded, and the error that ended it (None when it succeeded or skipped)."""

    run: RunRow
    error: BaseException | None = None
    concurrency: Summary | None = None  # how many requests it kept in flight (issue 16)

    @property
    def ok(self) -> bool:
        return self.run.status in ("succeeded", "skipped")


def lease_name(resource: str, org: str) -> str:
    return f"sync:{org}:{resource}"


def sync_resource(
    settings: Settings,
    engine: Engine,
    tokens: TokenSource,
    resource: Resource,
    *,
    full: bool = False,
    trigger: str = "cli",
    task_id: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    page_limit: int = 0,
) -> SyncResult:
    """Run one sync of ``resource`` for the org of ``tokens``; never raises for a failed run
    (see ``SyncResult``). The org comes from the token source, so the rows and state can only
    be those of the org whose token read them (issue 15).

    ``page_limit`` (SYNC_PAGES_PER_TASK, for Celery tasks): an incremental keyset run stops
    with :class:`Yielded` once it has read that many pages and more remain; its cursor is
    committed with its pages, so the next run resumes there (issue 15, item 6). Full runs
    and sweeps never yield: a full run starts from the beginning and a sweep pages by offset
    over the whole list, so a second task could not resume either, only start over."""
    org = tokens.org
    mode = "full" if full else "incremental"
    lease = Lease(engine, lease_name(resource.name, org), settings.lock_ttl_seconds)
    if not lease.acquire():
        holder = lease_rows.holder(engine, lease.name)
        run_id, _, _ = start_run(
            engine,
            resource.name,
            org,
            mode,
            trigger,
            task_id,
            status="skipped",
            error=f"another run holds the lease ({holder.owner if holder else 'just released'})",
        )
        log.info("%s: skipped, another run is in progress", resource.name)
        return SyncResult(get_run(engine, run_id))
    try:
        with lease.kept_alive():
            run_id, cursor, started = start_run(engine, resource.name, org, mode, trigger, task_id)
            run = _Run(
                settings, engine, tokens, resource, org, (run_id, started), lease, progress, stop
            )
            run.page_limit = 0 if full else page_limit
            try:
                with collector.held_back():
                    run.execute(cursor, full)
            except Interrupted as exc:
                return SyncResult(run.finish("interrupted", str(exc)), exc)
            except RoseSyncError as exc:
                log.error("%s: run %s failed: %s", resource.name, run_id, exc)
                return SyncResult(run.finish("failed", str(exc)), exc)
            except sa.exc.OperationalError as exc:  # the database went away: worth a retry
                log.error("%s: run %s lost the warehouse: %s", resource.name, run_id, exc)
                error = (
                    disk_full(engine, exc, resource.name)
                    if is_disk_full(exc)
                    else WarehouseUnavailable(
                        f"{resource.name}: the database at DATABASE_URL failed mid-run "
                        f"({exc.orig.__class__.__name__ if exc.orig else 'error'}); the next "
                        "run resumes from the last committed page"
                    )
                )
                return SyncResult(run.finish("failed", str(error)), error)
            except Exception as exc:  # a bug, or a library error we did not map: record it
                log.exception("%s: run %s failed unexpectedly", resource.name, run_id)
                return SyncResult(
                    run.finish("failed", redact(f"{exc.__class__.__name__}: {exc}")[:2000]), exc
                )
            return SyncResult(run.finish("succeeded"), concurrency=run.concurrency())
    finally:
        lease.release()


class _Run:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        tokens: TokenSource,
        resource: Resource,
        org: str,
        run: tuple[int, datetime],  # its id and recorded start
        lease: Lease,
        progress: Progress | None,
        stop: threading.Event | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.tokens = tokens
        self.resource = resource
        self.org = org
        self.run_id, self.started = run
        self.lease = lease
        self.progress = progress
        self.stop = stop or threading.Event()
        self.client = RoseRocketClient(settings, tokens)
        self.loader = Loader(engine, resource, org, self.run_id, settings.sync_max_quarantine)
        self.ceiling = self.started - timedelta(seconds=settings.sync_clock_skew_seconds)
        self.refreshes_before = tokens.refreshes
        self.pages = self.records = self.deleted = 0
        self.page_limit = 0  # pages after which an incremental keyset run yields (0: never)
        self.submitted = 0  # pages handed to the committer
        self.resumed_from: datetime | None = None  # the cursor the run started from
        self.expected: int | None = None
        self.cursor: datetime | None = None  # as last handed to the committer
        self.shape = Shape()  # the fields the records had (issue 14, item 2: schema drift)
        self._lock = threading.Lock()  # counters and progress, updated by the writer threads

    def concurrency(self) -> Summary:
        summary = self.client.throttle.controller.summary()
        log.info(
            "%s: requests in flight started at %d, settled at %d, at most %d (%d changes)",
            self.resource.name,
            summary.start,
            summary.settled,
            summary.highest,
            len(summary.decisions),
        )
        return summary

    def stats(self) -> dict[str, int]:
        """What the API client has counted so far in this run."""
        refreshes = self.tokens.refreshes - self.refreshes_before
        return {"token_refreshes": refreshes, **self.client.stats.as_dict()}

    def counters(self) -> dict[str, int]:
        return {
            "pages": self.pages,
            "records": self.records,
            "deleted": self.deleted,
            **self.stats(),
        }

    def execute(self, cursor: datetime | None, full: bool) -> None:
        self.cursor = self.resumed_from = cursor
        paging = strategy.paging_for(
            self.settings, self.engine, self.client, self.resource, self.org
        )
        try:
            self._read(paging, cursor, full)
        except OrderViolated as exc:
            if paging.strategy != "keyset" or self.settings.sync_strategy == "keyset":
                raise
            # The API stopped honouring what it had proven: probe again, read as it now allows.
            log.warning("%s; probing again", exc)
            paging = strategy.paging_for(
                self.settings, self.engine, self.client, self.resource, self.org, probe=True
            )
            self._read(paging, cursor, full)

    def _read(self, paging: strategy.Paging, cursor: datetime | None, full: bool) -> None:
        known = paging.capabilities
        if not known.exists:
            raise EndpointMissing(
                f"{self.resource.name}: {known.message or 'the list endpoint answered 404'}; "
                f"if the API serves it elsewhere set SYNC_ENDPOINTS={self.resource.name}="
                "/api/v1/<path>, else leave it out of SYNC_RESOURCES"
            )
        # more parts than requests may ever be in flight: the client's throttle decides how
        # many are (worker/source/concurrency.py, issue 16), _fetching starts a thread per
        # request in flight, and a thread done with its part takes the next, so that the run
        # does not end on one long part read alone
        concurrency = PARTS_PER_REQUEST * self.settings.sync_max_concurrency
        if paging.strategy == "sweep":
            self._sweep(paging, full)
            return
        lookback = timedelta(seconds=self.settings.sync_lookback_seconds)
        lower = None if full or cursor is None else cursor - lookback
        keyset = KeysetPager(
            self.client,
            self.resource,
            paging.page_size,
            concurrency,
            start_inclusive=known.start_inclusive is not False,
        )
        slices, first = keyset.plan(lower)
        self._fetch(keyset, slices, first, "full" if full else "incremental", lower)
        if full:
            self._mark(full_sync=self.started)
            self.deleted = self.loader.mark_deleted(self.started, self.lease.renew)
            self.loader.release_unseen(self.started, self.lease.renew)
            return
        if known.by_id:
            self._retry_quarantined()
        if self.cursor is not None:
            self.deleted = reconcile(
                self.client,
                keyset,
                self.loader,
                self.resource,
                self.cursor,
                self._store_records,
                self.lease.renew,
                read=(lower, self.started),
                end_inclusive=bool(known.end_inclusive),
                by_id=bool(known.by_id),
            )

    def _sweep(self, paging: strategy.Paging, full: bool) -> None:
        """The whole list, then the deletions it reveals; or, between sweeps (at most every
        SYNC_SWEEP_INTERVAL_SECONDS), only the records created since the last one."""
        known = paging.capabilities
        concurrency = PARTS_PER_REQUEST * self.settings.sync_max_concurrency  # see _read
        self.page_limit = 0  # a sweep cannot resume from a cursor: it never yields
        previous, created_cursor = sweep_marks(self.engine, self.resource.name, self.org)
        interval = timedelta(seconds=self.settings.sync_sweep_interval_seconds)
        if (
            not full
            and known.created_filter
            and previous is not None
            and created_cursor is not None
            and self.started - previous < interval
        ):
            lookback = timedelta(seconds=self.settings.sync_lookback_seconds)
            since = created_cursor - lookback
            window = SweepPager(self.client, self.resource, paging.page_size, concurrency, since)
            parts, first = window.plan()
            self._fetch(window, parts, first, "created-window", since)
            if window.complete:
                self._mark(created_cursor=self.ceiling)
            if known.by_id:
                self._retry_quarantined()
            return
        sweep = SweepPager(self.client, self.resource, paging.page_size, concurrency)
        parts, first = sweep.plan()
        self._fetch(sweep, parts, first, "sweep", None)
        if not sweep.complete:
            return
        self.deleted = sweep_deletions(
            self.client,
            self.loader,
            self.resource,
            known.by_id,
            (self.started, previous),
            self._store_records,
            self.lease.renew,
        )
        # A complete sweep is as good as a full pass: it also sets the cursor, so that the
        # resource could switch to keyset paging without reading everything again.
        self._mark(full_sync=self.started, cursor=self.ceiling, created_cursor=self.ceiling)
        self.loader.release_unseen(self.started, self.lease.renew)

    def _mark(
        self,
        full_sync: datetime | None = None,
        cursor: datetime | None = None,
        created_cursor: datetime | None = None,
    ) -> None:
        """Record what a complete read proved, in one transaction under the lease."""
        with self.engine.begin() as conn:
            self.lease.renew(conn)
            if full_sync is not None:
                mark_full_sync(conn, self.resource.name, self.org, full_sync)
            for column, value in (("cursor", cursor), ("created_cursor", created_cursor)):
                if value is not None:
                    advance_cursor(conn, self.resource.name, self.org, value, column)

    def _fetch(
        self,
        pager: Pager[Any],
        parts: Sequence[Any],
        first: Page,
        how: str,
        lower: datetime | None,
    ) -> None:
        """Read every part on its own thread, then the pager's follow-up; commit as it comes."""
        self.expected = first.total
        log.info(
            "%s: %s run %s from %s, %s records expected, %d part(s)",
            self.resource.name,
            how,
            self.run_id,
            lower.isoformat() if lower else "the beginning",
            first.total if first.total is not None else "?",
            len(parts),
        )
        progress = _Checkpoints(len(parts), lower)
        writers = self.settings.sync_writers if self.loader.postgres else 1  # see commits.py
        with Committer(self._write, writers) as committer:
            # Room for QUEUE_RECORDS records, at least two pages per default request in flight
            depth = max(
                2 * min(len(parts), self.settings.sync_concurrency),
                QUEUE_RECORDS // max(1, len(first.records)),
            )
            # A run that may yield commits in batches of at most its page limit, so that it
            # yields after that many pages, not after whatever arrived at once.
            batch_pages = self.page_limit or None
            with _fetching(
                pager,
                parts,
                first,
                self._rows,
                depth,
                lambda: self.client.throttle.limit,
                BATCH_RECORDS // writers,
                batch_pages,
            ) as batches:
                for batch in batches:
                    self._submit(committer, batch, progress)
            for chunk in pager.follow_up():
                self._submit(committer, [(chunk, self._rows(chunk.records))], progress)
        final = committer.ledger.newest
        if final is not None:  # the batches in flight may have written less
            self._store([], final, pages=0)
        self._check_stop()

    def _rows(self, records: list[Record]) -> list[Row]:
        """A page's rows, and a sample of its records' shape (on the fetcher threads)."""
        self.shape.sample(records)
        return self.loader.rows(records)

    def _store_records(self, records: list[Record]) -> None:
        self._store(self._rows(records))

    def _retry_quarantined(self) -> None:
        """Records earlier runs quarantined, fetched again by id: one that loads now leaves the
        quarantine as it is stored (warehouse/load.py); one still refused stays, seen again.
        A 404 leaves it too, until a full pass confirms it gone: 404 alone is not proof."""
        found: list[Record] = []
        for record_id in self.loader.quarantined_to_retry(self.started):
            self._check_stop()
            try:
                record = self.client.get_record(self.resource, record_id)
            except ApiError as exc:  # no usable by-id route: they wait for a full pass
                log.warning("%s: quarantine not retried by id: %s", self.resource.name, exc)
                break
            if record is not None:
                found.append(record)
        if found:
            self._store_records(found)

    def _check_stop(self) -> None:
        """Between pages only, so that nothing is ever half-written."""
        if self.stop.is_set():
            raise Interrupted(
                f"{self.resource.name}: stopped at a page boundary on request; the next run "
                "resumes from the last committed page"
            )

    def _submit(self, committer: Committer, batch: list[Loaded], progress: _Checkpoints) -> None:
        """Pages that arrived together commit together, with the cursor after the last."""
        self._check_stop()
        moved = self.cursor is not None and self.cursor != self.resumed_from
        if self.page_limit and self.submitted >= self.page_limit and moved:
            # More pages are waiting: make way for other tasks (what is submitted commits).
            # Only once the cursor moved, so that the next run starts further on: a run whose
            # first slice got no page yet reads on (slices complete out of order).
            raise Yielded(
                f"{self.resource.name}: read {self.submitted} pages, SYNC_PAGES_PER_TASK="
                f"{self.page_limit}; enqueued again, it resumes from its cursor"
            )
        self.submitted += len(batch)
        rows: list[Row] = []
        for chunk, chunk_rows in batch:
            safe = progress.update(chunk)
            if safe is not None:
                capped = min(safe, self.ceiling)  # the first cursor of a resource too
                self.cursor = capped if self.cursor is None else max(capped, self.cursor)
            rows += chunk_rows
        committer.submit(rows, len(batch), self.cursor)

    def _store(self, rows: list[Row], cursor: datetime | None = None, pages: int = 1) -> None:
        """Commit now, on this thread (reconciliation, and the final cursor)."""
        self._write(rows, pages, lambda: cursor)

    def _write(self, rows: list[Row], pages: int, cursor: Covered) -> None:
        """One batch's transaction; on a writer thread, or on this one via ``_store``."""
        self.loader.commit(rows, pages, cursor, self.stats(), self.lease.renew)
        with self._lock:
            self.pages += pages
            self.records += len(rows)
            if self.progress is not None:
                self.progress(self.resource.name, self.records, self.expected)

    def finish(self, status: str, error: str | None = None) -> RunRow:
        self._record_drift(status == "succeeded")
        run = finish_run(
            self.engine, self.run_id, self.resource.name, self.org, status, self.counters(), error
        )
        log.info(
            "%s: run %s %s: %d records in %d pages, %d requests, %d retries",
            self.resource.name,
            self.run_id,
            status,
            run.records,
            run.pages,
            run.requests,
            run.retries,
        )
        return run

    def _record_drift(self, complete: bool) -> None:
        """Schema drift is a finding, not a failure: it never changes the run's outcome, and
        a failure to record it is logged, not raised (the run's own row matters more)."""
        try:
            changes = drift.record(
                self.engine,
                self.resource,
                self.org,
                self.run_id,
                self.shape.types,
                self.shape.sampled,
                self.loader.unparsable,
                utcnow(),
                complete,
            )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("%s: schema drift not recorded: %s", self.resource.name, exc)
            return
        if changes:
            log.warning(
                "%s: schema drift, %d change(s) (see rrsync_drift, `rosesync status`): %s",
                self.resource.name,
                len(changes),
                "; ".join(f"{c.path} {c.change} ({c.detail})" for c in changes[:5]),
            )


class _Checkpoints:
    """Where the cursor may safely stand: every record before it is committed.

    Keyset slices complete out of order; the cursor may only move to the position of the first
    slice that is not done yet (all earlier slices being complete), or past all of them. A
    sweep's chunks carry no position, so it never moves the cursor this way.
    """

    def __init__(self, parts: int, lower: datetime | None) -> None:
        self.position: list[datetime | None] = [lower] * parts
        self.done = [False] * parts

    def update(self, chunk: Chunk) -> datetime | None:
        if chunk.part < len(self.done):
            self.position[chunk.part] = chunk.position
            self.done[chunk.part] = chunk.done
            for position, done in zip(self.position, self.done, strict=True):
                if not done:
                    return position
            known = [p for p in self.position if p is not None]
            return max(known) if known else None
        # a follow-up read runs after every part is complete
        return chunk.position


_END = object()
Loaded = tuple[Chunk, list[Row]]  # a page, and its records already turned into rows

# A transaction per page costs more than the page's rows on SQLite (every commit rewrites the
# touched B-tree pages into the WAL): pages are committed in batches of this many records, or of
# whatever arrived within BATCH_SECONDS of the batch's first page, whichever comes first. So a
# fast API gets few, large transactions, and a slow one still a commit every half second.
# Counted across the writers: PostgreSQL's SYNC_WRITERS each take batches of BATCH_RECORDS /
# SYNC_WRITERS, so the batches being written hold as many records together as SQLite's one
# (a batch's rows, child rows and their JSON stay in memory while it is written: with child
# tables, two PostgreSQL writers of 2,000 records peaked at 160 MB, of 1,000 at 130 MB, in the
# same time; issue 16, target 5).
BATCH_RECORDS = 2000
BATCH_SECONDS = 0.5
PARTS_PER_REQUEST = 2  # parts planned per request that may be in flight (see _Run._read)
# Records that may wait between the fetchers and the writer, so that the fetchers go on while the
# writer commits (SQLite's one writer: 0.2-0.6 s a batch, median 0.4 s, on the loaded benchmark
# machine). Four pages of 50 records are 50 ms of an 8-request run at 100 ms a request: the
# fetchers stalled on the full queue for up to 0.2 s at a time in one second out of five
# (issue 16). In records, not pages: 200-record pages get the four they had, and no more memory.
QUEUE_RECORDS = 800


@contextmanager
def _fetching(
    pager: Pager[Any],
    parts: Sequence[Any],
    first: Page,
    prepare: Callable[[list[Record]], list[Row]],
    depth: int,
    wanted: Callable[[], int],
    batch_records: int,
    batch_pages: int | None = None,
) -> Iterator[Iterator[list[Loaded]]]:
    """Read every part on its own thread; yields batches of the pages as they arrive, in this
    thread (up to ``batch_records`` records, or what arrived within ``BATCH_SECONDS``).

    The fetchers also ``prepare`` the rows (decoding and building rows is the Python-heavy
    part; the writer's time goes to the database driver, which releases the GIL), so the two
    halves of the work overlap on two cores.

    At most ``depth`` pages wait in the queue: memory stays flat whatever the number of parts.

    Any fetcher's error is re-raised here. On the way out (done, error or interrupt) the
    fetchers are told to stop and are joined, so no thread outlives the run.
    """
    chunks: queue.Queue[object] = queue.Queue(maxsize=depth)
    halt = threading.Event()
    waiting = list(reversed(parts))  # parts no thread has taken yet, next one last
    lock = threading.Lock()

    def put(item: object) -> None:
        while not halt.is_set():
            try:
                chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def fetch() -> None:
        while not halt.is_set():
            with lock:
                if not waiting:
                    return
                part = waiting.pop()
            try:
                for chunk in pager.read(part, first if part.index == 0 else None):
                    put((replace(chunk, records=[]), prepare(chunk.records)))
                    if halt.is_set():
                        return
            except BaseException as exc:  # handed to the writer, which re-raises it
                put(exc)
                return
            finally:
                put(_END)

    threads: list[threading.Thread] = []

    def grow() -> None:
        """A thread per request that may be in flight, up to one per part not yet taken: no
        more threads than requests (each thread's decoding has its own allocations, and a
        thread waiting at the throttle would only hold memory)."""
        while len(threads) < wanted() and waiting:
            thread = threading.Thread(target=fetch, name=f"fetch-{len(threads)}", daemon=True)
            threads.append(thread)
            thread.start()

    grow()

    def drain() -> Iterator[list[Loaded]]:
        running = len(parts)
        batch: list[Loaded] = []
        size = 0
        deadline = 0.0
        while running:
            try:
                wait = max(0.0, deadline - time.monotonic()) if batch else None
                item = chunks.get(timeout=wait)
            except queue.Empty:  # the batch's time is up: commit what we have
                yield batch
                batch, size = [], 0
                continue
            grow()  # the throttle may allow more requests in flight by now
            if item is _END:
                running -= 1
            elif isinstance(item, BaseException):
                if batch:  # what arrived before the failure is good: keep it
                    yield batch
                raise item
            else:
                loaded: Loaded = item  # type: ignore[assignment]
                if not batch:
                    deadline = time.monotonic() + BATCH_SECONDS
                batch.append(loaded)
                size += len(loaded[1])
                if size >= batch_records or len(batch) == batch_pages:
                    yield batch
                    batch, size = [], 0
        if batch:
            yield batch

    try:
        yield drain()
    finally:
        halt.set()
        for thread in threads:
            thread.join()


def sync_resources(
    settings: Settings,
    engine: Engine,
    tokens: TokenSource,
    resources: list[Resource],
    *,
    full: bool = False,
    trigger: str = "cli",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[SyncResult]:
    """Sync each resource in turn. A problem no retry can fix (the grant is revoked, a setting
    is wrong) stops the remaining ones at once rather than failing each the same way; so does a
    failed token refresh cycle, whose back-off would only fail them too (issue 13, item 3)."""
    results: list[SyncResult] = []
    for resource in resources:
        result = sync_resource(
            settings,
            engine,
            tokens,
            resource,
            full=full,
            trigger=trigger,
            progress=progress,
            stop=stop,
        )
        results.append(result)
        # Unreachable too: the next resource would find the same refused port (issue 17); and a
        # failed token refresh cycle, whose back-off would only fail them too (issue 13)
        fatal = ReauthRequired | ConfigError | Interrupted | Unreachable | RefreshBlocked
        if isinstance(result.error, fatal):
            break
    return results
