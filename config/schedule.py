"""Schedules: parsing SYNC_SCHEDULE, the beat entries' timing, and the next scheduled run.

Pure functions (no Celery app is built here), so that settings validation, ``rosesync status``
and the beat scheduler can share them without loading anything else. Cron fields are expanded
here, as Celery's ``crontab_parser`` expands them (tests/config/test_schedule.py compares the
two), rather than by Celery: every command validates SYNC_SCHEDULE when it reads its settings, and
importing ``celery.schedules`` (with kombu and Celery's app machinery) cost every command about
50 ms before it did anything (issue 16). Only the beat, which needs Celery anyway, builds a
``crontab`` (:func:`celery_schedule`).

Accepted forms (issue 17): a 5-field cron line in UTC (``0 2 * * *``), the cron nicknames
``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``),
and ``@every <duration>`` with units s, m, h, d, combinable (``@every 1h30m``). A bad cron field
is named with its allowed range rather than reported as "not 5 fields".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from celery.schedules import crontab, schedule

# beat wakes at least this often: it renews its leader lease (worker/ops/beat.py)
BEAT_LOOP_SECONDS = 5

CRON_FORM: Final = "a 5-field cron line like '0 2 * * *' (minute hour day month weekday)"
EXPECTED: Final = f"{CRON_FORM}, @hourly, @daily, @weekly, @monthly or '@every 1h30m'"

# Vixie cron's nicknames, as cron lines.
NICKNAMES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# (name, lowest, highest) per cron field; weekday 0 is Sunday (names mon..sun also work).
FIELDS: Final = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 6),
)

_EVERY = re.compile(r"^@every\s+(.+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Names Celery accepts in any cron field (by their first three letters): months 1-12, weekdays
# 0-6 from Sunday. A name outside its field's range is refused like a number would be.
_MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: Final = {
    **{month: n for n, month in enumerate(_MONTHS, 1)},
    **{day: n for n, day in enumerate(_WEEKDAYS)},
}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the scheduled sync runs: a cron line (UTC) or a fixed interval."""

    text: str
    cron: tuple[str, str, str, str, str] | None = None
    every_seconds: float | None = None


def _duration(text: str) -> float:
    """``1h30m``, ``90s``, ``2d``: the sum of the parts; anything left over is an error."""
    compact = text.replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{EXPECTED} (an @every duration is made of <n>s, <n>m, <n>h, <n>d)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError("an @every duration greater than 0")
    return seconds


def _number(text: str, low: int, high: int) -> int:
    if text.isdigit():
        number = int(text)
    elif text.isalpha() and text[:3].lower() in _NAMES:
        number = _NAMES[text[:3].lower()]
    else:
        raise ValueError(text)
    if not low <= number <= high:
        raise ValueError(text)
    return number


def field_values(spec: str, low: int, high: int) -> frozenset[int]:
    """The values one cron field selects, as Celery's ``crontab_parser(high - low + 1, low)``
    expands them: ``*``, ``n``, ``a-b`` (wrapping past ``high`` when ``b < a``), either with
    ``/step``, comma-separated; ValueError for anything else."""
    values: set[int] = set()
    for part in spec.split(","):
        base, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(part)
        if base == "*":
            span = list(range(low, high + 1))
        else:
            first, dash, last = base.partition("-")
            start = _number(first, low, high)
            if not dash:
                if slash:  # Celery has no "n/step"
                    raise ValueError(part)
                span = [start]
            else:
                end = _number(last, low, high)
                span = (
                    list(range(start, end + 1))
                    if end >= start
                    else [*range(start, high + 1), *range(low, end + 1)]
                )
        values.update(span[:: int(step_text) if slash else 1])
    return frozenset(values)


def parse_schedule(value: str) -> Schedule:
    """A :class:`Schedule`, or ValueError whose text is the expected form (settings.py adds
    the variable's name)."""
    text = " ".join(value.split())
    every = _EVERY.match(text)
    if every:
        return Schedule(text=text, every_seconds=_duration(every.group(1)))
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise ValueError(EXPECTED)
        line = NICKNAMES[text.lower()]
    else:
        line = text
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"{EXPECTED}; got {len(fields)} field(s)")
    for position, ((name, low, high), field) in enumerate(zip(FIELDS, fields, strict=True), 1):
        try:
            field_values(field, low, high)
        except ValueError:
            raise ValueError(
                f"the {name} field (field {position} of 5) within {low}-{high}, "
                f"in {CRON_FORM}; its value {field!r} is not"
            ) from None
    cron = (fields[0], fields[1], fields[2], fields[3], fields[4])
    return Schedule(text=text, cron=cron)


def cron_to_crontab(fields: tuple[str, str, str, str, str]) -> crontab:
    """Cron's field order (minute hour day month weekday) is not crontab()'s positional one."""
    from celery.schedules import crontab

    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
    )


def celery_schedule(entry: Schedule) -> crontab | schedule:
    from celery.schedules import schedule

    if entry.every_seconds is not None:
        return schedule(timedelta(seconds=entry.every_seconds))
    assert entry.cron is not None
    return cron_to_crontab(entry.cron)


def next_run(entry: Schedule, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``entry`` fires (Celery's semantics:
    every field, day of month AND day of week, must match)."""
    if entry.every_seconds is not None:
        return after + timedelta(seconds=entry.every_seconds)
    assert entry.cron is not None
    minutes, hours, days, months, weekdays = (
        field_values(spec, low, high)
        for spec, (_, low, high) in zip(entry.cron, FIELDS, strict=True)
    )
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(366 * 24 * 60 * 5):  # leap-day schedules fire within five years
        weekday = (moment.weekday() + 1) % 7  # cron and Celery count from Sunday = 0
        if moment.month not in months or moment.day not in days or weekday not in weekdays:
            moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
        elif moment.hour not in hours:
            moment = moment.replace(minute=0) + timedelta(hours=1)
        elif moment.minute not in minutes:
            moment += timedelta(minutes=1)
        else:
            return moment
    raise ValueError(f"schedule {entry.text!r} never fires")


def period_seconds(entry: Schedule, now: datetime | None = None) -> float:
    """The gap between two consecutive runs (for cron: the next two)."""
    if entry.every_seconds is not None:
        return entry.every_seconds
    first = next_run(entry, now or datetime.now(UTC))
    return (next_run(entry, first) - first).total_seconds()
