"""Sync state (``rrsync_state``: one cursor per resource and org) and run history
(``rrsync_runs``: one row per run, written at its start so that a run that dies leaves a row
that says so)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.logs import redact
from worker.warehouse.db import greatest, reader, upsert
from worker.warehouse.schema import resource_tables, runs, state


@dataclass(frozen=True, slots=True)
class RunRow:
    """A row of ``rrsync_runs`` as the status report and the tests read it."""

    id: int
    resource: str
    org: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    records: int
    pages: int
    deleted: int
    requests: int
    retries: int
    unauthorized: int
    rate_limited: int
    token_refreshes: int
    cursor_before: datetime | None
    cursor_after: datetime | None
    error: str | None
    trigger: str
    task_id: str | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


ERROR_LIMIT = 2000


def stored_error(error: str | None) -> str | None:
    """What ``rrsync_runs.error`` may hold: redacted (issue 13, item 1: an API error that
    quoted the bearer token was stored in clear), and bounded."""
    return None if error is None else redact(error)[:ERROR_LIMIT]


def _run_row(row: Any) -> RunRow:
    return RunRow(**{name: getattr(row, name) for name in RunRow.__dataclass_fields__})


def _upsert_state(conn: sa.Connection, resource: str, org: str, **values: Any) -> None:
    stmt = upsert(conn)(state).values(resource=resource, org=org, updated_at=utcnow(), **values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[state.c.resource, state.c.org],
            set_={"updated_at": stmt.excluded.updated_at, **{k: stmt.excluded[k] for k in values}},
        )
    )


def advance_cursor(
    conn: sa.Connection, resource: str, org: str, cursor: datetime, column: str = "cursor"
) -> None:
    """Move the cursor (or ``created_cursor``) forward, never back, inside the caller's batch
    transaction.

    One statement, so that two batches committing at once (worker/sync/commits.py) cannot both
    read the old cursor and have the older of their two positions win: the second waits for
    the first's row lock and then compares with what the first committed.
    """
    stmt = upsert(conn)(state).values(
        resource=resource, org=org, updated_at=utcnow(), **{column: cursor}
    )
    current, offered = state.c[column], stmt.excluded[column]
    newer = sa.or_(current.is_(None), offered > current)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[state.c.resource, state.c.org],
            set_={
                column: sa.case((newer, offered), else_=current),
                "updated_at": sa.case((newer, stmt.excluded.updated_at), else_=state.c.updated_at),
            },
        )
    )


def mark_full_sync(conn: sa.Connection, resource: str, org: str, when: datetime) -> None:
    _upsert_state(conn, resource, org, last_full_sync_at=when)


def sweep_marks(engine: Engine, resource: str, org: str) -> tuple[datetime | None, datetime | None]:
    """When the last complete full pass (or sweep) of the resource started, and its created
    cursor (sync/run.py: windows between sweeps)."""
    with reader(engine).connect() as conn:
        row = conn.execute(
            sa.select(state.c.last_full_sync_at, state.c.created_cursor).where(
                state.c.resource == resource, state.c.org == org
            )
        ).first()
    return (row.last_full_sync_at, row.created_cursor) if row else (None, None)


def start_run(
    engine: Engine,
    resource: str,
    org: str,
    mode: str,
    trigger: str,
    task_id: str | None,
    status: str = "running",
    error: str | None = None,
) -> tuple[int, datetime | None, datetime]:
    """Record a run's start (or a skipped run); returns its id, the cursor it starts from and
    its start as recorded (what the cursor's clock-skew cap counts from).

    Called only by the lease holder, so any other ``running`` row for this resource and org
    belongs to a run that died without finishing: it is marked ``abandoned`` here.
    """
    now = utcnow()
    with engine.begin() as conn:
        if status == "running":
            conn.execute(
                runs.update()
                .where(runs.c.resource == resource, runs.c.org == org, runs.c.status == "running")
                .values(
                    status="abandoned",
                    finished_at=now,
                    error="the process running it died; the next run resumed from its checkpoint",
                )
            )
        cursor = conn.execute(
            sa.select(state.c.cursor).where(state.c.resource == resource, state.c.org == org)
        ).scalar()
        run_id = conn.execute(
            runs.insert()
            .values(
                resource=resource,
                org=org,
                mode=mode,
                status=status,
                started_at=now,
                finished_at=None if status == "running" else now,
                heartbeat_at=now,
                cursor_before=cursor,
                error=stored_error(error),
                trigger=trigger,
                task_id=task_id,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            .returning(runs.c.id)
        ).scalar_one()
    return int(run_id), cursor, now


def update_run(conn: sa.Connection, run_id: int, **values: Any) -> None:
    conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


def add_progress(
    conn: sa.Connection, run_id: int, pages: int, records: int, stats: dict[str, int]
) -> None:
    """Count a batch's pages and records into its run, and raise the request counters to
    ``stats``, inside the batch's transaction. Additive and monotonic, because batches commit
    concurrently and in any order (worker/sync/commits.py)."""
    most = greatest(conn)
    update_run(
        conn,
        run_id,
        heartbeat_at=utcnow(),
        pages=runs.c.pages + pages,
        records=runs.c.records + records,
        **{name: most(runs.c[name], value) for name, value in stats.items()},
    )


def finish_run(
    engine: Engine,
    run_id: int,
    resource: str,
    org: str,
    status: str,
    counters: dict[str, int],
    error: str | None = None,
) -> RunRow:
    with engine.begin() as conn:
        cursor = conn.execute(
            sa.select(state.c.cursor).where(state.c.resource == resource, state.c.org == org)
        ).scalar()
        update_run(
            conn,
            run_id,
            status=status,
            finished_at=utcnow(),
            cursor_after=cursor,
            error=stored_error(error),
            **counters,
        )
        return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run_id)).one())


def prune_runs(engine: Engine, before: datetime) -> int:
    """Deletes run history started before ``before`` (RUNS_RETENTION_DAYS, issue 14, item 6),
    never a run still ``running`` (its process may be writing to it) nor the latest run of a
    resource and org (what ``rosesync status`` shows, whenever it was). Returns how many."""
    latest = sa.select(sa.func.max(runs.c.id)).group_by(runs.c.resource, runs.c.org)
    with engine.begin() as conn:
        result = conn.execute(
            runs.delete().where(
                runs.c.started_at < before,
                runs.c.status != "running",
                runs.c.id.not_in(latest.scalar_subquery()),
            )
        )
        return int(result.rowcount)


def get_run(engine: Engine, run_id: int) -> RunRow:
    with reader(engine).connect() as conn:
        return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run_id)).one())


def recent_runs(
    engine: Engine, resource: str | None = None, limit: int = 20, org: str | None = None
) -> list[RunRow]:
    query = sa.select(runs).order_by(runs.c.id.desc()).limit(limit)
    if resource is not None:
        query = query.where(runs.c.resource == resource)
    if org is not None:
        query = query.where(runs.c.org == org)
    with reader(engine).connect() as conn:
        return [_run_row(r) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class ResourceState:
    """What ``rosesync status`` shows for one org's resource."""

    resource: str
    cursor: datetime | None
    last_full_sync_at: datetime | None
    rows: int
    deleted_rows: int
    last_run: RunRow | None
    org: str = ""


def resource_states(engine: Engine, resources: list[str], org: str) -> list[ResourceState]:
    result = []
    with reader(engine).connect() as conn:
        for name in resources:
            table = resource_tables[name]
            counts = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(table.c.deleted_at),
                ).where(table.c.org == org)
            ).one()
            saved = conn.execute(
                sa.select(state).where(state.c.resource == name, state.c.org == org)
            ).first()
            last = conn.execute(
                sa.select(runs)
                .where(runs.c.resource == name, runs.c.org == org, runs.c.status != "skipped")
                .order_by(runs.c.id.desc())
                .limit(1)
            ).first()
            result.append(
                ResourceState(
                    resource=name,
                    cursor=saved.cursor if saved else None,
                    last_full_sync_at=saved.last_full_sync_at if saved else None,
                    rows=int(counts[0]) - int(counts[1]),
                    deleted_rows=int(counts[1]),
                    last_run=_run_row(last) if last else None,
                    org=org,
                )
            )
    return result
