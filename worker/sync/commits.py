"""Committing a run's batches on several connections at once, the cursor never ahead of the rows.

Why more than one: on PostgreSQL most of a batch's cost is the server parsing each record's
JSONB, and one connection keeps one server core busy. With two batches in flight the server
works on both while this process prepares the next (issue 7: 10,300 to 12,000 records/s on the
benchmark machine). Each batch is still one transaction holding its rows, the cursor and the
run's counters; SQLite, which has a single write lock, gets one writer, and even then the
writer thread lets the next batch arrive while the previous one commits.

What changes with batches committing side by side, and out of order, is which cursor a batch may
write. A batch's own cursor (the position :class:`worker.sync.run._Checkpoints` computed when it was
handed over) claims that every batch before it is committed too. So a transaction writes the
cursor of the newest batch such that that batch and all before it are committed already or are
this transaction's own: a crash at any point leaves the cursor at or behind the committed rows,
never ahead. It may lag by the batches in flight, so once all are committed the run writes the
newest one (``Ledger.newest``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any

Covered = Callable[[], datetime | None]


Write = Callable[[list[Any], int, Covered], None]
"""Commits one batch (its rows, its page count) in one transaction, calling ``covered()`` inside
it for the cursor to write."""


@dataclass(frozen=True, slots=True)
class _Batch:
    number: int
    rows: list[Any]
    pages: int


class Ledger:
    """Which batches are committed, and so which cursor a transaction may write. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: list[datetime | None] = []
        self._committed: set[int] = set()
        self._prefix = 0  # batches 0 .. _prefix - 1 are all committed

    def add(self, cursor: datetime | None) -> int:
        """Registers the next batch; returns its number."""
        with self._lock:
            self._cursors.append(cursor)
            return len(self._cursors) - 1

    def covered(self, number: int) -> datetime | None:
        """The cursor batch ``number``'s transaction may write (None: leave it alone)."""
        with self._lock:
            end = self._prefix
            while end < len(self._cursors) and (end in self._committed or end == number):
                end += 1
            newest = [c for c in self._cursors[:end] if c is not None]
            return max(newest) if newest else None

    def committed(self, number: int) -> None:
        with self._lock:
            self._committed.add(number)
            while self._prefix in self._committed:
                self._committed.discard(self._prefix)
                self._prefix += 1

    @property
    def newest(self) -> datetime | None:
        """The newest cursor, once every batch is committed (None until then)."""
        with self._lock:
            complete = self._prefix == len(self._cursors)
        return self.covered(-1) if complete else None


_STOP = object()


class Committer:
    """Commits batches on ``writers`` threads, at most ``writers`` batches in flight.

    ``submit`` blocks while all writers are busy (so memory stays bounded) and raises the first
    writer's error; ``close`` waits for every batch in flight and raises that error if nobody
    has seen it yet. After an error no queued batch is written: the run is failing, and the
    ledger keeps the cursor behind the batch that failed anyway.
    """

    def __init__(self, write: Write, writers: int) -> None:
        self._write = write
        self.ledger = Ledger()
        self._slots = threading.Semaphore(writers)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._raised = False
        self._threads = [
            threading.Thread(target=self._work, name=f"writer-{n}", daemon=True)
            for n in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, rows: list[Any], pages: int, cursor: datetime | None) -> None:
        """Hands a batch over; ``cursor`` is safe once it and every batch before it commit."""
        self._raise_error()
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            self._raise_error()
        self._queue.put(_Batch(self.ledger.add(cursor), rows, pages))

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, _Batch)
            try:
                if self._error is None:
                    covered = partial(self.ledger.covered, item.number)
                    self._write(item.rows, item.pages, covered)
                    self.ledger.committed(item.number)
            except BaseException as exc:  # handed to the submitting thread
                if self._error is None:
                    self._error = exc
            finally:
                self._slots.release()

    def _raise_error(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def close(self) -> None:
        """Waits for the writers; raises a writer's error nobody has seen yet."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._raise_error()

    def __enter__(self) -> Committer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
            return
        # Something else is failing the run: let the batches in flight finish (their rows are
        # good), and do not mask the original error with a writer's.
        self._raised = True
        self.close()
