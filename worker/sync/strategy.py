"""How a resource is paged: keyset where the API has proven it can, sweep everywhere else.

The probe (source/probe.py) runs on a resource's first sync, again when its last probe is a
week old or was inconclusive (an empty resource tells nothing), when the resource's endpoint
setting changed, on `rosesync resources --probe`, and mid-run when the API stops honouring what
it had proven (sync/run.py). Its findings are stored (warehouse/capabilities.py) so that every
run, `rosesync resources` and `rosesync status` see the same choice and the reason for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from config.settings import Settings
from worker.source.probe import Capabilities, Probe, Strategy, choose
from worker.source.resources import Resource
from worker.warehouse import capabilities as stored

if TYPE_CHECKING:
    from worker.source.api import RoseRocketClient, TokenSource

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Paging:
    """A resource's probed capabilities and what follows from them for a run."""

    capabilities: Capabilities
    strategy: Strategy
    reason: str
    page_size: int


def paging_for(
    settings: Settings,
    engine: Engine,
    client: RoseRocketClient,
    resource: Resource,
    org: str,
    *,
    probe: bool = False,
) -> Paging:
    """The resource's paging, probing first if asked to or if what is stored is not usable."""
    known = stored.load(engine, resource.name, org)
    if probe or known is None or known.stale or known.endpoint != resource.endpoint:
        known = Probe(client, resource, settings.sync_page_size).run()
        stored.save(engine, org, known)
        strategy, reason = choose(known, settings.sync_strategy)
        log.info(
            "%s: probed %s in %d requests: %s paging (%s)",
            resource.name,
            resource.endpoint,
            known.requests,
            strategy,
            reason,
        )
    return paging_of(settings, known)


def paging_of(settings: Settings, known: Capabilities) -> Paging:
    strategy, reason = choose(known, settings.sync_strategy)
    page_size = min(settings.sync_page_size, known.page_size or settings.sync_page_size)
    return Paging(known, strategy, reason, page_size)


def forget(engine: Engine, resource: Resource, org: str) -> None:
    stored.forget(engine, resource.name, org)


def probe_resources(
    settings: Settings, engine: Engine, tokens: TokenSource, resources: list[Resource], org: str
) -> list[Paging]:
    """`rosesync resources --probe`: probe every resource now."""
    # HTTP only here: `status` and `resources` read the stored paging (issue 16)
    from worker.source.api import RoseRocketClient

    client = RoseRocketClient(settings, tokens)
    return [paging_for(settings, engine, client, r, org, probe=True) for r in resources]


def known_paging(
    settings: Settings, engine: Engine, resources: list[Resource], org: str
) -> dict[str, Paging | None]:
    """What the last probes found, without probing (`rosesync resources`, `rosesync status`)."""
    found: dict[str, Paging | None] = {}
    for resource in resources:
        known = stored.load(engine, resource.name, org)
        found[resource.name] = None if known is None else paging_of(settings, known)
    return found
