"""Time, in one place: every timestamp rosesync writes is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 timestamp from the API as aware UTC; a naive one is taken as UTC.

    ValueError for anything else, including an instant outside the years 1 to 9999 once
    converted to UTC (``0001-01-01T00:00:00+01:00``), which Python reports as an OverflowError.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None


def format_timestamp(value: datetime) -> str:
    """The API's own form: milliseconds and a ``Z`` (what ``updated_start_at`` expects)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_millisecond(value: datetime) -> datetime:
    """``value`` truncated to the millisecond: the precision of the API's timestamps and of
    ``format_timestamp``, so a bound compared on both sides means the same instant."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
