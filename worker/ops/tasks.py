"""Celery tasks: thin wrappers over plain functions, with plain-name arguments only.

Names and arguments are a public interface (README "Triggering syncs from other systems"):
``rrsync.sync_resource(resource: str, full: bool = False, org: str | None = None)``,
``rrsync.sync_all(full: bool = False)``, ``rrsync.refresh_tokens()``, ``rrsync.purge_broker()``,
``rrsync.prune_runs()``. No argument or result ever carries a token: a task names its org, and
the worker that runs it reads that org's credential from the warehouse (issue 15).

Redelivery is safe (acks_late): a duplicate finds the resource's lease held and ends as
``skipped``; a redelivered task whose first attempt died resumes from the committed checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import timedelta
from typing import Any

from billiard.process import active_children
from celery import Task, group, shared_task
from celery.exceptions import Ignore
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_shutting_down,
)

from config.settings import get_settings
from worker.clock import utcnow
from worker.credentials.orgs import orgs_to_sync
from worker.credentials.store import CredentialStore, refresh_due_credentials
from worker.errors import Interrupted, TransientError, Yielded
from worker.logs import configure_logging, redact, redact_data
from worker.ops.alerts import review_quietly
from worker.ops.status import run_dict
from worker.source import resources
from worker.sync.run import sync_resource as run_sync
from worker.warehouse import connect
from worker.warehouse.broker import purge_delivered_messages
from worker.warehouse.runs import prune_runs as prune_run_history

log = logging.getLogger(__name__)

# Set on warm shutdown (SIGTERM to the worker): a running sync stops at its next page
# boundary and is re-queued, so a deploy does not wait for a three-hour sync to finish.
shutting_down = threading.Event()
# The prefork pool's processes never hear of a warm shutdown (Celery just waits for them), so
# the worker tells them with a signal of its own: a real-time one, because billiard takes over
# the classic ones (SIGTERM, SIGUSR1, SIGUSR2...) in pool processes. Linux only; elsewhere a
# warm shutdown waits for the sync to finish, as Celery always does.
_STOP_SIGNAL: int | None = signal.SIGRTMIN + 1 if hasattr(signal, "SIGRTMIN") else None


@worker_init.connect
def _ignore_stop_signal_until_ready(**_: Any) -> None:
    """Pool processes inherit "ignore" for the stop signal until they install their handler:
    a real-time signal's default action is to terminate, so a warm shutdown right as the pool
    started killed a half-started process ("Could not start worker processes")."""
    if _STOP_SIGNAL is not None:
        signal.signal(_STOP_SIGNAL, signal.SIG_IGN)


@worker_process_init.connect
def _stop_on_signal_in_pool_process(**_: Any) -> None:
    if _STOP_SIGNAL is not None:
        signal.signal(_STOP_SIGNAL, lambda _signum, _frame: shutting_down.set())


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    shutting_down.set()  # the solo and threads pools run tasks in this very process
    if _STOP_SIGNAL is not None:
        for child in active_children():
            if child.pid is not None:
                os.kill(child.pid, _STOP_SIGNAL)


def _redacted(error: BaseException) -> BaseException:
    """The exception with its message redacted in place: Celery stores a failed task's
    exception text in the result backend and shows it to every client (issue 13, item 1)."""
    error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
    return error


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Celery's own logging set-up is replaced by ours, redaction included."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


@shared_task(name="rrsync.refresh_tokens", ignore_result=False)
def refresh_tokens() -> list[dict[str, Any]]:
    """Refresh every stored credential that is due (see credentials/store.py)."""
    settings = get_settings()
    engine = connect(settings.warehouse_url)
    outcomes = refresh_due_credentials(settings, engine)
    review_quietly(settings, engine, None, settings.credential_name)
    return redact_data([outcome.as_dict() for outcome in outcomes])


@shared_task(bind=True, name="rrsync.sync_resource")
def sync_resource(
    self: Task, resource: str, full: bool = False, org: str | None = None
) -> dict[str, Any]:
    """Sync one resource of one org (default: the settings' org). Transient failures retry
    with exponential backoff, a bounded number of times; a revoked grant or a bad setting fails
    at once (retrying cannot fix those)."""
    settings = get_settings()
    (target,) = resources.select([resource], settings.registry)
    engine = connect(settings.warehouse_url)
    store = CredentialStore(settings, engine, org=org)
    result = run_sync(
        settings,
        engine,
        store,
        target,
        full=full,
        trigger="celery",
        task_id=self.request.id,
        stop=shutting_down,
        page_limit=settings.sync_pages_per_task,
    )
    if isinstance(result.error, Yielded):
        # Fairness (issue 15, item 6): to the back of the queue, behind the other orgs' tasks.
        # A new message under the same id, so a waiter (`sync --enqueue --wait`) still sees
        # one task, and with a retry budget of its own (a retry would spend it on yields).
        again = {"full": full, "org": org}
        self.apply_async(args=(resource,), kwargs=again, task_id=self.request.id)
        raise Ignore()
    if isinstance(result.error, Interrupted):
        raise self.retry(exc=_redacted(result.error), countdown=5, max_retries=None)
    retrying = (
        isinstance(result.error, TransientError)
        and self.request.retries < settings.sync_max_retries
    )
    if not retrying:  # a sync's outcome is its last attempt's (warehouse.alerts.failure_streak)
        review_quietly(settings, engine, target.name, store.org)
    if isinstance(result.error, TransientError):
        delay = min(3600, settings.sync_retry_backoff_seconds * 2**self.request.retries)
        raise self.retry(
            exc=_redacted(result.error), countdown=delay, max_retries=settings.sync_max_retries
        )
    if result.error is not None:
        raise _redacted(result.error)
    return redact_data(run_dict(result.run))


@shared_task(name="rrsync.sync_all")
def sync_all(full: bool = False) -> dict[str, dict[str, str]]:
    """Enqueue one ``sync_resource`` per org x configured resource (issue 15, item 3: any
    worker runs any of them; each takes its own org x resource lease); returns org ->
    resource -> task id. The orgs are those not paused nor waiting for re-authorization,
    within SYNC_ORGS."""
    settings = get_settings()
    orgs = orgs_to_sync(settings, connect(settings.warehouse_url))
    pairs = [(org, name) for org in orgs for name in settings.sync_resources]
    outcome = group(sync_resource.s(name, full, org) for org, name in pairs).apply_async()
    sent: dict[str, dict[str, str]] = {}
    for (org, name), child in zip(pairs, outcome.children or [], strict=True):
        sent.setdefault(org, {})[name] = child.id
    return sent


@shared_task(name="rrsync.purge_broker")
def purge_broker() -> int:
    """Delete delivered messages older than a day from the embedded broker's table."""
    return purge_delivered_messages(get_settings().celery_broker_url, timedelta(days=1))


@shared_task(name="rrsync.prune_runs")
def prune_runs() -> int:
    """Delete run history older than RUNS_RETENTION_DAYS (0: keep it); returns how many runs."""
    settings = get_settings()
    if not settings.runs_retention_days:
        return 0
    before = utcnow() - timedelta(days=settings.runs_retention_days)
    pruned = prune_run_history(connect(settings.warehouse_url), before)
    log.info("pruned %d run(s) started before %s", pruned, before.isoformat())
    return pruned
