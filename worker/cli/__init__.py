"""The ``rosesync`` command line: a thin layer over the library.

Only this package imports click and prints. It holds no SQL and no HTTP: every command calls a
function of the library and presents its result. One module per group of commands; they share
``common`` (the group, redacted output, errors and exit codes).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from worker.cli import credentials, services, setup, syncing
from worker.cli.common import EXIT_INTERRUPTED, cli, exit_code, fail
from worker.errors import RoseSyncError
from worker.logs import configure_logging

__all__ = ["cli", "credentials", "main", "services", "setup", "syncing"]

log = logging.getLogger("rosesync")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    configure_logging()  # until settings are read: even a crash at start-up is redacted
    try:
        # standalone_mode=False: click would turn Ctrl-C into "Aborted!" and exit 1 (issue 17)
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="rosesync",
            standalone_mode=False,
        )
    except click.ClickException as exc:  # usage errors: click's own message, its exit code
        exc.show()
        sys.exit(exc.exit_code)
    except RoseSyncError as exc:  # raised while click was still parsing (settings at import)
        fail(str(exc), exit_code(exc))
    except (KeyboardInterrupt, click.Abort):
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception:
        log.exception("unexpected error: this is a bug in rosesync, please report it")
        sys.exit(70)
    sys.exit(result if isinstance(result, int) else 0)  # --help and --version return 0
