"""What every command shares: the click group, output, errors and exit codes, settings.

Output: everything goes through :func:`out` and :func:`err`, which redact it (issue 13: a token
quoted by the API reached the summary table). Errors rosesync raises on purpose are one line on
stderr: exit 2 for configuration, usage and an unreachable service (issue 17), 130 for Ctrl-C,
1 for everything else; anything unexpected is a bug (exit 70, EX_SOFTWARE).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from config.settings import Settings, get_settings
from worker.errors import ConfigError, RoseSyncError, Unreachable
from worker.logs import configure_logging, redact

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

CONTEXT = {"help_option_names": ["-h", "--help"]}


def out(text: str) -> None:
    """A line for stdout, redacted."""
    click.echo(redact(text))


def err(text: str) -> None:
    """A line for stderr, redacted."""
    click.echo(redact(text), err=True)


def fail(message: str, code: int) -> NoReturn:
    err(f"rosesync: error: {message}")
    sys.exit(code)


def exit_code(error: RoseSyncError) -> int:
    return EXIT_CONFIG if isinstance(error, ConfigError | Unreachable) else EXIT_FAILED


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn rosesync's own errors into one line on stderr and the right exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RoseSyncError as exc:
            fail(str(exc), exit_code(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)

    return wrapper


def settings() -> Settings:
    """The settings, logging configured from them, and a warning per unknown variable (issue
    17: a misspelt SYNC_SCHEDUEL was silently ignored)."""
    loaded = get_settings()
    configure_logging(loaded.log_level, loaded.log_format)
    for unknown in loaded.origin.unknown:
        err(f"rosesync: warning: {unknown.describe()}")
    return loaded


def where_settings_come_from(loaded: Settings) -> str:
    """``.env read: /srv/rosesync/.env`` or ``no .env in /home/me``: which configuration."""
    origin = loaded.origin
    if origin.dotenv is not None:
        return f".env read: {origin.dotenv}"
    if origin.dotenv_looked_for is not None:
        return f"no .env in {origin.dotenv_looked_for.parent}"
    return "no .env read"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="rosesync")
def cli() -> None:
    """rosesync keeps a SQL warehouse in step with a Rose Rocket TMS.

    Bootstrap credentials once (`rosesync bootstrap`), then run `rosesync worker -B` (or worker and
    beat separately) for the nightly sync, or `rosesync sync` to sync now. Settings come from the
    environment and .env; `rosesync doctor` shows which are in use. See README.md.
    """
