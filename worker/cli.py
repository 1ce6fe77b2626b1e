"""The ``rrsync`` command line: a thin layer over the library.

Only this module imports click and prints. It holds no SQL and no HTTP: every command calls a
function of the library and presents its result. Errors rrsync raises on purpose are one line on
stderr (exit 2 for configuration and usage, 1 for everything else); anything unexpected is a
bug, logged with a redacted traceback (exit 70, EX_SOFTWARE).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from config.settings import Settings, get_settings
from worker import resources
from worker.errors import ConfigError, RRSyncError
from worker.logs import configure_logging

log = logging.getLogger("rrsync")

P = ParamSpec("P")
R = TypeVar("R")


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"rrsync: error: {message}", err=True)
    sys.exit(code)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn rrsync's own errors into one line on stderr and the right exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except RRSyncError as exc:
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
@click.version_option(package_name="rrsync")
def cli() -> None:
    """rrsync keeps a SQL warehouse in step with a Rose Rocket TMS.

    Bootstrap credentials once (`rrsync bootstrap`), then run `rrsync worker -B` (or worker and
    beat separately) for the nightly sync, or `rrsync sync` to sync now. Settings come from the
    environment and .env; see README.md.
    """


@cli.group()
def db() -> None:
    """Manage the worker's tables and the warehouse tables."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Create or migrate every table rrsync needs (safe to run any number of times)."""
    from worker.warehouse.db import engine_for
    from worker.warehouse.migrate import upgrade

    settings = _settings()
    changes = upgrade(engine_for(settings.database_url))
    for change in changes:
        click.echo(change)
    click.echo("database is up to date" if not changes else f"{len(changes)} change(s) applied")


@cli.command("resources")
@handles_errors
def list_resources() -> None:
    """List the resources rrsync syncs: name, endpoint, table, cursor field, typed columns."""
    settings = _settings()
    rows = [
        (
            r.name,
            r.endpoint,
            r.table,
            r.cursor_field,
            "yes" if r.name in settings.sync_resources else "no",
            ", ".join(c.name for c in r.columns),
        )
        for r in resources.REGISTRY.values()
    ]
    click.echo(_table(("name", "endpoint", "table", "cursor", "enabled", "typed columns"), rows))


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@cli.command("worker", context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handles_errors
def run_worker(celery_args: tuple[str, ...]) -> None:
    """Run the Celery worker for config.celery:app (arguments go to `celery worker`;
    `rrsync worker --help` shows them). `-B` embeds beat, for a single-machine setup."""
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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    configure_logging()  # until settings are read: even a crash at start-up is redacted
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rrsync")
    except ConfigError as exc:  # raised while click was still parsing (settings at import)
        _fail(str(exc), 2)
    except Exception:
        log.exception("unexpected error: this is a bug in rrsync, please report it")
        sys.exit(70)
