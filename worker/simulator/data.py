"""The simulator's live dataset: every resource's records, the API's paging orders, and mutation.

Records are stored only as their serialized JSON (bytes): a page is then a join of ready
bytes, and the memory of a 700,000-record dataset stays a few hundred MB. A mutation decodes the
one record it edits, changes it and re-encodes it, so the stored bytes are always exactly what the
API serves.

Each resource keeps its records in two orders, as a database's indexes would: (updated_at, id)
ascending, the extended profile's order, and (created_at descending, id), the documented
profile's "newest first". Filters on the order's own key cost O(log n + page size) via bisect;
a live insert lands where its created_at puts it and a delete shifts every later record, in
both orders, so offset paging drifts exactly as it would against a real database.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from worker.simulator.poison import encode_poisoned, poisoned
from worker.simulator.records import BUILD_ORDER, RecordFactory

# Live mutation: how often each kind happens (the rest are deletes).
UPDATE_SHARE = 0.60
CREATE_SHARE = 0.25

MUTATION_KINDS = ("updated", "created", "deleted")


def encode(record: dict[str, Any]) -> bytes:
    """The record's JSON (msgspec returns an exactly-sized bytes object, which matters for the
    memory of a large dataset)."""
    try:
        return msgspec.json.encode(record)
    except UnicodeEncodeError:  # a planted lone surrogate (poison.py)
        return encode_poisoned(record)


def decode(blob: bytes) -> dict[str, Any]:
    """A stored record; Python's json reads the poison msgspec refuses (a lone surrogate)."""
    try:
        return msgspec.json.decode(blob)  # type: ignore[no-any-return]
    except msgspec.DecodeError:
        return json.loads(blob)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Page:
    items: list[bytes]  # serialized records, in API order
    total: int  # records matching the filters, across all pages


@dataclass(frozen=True)
class Window:
    """Filters of a list request, in epoch ms; None where the request sets no bound."""

    updated_start: int | None = None
    updated_end: int | None = None
    end_inclusive: bool = False  # updated_end includes records stamped exactly at it
    created_start: int | None = None
    created_end: int | None = None  # exclusive


class _Table:
    """One resource's records and their two orders."""

    __slots__ = ("by_created", "keys", "next_number", "rows")

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []  # sorted (updated_at ms, id)
        self.by_created: list[tuple[int, str]] = []  # sorted (-created_at ms, id): newest first
        self.rows: dict[str, tuple[int, int, bytes]] = {}  # id -> (updated ms, created ms, JSON)
        self.next_number = 1  # full_id number of the next record created


class Dataset:
    """Thread-safe store of every resource, built deterministically from a seed.

    One lock covers reads and mutations, so a page is a consistent snapshot and a mutation is
    atomic with respect to every request.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        seed: int,
        clock: Callable[[], float] = time.time,
        poison: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._factory = RecordFactory(seed)
        self._rng = random.Random(f"mutations:{seed}")
        self._tables: dict[str, _Table] = {}
        for resource in BUILD_ORDER:
            table = _Table()
            rows = table.rows
            for created, updated, record in self._factory.initial(resource, sizes.get(resource, 0)):
                rows[record["id"]] = (updated, created, encode(record))
            table.keys = sorted((updated, record_id) for record_id, (updated, _, _) in rows.items())
            table.by_created = sorted((-created, key) for key, (_, created, _) in rows.items())
            table.next_number = len(rows) + 1
            self._tables[resource] = table
        self._poisoned: dict[str, list[str]] = {}
        chooser = random.Random(f"poison:{seed}")
        for resource, kinds in (poison or {}).items():
            rows = self._tables[resource].rows
            chosen = chooser.sample(sorted(rows), len(kinds))
            for record_id, kind in zip(chosen, kinds, strict=True):
                updated, created, blob = rows[record_id]
                rows[record_id] = (updated, created, encode(poisoned(decode(blob), kind)))
            self._poisoned[resource] = chosen

    def poisoned(self, resource: str) -> list[str]:
        """The ids of the poison records planted in ``resource`` (in the order of its kinds)."""
        return list(self._poisoned.get(resource, ()))

    def page_by_updated(self, resource: str, offset: int, limit: int, window: Window) -> Page:
        """The extended profile: ordered by (updated_at, id), `updated_*` filters by bisect."""
        table = self._tables[resource]
        with self._lock:
            keys = table.keys
            # (ms,) sorts before every (ms, id): bisect_left finds the first key at or after ms.
            low = 0
            if window.updated_start is not None:
                low = bisect.bisect_left(keys, (window.updated_start,))
            if window.updated_end is None:
                high = len(keys)
            else:
                end = window.updated_end + 1 if window.end_inclusive else window.updated_end
                high = bisect.bisect_left(keys, (end,))
            return self._slice(table, keys, low, max(low, high), offset, limit, window)

    def page_by_created(self, resource: str, offset: int, limit: int, window: Window) -> Page:
        """The documented profile: newest-created first, `created_*` filters by bisect."""
        table = self._tables[resource]
        with self._lock:
            keys = table.by_created
            # Negated stamps: created_at < end  <=>  -created_at > -end.
            low = 0
            if window.created_end is not None:
                low = bisect.bisect_right(keys, (-window.created_end, "\uffff"))
            high = len(keys)
            if window.created_start is not None:
                high = bisect.bisect_right(keys, (-window.created_start, "\uffff"))
            return self._slice(table, keys, low, max(low, high), offset, limit, Window())

    @staticmethod
    def _slice(
        table: _Table,
        keys: list[tuple[int, str]],
        low: int,
        high: int,
        offset: int,
        limit: int,
        window: Window,
    ) -> Page:
        """A page of ``keys[low:high]``: a slice of the order, so a page costs its own size and
        not the list's (the simulator shares the benchmark's two cores with the client: a copy
        of 50,000 ids a request was most of its CPU, issue 16); with a created filter on the
        updated order, a scan (that order has no such index)."""
        rows = table.rows
        if window.created_start is None and window.created_end is None:
            start = low + offset
            chosen = keys[start : min(high, start + limit)]
            return Page([rows[key][2] for _, key in chosen], high - low)
        start_at = window.created_start if window.created_start is not None else -(2**62)
        end_at = window.created_end if window.created_end is not None else 2**62
        ids = [key for _, key in keys[low:high] if start_at <= rows[key][1] < end_at]
        return Page([rows[key][2] for key in ids[offset : offset + limit]], len(ids))

    def get(self, resource: str, record_id: str) -> bytes | None:
        with self._lock:
            row = self._tables[resource].rows.get(record_id)
        return None if row is None else row[2]

    def dump(self, resource: str) -> list[dict[str, Any]]:
        """Every live record of `resource`, decoded, in (updated_at, id) order."""
        table = self._tables[resource]
        with self._lock:
            blobs = [table.rows[record_id][2] for _, record_id in table.keys]
        return [decode(blob) for blob in blobs]

    def delete(self, resource: str, record_ids: list[str]) -> int:
        """Delete these records (unknown ids are ignored); returns how many were deleted."""
        table = self._tables[resource]
        deleted = 0
        with self._lock:
            for record_id in record_ids:
                row = table.rows.pop(record_id, None)
                if row is None:
                    continue
                updated, created, _ = row
                del table.keys[bisect.bisect_left(table.keys, (updated, record_id))]
                del table.by_created[bisect.bisect_left(table.by_created, (-created, record_id))]
                deleted += 1
        return deleted

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
            _, created, blob = table.rows[record_id]
            record = decode(blob)
            # Strictly after the previous stamp even if the wall clock stalls or steps back,
            # so that an incremental reader always sees the edit as new.
            updated = max(now_ms, previous + 1)
            self._factory.touch(rng, resource, record, updated)
            self._store(table, updated, created, record)  # created_at never changes
            return "updated"
        if not table.keys or roll < UPDATE_SHARE + CREATE_SHARE:
            record = self._factory.create(rng, resource, table.next_number, now_ms)
            table.next_number += 1
            self._store(table, now_ms, now_ms, record)
            bisect.insort(table.by_created, (-now_ms, record["id"]))
            return "created"
        _, record_id = table.keys.pop(int(rng.random() * len(table.keys)))
        _, created, _ = table.rows.pop(record_id)
        del table.by_created[bisect.bisect_left(table.by_created, (-created, record_id))]
        return "deleted"

    @staticmethod
    def _store(table: _Table, updated: int, created: int, record: dict[str, Any]) -> None:
        record_id = record["id"]
        table.rows[record_id] = (updated, created, encode(record))
        bisect.insort(table.keys, (updated, record_id))
