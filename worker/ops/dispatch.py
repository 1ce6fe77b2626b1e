"""On-demand syncs through Celery: send the tasks, and (optionally) wait for their outcomes.

What ``rosesync sync --enqueue [--wait]`` does; any other Celery client can do the same by task
name (README, "Triggering syncs from other systems").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import AMQPError as AmqpError
from celery import Celery
from celery.result import AsyncResult
from kombu.connection import Connection
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from worker.errors import RoseSyncError, Unreachable
from worker.logs import redact, safe_url
from worker.warehouse.broker import check_reachable

SYNC_TASK = "rrsync.sync_resource"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    resource: str
    task_id: str
    state: str  # Celery's: PENDING, STARTED, RETRY, SUCCESS, FAILURE
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For `sync --enqueue --wait --json` (issue 17: vars() of a slotted dataclass raised
        TypeError after the tasks had run)."""
        return {
            "resource": self.resource,
            "task_id": self.task_id,
            "state": self.state,
            "result": self.result,
            "error": self.error,
        }

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE", "REVOKED")

    @property
    def ok(self) -> bool:
        return self.state == "SUCCESS"


# How long an enqueued task may wait with no worker consuming before `--wait` says so. A
# worker publishes itself when it starts (presence.py), so seconds are plenty.
NO_WORKER_GRACE_SECONDS = 5.0


class NoWorker(RoseSyncError):
    """Tasks were sent but no worker consumes from the broker to run them."""


def check_broker(settings: Settings) -> None:
    """Raise a one-line error naming CELERY_BROKER_URL when the broker cannot be used (issue
    17: 20 s of retries, then a 170-line traceback). One attempt: refused is refused."""
    where = safe_url(settings.celery_broker_url)
    try:
        if settings.celery_broker_url.startswith("sqla+"):
            check_reachable(settings.celery_broker_url)
            return
        # kombu is partly typed; Any keeps mypy from guessing at the rest
        connection: Any = Connection(  # type: ignore[no-untyped-call]
            settings.celery_broker_url, connect_timeout=5
        )
        with connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)
    except (KombuError, AmqpError, SQLAlchemyError, OSError) as exc:
        cause = redact(" ".join(str(exc).split())[:200]) or exc.__class__.__name__
        message = f"CELERY_BROKER_URL: cannot use the broker at {where} ({cause})"
        raise Unreachable(message) from None


def enqueue_syncs(app: Celery, resources: Sequence[str], full: bool, org: str) -> dict[str, str]:
    """One ``sync_resource`` task per resource of ``org``; returns resource -> task id. The
    org is named, so the worker syncs the org this client meant, whatever its own settings."""
    kwargs = {"full": full, "org": org}
    return {name: app.send_task(SYNC_TASK, args=(name,), kwargs=kwargs).id for name in resources}


def _outcome(app: Celery, resource: str, task_id: str) -> TaskOutcome:
    result = AsyncResult(task_id, app=app)
    state = result.state
    if state == "SUCCESS":
        return TaskOutcome(resource, task_id, state, result=result.result)
    if state == "FAILURE":
        # Our exceptions' messages are one line without secrets (errors.py).
        return TaskOutcome(resource, task_id, state, error=str(result.result))
    return TaskOutcome(resource, task_id, state)


def wait_for(
    app: Celery,
    tasks: dict[str, str],
    on_change: Callable[[TaskOutcome], None],
    timeout: float,
    workers: Callable[[], list[str]],
    poll: float = 0.5,
) -> list[TaskOutcome]:
    """Poll until every task finished (or ``timeout``); ``on_change`` sees each new state.

    Raises :class:`NoWorker` when the tasks are still pending and ``workers()`` (the live
    workers consuming from this broker) stayed empty for ``NO_WORKER_GRACE_SECONDS``.
    """
    seen: dict[str, str] = {}
    started = time.monotonic()
    deadline = started + timeout
    last_worker_seen = started
    while True:
        outcomes = [_outcome(app, name, task_id) for name, task_id in tasks.items()]
        for outcome in outcomes:
            if seen.get(outcome.task_id) != outcome.state:
                seen[outcome.task_id] = outcome.state
                on_change(outcome)
        now = time.monotonic()
        if all(o.finished for o in outcomes) or now >= deadline:
            return outcomes
        if not all(o.state == "PENDING" for o in outcomes) or workers():
            last_worker_seen = now
        elif now - last_worker_seen >= NO_WORKER_GRACE_SECONDS:
            pending = sum(1 for o in outcomes if o.state == "PENDING")
            raise NoWorker(
                f"no worker is consuming from CELERY_BROKER_URL "
                f"({safe_url(app.conf.broker_url)}): start `rosesync worker`; the {pending} "
                "task(s) stay queued and run when one starts"
            )
        time.sleep(poll)
