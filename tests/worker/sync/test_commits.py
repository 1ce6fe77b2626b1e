"""worker/sync/commits.py: batches commit side by side, the cursor never covers an uncommitted
batch, and a writer's error reaches the run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.sync.commits import Committer, Covered, Ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_transaction_covers_only_committed_batches_and_itself() -> None:
    ledger = Ledger()
    first, second, third = (ledger.add(at(n)) for n in (1, 2, 3))
    assert ledger.covered(second) is None  # the first is still in flight
    assert ledger.covered(first) == at(1)
    ledger.committed(third)  # out of order: covers nothing while the first two are missing
    assert ledger.covered(first) == at(1)
    ledger.committed(first)
    assert ledger.covered(second) == at(3)  # itself, and the third that committed before it
    assert ledger.newest is None  # the second is not committed yet
    ledger.committed(second)
    assert ledger.newest == at(3)


def test_batches_without_a_cursor_do_not_hide_earlier_ones() -> None:
    ledger = Ledger()
    first, second = ledger.add(at(5)), ledger.add(None)
    ledger.committed(first)
    assert ledger.covered(second) == at(5)


class Recorder:
    """A write function that remembers what it was given, optionally waiting on a gate."""

    def __init__(self, gate: threading.Barrier | None = None, fail_on: int | None = None) -> None:
        self.gate = gate
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.written: list[tuple[list[Any], datetime | None]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, rows: list[Any], pages: int, covered: Covered) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                self.gate.wait(timeout=10)
            if rows and rows[0] == self.fail_on:
                raise RuntimeError(f"batch {self.fail_on} refused")
            with self.lock:
                self.written.append((rows, covered()))
        finally:
            with self.lock:
                self.in_flight -= 1


def test_two_writers_commit_two_batches_at_once() -> None:
    write = Recorder(gate=threading.Barrier(2))  # neither returns until both are in flight
    with Committer(write, writers=2) as committer:
        committer.submit([1], 1, at(1))
        committer.submit([2], 1, at(2))
    assert write.most_in_flight == 2
    assert sorted(rows for rows, _ in write.written) == [[1], [2]]
    assert committer.ledger.newest == at(2)


def test_no_more_batches_in_flight_than_writers() -> None:
    write = Recorder()
    with Committer(write, writers=3) as committer:
        for n in range(30):
            committer.submit([n], 1, at(n))
    assert write.most_in_flight <= 3
    assert len(write.written) == 30
    assert committer.ledger.newest == at(29)


def test_a_writers_error_is_raised_and_nothing_after_it_is_written() -> None:
    write = Recorder(fail_on=3)
    committer = Committer(write, writers=1)

    def submit_ten() -> None:
        with committer:
            for n in range(10):
                committer.submit([n], 1, at(n))

    with pytest.raises(RuntimeError, match="batch 3 refused"):
        submit_ten()
    assert [rows for rows, _ in write.written] == [[0], [1], [2]]
    assert committer.ledger.newest is None


def test_an_error_in_the_last_batch_is_raised_on_close() -> None:
    write = Recorder(fail_on=1)
    committer = Committer(write, writers=2)
    committer.submit([0], 1, at(0))
    committer.submit([1], 1, at(1))
    with pytest.raises(RuntimeError, match="batch 1 refused"):
        committer.close()


def test_the_runs_own_error_is_not_masked_by_a_writers() -> None:
    write = Recorder(fail_on=0)

    def fail_while_a_batch_fails() -> None:
        with Committer(write, writers=1) as committer:
            committer.submit([0], 1, at(0))
            raise KeyError("the fetcher failed")

    with pytest.raises(KeyError):
        fail_while_a_batch_fails()
