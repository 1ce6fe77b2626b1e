"""The shape of the records a run saw: each field's path and JSON types, never a value (issue 14,
item 2, schema drift).

A run compares this shape with the one earlier runs stored (warehouse/drift.py) to notice a
field Rose Rocket adds, drops or changes the type of. Walking a record's whole tree costs about
34 us (a 2 KB order: decoding it in full, then every path), four times what decoding its typed
fields and building its row cost (8.6 us; ``python -m benchmarks.drift_sampling``). So only a
sample is walked: the first record of every page (a change in the API shows up on every page
that follows) and every :data:`EVERY`-th after it, about 2.4 us a record on average, some 2% of
a record's whole cost in a sync (10,000 records/s on PostgreSQL: benchmarks/README.md).

Paths are printable and bounded: a key is stored as text in the drift table and printed by
``rosesync status``, and the API's keys are not ours to trust (a NUL in a key failed a
PostgreSQL batch in an earlier attempt), so control characters are escaped and long keys cut.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from worker.source.records import Record

EVERY = 20  # after a page's first record, every EVERY-th is walked
MAX_DEPTH = 8  # deeper levels are not walked (their parent's type is still recorded)
MAX_KEY = 64  # characters of one key kept in a path
MAX_PATH = 300  # characters of a whole path
MAX_PATHS = 2000  # distinct paths kept per run: an object keyed by ids must not grow without end

_JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",  # 12 and 12.5 are one JSON type: amounts flip between them
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def printable(key: str) -> str:
    """A key as it may be stored and printed: a backslash doubled, unprintable characters
    (control characters, NUL, lone surrogates) as ``\\xNN``/``\\uNNNN`` escapes, cut to
    :data:`MAX_KEY` characters ending in an ellipsis."""
    if len(key) <= MAX_KEY and key.isprintable() and "\\" not in key:
        return key  # nearly every key: two scans in C, no copy
    text = "".join(_escape(ch) for ch in key[: MAX_KEY + 1])
    return text if len(text) <= MAX_KEY else text[: MAX_KEY - 1] + "\u2026"


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


@dataclass(slots=True)
class Shape:
    """Paths seen (``billing.total_amount``; ``stops[].city`` for an array's elements) with
    the JSON types seen at each, from the records sampled. Thread-safe: every fetcher thread
    of a run adds to one."""

    types: dict[str, set[str]] = field(default_factory=dict)
    sampled: int = 0  # records walked
    truncated: bool = False  # MAX_PATHS was reached: later new paths were not kept
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _decoder: msgspec.json.Decoder[Any] = field(default_factory=msgspec.json.Decoder)

    def sample(self, records: Iterable[Record]) -> None:
        """Walk a sample of one page's records (module doc); records with a problem are the
        quarantine's, not the shape's."""
        found: dict[str, set[str]] = {}
        walked = 0
        for index, record in enumerate(records):
            if index % EVERY or record.problem is not None:
                continue
            try:
                value = self._decoder.decode(record.raw)
            except (msgspec.DecodeError, RecursionError):
                continue  # the lenient decoder's re-encoding: its record is sampled next page
            if type(value) is dict:
                _walk(value, "", 0, found)
            walked += 1
        if walked:
            self._merge(found, walked)

    def _merge(self, found: dict[str, set[str]], walked: int) -> None:
        with self._lock:
            self.sampled += walked
            for path, kinds in found.items():
                known = self.types.get(path)
                if known is not None:
                    known |= kinds
                elif len(self.types) < MAX_PATHS:
                    self.types[path] = set(kinds)
                else:
                    self.truncated = True


def _walk(value: Any, path: str, depth: int, found: dict[str, set[str]]) -> None:
    """Adds the paths under ``value`` (an object or array) and their types to ``found``; only
    containers recurse (most values are leaves)."""
    if depth >= MAX_DEPTH:
        return
    if type(value) is dict:
        for key, item in value.items():
            child = f"{path}.{printable(key)}" if path else printable(key)
            if len(child) <= MAX_PATH:
                _add(found, child, item, depth)
    else:
        elements = f"{path}[]"
        for item in value:
            _add(found, elements, item, depth)


def _add(found: dict[str, set[str]], path: str, item: Any, depth: int) -> None:
    kind = type(item)
    kinds = found.get(path)
    if kinds is None:
        kinds = found[path] = set()
    kinds.add(_JSON_TYPES.get(kind, "unknown"))
    if kind is dict or kind is list:
        _walk(item, path, depth + 1, found)
