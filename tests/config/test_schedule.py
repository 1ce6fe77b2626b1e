"""config/schedule.py: when the scheduled sync runs next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from config.schedule import next_run, period_seconds


def test_next_run_of_the_nightly_cron(make_settings: Any) -> None:
    nightly = make_settings().sync_schedule
    assert next_run(nightly, datetime(2026, 3, 1, 1, 59, tzinfo=UTC)) == datetime(
        2026, 3, 1, 2, 0, tzinfo=UTC
    )
    assert next_run(nightly, datetime(2026, 3, 1, 2, 0, tzinfo=UTC)) == datetime(
        2026, 3, 2, 2, 0, tzinfo=UTC
    )
    assert period_seconds(nightly) == 86400


def test_next_run_respects_weekday_and_month(make_settings: Any) -> None:
    # 06:30 on Mondays in March; 2026-03-01 is a Sunday.
    entry = make_settings(SYNC_SCHEDULE="30 6 * 3 1").sync_schedule
    assert next_run(entry, datetime(2026, 2, 27, tzinfo=UTC)) == datetime(
        2026, 3, 2, 6, 30, tzinfo=UTC
    )
    assert next_run(entry, datetime(2026, 3, 30, 7, 0, tzinfo=UTC)) == datetime(
        2027, 3, 1, 6, 30, tzinfo=UTC
    )


# Cron fields as a user might write them, valid and not, per (low, high) field range.
_FIELD_SPECS = (
    "*",
    "*/15",
    "*/7",
    "0",
    "5",
    "59",
    "60",
    "1-5",
    "5-1",
    "22-3/2",
    "0-59/20",
    "1,2,3",
    "1-3,10-12",
    "*/0",
    "1/2",
    "",
    ",",
    "1,",
    "-1",
    "1-",
    "a",
    "mon",
    "Monday",
    "fri-mon",
    "jan",
    "mar-may",
    "dec-feb/2",
    "sun",
    "x-y",
    "*/",
    "1-5/",
    "1-5/a",
    " 1",
    "1 ",
    "7",
    "0-6",
)
_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def test_cron_fields_expand_as_celerys_parser_does() -> None:
    """SYNC_SCHEDULE is validated and `status` computes the next run without Celery (issue 16),
    but beat hands the same text to Celery's crontab: every field accepted here must mean the
    same values there, and everything Celery refuses is refused here."""
    from celery.schedules import crontab_parser

    from config.schedule import field_values

    compared = 0
    for low, high in _FIELD_RANGES:
        for spec in _FIELD_SPECS:
            try:
                ours: frozenset[int] | None = field_values(spec, low, high)
            except ValueError:
                ours = None
            try:
                celery: frozenset[int] | None = frozenset(
                    crontab_parser(high - low + 1, low).parse(spec)
                )
            except (ValueError, IndexError, KeyError, crontab_parser.ParseException):
                celery = None
            if ours is not None:
                assert celery == ours, (spec, low, high)
                compared += 1
            else:
                # stricter than Celery only where Celery reads past garbage ("1-5/" is "1-5")
                assert celery is None or spec in {"1-5/", " 1", "1 "}, (spec, low, high, celery)
    assert compared > 60
