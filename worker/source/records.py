"""Decoding API bodies into :class:`Record`: the raw JSON text plus only the fields rosesync uses.

Decoding is most of a sync's CPU, and Python holds its GIL while doing it. Building every
record's full object tree (to read eight fields, then encode the tree again for the ``data``
column) cost about 30 us a record; instead, msgspec validates each page and hands back every
record as its raw bytes (``msgspec.Raw``), and a decoder generated from the resource registry
reads just the id, the cursor field and the typed columns' paths, skipping everything else.
About 8 us. And ``data`` is now the record's text byte for byte as the API sent it.

The lists the registry stores as child tables (issue 14) come out of the same pass as their raw
text, for the row builder to read (worker/warehouse/rows.py).

A record whose shape does not fit those generated types (``origin`` is a string, say) is
decoded in full and read the slow way, so that odd data ends up as NULL in one typed column
(warehouse/rows.py) rather than failing the page.

A record that cannot be stored at all (no id, not an object, a cursor field that is not a
timestamp, text that is not valid Unicode) does not fail its page either: it comes back with a
``problem``, pagers take no position from it, and the loader quarantines it (issue 13, item 5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec

from worker.clock import parse_timestamp
from worker.errors import MalformedResponse
from worker.source.resources import Resource


class Record(msgspec.Struct, frozen=True):
    """One record: its id, cursor and created values as sent, its typed columns' raw values
    (in ``resource.columns`` order, None when absent) and its JSON text.

    ``lists`` holds, per ``resource.children``, that list as read: its JSON text
    (``msgspec.Raw``), or its value when the record was read the slow way (None when absent);
    the row builder makes the child rows of it (warehouse/rows.py).

    ``problem`` says why the record cannot be stored (then ``id`` is "" when it has none, and
    ``updated`` may be unusable): pagers skip it when they compute positions and check the
    order, and the loader quarantines it instead of upserting it. Without a problem, ``stamp``
    is ``updated`` read once, here, as an aware UTC datetime (what pagers compare and
    PostgreSQL stores), and ``updated`` the text it came from.

    A msgspec Struct rather than a frozen dataclass, whose ``__init__`` sets each field through
    ``object.__setattr__``: 0.1 us a record instead of 1.2 (issue 16).
    """

    id: str
    updated: str | None
    values: tuple[Any, ...]
    raw: str
    created: str | None = None
    problem: str | None = None
    stamp: datetime | None = None
    lists: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One list response: its records, and the ``total`` and ``limit`` the API reported (None
    when absent or not a number: the API may omit them)."""

    records: list[Record]
    total: int | None
    limit: int | None = None


Tree = dict[str, "Tree | Any"]  # path segments; a leaf holds the type to decode it as


def _tree(leaves: dict[str, Any]) -> Tree:
    root: Tree = {}
    for path, kind in leaves.items():
        node = root
        *parents, leaf = path.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node.setdefault(leaf, kind)
    return root


def _struct(name: str, tree: Tree) -> type[msgspec.Struct]:
    """A Struct reading exactly ``tree``: leaves as their type, branches as nested Structs (or
    null); every other field in the record is skipped without being built."""
    fields: list[tuple[str, Any, Any]] = []
    for key, child in tree.items():
        kind: Any = _struct(f"{name}_{key}", child) | None if isinstance(child, dict) else child
        fields.append((key, kind, None))
    return msgspec.defstruct(name, fields, forbid_unknown_fields=False)


# A child list's leaf: its text, whatever it holds (the row builder reads it).
_LIST: Any = msgspec.Raw


def pick(value: Any, path: tuple[str, ...], struct: bool) -> Any:
    """The value at ``path`` in a decoded Struct (``struct``) or JSON value; None where the
    path does not lead anywhere."""
    for key in path:
        if value is None:
            return None
        if struct:
            value = getattr(value, key)
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


class Decoder:
    """Decodes a resource's list and item bodies (one per resource, reusable, thread-safe)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        paths = [
            resource.id_field,
            resource.cursor_field,
            resource.created_field,
            *(c.path for c in resource.columns),
        ]
        lists = [child.path for child in resource.children]
        self._paths = [tuple(p.split(".")) for p in [*paths, *lists]]
        # Every path of a record in one call into C (0.45 us a record, against 2.6 for
        # ``pick`` path by path), for the usual record, whose objects along the paths are all
        # there; one missing (null) on the way raises AttributeError and is read by ``pick``.
        self._picked = attrgetter(*(".".join(p) for p in self._paths))
        self._columns = len(resource.columns)
        leaves = {**dict.fromkeys(paths, Any), **dict.fromkeys(lists, _LIST)}
        record = _struct(f"{resource.name}_record", _tree(leaves))
        self._fast: msgspec.json.Decoder[Any] = msgspec.json.Decoder(record)
        list_body = msgspec.defstruct(
            f"{resource.name}_page",
            [(resource.records_key, list[msgspec.Raw]), ("total", Any, None), ("limit", Any, None)],
        )
        item_body = msgspec.defstruct(f"{resource.name}_item", [(resource.item_key, msgspec.Raw)])
        self._list: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list_body)
        self._item: msgspec.json.Decoder[Any] = msgspec.json.Decoder(item_body)
        self._any: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

    def page(self, body: bytes, where: str) -> Page:
        shape = (
            f"a {self.resource.records_key!r} list; is ROSEROCKET_API_URL the Rose Rocket v1 API?"
        )
        key = self.resource.records_key
        try:
            decoded = _decode(self._list, body, where, shape)
        except _Undecodable:  # perhaps one bad record: keep the others
            items, decoded = _lenient(body, key, where, shape)
            total, limit = decoded.get("total"), decoded.get("limit")
        else:
            items, total, limit = getattr(decoded, key), decoded.total, decoded.limit
        records = [self.record(raw, where) for raw in items]
        return Page(records, _count(total), _count(limit))

    def item(self, body: bytes, where: str) -> Record:
        shape = f"a {self.resource.item_key!r} object"
        try:
            decoded = _decode(self._item, body, where, shape)
        except _Undecodable:
            (raw,), _ = _lenient(body, self.resource.item_key, where, shape, single=True)
            return self.record(raw, where)
        return self.record(getattr(decoded, self.resource.item_key), where)

    def record(self, raw: msgspec.Raw | bytes, where: str) -> Record:
        """Never raises for the record's own content: what cannot be stored is a ``problem``."""
        try:
            text = str(raw, "utf-8")
        except UnicodeDecodeError:
            text = bytes(raw).decode(errors="backslashreplace")
            return self._poison(text, "its text is not valid UTF-8")
        try:
            fields, struct = self._fast.decode(raw), True
        except msgspec.ValidationError:  # not the usual shape: read it in full, the slow way
            try:
                fields, struct = self._any.decode(raw), False
            except (msgspec.DecodeError, RecursionError) as exc:
                return self._undecodable(text, exc)
            if not isinstance(fields, dict):
                return self._poison(text, "it is not a JSON object")
        except (msgspec.DecodeError, RecursionError) as exc:  # e.g. a lone surrogate: \ud800
            return self._undecodable(text, exc)
        if struct:
            try:
                found = self._picked(fields)
            except AttributeError:  # an object on the way to some path is null
                found = self._pick_each(fields, struct)
        else:
            found = self._pick_each(fields, struct)
        record_id, updated, created = found[:3]
        end = 3 + self._columns
        if type(record_id) is not str and (record_id is None or isinstance(record_id, dict | list)):
            kind = "none" if record_id is None else "an object or array"
            return self._poison(text, f"its {self.resource.id_field!r} is {kind}")
        stamp, problem = self._stamp(updated)
        return Record(
            id=record_id if type(record_id) is str else str(record_id),
            updated=updated if type(updated) is str else None,
            values=found[3:end],
            raw=text,
            created=created if type(created) is str else None,
            problem=problem,
            stamp=stamp,
            lists=found[end:],
        )

    def _pick_each(self, fields: Any, struct: bool) -> tuple[Any, ...]:
        return tuple(pick(fields, path, struct) for path in self._paths)

    def _stamp(self, updated: Any) -> tuple[datetime | None, str | None]:
        """The cursor field as a datetime, or why it is not a usable timestamp."""
        field = self.resource.cursor_field
        if type(updated) is str:
            try:
                return parse_timestamp(updated), None
            except ValueError:
                return None, f"its {field!r} {updated[:40]!r} is not an ISO-8601 timestamp"
        if updated is None:
            return None, f"it has no {field!r}"
        return None, f"its {field!r} is {encode(updated)[:40]}, not an ISO-8601 timestamp"

    def _undecodable(self, text: str, exc: BaseException) -> Record:
        """Text msgspec refuses; Python's json may still find the id (for the quarantine)."""
        if isinstance(exc, RecursionError):
            return self._poison(text, "it is nested too deeply to decode")
        surrogate = _SURROGATE.search(text)
        why = (
            f"it holds a UTF-16 surrogate escape without its pair ({surrogate.group(0)}), "
            "which is not Unicode text"
            if surrogate
            else f"its JSON cannot be decoded ({str(exc)[:80]})"
        )
        try:
            found = pick(json.loads(text), (self.resource.id_field,), False)
        except (ValueError, RecursionError):
            found = None
        return self._poison(text, why, found if type(found) is str else "")

    def _poison(self, text: str, problem: str, record_id: str = "") -> Record:
        """A record that cannot be stored: its text, its id if known, and what is wrong."""
        return Record(
            id=record_id,
            updated=None,
            values=(None,) * self._columns,
            raw=text,
            problem=problem,
        )


def _count(value: Any) -> int | None:
    """A count the API reported (``total``, ``limit``), if it is a whole number."""
    return value if type(value) is int and value >= 0 else None


def encode(value: Any) -> str:
    """JSON text of a value (a typed text column holding a number, say)."""
    return msgspec.json.encode(value).decode()


class _Undecodable(Exception):
    """msgspec refused the body's text; the lenient decoder may still read it."""


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, where: str, shape: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError:  # valid JSON, wrong shape (a subclass of DecodeError)
        raise MalformedResponse(f"{where} answered without {shape}") from None
    except (msgspec.DecodeError, RecursionError):
        raise _Undecodable from None


def _lenient(
    body: bytes, key: str, where: str, shape: str, single: bool = False
) -> tuple[list[bytes], dict[str, Any]]:
    """The slow path for a body msgspec refuses, which is usually broken (cut short, HTML) but
    may be valid JSON holding one record msgspec cannot decode: a lone surrogate escape
    (``"\\ud800"``), nesting deeper than msgspec's limit. Python's json reads those, and each
    record is encoded again (ASCII, escapes kept) for :meth:`Decoder.record` to judge alone.
    Not byte for byte the API's text, but the same JSON value; only such pages take this path.
    """

    def refuse(constant: str) -> Any:  # NaN, Infinity: not JSON (RFC 8259 section 6)
        raise ValueError(constant)

    try:
        decoded = json.loads(body, parse_constant=refuse)
    except RecursionError:
        raise MalformedResponse(
            f"{where}: the API answered with JSON nested too deeply to decode (over about "
            "1,000 levels)"
        ) from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError included
        raise MalformedResponse(
            f"{where}: the API answered with a body that is not valid JSON ({len(body)} bytes)"
        ) from None
    items = decoded.get(key) if isinstance(decoded, dict) else None
    if single:
        items = None if items is None else [items]
    if not isinstance(items, list):
        raise MalformedResponse(f"{where} answered without {shape}")
    try:
        texts = [json.dumps(item, separators=(",", ":")).encode() for item in items]
    except RecursionError:
        raise MalformedResponse(f"{where}: a record is nested too deeply to decode") from None
    return texts, decoded


# For the quarantine's reason only (the decision is msgspec's): a high or low surrogate escape.
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
