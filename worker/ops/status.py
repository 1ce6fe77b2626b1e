"""What ``rosesync status`` reports: token health, then per org and resource the last run, the
cursor, the rows in the warehouse, the records waiting in quarantine, the next scheduled run,
and the schema drift runs noticed. Data only; the CLI formats it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from config.schedule import next_run
from config.settings import Settings
from worker.clock import utcnow
from worker.credentials.store import CredentialStatus, credential_statuses
from worker.logs import safe_url
from worker.ops.presence import running_beat
from worker.sync.strategy import Paging, known_paging
from worker.warehouse import drift, quarantine
from worker.warehouse.runs import ResourceState, RunRow, resource_states


@dataclass(frozen=True, slots=True)
class StatusReport:
    credentials: list[CredentialStatus]
    resources: list[ResourceState]  # every org's (issue 15), org by org
    schedule: str
    next_run: datetime
    beat_leader: str | None
    # per (org, resource), as last probed (None: not yet)
    paging: dict[tuple[str, str], Paging | None]
    # "beat": the schedule the running beat published; "settings": this process's own
    # SYNC_SCHEDULE, because no beat is running (issue 17: status showed its own, not the beat's)
    schedule_source: str = "settings"
    database: str = ""  # which warehouse this report reads (password hidden)
    # per (org, resource) (issue 13)
    quarantined: dict[tuple[str, str], int] = field(default_factory=dict)
    drift: list[drift.Drift] = field(default_factory=list)  # schema drift (issue 14, item 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "credentials": [c.as_dict() for c in self.credentials],
            "schedule": self.schedule,
            "schedule_source": self.schedule_source,
            "next_run": self.next_run.isoformat(),
            "beat_leader": self.beat_leader,
            "resources": [
                {
                    "org": r.org,
                    "resource": r.resource,
                    "rows": r.rows,
                    "deleted_rows": r.deleted_rows,
                    "quarantined": self.quarantined.get((r.org, r.resource), 0),
                    "cursor": _iso(r.cursor),
                    "last_full_sync_at": _iso(r.last_full_sync_at),
                    "last_run": run_dict(r.last_run) if r.last_run else None,
                    "next_run": self.next_run.isoformat(),
                    "paging": paging_dict(self.paging.get((r.org, r.resource))),
                }
                for r in self.resources
            ],
            "drift": [drift_dict(d) for d in self.drift],
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


def drift_dict(change: drift.Drift) -> dict[str, Any]:
    return {
        "resource": change.resource,
        "path": change.path,
        "change": change.change,
        "detail": change.detail,
        "count": change.count,
        "first_seen": change.first_seen.isoformat(),
        "last_seen": change.last_seen.isoformat(),
        "run_id": change.run_id,
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
    beat = running_beat(engine)
    now = utcnow()
    published = beat.next_run(now) if beat is not None else None
    registry = settings.registry
    enabled = [registry[name] for name in settings.sync_resources]
    statuses = credential_statuses(settings, engine)
    # Every stored org (issue 15); without any, the settings' own, as a single-org install.
    orgs = [status.org for status in statuses] or [settings.credential_name]
    states: list[ResourceState] = []
    paging: dict[tuple[str, str], Paging | None] = {}
    quarantined: dict[tuple[str, str], int] = {}
    for org in orgs:
        states += resource_states(engine, list(settings.sync_resources), org)
        for name, known in known_paging(settings, engine, enabled, org).items():
            paging[org, name] = known
        for name, count in quarantine.counts(engine, org).items():
            quarantined[org, name] = count
    return StatusReport(
        credentials=statuses,
        resources=states,
        schedule=beat.schedule if beat and beat.schedule else settings.sync_schedule.text,
        next_run=published or next_run(settings.sync_schedule, now),
        beat_leader=beat.name if beat else None,
        paging=paging,
        schedule_source="beat" if published else "settings",
        database=safe_url(settings.database_url),
        quarantined=quarantined,
        drift=[change for org in orgs for change in drift.listed(engine, org)],
    )
