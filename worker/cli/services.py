"""Long-running processes and demonstrations: `worker`, `beat`, `simulator`, `demo`."""

from __future__ import annotations

import sys
from contextlib import suppress
from pathlib import Path

import click

from config.settings import Settings
from worker.cli.common import cli, handles_errors, out, settings
from worker.errors import ConfigError, RoseSyncError
from worker.logs import configure_logging

# Everything after the command goes to Celery; so does --help (Celery's own help). -h is ours
# to translate: Celery knows only --help (issue 17: `rosesync worker -h` failed).
_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
_HELP = ("-h", "--help")


def _celery_args(args: tuple[str, ...]) -> list[str]:
    return ["--help" if arg == "-h" else arg for arg in args]


def _preflight(loaded: Settings, args: tuple[str, ...]) -> None:
    """The database and the broker, checked before Celery starts: one line naming the variable
    instead of Celery's retries and hundreds of traceback lines (issue 17)."""
    if any(arg in _HELP for arg in args):
        return
    from worker.ops.dispatch import check_broker
    from worker.warehouse import connect

    # Closed again at once: a SQLite connection must not be open when Celery forks (-B, prefork).
    connect(loaded.warehouse_url).dispose()
    check_broker(loaded)


@cli.command("worker", context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handles_errors
def run_worker(celery_args: tuple[str, ...]) -> None:
    """Run the Celery worker for config.celery:app (arguments go to `celery worker`;
    `rosesync worker -h` shows them). `-B` embeds beat, for a single-machine setup."""
    _preflight(settings(), celery_args)
    from config.celery import app

    app.worker_main(["worker", *_celery_args(celery_args)])


@cli.command("beat", context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handles_errors
def run_beat(celery_args: tuple[str, ...]) -> None:
    """Run the Celery beat scheduler (arguments go to `celery beat`; `rosesync beat -h` shows
    them). Only one beat sends the schedule at a time; a second one stands by."""
    _preflight(settings(), celery_args)
    from config.celery import app

    app.start(["beat", *_celery_args(celery_args)])


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
@click.option(
    "--warehouse",
    type=click.Choice(["sqlite", "duckdb"]),
    default="sqlite",
    show_default=True,
    help="The database the demo syncs into, a file under var/demo/.",
)
@handles_errors
def demo_command(profile: str, warehouse: str) -> None:
    """Show rosesync end to end on the bundled simulator, with no configuration.

    Starts the simulator, bootstraps, runs a full and an incremental sync into a SQLite (or
    DuckDB) file under var/demo/ and prints what landed. Reads no settings and touches no .env.
    """
    from worker.cli.syncing import ProgressBars, runs_table, status_text
    from worker.demo import EXAMPLE_QUERIES, run_demo

    configure_logging("WARNING")
    bars = ProgressBars()
    try:
        report = run_demo(
            say=lambda line: out(f"==> {line}"),
            progress=bars,
            profile=profile,
            warehouse=warehouse,
        )
    finally:
        bars.close()
    out("\nfull sync:\n" + runs_table(report.full))
    out("\nincremental sync:\n" + runs_table(report.incremental))
    out("\nrosesync status:\n" + status_text(report.status))
    out(f"\nThe warehouse is {report.database}. Try:")
    shell = "duckdb" if warehouse == "duckdb" else "sqlite3"  # each database's own CLI
    for query in EXAMPLE_QUERIES:
        out(f'  {shell} {report.database} "{query}"')
    out("\n" + how_to_run())
    failed = [r for r in report.full + report.incremental if not r.ok]
    if failed:
        failure = failed[0].run
        raise RoseSyncError(f"the demo's {failure.resource} sync failed: {failure.error}")


def how_to_run() -> str:
    """Where this rosesync is installed, and how to call it from a shell (issue 17: a bare
    `rrsync` used to find Debian's unrelated /usr/bin/rrsync)."""
    bin_dir = Path(sys.executable).parent
    with suppress(ValueError):
        bin_dir = bin_dir.relative_to(Path.cwd())
    return (
        f"rosesync is installed in {bin_dir}: run `{bin_dir / 'rosesync'} --help`, or "
        f"`source {bin_dir / 'activate'}` once and then `rosesync ...`"
    )
