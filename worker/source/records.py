"""Decoding API bodies into :class:`Record`: the raw JSON text plus only the fields rosesync uses.

Decoding is most of a sync's CPU, and Python holds its GIL while doing it. Building every
record's full object tree (to read eight fields, then encode the tree again for the ``data``
column) cost about 30 us a record; instead, msgspec validates each page and hands back every
record as its raw bytes (``msgspec.Raw``), and a decoder generated from the resource registry
reads just the id, the cursor field and the typed columns' paths, skipping everything else.
About 8 us. And ``data`` is now the record's text byte for byte as the API sent it.

A record whose shape does not fit those generated types (``origin`` is a string, say) is
decoded in full and read the slow way, so that odd data ends up as NULL in one typed column
(warehouse/rows.py) rather than failing the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from worker.errors import MalformedResponse
from worker.source.resources import Resource


@dataclass(frozen=True, slots=True)
class Record:
    """One record: its id, cursor and created values as sent, its typed columns' raw values
    (in ``resource.columns`` order, None when absent) and its JSON text."""

    id: str
    updated: str | None
    values: tuple[Any, ...]
    raw: str
    created: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One list response: its records, and the ``total`` and ``limit`` the API reported (None
    when absent or not a number: the API may omit them)."""

    records: list[Record]
    total: int | None
    limit: int | None = None


Tree = dict[str, "Tree | None"]  # path segments; None marks a leaf


def _tree(paths: list[str]) -> Tree:
    root: Tree = {}
    for path in paths:
        node = root
        *parents, leaf = path.split(".")
        for key in parents:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        node.setdefault(leaf, None)
    return root


def _struct(name: str, tree: Tree) -> type[msgspec.Struct]:
    """A Struct reading exactly ``tree``: leaves as any JSON value, branches as nested
    Structs (or null); every other field in the record is skipped without being built."""
    fields: list[tuple[str, Any, Any]] = []
    for key, child in tree.items():
        kind: Any = Any if child is None else _struct(f"{name}_{key}", child) | None
        fields.append((key, kind, None))
    return msgspec.defstruct(name, fields, forbid_unknown_fields=False)


def _get(value: Any, path: tuple[str, ...], struct: bool) -> Any:
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
        self._paths = [tuple(p.split(".")) for p in paths]
        record = _struct(f"{resource.name}_record", _tree(paths))
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
        decoded = _decode(self._list, body, where, shape)
        records = [self.record(raw, where) for raw in getattr(decoded, self.resource.records_key)]
        return Page(records, _count(decoded.total), _count(decoded.limit))

    def item(self, body: bytes, where: str) -> Record:
        decoded = _decode(self._item, body, where, f"a {self.resource.item_key!r} object")
        return self.record(getattr(decoded, self.resource.item_key), where)

    def record(self, raw: msgspec.Raw | bytes, where: str) -> Record:
        try:
            fields, struct = self._fast.decode(raw), True
        except msgspec.ValidationError:  # not the usual shape: read it in full, the slow way
            fields, struct = self._any.decode(raw), False
            if not isinstance(fields, dict):
                raise MalformedResponse(f"{where}: a record is not a JSON object") from None
        record_id, updated, created, *values = (_get(fields, path, struct) for path in self._paths)
        if record_id is None:
            raise MalformedResponse(
                f"{where}: a record has no {self.resource.id_field!r}; every record needs one"
            )
        return Record(
            id=str(record_id),
            updated=updated if type(updated) is str else None,
            values=tuple(values),
            raw=bytes(raw).decode(),
            created=created if type(created) is str else None,
        )


def _count(value: Any) -> int | None:
    """A count the API reported (``total``, ``limit``), if it is a whole number."""
    return value if type(value) is int and value >= 0 else None


def encode(value: Any) -> str:
    """JSON text of a value (a typed text column holding a number, say)."""
    return msgspec.json.encode(value).decode()


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, where: str, shape: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError:  # valid JSON, wrong shape (a subclass of DecodeError)
        raise MalformedResponse(f"{where} answered without {shape}") from None
    except msgspec.DecodeError:
        raise MalformedResponse(
            f"{where}: the API answered with a body that is not valid JSON ({len(body)} bytes)"
        ) from None
