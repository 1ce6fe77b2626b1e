"""The rosesync contender: a full sync of each resource through the real code path.

``python -m benchmarks.rosesync_contender --resources orders,customers``. Settings come from the
environment exactly as in production (DATABASE_URL, ROSEROCKET_*, TOKEN_KEY_FILE, and the
SYNC_PAGE_SIZE the simulator's profile serves; every other setting at its default: SYNC_CONCURRENCY
and SYNC_MAX_CONCURRENCY), and the credential is
the one the harness bootstrapped into the database beforehand. No ``.env`` is read: a developer's
local settings must not change the figures.

Engine creation and the (no-op) schema check happen before the clock starts, as they would in
a long-running worker; the measured phase is ``sync_resource(..., full=True)`` per resource,
which includes the run history, checkpoints, lease and the full sync's deleted-row pass.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from benchmarks.measure import report_phase
from config.settings import load_settings
from worker.credentials.store import CredentialStore
from worker.sync.run import sync_resource
from worker.warehouse import connect


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run rosesync's full sync of some resources.")
    parser.add_argument("--resources", default="orders,customers")
    parser.add_argument(
        "--no-children", action="store_true", help="leave the child tables empty (issue 14)"
    )
    parser.add_argument("--incremental", action="store_true",
                        help="an incremental sync instead of a full one (issue 16, target 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = load_settings(dotenv_path=None)
    engine = connect(settings.warehouse_url)
    tokens = CredentialStore(settings, engine)
    resources = [settings.registry[name] for name in args.resources.split(",")]
    if args.no_children:  # what the sync costs without them: the price of child tables
        resources = [replace(resource, children=()) for resource in resources]

    def sync_all() -> dict[str, Any]:
        settled: dict[str, int] = {}  # requests in flight each resource settled on (issue 16)
        for resource in resources:
            result = sync_resource(settings, engine, tokens, resource, full=not args.incremental)
            if not result.ok:
                raise SystemExit(f"{resource.name}: run {result.run.status}: {result.run.error}")
            if result.concurrency is not None:
                settled[resource.name] = result.concurrency.settled
        return {"concurrency": settled}

    report_phase(sync_all)
    engine.dispose()


if __name__ == "__main__":
    main()
