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
