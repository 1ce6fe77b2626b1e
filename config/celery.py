"""The Celery app (``config.celery:app``): broker, reliability options, beat schedule.

Options that matter for a long ETL task, and why:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after the
  task finished, so a worker that dies mid-sync gets its task redelivered instead of lost. The
  sync is idempotent and resumes from its committed checkpoint, so a redelivery is harmless.
- ``worker_prefetch_multiplier = 1``: a worker holds one unstarted sync at a time; otherwise a
  busy worker sits on tasks another idle worker could run.
- Redis ``visibility_timeout`` (broker AND result backend, which kombu and Celery read
  separately) longer than the hard time limit: Redis redelivers an unacknowledged message after
  that long, and a task still legitimately running must not be started a second time.
- a soft time limit below the hard one, so the task gets ``SoftTimeLimitExceeded`` and records
  its run as failed before the hard limit kills the process.
- JSON only (no pickle: a broker message must never be able to run code), UTC everywhere.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from celery.schedules import crontab

from config.schedule import BEAT_LOOP_SECONDS, celery_schedule, period_seconds
from config.settings import VAR, Settings, get_settings
from worker.ops.presence import WorkerHeartbeat
from worker.warehouse.broker import prepare
from worker.warehouse.db import create_engine


class PresenceStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep that publishes the worker (:func:`make_app` adds it). A bootstep,
    not the worker_init/worker_shutdown signals: an embedded or cold-stopped worker never sends
    worker_shutdown, and its heartbeat would outlive it. It lives here, not in
    worker/ops/presence.py, so that `rosesync status` reads presence without importing Celery
    (issue 16)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.heartbeat: WorkerHeartbeat | None = None

    def start(self, worker: Any) -> None:
        settings = get_settings()
        # Unpooled: no SQLite connection may be open when the embedded beat (-B) forks.
        engine = create_engine(settings.warehouse_url, pooled=False)
        self.heartbeat = WorkerHeartbeat(settings, engine, str(worker.hostname))
        self.heartbeat.start()

    def stop(self, worker: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    shutdown = terminate = stop


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every entry carries ``expires``: a message that waited longer than one period (broker
    down, no worker) is dropped instead of running late and piling up behind the next one."""
    entries: dict[str, dict[str, Any]] = {
        "sync-all": {
            "task": "rrsync.sync_all",
            "schedule": celery_schedule(settings.sync_schedule),
            "options": {"expires": min(period_seconds(settings.sync_schedule), 3600.0)},
        },
        "refresh-tokens": {
            "task": "rrsync.refresh_tokens",
            "schedule": timedelta(seconds=settings.refresh_interval_seconds),
            "options": {"expires": float(settings.refresh_interval_seconds)},
        },
    }
    if settings.runs_retention_days:  # issue 14, item 6: 0 keeps run history forever
        entries["prune-runs"] = {
            "task": "rrsync.prune_runs",
            "schedule": crontab(minute="41", hour="4"),
            "options": {"expires": 3600.0},
        }
    if settings.celery_broker_url.startswith("sqla+"):
        entries["purge-broker"] = {
            "task": "rrsync.purge_broker",
            "schedule": crontab(minute="17", hour="*"),
            "options": {"expires": 3600.0},
        }
    return entries


def _ensure_sqlite_dir(url: str) -> None:
    """kombu and Celery's database backend do not create the directory of a SQLite file."""
    marker = "sqlite:///"
    if marker in url and ":memory:" not in url:
        path = url.split(marker, 1)[1].split("?", 1)[0]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_app(settings: Settings) -> Celery:
    for url in (settings.celery_broker_url, settings.result_backend):
        _ensure_sqlite_dir(url)
    app = Celery("rosesync", broker=settings.celery_broker_url, backend=settings.result_backend)
    transport_options: dict[str, Any]
    if settings.celery_broker_url.startswith("sqla+"):
        # kombu hands these to SQLAlchemy's create_engine: a busy timeout, nothing else.
        transport_options = {"connect_args": {"timeout": 60}}
    else:
        transport_options = {
            "visibility_timeout": settings.visibility_timeout,
            # kombu scans for messages to redeliver on every 10th 10-second tick by default;
            # scan on every tick, so a dead worker's task comes back within ~10 s of expiring.
            "unacked_restore_throttle": 1,
        }
    app.conf.update(
        include=["worker.ops.tasks"],
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.sync_soft_time_limit,
        task_time_limit=settings.sync_time_limit,
        broker_transport_options=transport_options,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_track_started=True,
        result_expires=timedelta(days=7),
        result_extended=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower and `celery events` see progress
        task_send_sent_event=True,
        beat_schedule=beat_schedule(settings),
        beat_scheduler="worker.ops.beat:LeaderScheduler",
        beat_schedule_filename=str(VAR / "celerybeat-schedule"),
        beat_max_loop_interval=BEAT_LOOP_SECONDS,
        # DuckDB: one process at a time may open the file (worker/warehouse/duck.py), so more
        # pool processes would only queue for it; `--concurrency` still overrides (issue 14).
        worker_concurrency=1 if settings.database_url.startswith("duckdb:") else None,
    )
    app.steps["worker"].add(PresenceStep)  # each worker shows itself (worker/ops/presence.py)
    return app


def _prepare_broker(sender: Any, **_: Any) -> None:
    """The embedded broker's file, made in WAL mode before this worker's or beat's kombu opens
    it (worker/warehouse/broker.py, prepare); `celery -A config.celery worker` comes here too."""
    url = str(sender.app.conf.broker_url)
    if url.startswith("sqla+"):
        prepare(url)


signals.worker_init.connect(_prepare_broker)
signals.beat_init.connect(_prepare_broker)
app = make_app(get_settings())
