"""On-demand syncs through Celery: send the tasks, and (optionally) wait for their outcomes.

What ``rosesync sync --enqueue [--wait]`` does; any other Celery client can do the same by task
name (README, "Triggering syncs from other systems").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.result import AsyncResult

SYNC_TASK = "rrsync.sync_resource"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    resource: str
    task_id: str
    state: str  # Celery's: PENDING, STARTED, RETRY, SUCCESS, FAILURE
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE", "REVOKED")

    @property
    def ok(self) -> bool:
        return self.state == "SUCCESS"


def enqueue_syncs(app: Celery, resources: Sequence[str], full: bool) -> dict[str, str]:
    """One ``sync_resource`` task per resource; returns resource -> task id."""
    return {
        name: app.send_task(SYNC_TASK, args=(name,), kwargs={"full": full}).id for name in resources
    }


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
    poll: float = 0.5,
) -> list[TaskOutcome]:
    """Poll until every task finished (or ``timeout``); ``on_change`` sees each new state."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        outcomes = [_outcome(app, name, task_id) for name, task_id in tasks.items()]
        for outcome in outcomes:
            if seen.get(outcome.task_id) != outcome.state:
                seen[outcome.task_id] = outcome.state
                on_change(outcome)
        if all(o.finished for o in outcomes) or time.monotonic() >= deadline:
            return outcomes
        time.sleep(poll)
