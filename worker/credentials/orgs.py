"""Organizations as data (issue 15, item 1): one stored credential per org, all under the one
OAuth client. ``rosesync bootstrap --org ORG`` adds an org; this module says which orgs to
sync, and pauses, resumes and removes them."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.clock import utcnow
from worker.errors import ConfigError
from worker.warehouse import credentials as rows
from worker.warehouse import orgs as org_rows
from worker.warehouse.credentials import REAUTH_REQUIRED


def orgs_to_sync(settings: Settings, engine: Engine) -> list[str]:
    """The orgs a scheduled sync covers: every stored credential (or those SYNC_ORGS names)
    that is neither paused nor waiting for re-authorization (its tasks could only fail the
    same way; ``rosesync bootstrap --org`` brings it back). With no credential stored at all,
    the settings' own org, whose run then says to bootstrap, as a single-org install did."""
    stored = rows.read_all(engine)
    if not stored:
        return [settings.credential_name]
    wanted = set(settings.sync_orgs) if settings.sync_orgs else None
    return [
        row.org
        for row in stored
        if row.paused_at is None
        and row.state != REAUTH_REQUIRED
        and (wanted is None or row.org in wanted)
    ]


def _unknown(org: str) -> ConfigError:
    return ConfigError(
        f"no credential stored for org {org!r}: `rosesync orgs` lists the orgs, "
        f"`rosesync bootstrap --org {org}` adds it"
    )


def pause(engine: Engine, org: str) -> None:
    """Beat stops syncing the org; its credential keeps being refreshed, so resuming is instant."""
    if not rows.set_paused(engine, org, utcnow()):
        raise _unknown(org)


def resume(engine: Engine, org: str) -> None:
    if not rows.set_paused(engine, org, None):
        raise _unknown(org)


def remove(engine: Engine, org: str, purge: bool = False) -> dict[str, int]:
    """Delete the org's credential; its rows stay in the warehouse unless ``purge``, which
    deletes them too. Returns what the purge deleted (table -> rows)."""
    forgotten = rows.delete(engine, org)
    purged = org_rows.purge(engine, org) if purge else {}
    if not forgotten and not purged:  # --purge also clears the rows of an org removed before
        raise _unknown(org)
    return purged
