"""What ``rosesync status`` reports: token health, then per resource the last run, the cursor,
the rows in the warehouse and the next scheduled run. Data only; the CLI formats it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from config.schedule import next_run
from config.settings import Settings
from worker.clock import utcnow
from worker.credentials.store import CredentialStatus, credential_statuses
from worker.ops.beat import LEASE_NAME
from worker.sync.strategy import Paging, known_paging
from worker.warehouse import leases
from worker.warehouse.runs import ResourceState, RunRow, resource_states


@dataclass(frozen=True, slots=True)
class StatusReport:
    credentials: list[CredentialStatus]
    resources: list[ResourceState]
    schedule: str
    next_run: datetime
    beat_leader: str | None
    paging: dict[str, Paging | None]  # per resource, as last probed (None: not yet)

    def as_dict(self) -> dict[str, Any]:
        return {
            "credentials": [c.as_dict() for c in self.credentials],
            "schedule": self.schedule,
            "next_run": self.next_run.isoformat(),
            "beat_leader": self.beat_leader,
            "resources": [
                {
                    "resource": r.resource,
                    "rows": r.rows,
                    "deleted_rows": r.deleted_rows,
                    "cursor": _iso(r.cursor),
                    "last_full_sync_at": _iso(r.last_full_sync_at),
                    "last_run": run_dict(r.last_run) if r.last_run else None,
                    "next_run": self.next_run.isoformat(),
                    "paging": paging_dict(self.paging.get(r.resource)),
                }
                for r in self.resources
            ],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_dict(run: RunRow) -> dict[str, Any]:
    """A run as JSON: in `rosesync status --json`, `rosesync sync --json` and task results."""
    return {
        "id": run.id,
        "resource": run.resource,
        "mode": run.mode,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": _iso(run.finished_at),
        "seconds": run.seconds,
        "records": run.records,
        "pages": run.pages,
        "deleted": run.deleted,
        "requests": run.requests,
        "retries": run.retries,
        "cursor_before": _iso(run.cursor_before),
        "cursor_after": _iso(run.cursor_after),
        "error": run.error,
        "trigger": run.trigger,
    }


def paging_dict(paging: Paging | None) -> dict[str, Any] | None:
    """How a resource is paged, as JSON: `rosesync status --json` and `resources --json`."""
    if paging is None:
        return None
    return {
        "strategy": paging.strategy if paging.capabilities.exists else "missing",
        "reason": paging.reason if paging.capabilities.exists else paging.capabilities.message,
        "page_size": paging.page_size,
        "capabilities": paging.capabilities.as_dict(),
    }


def build_status(settings: Settings, engine: Engine) -> StatusReport:
    leader = leases.holder(engine, LEASE_NAME)
    registry = settings.registry
    enabled = [registry[name] for name in settings.sync_resources]
    return StatusReport(
        credentials=credential_statuses(settings, engine),
        resources=resource_states(engine, list(settings.sync_resources), settings.credential_name),
        schedule=settings.sync_schedule.text,
        next_run=next_run(settings.sync_schedule, utcnow()),
        beat_leader=leader.owner if leader else None,
        paging=known_paging(settings, engine, enabled, settings.credential_name),
    )
