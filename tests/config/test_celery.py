"""config/celery.py: the options a long ETL task needs, read from the configured app."""

from __future__ import annotations

from typing import Any

import pytest

from config.celery import make_app
from config.settings import Settings


@pytest.fixture
def conf(make_settings: Any) -> Any:
    return make_app(make_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/0")).conf


def test_reliability_options(conf: Any) -> None:
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.timezone == "UTC" and conf.enable_utc is True


def test_one_pool_process_on_duckdb(make_settings: Any, tmp_path: Any) -> None:
    """Issue 14: DuckDB's file takes one process at a time; elsewhere Celery's default."""
    duck = make_settings(DATABASE_URL=f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert make_app(duck).conf.worker_concurrency == 1
    assert make_app(make_settings()).conf.worker_concurrency is None


def test_time_limits_and_visibility_timeout_relations(conf: Any) -> None:
    assert conf.task_soft_time_limit < conf.task_time_limit
    broker_vt = conf.broker_transport_options["visibility_timeout"]
    backend_vt = conf.result_backend_transport_options["visibility_timeout"]
    assert broker_vt == backend_vt
    assert broker_vt > conf.task_time_limit


def test_relations_hold_for_custom_limits(make_settings: Any) -> None:
    settings = make_settings(
        SYNC_SOFT_TIME_LIMIT="50", SYNC_TIME_LIMIT="60", CELERY_BROKER_URL="redis://r:6379/0"
    )
    conf = make_app(settings).conf
    assert conf.task_soft_time_limit == 50 and conf.task_time_limit == 60
    assert conf.broker_transport_options["visibility_timeout"] > 60


def test_embedded_broker_is_the_default(make_settings: Any) -> None:
    settings: Settings = make_settings()
    app = make_app(settings)
    assert app.conf.broker_url.startswith("sqla+sqlite:///")
    assert "purge-broker" in app.conf.beat_schedule


def test_every_beat_entry_expires(conf: Any) -> None:
    schedule = conf.beat_schedule
    assert set(schedule) >= {"sync-all", "refresh-tokens"}
    for entry in schedule.values():
        assert entry["options"]["expires"] > 0
    assert schedule["sync-all"]["task"] == "rrsync.sync_all"
    assert schedule["refresh-tokens"]["task"] == "rrsync.refresh_tokens"
