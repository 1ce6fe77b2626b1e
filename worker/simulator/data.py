"""The simulator's live dataset: every resource's records, the API's paging order, and mutation.

Records are stored only as their serialized JSON (bytes): a page is then a join of ready
bytes, and the memory of a 700,000-record dataset stays a few hundred MB. A mutation decodes the
one record it edits, changes it and re-encodes it, so the stored bytes are always exactly what the
API serves.

Each resource also keeps a sorted list of (updated_at ms, id) keys, the API's order, so a page
with timestamp filters costs O(log n + page size) via bisect.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from worker.simulator.records import BUILD_ORDER, RecordFactory

# Live mutation: how often each kind happens (the rest are deletes).
UPDATE_SHARE = 0.60
CREATE_SHARE = 0.25

MUTATION_KINDS = ("updated", "created", "deleted")


def encode(record: dict[str, Any]) -> bytes:
    """The record's JSON (msgspec returns an exactly-sized bytes object, which matters for the
    memory of a large dataset)."""
    return msgspec.json.encode(record)


@dataclass(frozen=True)
class Page:
    items: list[bytes]  # serialized records, in API order
    total: int  # records matching the filters, across all pages


class _Table:
    """One resource's records and their order."""

    __slots__ = ("keys", "next_number", "rows")

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []  # sorted (updated_at ms, id)
        self.rows: dict[str, tuple[int, bytes]] = {}  # id -> (updated_at ms, JSON)
        self.next_number = 1  # full_id number of the next record created


class Dataset:
    """Thread-safe store of every resource, built deterministically from a seed.

    One lock covers reads and mutations, so a page is a consistent snapshot and a mutation is
    atomic with respect to every request.
    """

    def __init__(
        self, sizes: Mapping[str, int], seed: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._factory = RecordFactory(seed)
        self._rng = random.Random(f"mutations:{seed}")
        self._tables: dict[str, _Table] = {}
        for resource in BUILD_ORDER:
            table = _Table()
            rows = table.rows
            for updated, record in self._factory.initial(resource, sizes.get(resource, 0)):
                rows[record["id"]] = (updated, encode(record))
            table.keys = sorted((updated, record_id) for record_id, (updated, _) in rows.items())
            table.next_number = len(rows) + 1
            self._tables[resource] = table

    def page(
        self,
        resource: str,
        offset: int,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Page:
        """Records with start_ms <= updated_at < end_ms, ordered by (updated_at, id)."""
        table = self._tables[resource]
        with self._lock:
            keys = table.keys
            # (ms,) sorts before every (ms, id): bisect_left finds the first key at or after ms.
            low = 0 if start_ms is None else bisect.bisect_left(keys, (start_ms,))
            high = len(keys) if end_ms is None else bisect.bisect_left(keys, (end_ms,))
            total = max(0, high - low)
            first = low + offset
            rows = table.rows
            items = [rows[record_id][1] for _, record_id in keys[first : min(first + limit, high)]]
        return Page(items, total)

    def get(self, resource: str, record_id: str) -> bytes | None:
        with self._lock:
            row = self._tables[resource].rows.get(record_id)
        return None if row is None else row[1]

    def dump(self, resource: str) -> list[dict[str, Any]]:
        """Every live record of `resource`, decoded, in API order."""
        table = self._tables[resource]
        with self._lock:
            blobs = [table.rows[record_id][1] for _, record_id in table.keys]
        return [msgspec.json.decode(blob) for blob in blobs]

    def mutate(self, count: int, resource: str | None = None) -> dict[str, int]:
        """Apply `count` random updates/creates/deletes; returns how many of each.

        They hit `resource` only if given, else resources in proportion to their size.
        """
        done = dict.fromkeys(MUTATION_KINDS, 0)
        with self._lock:
            for _ in range(count):
                done[self._mutate_one(resource)] += 1
        return done

    def _mutate_one(self, resource: str | None) -> str:
        rng = self._rng
        if resource is None:
            # A busy TMS edits its big tables most: pick the resource in proportion to its size
            # (+1 so that an empty resource can still gain records).
            sizes = [len(self._tables[name].keys) + 1 for name in BUILD_ORDER]
            resource = rng.choices(BUILD_ORDER, sizes)[0]
        table = self._tables[resource]
        now_ms = int(self._clock() * 1000)
        roll = rng.random()
        if table.keys and roll < UPDATE_SHARE:
            position = int(rng.random() * len(table.keys))
            previous, record_id = table.keys.pop(position)
            record = msgspec.json.decode(table.rows[record_id][1])
            # Strictly after the previous stamp even if the wall clock stalls or steps back,
            # so that an incremental reader always sees the edit as new.
            updated = max(now_ms, previous + 1)
            self._factory.touch(rng, resource, record, updated)
            self._store(table, updated, record)
            return "updated"
        if not table.keys or roll < UPDATE_SHARE + CREATE_SHARE:
            record = self._factory.create(rng, resource, table.next_number, now_ms)
            table.next_number += 1
            self._store(table, now_ms, record)
            return "created"
        _, record_id = table.keys.pop(int(rng.random() * len(table.keys)))
        del table.rows[record_id]
        return "deleted"

    @staticmethod
    def _store(table: _Table, updated: int, record: dict[str, Any]) -> None:
        record_id = record["id"]
        table.rows[record_id] = (updated, encode(record))
        bisect.insort(table.keys, (updated, record_id))
