"""``rosesync demo``: the whole product in a minute, on a fresh clone, with no configuration.

It starts the bundled simulator on free loopback ports, configures rosesync for it from scratch
(it reads neither the environment nor ``.env``, and writes only under ``var/demo/``), bootstraps
through the real loopback flow with auto-consent, runs a full sync, changes records at the
"source", runs an incremental sync and reports. The CLI presents each step.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.settings import load_settings
from worker.credentials.bootstrap import bootstrap
from worker.credentials.store import CredentialStore
from worker.ops.status import StatusReport, build_status
from worker.simulator import RESOURCES, Simulator, SimulatorConfig
from worker.simulator.browser import visit_soon
from worker.source.resources import select
from worker.sync.run import Progress, SyncResult, sync_resources
from worker.warehouse import connect

DEMO_DIR = Path("var/demo")
RECORDS = 1000
CHANGES = 60


@dataclass(frozen=True, slots=True)
class DemoReport:
    database: Path
    full: list[SyncResult]
    changes: dict[str, int]
    incremental: list[SyncResult]
    status: StatusReport


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_demo(
    say: Callable[[str], None],
    progress: Progress,
    directory: Path = DEMO_DIR,
    profile: str = "extended",
    warehouse: str = "sqlite",
) -> DemoReport:
    """``warehouse``: ``sqlite``, the zero-setup default, or ``duckdb`` (issue 14, item 5)."""
    shutil.rmtree(directory, ignore_errors=True)  # every demo starts from nothing
    directory.mkdir(parents=True)
    database = directory / ("rrsync-demo.duckdb" if warehouse == "duckdb" else "rrsync-demo.db")
    config = SimulatorConfig(
        records=RECORDS,
        seed=7,
        profile=profile,
        consent="approve",
        redirect_uri=f"http://127.0.0.1:{_free_port()}/callback",
    )
    with Simulator(config) as sim:
        served = [name for name in RESOURCES if config.serves(name)]
        say(
            f"Rose Rocket simulator running on {sim.url} ({RECORDS} records per resource, "
            f"the {profile} API: {', '.join(served)})"
        )
        settings = load_settings(
            environ={
                "SYNC_RESOURCES": ",".join(served),
                "ROSEROCKET_CLIENT_ID": config.client_id,
                "ROSEROCKET_CLIENT_SECRET": config.client_secret,
                "ROSEROCKET_REDIRECT_URI": config.redirect_uri,
                "ROSEROCKET_AUTH_URL": sim.url,
                "ROSEROCKET_API_URL": sim.url,
                "DATABASE_URL": f"{warehouse}:///{database}",
                "TOKEN_KEY_FILE": str(directory / "rrsync-demo.key"),
            },
            dotenv_path=None,
        )
        engine = connect(settings.warehouse_url)
        say("bootstrap: authorization code flow through the loopback listener (auto-consent)")
        bootstrap(settings, engine, announce=visit_soon, timeout=60)
        store = CredentialStore(settings, engine)
        everything = list(select(settings.sync_resources, settings.registry))
        say("full sync of every resource")
        full = sync_resources(settings, engine, store, everything, full=True, progress=progress)
        changes = sim.mutate(CHANGES)
        say(
            f"meanwhile at Rose Rocket: {changes['updated']} records updated, "
            f"{changes['created']} created, {changes['deleted']} deleted"
        )
        say("incremental sync: only what changed")
        incremental = sync_resources(settings, engine, store, everything, progress=progress)
        return DemoReport(database, full, changes, incremental, build_status(settings, engine))


EXAMPLE_QUERIES = (
    # per currency: adding USD and CAD together means nothing (issue 17)
    "SELECT status, currency, count(*) AS orders, round(sum(total_amount), 2) AS billed "
    "FROM rr_orders WHERE deleted_at IS NULL GROUP BY status, currency "
    "ORDER BY status, orders DESC;",
    "SELECT o.full_id, c.name AS customer, o.origin_city, o.destination_city, o.currency, "
    "o.total_amount "
    "FROM rr_orders o JOIN rr_customers c ON c.id = o.customer_id "
    "ORDER BY o.total_amount DESC LIMIT 5;",
    "SELECT full_id, json_extract(data, '$.commodities[0].description') AS first_commodity "
    "FROM rr_orders LIMIT 5;",
    "SELECT resource, mode, status, records, requests, started_at FROM rrsync_runs ORDER BY id;",
)
