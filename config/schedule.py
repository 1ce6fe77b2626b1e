"""Schedules: the beat entries' timing, and when the next scheduled sync will run.

Pure functions of the settings (no Celery app is built here), so that ``rosesync status`` and
the beat scheduler can use them without loading anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab, schedule

from config.settings import Schedule, cron_to_crontab

# beat wakes at least this often: it renews its leader lease (worker/ops/beat.py)
BEAT_LOOP_SECONDS = 5


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


