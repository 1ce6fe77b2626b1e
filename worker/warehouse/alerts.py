"""Alert state (``rrsync_alerts``) and the failure streaks alerts are about.

One row per subject (``credential:<org>``, ``sync:<org>:<resource>``) holding whether an alert is
out for it. :func:`transition` changes that state in one locked transaction and says whether
THIS call changed it, so of several workers noticing the same change exactly one notifies
(worker/ops/alerts.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.clock import utcnow
from worker.logs import redact
from worker.warehouse.db import reader
from worker.warehouse.schema import alerts, runs

OK = "ok"
ALERTING = "alerting"


def state_of(engine: Engine, subject: str) -> str:
    with reader(engine).connect() as conn:
        state = conn.execute(sa.select(alerts.c.state).where(alerts.c.subject == subject)).scalar()
    return str(state) if state is not None else OK


def transition(engine: Engine, subject: str, to: str, message: str | None = None) -> bool:
    """Move ``subject`` to state ``to``; True only for the one caller that moved it."""
    try:
        with engine.begin() as conn:
            current = conn.execute(
                sa.select(alerts.c.state).where(alerts.c.subject == subject).with_for_update()
            ).scalar()
            if (current or OK) == to:
                return False
            values = {"state": to, "changed_at": utcnow(), "message": redact(message or "")}
            if current is None:
                conn.execute(alerts.insert().values(subject=subject, **values))
            else:
                conn.execute(alerts.update().where(alerts.c.subject == subject).values(**values))
            return True
    except sa.exc.IntegrityError:  # PostgreSQL: another process inserted the row first
        return False


_ATTEMPTS_PER_SYNC = 20


def failure_streak(engine: Engine, resource: str, org: str, limit: int) -> int:
    """How many of the resource's latest scheduled syncs failed in a row (at most ``limit``).

    Only Celery's runs count (issue 17 alerts on scheduled syncs; an operator running
    ``rosesync sync`` sees its outcome in the terminal), and a task's retries are one sync
    whose last attempt decides: a sync that failed once, was retried and then succeeded is not
    two failures. Skipped and interrupted runs neither break nor extend a streak."""
    query = (
        sa.select(runs.c.status, runs.c.task_id)
        .where(
            runs.c.resource == resource,
            runs.c.org == org,
            runs.c.trigger == "celery",
            runs.c.status.in_(("succeeded", "failed", "abandoned")),
        )
        .order_by(runs.c.id.desc())
        # enough attempts for `limit` syncs of any sane SYNC_MAX_RETRIES
        .limit(limit * _ATTEMPTS_PER_SYNC)
    )
    with reader(engine).connect() as conn:
        attempts = conn.execute(query).all()
    streak = 0
    counted: set[str] = set()
    for status, task_id in attempts:  # newest first: a task's latest attempt comes first
        if task_id is not None and task_id in counted:
            continue
        if status == "succeeded":
            break
        if task_id is not None:
            counted.add(task_id)
        streak += 1
        if streak == limit:
            break
    return streak
