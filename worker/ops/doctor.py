"""`rosesync doctor`: which configuration is in use, and whether everything it points at works.

A list of independent checks, each a plain function from a :class:`Context` to a
:class:`Finding` (data; the CLI only prints). A check catches its own failure and says what to
fix in one line, so one broken dependency never hides another. To add one, write a function and
decorate it with :func:`check` (schema drift arrived this way; quarantined records and the
API's probed capabilities are meant to).

The context shares what several checks need (the engine, the credential row) and remembers a
failure to get it, so that the database being down is reported once, by the database check, and
the checks that need it say they were skipped because of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from sqlalchemy.engine import Engine

from config.settings import ENVIRONMENT_VARIABLES, Settings, describe_settings
from worker.credentials import oauth
from worker.credentials.cipher import load_cipher
from worker.credentials.store import CredentialStore, key_problem
from worker.errors import ConfigError, RoseSyncError
from worker.logs import redact, safe_url
from worker.ops.presence import running_beat, workers
from worker.source import resources
from worker.source.api import RoseRocketClient
from worker.warehouse import connect, drift
from worker.warehouse import credentials as credential_rows
from worker.warehouse.health import health

log = logging.getLogger(__name__)

Status = Literal["ok", "fail", "warn", "skip"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict; ``summary`` is one line, without secrets."""

    name: str
    status: Status
    summary: str
    error: RoseSyncError | None = field(default=None, compare=False)  # the failure, for preflight

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "summary": redact(self.summary)}


class Skipped(Exception):
    """A check cannot run because something it needs failed (reported by another check)."""


class Context:
    """What the checks share; each piece is built on first use, and a failure to build it is
    remembered (the next check asking for it is skipped, not failed a second time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.failed: set[str] = set()  # checks that failed so far

    def require(self, *checks: str) -> None:
        """Skip the calling check when one it builds on failed: one broken dependency is named
        once, by its own check, and not again by everything downstream of it."""
        for name in checks:
            if name in self.failed:
                raise Skipped(f"the {name} check failed")

    @cached_property
    def engine(self) -> Engine | Skipped:
        try:
            health(self.settings.warehouse_url)  # never creates a database
            return connect(self.settings.warehouse_url)
        except RoseSyncError:
            return Skipped("the database check failed")

    def need_engine(self) -> Engine:
        engine = self.engine
        if isinstance(engine, Skipped):
            raise engine
        return engine


Check = Callable[[Context], Finding]
CHECKS: list[Check] = []


def check(function: Check) -> Check:
    """Register a check; they run in the order registered."""
    CHECKS.append(function)
    return function


def _safely(function: Check, context: Context) -> Finding:
    name = function.__name__.removeprefix("check_")
    try:
        finding = function(context)
    except Skipped as exc:
        finding = Finding(name, "skip", f"skipped: {exc}")
    except RoseSyncError as exc:
        finding = Finding(name, "fail", str(exc), exc)
    except Exception as exc:  # a check must never take the others down with it
        log.exception("doctor: the %s check failed unexpectedly", name)
        finding = Finding(name, "fail", f"unexpected {exc.__class__.__name__}: {exc}")
    if finding.status == "fail":
        context.failed.add(finding.name)
    return finding


@dataclass(frozen=True, slots=True)
class Report:
    settings: list[dict[str, str]]  # variable, value (secrets: set/unset), source
    dotenv: str | None
    dotenv_looked_for: str | None
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.status in ("ok", "warn") for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dotenv": self.dotenv,
            "dotenv_looked_for": self.dotenv_looked_for,
            "settings": self.settings,
            "checks": [f.as_dict() for f in self.findings],
        }


def diagnose(settings: Settings, checks: list[Check] | None = None) -> Report:
    context = Context(settings)
    origin = settings.origin
    return Report(
        settings=describe_settings(settings),
        dotenv=str(origin.dotenv) if origin.dotenv else None,
        dotenv_looked_for=str(origin.dotenv_looked_for) if origin.dotenv_looked_for else None,
        findings=[_safely(function, context) for function in checks or CHECKS],
    )


def run(settings: Settings, *names: str) -> None:
    """Preflight for a command: run the named checks and raise the first failure's own error
    (so the command exits with its code: 2 for configuration, 1 otherwise)."""
    wanted = {name: None for name in names}
    chosen = [c for c in CHECKS if c.__name__.removeprefix("check_") in wanted]
    for finding in diagnose(settings, chosen).findings:
        if finding.status == "fail":
            raise finding.error or RoseSyncError(finding.summary)


# --- the checks ------------------------------------------------------------------------------


@check
def check_settings(context: Context) -> Finding:
    unknown = context.settings.origin.unknown
    if unknown:
        return Finding("settings", "warn", "; ".join(u.describe() for u in unknown))
    count = len(context.settings.origin.sources)
    return Finding("settings", "ok", f"{count} of {len(ENVIRONMENT_VARIABLES)} variables set")


@check
def check_database(context: Context) -> Finding:
    url = context.settings.database_url
    found = health(context.settings.warehouse_url)
    where = f"{safe_url(url)} ({found.dialect})"
    if not found.migrated:
        missing = f", missing {', '.join(found.missing_tables)}" if found.missing_tables else ""
        return Finding(
            "database",
            "fail",
            f"{where} is at revision {found.revision or 'none'}, rosesync needs {found.head}"
            f"{missing}: run `rosesync db upgrade`",
        )
    return Finding("database", "ok", f"{where}: reachable, migrated (revision {found.revision})")


@check
def check_broker(context: Context) -> Finding:
    # Celery and kombu only for this check: `rosesync sync` runs the credential check (issue 16)
    from worker.ops.dispatch import check_broker as broker_reachable

    broker_reachable(context.settings)
    return Finding("broker", "ok", f"{safe_url(context.settings.celery_broker_url)}: reachable")


@check
def check_worker(context: Context) -> Finding:
    context.require("broker")
    engine = context.need_engine()
    found = workers(context.settings, engine)
    beat = running_beat(engine)
    beat_text = f"; beat: {beat.name}" if beat else "; no beat is running"
    if not found:
        return Finding(
            "worker",
            "fail",
            f"no worker is consuming from CELERY_BROKER_URL "
            f"({safe_url(context.settings.celery_broker_url)}): start `rosesync worker`"
            f"{beat_text}",
        )
    names = ", ".join(w.name for w in found)
    return Finding("worker", "ok", f"{len(found)} consuming ({names}){beat_text}")


@check
def check_authorization_server(context: Context) -> Finding:
    base = context.settings.auth_url
    endpoints = oauth.discovered(context.settings)
    if endpoints is None:
        return Finding(
            "authorization_server",
            "warn",
            f"{base} has no OIDC discovery document; using {base}/oauth/token "
            "(check ROSEROCKET_AUTH_URL if that is not Rose Rocket's)",
        )
    return Finding(
        "authorization_server", "ok", f"{base}: discovery names token endpoint {endpoints.token}"
    )


@check
def check_credential(context: Context) -> Finding:
    """The stored credential exists and this deployment's key decrypts it."""
    settings = context.settings
    row = credential_rows.read(context.need_engine(), settings.credential_name)
    if row is None:
        return Finding(
            "credential",
            "fail",
            f"no credential stored for org {settings.credential_name!r}: run `rosesync "
            "bootstrap` first",
        )
    problem = key_problem(settings, row)
    if problem is not None:
        raise ConfigError(problem)
    if row.state != credential_rows.OK:
        return Finding(
            "credential",
            "fail",
            f"the credential for org {row.org!r} is {row.state}: run `rosesync bootstrap` "
            f"({row.last_error or 'reason unknown'})",
        )
    source = load_cipher(settings).source
    return Finding("credential", "ok", f"org {row.org!r}: decrypts with {source}")


@check
def check_api(context: Context) -> Finding:
    """The data API answers with the stored token (refreshing it if due, as a sync would)."""
    context.require("credential", "authorization_server")
    settings = context.settings
    engine = context.need_engine()
    if credential_rows.read(engine, settings.credential_name) is None:
        raise Skipped("no credential stored")
    resource = resources.REGISTRY[settings.sync_resources[0]]
    client = RoseRocketClient(settings, CredentialStore(settings, engine), concurrency=1)
    page = client.list_page(resource, limit=1)
    total = "?" if page.total is None else page.total
    return Finding("api", "ok", f"{settings.api_url}: {resource.name} answered ({total} records)")


@check
def check_schema_drift(context: Context) -> Finding:
    """Schema drift the runs recorded (issue 14, item 2). A warning, never a failure: the sync
    goes on and loses nothing (the raw record keeps every field), and doctor's exit code means
    "something does not work", which drift is not."""
    context.require("database")
    changes = drift.listed(context.need_engine(), context.settings.credential_name)
    if not changes:
        return Finding("schema_drift", "ok", "no change to the records' fields recorded")
    latest = "; ".join(change.describe() for change in changes[:3])
    more = f" (and {len(changes) - 3} more: rosesync status)" if len(changes) > 3 else ""
    return Finding("schema_drift", "warn", f"{len(changes)} change(s): {latest}{more}")
