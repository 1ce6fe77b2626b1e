"""Schedules: parsing SYNC_SCHEDULE, the beat entries' timing, and the next scheduled run.

Pure functions (no Celery app is built here), so that settings validation, ``rosesync status``
and the beat scheduler can share them without loading anything else.

Accepted forms (issue 17): a 5-field cron line in UTC (``0 2 * * *``), the cron nicknames
``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``),
and ``@every <duration>`` with units s, m, h, d, combinable (``@every 1h30m``). A bad cron field
is named with its allowed range rather than reported as "not 5 fields".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from celery.schedules import crontab, crontab_parser, schedule

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
            crontab_parser(high - low + 1, low).parse(field)
        except (ValueError, IndexError, KeyError):
            raise ValueError(
                f"the {name} field (field {position} of 5) within {low}-{high}, "
                f"in {CRON_FORM}; its value {field!r} is not"
            ) from None
    cron = (fields[0], fields[1], fields[2], fields[3], fields[4])
    return Schedule(text=text, cron=cron)


def cron_to_crontab(fields: tuple[str, str, str, str, str]) -> crontab:
    """Cron's field order (minute hour day month weekday) is not crontab()'s positional one."""
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
    )


def celery_schedule(entry: Schedule) -> crontab | schedule:
    if entry.every_seconds is not None:
        return schedule(timedelta(seconds=entry.every_seconds))
    assert entry.cron is not None
    return cron_to_crontab(entry.cron)


def next_run(entry: Schedule, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``entry`` fires (Celery's semantics:
    every field, day of month AND day of week, must match)."""
    if entry.every_seconds is not None:
        return after + timedelta(seconds=entry.every_seconds)
    cron = celery_schedule(entry)
    assert isinstance(cron, crontab)
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(366 * 24 * 60 * 5):  # leap-day schedules fire within five years
        weekday = (moment.weekday() + 1) % 7  # cron and Celery count from Sunday = 0
        if (
            moment.month not in cron.month_of_year
            or moment.day not in cron.day_of_month
            or weekday not in cron.day_of_week
        ):
            moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
        elif moment.hour not in cron.hour:
            moment = moment.replace(minute=0) + timedelta(hours=1)
        elif moment.minute not in cron.minute:
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
