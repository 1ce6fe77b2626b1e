"""Setting up and checking: `db upgrade`, `resources`, `doctor`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from worker.cli.common import cli, handles_errors, out, settings, table, where_settings_come_from
from worker.errors import RoseSyncError

if TYPE_CHECKING:
    from worker.sync.strategy import Paging


@cli.group()
def db() -> None:
    """Manage the worker's tables and the warehouse tables."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Create or migrate every table rosesync needs (safe to run any number of times)."""
    from worker.warehouse import upgrade_database

    changes = upgrade_database(settings().warehouse_url)
    for change in changes:
        out(change)
    out("database is up to date" if not changes else f"{len(changes)} change(s) applied")


@cli.command("resources")
@click.option("--probe", is_flag=True, help="Probe every resource's endpoint again now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handles_errors
def list_resources(probe: bool, as_json: bool) -> None:
    """List the resources rosesync syncs: name, endpoint, table, cursor field, whether enabled,
    and how each is paged (keyset or sweep) and why, as last probed."""
    from worker.credentials.store import CredentialStore
    from worker.ops.status import paging_dict
    from worker.sync.strategy import known_paging, probe_resources
    from worker.warehouse import connect

    loaded = settings()
    engine = connect(loaded.warehouse_url)
    registry = list(loaded.registry.values())
    org = loaded.credential_name
    paging: dict[str, Paging | None] = (
        {
            found.capabilities.resource: found
            for found in probe_resources(
                loaded, engine, CredentialStore(loaded, engine), registry, org
            )
        }
        if probe
        else known_paging(loaded, engine, registry, org)
    )
    if as_json:
        entries = [
            {
                "name": r.name,
                "endpoint": r.endpoint,
                "table": r.table,
                "cursor_field": r.cursor_field,
                "enabled": r.name in loaded.sync_resources,
                "columns": [c.name for c in r.columns],
                "paging": paging_dict(paging[r.name]),
            }
            for r in registry
        ]
        out(json.dumps(entries, indent=2))
        return
    rows = []
    for r in registry:
        how, why = paging_text(paging[r.name])
        enabled = "yes" if r.name in loaded.sync_resources else "no"
        rows.append((r.name, r.endpoint, r.table, r.cursor_field, enabled, how, why))
    out(table(("name", "endpoint", "table", "cursor", "enabled", "paging", "why"), rows))


def paging_text(paging: Paging | None) -> tuple[str, str | None]:
    """(keyset | sweep | missing | -, why) for a resource's last probe."""
    if paging is None:
        return "-", "not probed yet: `rosesync resources --probe`, or the first sync"
    if not paging.capabilities.exists:
        return "missing", paging.capabilities.message
    return paging.strategy, paging.reason


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@handles_errors
def doctor_command(as_json: bool) -> None:
    """Show the configuration in use and check every dependency.

    Which .env was read, every setting and where it came from (secrets as set or unset), unknown
    variables, then live checks: database reachable and migrated, broker reachable, a worker
    consuming, the authorization server, the API with the stored token, the encryption key.
    Exit 0 only when every check holds.
    """
    from worker.ops.doctor import diagnose

    loaded = settings()
    report = diagnose(loaded)
    if as_json:
        out(json.dumps(report.as_dict(), indent=2))
    else:
        out(where_settings_come_from(loaded))
        out("")
        rows = [(s["variable"], s["value"], s["source"]) for s in report.settings]
        out(table(("variable", "value", "from"), rows))
        out("")
        for finding in report.findings:
            out(f"{finding.status:<4}  {finding.name:<20}  {finding.summary}")
    broken = [f.name for f in report.findings if f.status == "fail"]
    if broken:
        raise RoseSyncError(f"{len(broken)} check(s) failed: {', '.join(broken)}")
