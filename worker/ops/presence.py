"""Who is running: each worker and the beat publish themselves in the lease table.

The database, not the broker, is where presence lives: the embedded broker (kombu's SQLAlchemy
transport) has no broadcast, so Celery's ``inspect ping`` cannot work there, while every
process of a deployment shares the database. A worker holds ``worker:<node name>`` renewed by a
heartbeat thread and released on shutdown; a worker killed outright drops out when its lease
expires (``WORKER_TTL_SECONDS``). Each names the broker it consumes from, so a worker of another
deployment sharing the database does not count (issue 17: `sync --enqueue --wait` with no worker
waited four hours in PENDING; `status` showed a schedule the running beat was not using).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from config.schedule import next_run, parse_schedule
from config.settings import Settings
from worker.clock import utcnow
from worker.logs import safe_url
from worker.sync.lease import Lease
from worker.warehouse import leases

log = logging.getLogger(__name__)

WORKER_PREFIX = "worker:"
WORKER_TTL_SECONDS = 30.0  # renewed every ttl / 3 by the lease's heartbeat
BEAT_LEASE = "beat"


def readable_name(role: str) -> str:
    """``beat@host pid 4242``: what `status` and `doctor` show instead of a lease owner."""
    return f"{role}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True, slots=True)
class Presence:
    """A running worker or beat as it published itself."""

    name: str
    broker: str | None
    schedule: str | None  # the beat's SYNC_SCHEDULE
    since: datetime

    def next_run(self, after: datetime | None = None) -> datetime | None:
        if self.schedule is None:
            return None
        return next_run(parse_schedule(self.schedule), after or utcnow())


def _presence(row: leases.LeaseRow) -> Presence:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    return Presence(
        name=str(detail.get("name") or row.owner),
        broker=detail.get("broker"),
        schedule=detail.get("schedule"),
        since=row.acquired_at,
    )


def beat_detail(settings: Settings) -> str:
    """What the beat publishes with its lease: its name and the schedule it sends."""
    return json.dumps(
        {
            "name": readable_name("beat"),
            "schedule": settings.sync_schedule.text,
            "broker": safe_url(settings.celery_broker_url),
        }
    )


def running_beat(engine: Engine) -> Presence | None:
    row = leases.holder(engine, BEAT_LEASE)
    return None if row is None else _presence(row)


def workers(settings: Settings, engine: Engine) -> list[Presence]:
    """Live workers consuming from this deployment's broker."""
    ours = safe_url(settings.celery_broker_url)
    found = [_presence(row) for row in leases.live(engine, WORKER_PREFIX)]
    return [worker for worker in found if worker.broker == ours]


class WorkerHeartbeat:
    """A worker's presence while it runs (started and stopped by config/celery.py's
    ``PresenceStep``)."""

    def __init__(self, settings: Settings, engine: Engine, node: str) -> None:
        detail = json.dumps(
            {"name": f"{node} pid {os.getpid()}", "broker": safe_url(settings.celery_broker_url)}
        )
        self.lease = Lease(engine, WORKER_PREFIX + node, WORKER_TTL_SECONDS, detail)
        self._stack = ExitStack()

    def start(self) -> None:
        if not self.lease.acquire():
            log.warning("another live worker publishes itself as %s", self.lease.name)
        self._stack.enter_context(self.lease.kept_alive())

    def stop(self) -> None:
        self._stack.close()
        self.lease.release()
