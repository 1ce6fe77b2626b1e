"""The beat scheduler that refuses to double the schedule.

Two ``rosesync beat`` processes (one started by mistake, or a standby) would each send every
schedule entry. This scheduler sends only while it holds the ``beat`` lease; the other waits,
renewing its claim every loop, and takes over within ``LEASE_SECONDS`` if the leader dies. The
leader publishes its name and schedule with the lease (worker/ops/presence.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler

from config.schedule import BEAT_LOOP_SECONDS
from config.settings import VAR, get_settings
from worker.ops.presence import BEAT_LEASE, beat_detail
from worker.sync.lease import Lease
from worker.warehouse import connect

log = logging.getLogger(__name__)

LEASE_SECONDS = 6 * BEAT_LOOP_SECONDS
ALIVE_FILE = VAR / "beat-alive"  # touched every loop; docker-compose.yml's health check reads it


class LeaderScheduler(PersistentScheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = get_settings()
        # The lease carries the schedule this beat sends, so that `rosesync status` shows it
        # rather than the schedule of the shell it runs in (issue 17).
        self._lease = Lease(
            connect(settings.warehouse_url), BEAT_LEASE, LEASE_SECONDS, beat_detail(settings)
        )
        self._leading: bool | None = None  # unknown until the first tick
        VAR.mkdir(parents=True, exist_ok=True)  # the schedule file and ALIVE_FILE live there
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        ALIVE_FILE.touch()
        leading = self._lease.acquire()
        if leading != self._leading:
            self._leading = leading
            if leading:
                log.info("beat: this scheduler is now the leader and sends the schedule")
            else:
                log.warning("beat: another scheduler holds the lease; standing by")
        if not leading:
            return float(BEAT_LOOP_SECONDS)
        return min(float(super().tick(*args, **kwargs)), float(BEAT_LOOP_SECONDS))

    def close(self) -> None:
        super().close()
        if self._leading:
            self._lease.release()
