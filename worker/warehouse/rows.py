"""Records to rows: the typed columns, the raw JSON and the timestamps, ready for the driver.

This is the hot loop of a sync (every record passes through it once): worker/source/records.py has
already picked the typed columns' values out of the record, each column's converter is chosen
up front, and the common case takes the shortest path: an API timestamp in its canonical form
(``2024-03-05T14:22:11.123Z``) becomes SQLite's text form by slicing, not by parsing and
formatting a datetime.

On PostgreSQL the rows travel by binary COPY (warehouse/load.py), so each value is the Python
type of its column's binary format (:data:`POSTGRES_TYPES`): datetimes, ``Decimal`` for
numeric, and ``data`` as the record's JSON text, which goes to the server as it came. DuckDB's
rows are the same values (``native``), bound column by column as lists (:data:`DUCKDB_TYPES`).

A value that does not fit its column's type (including its range: a bigint, NUMERIC(18, 4))
becomes NULL, the raw record being kept in ``data``, and is logged once per column and run and
counted (:attr:`RowBuilder.unparsable`, recorded in ``rrsync_drift``); it never fails the run,
and it is never guessed.

A record that cannot be stored at all becomes a :class:`Poison` instead of a row, which the
loader quarantines (issue 13, item 5): one the decoder marked (``Record.problem``), and on
PostgreSQL one holding ``\\u0000``, which neither ``jsonb`` nor ``text`` can store. That check
costs one substring search per record (``"\\u"`` is rare in API text); whatever else the
database refuses, the loader finds by splitting the batch.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, NamedTuple

import msgspec
from msgspec.structs import astuple

from worker.clock import parse_timestamp
from worker.source.records import Record, encode, pick
from worker.source.resources import Child, Column, ColumnType, Resource
from worker.warehouse.schema import sqlite_timestamp

log = logging.getLogger(__name__)

Convert = Callable[[Any], Any]
Row = tuple[Any, ...]
"""A parent row: the values of :attr:`RowBuilder.columns`, then (last) its child rows."""
ChildRow = tuple[Any, ...]
"""A child table's row (issue 14): the parent's key, the position, the typed columns, data."""


class Poison(NamedTuple):
    """A record the loader quarantines instead of upserting. A tuple, so that it travels in a
    batch's list of rows, where it was read, and commits with that batch's checkpoint."""

    record_id: str | None  # None when the record has no usable id
    raw: str
    reason: str


# ``\u0000`` preceded by an even number of backslashes (an odd number escapes the escape).
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, dict | list):
        raise ValueError("an object or array")
    return encode(value)


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise ValueError(repr(value))


def _integer(value: Any) -> int:
    if type(value) is int or type(value) is str:
        number = int(value)
        if -(2**63) <= number < 2**63:  # BIGINT on PostgreSQL, SQLite's 64-bit INTEGER
            return number
    raise ValueError(repr(value))


_NUMERIC_LIMIT = Decimal(10) ** 14  # NUMERIC(18, 4): 14 digits before the point
_SCALE = Decimal("0.0001")
_INT_LIMIT = 10**14


def _decimal(value: Any) -> Decimal:
    """For NUMERIC(18, 4): exact (the JSON number's own digits, not a float's)."""
    if type(value) in (int, float, str):
        try:
            number = Decimal(str(value))
        except ArithmeticError:  # decimal.InvalidOperation: not a number at all
            raise ValueError(repr(value)) from None
        if number.is_finite() and abs(number) < _NUMERIC_LIMIT:
            return number
    raise ValueError(repr(value))


def _decimal_text(value: Any) -> str:
    """For SQLite, which has no decimal type: the amount as NUMERIC(18, 4) would hold it, in
    text (issue 14, item 4: money is exact everywhere; REAL was not). Rounded half away from
    zero, as PostgreSQL rounds.

    A float of at most four decimals, or an integer, is written out without Decimal's help
    (2.4 us a value that way, a tenth of that here): its shortest repr is the digits the JSON
    number had, which is what Decimal(str(value)) reads."""
    if type(value) is float:
        text = repr(value)
        whole, dot, fraction = text.partition(".")
        if dot and len(fraction) <= 4 and "e" not in fraction and len(whole.lstrip("-")) <= 14:
            return text + "0" * (4 - len(fraction))
    elif type(value) is int and -_INT_LIMIT < value < _INT_LIMIT:
        return f"{value}.0000"
    return format(_decimal(value).quantize(_SCALE, ROUND_HALF_UP), "f")


def _canonical(text: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``: what the API sends, and safe to slice."""
    return (
        len(text) == 24
        and text[10] == "T"
        and text[19] == "."
        and text[23] == "Z"
        and text[:4].isdigit()
        and text[20:23].isdigit()
    )


def sqlite_time(value: Any) -> str:
    """An API timestamp as :class:`~worker.warehouse.schema.UTCDateTime` stores it on SQLite."""
    if type(value) is not str:
        raise ValueError(repr(value))
    if _canonical(value):
        # The shape alone let "2024-13-45T99:99:99.999Z" through, stored as text nothing can
        # read back (found by the property test, issue 13); checking costs about 0.2 us.
        datetime.fromisoformat(value)
    return _sqlite_checked(value)


def _sqlite_checked(value: str) -> str:
    """:func:`sqlite_time` of a timestamp known to be valid: the cursor field, which the
    decoder has read (``Record.problem``)."""
    if _canonical(value):
        return f"{value[:10]} {value[11:23]}000"
    return sqlite_timestamp(parse_timestamp(value))


def postgres_time(value: Any) -> datetime:
    """An API timestamp as an aware UTC datetime, for binary COPY into ``timestamptz``."""
    if type(value) is not str:
        raise ValueError(repr(value))
    return parse_timestamp(value)


def _utf8(raw: msgspec.Raw) -> str:
    return str(raw, "utf-8")


def _as_raw(raw: msgspec.Raw) -> msgspec.Raw:
    # A copy: a Raw from a decoded list holds on to the whole page's body otherwise.
    return msgspec.Raw(bytes(raw))


def _converted(convert: Convert, value: Any) -> Any:
    if value is None:
        return None
    try:
        return convert(value)
    except ValueError:
        return None


def _unchanged(value: datetime) -> datetime:
    return value


_SQLITE: dict[ColumnType, Convert] = {
    "text": _text,
    "boolean": _boolean,
    "integer": _integer,
    "numeric": _decimal_text,  # SQLite has no decimal type: exact text (schema.DecimalText)
    "timestamp": sqlite_time,
}
_POSTGRES: dict[ColumnType, Convert] = {**_SQLITE, "numeric": _decimal, "timestamp": postgres_time}

POSTGRES_TYPES: dict[ColumnType, str] = {
    "text": "text",
    "boolean": "bool",
    "integer": "int8",
    "numeric": "numeric",
    "timestamp": "timestamptz",
}
"""Each column type's PostgreSQL type, which binary COPY must be told (it applies no casts);
a test checks them against the tables as created."""

DUCKDB_TYPES: dict[ColumnType, str] = {
    "text": "VARCHAR",
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "numeric": "DECIMAL(18, 4)",
    "timestamp": "TIMESTAMPTZ",
}
"""Each column type's DuckDB type: the type of the list DuckDB's bulk path binds for it."""


# What msgspec checks itself while it decodes an element, in C: a value it accepts converts to
# exactly what the column's converter would make of it (an integer is one in the column's
# range). Anything else fails the decode, and that element is converted value by value in Python
# (a number in a text column, a numeric string in an integer one). Amounts and timestamps are
# always converted in Python: their rules (a float's digits, every ISO 8601 form) are ours.
_CHECKED_BY_MSGSPEC: dict[ColumnType, Any] = {
    "text": str | None,
    "boolean": bool | None,
    "integer": Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None,
}
_TEXTS: msgspec.json.Decoder[list[msgspec.Raw]] = msgspec.json.Decoder(list[msgspec.Raw])


class _ChildReader:
    """Makes the child rows of one list (issue 14, item 1), typed by the parent's rules: a
    value that does not fit its column is NULL, the element being kept whole in ``data``.
    Unlike a parent's, such a value is not counted as drift: it is not a field of the record.

    The common case is two calls into msgspec for the whole list (its elements' texts, then
    the elements as Structs of the columns' keys with the types msgspec checks itself), then a
    Python conversion for amounts and timestamps only: about 1 us an element."""

    def __init__(self, child: Child, converters: dict[ColumnType, Convert], native: bool) -> None:
        columns = child.columns
        # ``data`` as its JSON text (SQLite), or the element itself (msgspec.Raw), which the
        # native databases' writer embeds, undecoded, in the batch's one JSON parameter.
        self._data: Callable[[msgspec.Raw], Any] = _as_raw if native else _utf8
        self._converters = [converters[c.type] for c in columns]
        self._paths = [tuple(c.path.split(".")) for c in columns]
        # Structs read plain keys; a dotted path (or a key read twice) always goes the slow way.
        names = [c.path for c in columns]
        self._fast = all("." not in n for n in names) and len(set(names)) == len(names)
        checked = [
            (n, _CHECKED_BY_MSGSPEC.get(c.type, Any), None)
            for n, c in zip(names, columns, strict=True)
        ]
        element: Any = msgspec.defstruct(f"{child.name}_element", checked)
        self._list: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[element])
        self._left = [  # positions msgspec left unconverted
            (i, converters[c.type])
            for i, c in enumerate(columns)
            if c.type not in _CHECKED_BY_MSGSPEC
        ]

    def rows(self, key: tuple[str, str], items: Any) -> list[ChildRow]:
        if type(items) is not msgspec.Raw:  # read the slow way: Python values
            if not isinstance(items, list):
                return []
            return [
                self._slow(key, n, item, self._data(msgspec.Raw(msgspec.json.encode(item))))
                for n, item in enumerate(items)
            ]
        try:
            texts = _TEXTS.decode(items)
        except msgspec.DecodeError:  # not a list: no elements
            return []
        try:
            if not self._fast:
                raise msgspec.ValidationError
            elements = self._list.decode(items)
        except msgspec.DecodeError:  # some element is not the usual shape: one by one
            rows: list[ChildRow] = []
            for n, raw in enumerate(texts):
                try:
                    value = msgspec.json.decode(raw)
                except msgspec.DecodeError:  # e.g. a lone surrogate: nothing typed
                    value = None
                rows.append(self._slow(key, n, value, self._data(raw)))
            return rows
        left, data = self._left, self._data
        if not left:  # every column checked by msgspec: the Struct's values as they are
            return [
                (*key, n, *astuple(element), data(raw))
                for n, (element, raw) in enumerate(zip(elements, texts, strict=True))
            ]
        rows = []
        for n, (element, raw) in enumerate(zip(elements, texts, strict=True)):
            values = list(astuple(element))
            for i, convert in left:
                values[i] = _converted(convert, values[i])
            rows.append((*key, n, *values, data(raw)))
        return rows

    def _slow(self, key: tuple[str, str], position: int, element: Any, data: Any) -> ChildRow:
        values = [
            _converted(convert, pick(element, path, False))
            for path, convert in zip(self._paths, self._converters, strict=True)
        ]
        return (*key, position, *values, data)


class RowBuilder:
    """Builds the driver's row tuples for one resource, org and dialect, in ``columns`` order:
    id, the typed columns, data, updated_at, synced_at, deleted_at, org (so that a row's id
    stays its first field); then, as one more field the loader does not send with the row, its
    child rows: one list per ``resource.children``, typed by the parent's rules.

    ``native`` (default: ``postgres``): Python datetimes and decimals rather than SQLite's
    text; DuckDB takes them too, without PostgreSQL's ``\u0000`` limit."""

    def __init__(
        self, resource: Resource, postgres: bool, *, org: str, native: bool | None = None
    ) -> None:
        self.resource = resource
        self.org = org
        native = postgres if native is None else native
        converters = _POSTGRES if native else _SQLITE
        self._time: Convert = postgres_time if native else _sqlite_checked  # cursor field
        self._stamp: Callable[[datetime], Any] = _unchanged if native else sqlite_timestamp
        self._fields: list[tuple[Column, Convert]] = [
            (column, converters[column.type]) for column in resource.columns
        ]
        self._readers = [_ChildReader(c, converters, native) for c in resource.children]
        # Values stored NULL, per column: logged once, counted all, and named in the drift
        # table at the end of the run (issue 14, item 2). Fetcher threads share the builder.
        self.unparsable: dict[Column, int] = {}
        self._unparsable_lock = threading.Lock()
        self._postgres = postgres
        self._native = native

    @property
    def columns(self) -> list[str]:
        typed = [c.name for c in self.resource.columns]
        return ["id", *typed, "data", "updated_at", "synced_at", "deleted_at", "org"]

    @property
    def postgres_types(self) -> list[str]:
        """The PostgreSQL type of each of ``columns``, for binary COPY."""
        typed = [POSTGRES_TYPES[c.type] for c in self.resource.columns]
        return ["text", *typed, "jsonb", "timestamptz", "timestamptz", "timestamptz", "varchar"]

    @property
    def duckdb_types(self) -> list[str]:
        """The DuckDB type of each of ``columns``, for its bulk path."""
        typed = [DUCKDB_TYPES[c.type] for c in self.resource.columns]
        stamps = ["TIMESTAMPTZ"] * 3  # updated_at, synced_at, deleted_at
        return ["VARCHAR", *typed, "VARCHAR", *stamps, "VARCHAR"]

    def rows(self, records: Sequence[Record], synced: datetime) -> list[Row]:
        rows: list[Row] = []
        synced_value = self._stamp(synced)
        native = self._native
        org = self.org
        for record in records:
            problem = record.problem
            # One character, not "\\u": CPython finds a single character with memchr, where a
            # longer needle in a non-ASCII string costs about 2.5 us a record (measured).
            if problem is None and self._postgres and "\\" in record.raw:
                problem = self._postgres_problem(record.raw)
            if problem is not None:
                rows.append(Poison(record.id or None, record.raw, problem))
                continue
            row: list[Any] = [record.id]
            for (column, convert), value in zip(self._fields, record.values, strict=True):
                if value is not None:
                    try:
                        value = convert(value)
                    except ValueError as exc:
                        self._report(column, record.id, exc)
                        value = None
                row.append(value)
            # the decoder has read the cursor field of every record without a problem
            stamp = record.stamp
            cursor = stamp if stamp is not None and native else self._time(record.updated)
            row += (record.raw, cursor, synced_value, None, org, self.children(record))
            rows.append(tuple(row))
        return rows

    def children(self, record: Record) -> tuple[list[ChildRow], ...]:
        """The record's child rows, one list per ``resource.children``."""
        lists = record.lists or (None,) * len(self._readers)  # () when it has none
        key = (self.org, record.id)
        return tuple(
            reader.rows(key, items) for reader, items in zip(self._readers, lists, strict=True)
        )

    @staticmethod
    def _postgres_problem(raw: str) -> str | None:
        if _NUL.search(raw):
            return "it holds \\u0000, which PostgreSQL cannot store in jsonb or text"
        return None

    def _report(self, column: Column, record_id: Any, problem: ValueError) -> None:
        with self._unparsable_lock:
            count = self.unparsable.get(column, 0)
            self.unparsable[column] = count + 1
        if not count:
            log.warning(
                "%s: %s of record %s is %s, not %s; stored NULL in %s (the raw record is in data)",
                self.resource.name,
                column.path,
                record_id,
                problem,
                column.type,
                column.name,
            )
