"""Records to rows: the typed columns, the raw JSON and the timestamps, ready for the driver.

This is the hot loop of a sync (every record passes through it once), so each typed column is
compiled into a getter and a converter up front, and the common case takes the shortest path:
an API timestamp in its canonical form (``2024-03-05T14:22:11.123Z``) becomes SQLite's text form
by slicing, not by parsing and formatting a datetime.

A value that does not fit its column's type becomes NULL (the raw record is kept in ``data``)
and is reported once per column and run; it never fails the run, and it is never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from worker.clock import parse_timestamp
from worker.resources import Column, ColumnType, Resource
from worker.warehouse.schema import sqlite_timestamp

log = logging.getLogger(__name__)

Convert = Callable[[Any], Any]
Row = tuple[Any, ...]


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    keys = tuple(path.split("."))
    if len(keys) == 1:
        (key,) = keys
        return lambda record: record.get(key)

    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for key in keys:
            if type(value) is not dict:
                return None
            value = value.get(key)
        return value

    return get


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, dict | list):
        raise ValueError("an object or array")
    return orjson.dumps(value).decode()


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise ValueError(repr(value))


def _integer(value: Any) -> int:
    if type(value) is int or type(value) is str:
        return int(value)
    raise ValueError(repr(value))


def _numeric(value: Any) -> float:
    if type(value) in (int, float, str):
        return float(value)
    raise ValueError(repr(value))


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
        return f"{value[:10]} {value[11:23]}000"
    return sqlite_timestamp(parse_timestamp(value))


def postgres_time(value: Any) -> str | datetime:
    """An API timestamp for COPY: the canonical text as is, anything else parsed first."""
    if type(value) is not str:
        raise ValueError(repr(value))
    return value if _canonical(value) else parse_timestamp(value)


def _unchanged(value: datetime) -> datetime:
    return value


_CONVERTERS: dict[ColumnType, Convert] = {
    "text": _text,
    "boolean": _boolean,
    "integer": _integer,
    "numeric": _numeric,
}


class RowBuilder:
    """Builds the driver's row tuples for one resource and dialect, in ``columns`` order:
    id, the typed columns, data, updated_at, synced_at, deleted_at."""

    def __init__(self, resource: Resource, postgres: bool) -> None:
        self.resource = resource
        self._time: Convert = postgres_time if postgres else sqlite_time
        self._stamp: Callable[[datetime], Any] = _unchanged if postgres else sqlite_timestamp
        self._fields: list[tuple[Column, Callable[[dict[str, Any]], Any], Convert]] = [
            (column, _getter(column.path), _CONVERTERS.get(column.type, self._time))
            for column in resource.columns
        ]
        self._reported: set[str] = set()

    @property
    def columns(self) -> list[str]:
        typed = [c.name for c in self.resource.columns]
        return ["id", *typed, "data", "updated_at", "synced_at", "deleted_at"]

    def rows(self, records: Sequence[dict[str, Any]], synced: datetime) -> list[Row]:
        rows: list[Row] = []
        synced_value = self._stamp(synced)
        id_field = self.resource.id_field
        cursor_field = self.resource.cursor_field
        dumps = orjson.dumps
        for record in records:
            row: list[Any] = [str(record[id_field])]
            for column, get, convert in self._fields:
                value = get(record)
                if value is not None:
                    try:
                        value = convert(value)
                    except ValueError as exc:
                        self._report(column, record.get(id_field), exc)
                        value = None
                row.append(value)
            # the pager has checked the cursor field of every record it delivers
            row += (dumps(record).decode(), self._time(record[cursor_field]), synced_value, None)
            rows.append(tuple(row))
        return rows

    def _report(self, column: Column, record_id: Any, problem: ValueError) -> None:
        if column.name not in self._reported:
            self._reported.add(column.name)
            log.warning(
                "%s: %s of record %s is %s, not %s; stored NULL in %s (the raw record is in data)",
                self.resource.name,
                column.path,
                record_id,
                problem,
                column.type,
                column.name,
            )
