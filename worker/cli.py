"""The ``rosesync`` command line: a thin layer over the library.

Only this module imports click and prints. It holds no SQL and no HTTP: every command calls a
function of the library and presents its result. Errors rosesync raises on purpose are one line on
stderr (exit 2 for configuration and usage, 1 for everything else); anything unexpected is a
bug, logged with a redacted traceback (exit 70, EX_SOFTWARE).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from config.settings import Settings, get_settings
from worker.errors import ConfigError, RoseSyncError
from worker.logs import configure_logging
from worker.source import resources

if TYPE_CHECKING:
    from worker.ops.status import StatusReport
    from worker.sync.run import SyncResult
    from worker.sync.strategy import Paging

log = logging.getLogger("rosesync")

P = ParamSpec("P")
R = TypeVar("R")


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"rosesync: error: {message}", err=True)
    sys.exit(code)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn rosesync's own errors into one line on stderr and the right exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except RoseSyncError as exc:
            _fail(str(exc), 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rosesync")
def cli() -> None:
    """rosesync keeps a SQL warehouse in step with a Rose Rocket TMS.

    Bootstrap credentials once (`rosesync bootstrap`), then run `rosesync worker -B` (or worker and
    beat separately) for the nightly sync, or `rosesync sync` to sync now. Settings come from the
    environment and .env; see README.md.
    """


@cli.group()
def db() -> None:
    """Manage the worker's tables and the warehouse tables."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Create or migrate every table rosesync needs (safe to run any number of times)."""
    from worker.warehouse.db import engine_for
    from worker.warehouse.migrate import upgrade

    settings = _settings()
    changes = upgrade(engine_for(settings.database_url))
    for change in changes:
        click.echo(change)
    click.echo("database is up to date" if not changes else f"{len(changes)} change(s) applied")


@cli.command("resources")
@click.option("--probe", is_flag=True, help="Probe every resource's endpoint again now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handles_errors
def list_resources(probe: bool, as_json: bool) -> None:
    """List the resources rosesync syncs: name, endpoint, table, cursor field, whether enabled,
    and how each is paged (keyset or sweep) and why, as last probed."""
    from worker.credentials.store import CredentialStore
    from worker.sync.strategy import known_paging, probe_resources
    from worker.warehouse import connect

    settings = _settings()
    engine = connect(settings.database_url)
    registry = list(settings.registry.values())
    org = settings.credential_name
    paging: dict[str, Paging | None] = (
        {
            found.capabilities.resource: found
            for found in probe_resources(
                settings, engine, CredentialStore(settings, engine), registry, org
            )
        }
        if probe
        else known_paging(settings, engine, registry, org)
    )
    if as_json:
        from worker.ops.status import paging_dict

        entries = []
        for r in registry:
            found = paging[r.name]
            entries.append(
                {
                    "name": r.name,
                    "endpoint": r.endpoint,
                    "table": r.table,
                    "cursor_field": r.cursor_field,
                    "enabled": r.name in settings.sync_resources,
                    "columns": [c.name for c in r.columns],
                    "paging": paging_dict(found),
                }
            )
        click.echo(json.dumps(entries, indent=2))
        return
    rows = []
    for r in registry:
        how, why = _paging_text(paging[r.name])
        enabled = "yes" if r.name in settings.sync_resources else "no"
        rows.append((r.name, r.endpoint, r.table, r.cursor_field, enabled, how, why))
    click.echo(_table(("name", "endpoint", "table", "cursor", "enabled", "paging", "why"), rows))


def _paging_text(paging: Paging | None) -> tuple[str, str | None]:
    """(keyset | sweep | missing | -, why) for a resource's last probe."""
    if paging is None:
        return "-", "not probed yet: `rosesync resources --probe`, or the first sync"
    if not paging.capabilities.exists:
        return "missing", paging.capabilities.message
    return paging.strategy, paging.reason


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@cli.command("worker", context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handles_errors
def run_worker(celery_args: tuple[str, ...]) -> None:
    """Run the Celery worker for config.celery:app (arguments go to `celery worker`;
    `rosesync worker --help` shows them). `-B` embeds beat, for a single-machine setup."""
    _settings()
    from config.celery import app

    app.worker_main(["worker", *celery_args])


@cli.command("beat", context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handles_errors
def run_beat(celery_args: tuple[str, ...]) -> None:
    """Run the Celery beat scheduler (arguments go to `celery beat`). Only one beat sends the
    schedule at a time; a second one stands by."""
    _settings()
    from config.celery import app

    app.start(["beat", *celery_args])


# --- credentials: bootstrap, token status, token refresh ------------------------------------


@cli.command("bootstrap")
@click.option("--org", help="Org to store the credential for (default: ROSEROCKET_ORG_ID).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option(
    "--paste",
    is_flag=True,
    help="Headless: sign in on any machine, then paste the full redirect URL here "
    "(no listener, no browser).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds the listener waits for the sign-in callback.",
)
@handles_errors
def bootstrap_command(org: str | None, no_browser: bool, paste: bool, timeout: float) -> None:
    """Authorize rosesync once: sign in to Rose Rocket in a browser, store the credential.

    Prints the authorization URL, waits on the loopback ROSEROCKET_REDIRECT_URI for the one
    callback, exchanges the code and stores the tokens encrypted. Run it again to replace a
    credential (for example after `rosesync token status` shows reauth_required).
    """
    import webbrowser

    from worker.credentials.bootstrap import bootstrap
    from worker.warehouse import connect

    settings = _settings()

    def announce(url: str) -> None:
        click.echo("Open this URL in a browser and sign in to Rose Rocket:", err=True)
        click.echo(url)
        if not no_browser and not paste:
            webbrowser.open(url)
        if paste:
            click.echo("Then paste the full address the browser was sent to:", err=True)
        else:
            click.echo(
                f"Waiting up to {timeout:g} s for the callback on {settings.redirect_uri} ...",
                err=True,
            )

    def read_pasted() -> str:
        line = sys.stdin.readline()
        if not line.strip():
            raise ConfigError("--paste: nothing was pasted (expected the full redirect URL)")
        return line

    status = bootstrap(
        settings,
        connect(settings.database_url),
        announce=announce,
        org=org,
        paste=read_pasted if paste else None,
        timeout=timeout,
    )
    click.echo(
        f"credential for org {status.org} stored; the access token is valid until "
        f"{status.expires_at.isoformat(timespec='seconds')} and is refreshed automatically"
    )


@cli.group()
def token() -> None:
    """Inspect and refresh the stored credentials."""


@token.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handles_errors
def token_status(as_json: bool) -> None:
    """Per org: state (ok, expiring, reauth_required), expiry, seconds left, last refresh."""
    from worker.credentials.store import credential_statuses
    from worker.warehouse import connect

    settings = _settings()
    statuses = credential_statuses(settings, connect(settings.database_url))
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    if not statuses:
        click.echo("no credentials stored: run `rosesync bootstrap`")
        return
    rows = [
        (
            s.org,
            s.state,
            s.expires_at.isoformat(timespec="seconds"),
            s.seconds_left,
            (s.refreshed_at or s.obtained_at).isoformat(timespec="seconds"),
            s.last_error,
        )
        for s in statuses
    ]
    click.echo(
        _table(("org", "state", "expires at", "seconds left", "last refresh", "error"), rows)
    )


@token.command("refresh")
@click.option("--org", help="Refresh only this org's credential (default: every stored one).")
@handles_errors
def token_refresh(org: str | None) -> None:
    """Refresh now, whether due or not (the scheduled task's code path)."""
    from worker.credentials.store import refresh_due_credentials
    from worker.errors import ReauthRequired
    from worker.warehouse import connect

    settings = _settings()
    outcomes = refresh_due_credentials(
        settings, connect(settings.database_url), force=True, org=org
    )
    if not outcomes:
        raise ReauthRequired("no credentials stored: run `rosesync bootstrap`")
    for outcome in outcomes:
        if outcome.action == "refreshed" and outcome.expires_at is not None:
            until = outcome.expires_at.isoformat(timespec="seconds")
            click.echo(f"{outcome.org}: refreshed, valid until {until}")
    failed = [o for o in outcomes if o.action in ("failed", "skipped_reauth_required")]
    if len(failed) == 1:
        raise RoseSyncError(failed[0].error or f"{failed[0].org}: {failed[0].action}")
    if failed:
        raise RoseSyncError(
            f"{len(failed)} credentials were not refreshed: "
            + "; ".join(f"{o.org}: {o.error}" for o in failed)
        )


# --- syncing: sync, status, demo ------------------------------------------------------------


class _ProgressBars:
    """One progress bar per resource on a terminal (stderr); silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bars: dict[str, Any] = {}
        self._done: dict[str, int] = {}
        self._length: dict[str, int] = {}

    def __call__(self, resource: str, records: int, expected: int | None) -> None:
        if not self.enabled:
            return
        if resource not in self._bars:
            self.close()
            length = max(expected or 0, 1)
            bar = click.progressbar(
                length=length, label=f"{resource:<10}", file=sys.stderr, show_pos=True
            )
            bar.__enter__()
            self._bars[resource], self._done[resource], self._length[resource] = bar, 0, length
        # re-reads (lookback, catch-up) can exceed the first page's total; never overshoot
        step = min(records, self._length[resource]) - self._done[resource]
        if step > 0:
            self._bars[resource].update(step)
            self._done[resource] += step

    def close(self) -> None:
        for bar in self._bars.values():
            bar.__exit__(None, None, None)
        self._bars.clear()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _runs_table(results: Sequence[SyncResult]) -> str:
    rows = [
        (
            r.run.resource,
            r.run.mode,
            r.run.status,
            r.run.records,
            r.run.deleted,
            r.run.pages,
            r.run.requests,
            r.run.retries,
            _seconds(r.run.seconds),
            r.run.error,
        )
        for r in results
    ]
    headers = (
        "resource",
        "mode",
        "status",
        "records",
        "deleted",
        "pages",
        "requests",
        "retries",
        "time",
        "error",
    )
    return _table(headers, rows)


def _run_dicts(results: Sequence[SyncResult]) -> list[dict[str, Any]]:
    from worker.ops.status import run_dict

    return [run_dict(r.run) for r in results]


@contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM (and Ctrl-C) end an inline sync at its next page boundary, never mid-page."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the page boundary
        stop.set()
        click.echo("stopping at the next page boundary...", err=True)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.command("sync")
@click.argument("resource_names", nargs=-1, metavar="[RESOURCE]...")
@click.option(
    "--full",
    is_flag=True,
    help="Ignore the cursor and re-read everything; rows gone at the source are marked deleted.",
)
@click.option("--enqueue", is_flag=True, help="Send Celery tasks instead; prints their ids.")
@click.option("--wait", is_flag=True, help="With --enqueue: wait for the tasks' outcomes.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=4 * 3600.0,
    show_default=True,
    help="With --wait: give up waiting after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@handles_errors
def sync_command(
    resource_names: tuple[str, ...],
    full: bool,
    enqueue: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Sync now (default: every resource in SYNC_RESOURCES), inline unless --enqueue.

    Exit status 0 only if every resource succeeded (or was skipped because another run of it
    was in progress).
    """
    settings = _settings()
    chosen = resources.select(resource_names or settings.sync_resources, settings.registry)
    if wait and not enqueue:
        raise ConfigError("--wait only goes with --enqueue (an inline sync always waits)")
    if enqueue:
        _enqueue([r.name for r in chosen], full, wait, timeout, as_json)
        return
    from worker.credentials.store import CredentialStore
    from worker.sync.run import sync_resources
    from worker.warehouse import connect

    engine = connect(settings.database_url)
    bars = _ProgressBars()
    with _stop_on_sigterm() as stop:
        try:
            results = sync_resources(
                settings,
                engine,
                CredentialStore(settings, engine),
                list(chosen),
                full=full,
                progress=bars,
                stop=stop,
            )
        finally:
            bars.close()
    click.echo(json.dumps(_run_dicts(results), indent=2) if as_json else _runs_table(results))
    failed = [r for r in results if not r.ok]
    if failed or len(results) < len(chosen):
        first = failed[0].run.error if failed else "stopped early"
        raise RoseSyncError(f"{len(failed)} of {len(chosen)} resources did not sync: {first}")


def _enqueue(names: list[str], full: bool, wait: bool, timeout: float, as_json: bool) -> None:
    from config.celery import app
    from worker.ops.dispatch import TaskOutcome, enqueue_syncs, wait_for

    tasks = enqueue_syncs(app, names, full)
    if not wait:
        if as_json:
            click.echo(json.dumps(tasks, indent=2))
        else:
            for name, task_id in tasks.items():
                click.echo(f"{name}\t{task_id}")
        return

    def show(outcome: TaskOutcome) -> None:
        if not as_json:
            detail = outcome.error or ""
            if outcome.result:
                detail = f"{outcome.result.get('status')}, {outcome.result.get('records')} records"
            click.echo(f"{outcome.resource:<10} {outcome.task_id}  {outcome.state}  {detail}")

    outcomes = wait_for(app, tasks, show, timeout)
    if as_json:
        click.echo(json.dumps([vars(o) for o in outcomes], indent=2, default=str))
    unfinished = [o for o in outcomes if not o.finished]
    failed = [o for o in outcomes if o.finished and not o.ok]
    if unfinished:
        raise RoseSyncError(f"{len(unfinished)} task(s) still running after {timeout:g} s")
    if failed:
        raise RoseSyncError(f"{failed[0].resource}: {failed[0].error}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@handles_errors
def status_command(as_json: bool) -> None:
    """Token health, then per resource: last run, result, cursor, rows, next scheduled run."""
    from worker.ops.status import build_status
    from worker.warehouse import connect

    settings = _settings()
    report = build_status(settings, connect(settings.database_url))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(_status_text(report))


def _status_text(report: StatusReport) -> str:
    if report.credentials:
        tokens = _table(
            ("org", "token", "expires in", "last refresh", "error"),
            [
                (
                    c.org,
                    c.state,
                    f"{c.seconds_left} s",
                    _when(c.refreshed_at or c.obtained_at),
                    c.last_error,
                )
                for c in report.credentials
            ],
        )
    else:
        tokens = "no credential stored: run `rosesync bootstrap`"
    rows = []
    for state in report.resources:
        run = state.last_run
        rows.append(
            (
                state.resource,
                _paging_text(report.paging.get(state.resource))[0],
                _when(run.started_at) if run else "never",
                run.status if run else "-",
                run.records if run else "-",
                _seconds(run.seconds) if run else "-",
                state.rows,
                state.deleted_rows,
                _when(state.cursor),
                (run.error or "")[:60] if run else None,
            )
        )
    resources_table = _table(
        (
            "resource",
            "paging",
            "last run",
            "result",
            "records",
            "took",
            "rows",
            "deleted",
            "cursor",
            "error",
        ),
        rows,
    )
    beat = report.beat_leader or "none running"
    return (
        f"{tokens}\n\n{resources_table}\n\nschedule: {report.schedule} (UTC); next run "
        f"{_when(report.next_run)}; beat: {beat}"
    )


_PROFILE = click.option(
    "--profile",
    type=click.Choice(["extended", "documented"]),
    default="extended",
    show_default=True,
    help="The simulated API: 'documented' is Rose Rocket's v1 as described (50 a page, no "
    "updated_* filters, newest-created first, no invoices), which real tenants get; 'extended' "
    "adds updated_* filters in updated_at order and 200 a page.",
)


@cli.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=9400, show_default=True, help="Port to listen on.")
@click.option(
    "--records",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Seeded records per resource.",
)
@click.option(
    "--access-ttl",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Access-token lifetime in seconds.",
)
@click.option(
    "--auto-consent",
    is_flag=True,
    help="Approve authorization requests at once instead of showing a consent page.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the dataset.")
@_PROFILE
@click.option(
    "--client-id", default="rrsync-demo", show_default=True, help="The registered OAuth client id."
)
@click.option(
    "--client-secret",
    default="rrsync-demo-secret",
    help="The registered client secret (default: rrsync-demo-secret).",
)
@click.option(
    "--redirect-uri",
    default="http://127.0.0.1:8765/callback",
    show_default=True,
    help="The registered redirect URI (compared exactly).",
)
@handles_errors
def simulator_command(
    host: str,
    port: int,
    records: int,
    access_ttl: float,
    auto_consent: bool,
    seed: int,
    profile: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
) -> None:
    """Run the bundled Rose Rocket simulator (OAuth server + v1 API) until Ctrl-C.

    Point rosesync at it with ROSEROCKET_AUTH_URL and ROSEROCKET_API_URL set to the URL it prints.
    """
    from worker.simulator import SimulatorConfig, serve

    configure_logging()
    try:
        config = SimulatorConfig(
            host=host,
            port=port,
            records=records,
            access_ttl=access_ttl,
            consent="approve" if auto_consent else "page",
            seed=seed,
            profile=profile,
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    serve(config)


@cli.command("demo")
@_PROFILE
@handles_errors
def demo_command(profile: str) -> None:
    """Show rosesync end to end on the bundled simulator, with no configuration.

    Starts the simulator, bootstraps, runs a full and an incremental sync into a SQLite file
    under var/demo/ and prints what landed. Reads no settings and touches no .env.
    """
    from worker.demo import EXAMPLE_QUERIES, run_demo

    configure_logging("WARNING")
    bars = _ProgressBars()
    try:
        report = run_demo(
            say=lambda line: click.echo(f"==> {line}"), progress=bars, profile=profile
        )
    finally:
        bars.close()
    click.echo("\nfull sync:\n" + _runs_table(report.full))
    click.echo("\nincremental sync:\n" + _runs_table(report.incremental))
    click.echo("\nrosesync status:\n" + _status_text(report.status))
    click.echo(f"\nThe warehouse is {report.database}. Try:")
    for query in EXAMPLE_QUERIES:
        click.echo(f'  sqlite3 {report.database} "{query}"')
    click.echo("\n" + _how_to_run())
    failed = [r for r in report.full + report.incremental if not r.ok]
    if failed:
        failure = failed[0].run
        raise RoseSyncError(f"the demo's {failure.resource} sync failed: {failure.error}")


def _how_to_run() -> str:
    """Where this rosesync is installed, and how to call it from a shell (issue 17: a bare
    `rrsync` used to find Debian's unrelated /usr/bin/rrsync)."""
    bin_dir = Path(sys.executable).parent
    with suppress(ValueError):
        bin_dir = bin_dir.relative_to(Path.cwd())
    return (
        f"rosesync is installed in {bin_dir}: run `{bin_dir / 'rosesync'} --help`, or "
        f"`source {bin_dir / 'activate'}` once and then `rosesync ...`"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    configure_logging()  # until settings are read: even a crash at start-up is redacted
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rosesync")
    except ConfigError as exc:  # raised while click was still parsing (settings at import)
        _fail(str(exc), 2)
    except Exception:
        log.exception("unexpected error: this is a bug in rosesync, please report it")
        sys.exit(70)
