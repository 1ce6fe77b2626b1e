"""Alerts: one notification per state change, to every URL in ALERT_URLS (apprise).

What changes state (issue 17):

- a credential turns ``reauth_required`` (and, once bootstrapped again, works again);
- a resource's scheduled syncs have failed ``ALERT_AFTER_FAILURES`` times in a row (and, after
  that, one succeeds again). A sync is a Celery task with its retries, judged by its last attempt
  (``warehouse.alerts.failure_streak``): a failure retried successfully alerts nobody.

The state lives in the database (``rrsync_alerts``), and :func:`transition` lets exactly one
process move it, so several workers noticing the same failure send one alert between them. A
notification that could not be delivered moves the state back, so the next review tries again.
Every title and body goes through :func:`worker.logs.redact`: an error message that quoted a
token (issue 13) does not reach Slack either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.logs import redact
from worker.warehouse import alerts as state
from worker.warehouse import credentials as credential_rows
from worker.warehouse.runs import recent_runs

log = logging.getLogger(__name__)
# apprise's debug and info lines quote the notification URLs, which carry webhook tokens.
logging.getLogger("apprise").setLevel(logging.WARNING)

SEND_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Alert:
    subject: str
    title: str
    body: str
    recovery: bool


def send(settings: Settings, alert: Alert) -> bool:
    """Deliver to every ALERT_URLS target; True when all of them accepted it."""
    import apprise  # only when there is something to send: it is slow to import (issue 16)

    notifier = apprise.Apprise()
    for url in settings.alert_urls:
        notifier.add(url.reveal())
    kind = apprise.NotifyType.SUCCESS if alert.recovery else apprise.NotifyType.FAILURE
    delivered = bool(
        notifier.notify(
            body=redact(alert.body),
            title=redact(alert.title),
            notify_type=kind,
            timeout=SEND_TIMEOUT_SECONDS,
        )
    )
    if not delivered:
        log.warning("alert %r could not be delivered to every ALERT_URLS target", alert.title)
    return delivered


def _announce(settings: Settings, engine: Engine, alert: Alert) -> Alert | None:
    """Move the subject's state; the one process that moved it sends (and undoes the move if
    the notification did not go out, so that a later review tries again)."""
    to, back = (state.OK, state.ALERTING) if alert.recovery else (state.ALERTING, state.OK)
    if not state.transition(engine, alert.subject, to, alert.body):
        return None
    if send(settings, alert):
        return alert
    state.transition(engine, alert.subject, back)
    return None


def review_sync(settings: Settings, engine: Engine, resource: str, org: str) -> Alert | None:
    """After a run of ``resource``: alert on the N-th failure in a row, or on the recovery."""
    if not settings.alert_urls:
        return None
    limit = settings.alert_after_failures
    streak = state.failure_streak(engine, resource, org, limit)
    subject = f"sync:{org}:{resource}"
    if streak >= limit:
        last = recent_runs(engine, resource, limit=1, org=org)
        error = last[0].error if last and last[0].error else "no error recorded"
        times = "once" if streak == 1 else f"{streak} times"
        return _announce(
            settings,
            engine,
            Alert(
                subject,
                f"rosesync: {resource} has failed {times} in a row",
                f"The sync of {resource} (org {org}) failed {times} in a row. "
                f"Last error: {error}. `rosesync status` shows the runs.",
                recovery=False,
            ),
        )
    if streak == 0:
        return _announce(
            settings,
            engine,
            Alert(
                subject,
                f"rosesync: {resource} syncs again",
                f"The sync of {resource} (org {org}) succeeded after failing.",
                recovery=True,
            ),
        )
    return None


def review_credentials(settings: Settings, engine: Engine) -> list[Alert]:
    """A credential that turned ``reauth_required``, or works again after bootstrap."""
    if not settings.alert_urls:
        return []
    sent = []
    for row in credential_rows.read_all(engine):
        subject = f"credential:{row.org}"
        if row.state == credential_rows.REAUTH_REQUIRED:
            alert = Alert(
                subject,
                f"rosesync: the credential for org {row.org} needs re-authorization",
                f"Syncs of org {row.org} have stopped (the other orgs go on): run `rosesync "
                f"bootstrap{'' if row.org == settings.credential_name else ' --org ' + row.org}` "
                f"({row.last_error or 'reason unknown'}).",
                recovery=False,
            )
        else:
            alert = Alert(
                subject,
                f"rosesync: the credential for org {row.org} works again",
                f"The credential for org {row.org} was authorized again; syncs resume.",
                recovery=True,
            )
        announced = _announce(settings, engine, alert)
        if announced is not None:
            sent.append(announced)
    return sent


def review_quietly(settings: Settings, engine: Engine, resource: str | None, org: str) -> None:
    """For the tasks: alerting must never fail the work it reports on."""
    try:
        review_credentials(settings, engine)
        if resource is not None:
            review_sync(settings, engine, resource, org)
    except Exception:
        log.exception("reviewing alerts failed")
