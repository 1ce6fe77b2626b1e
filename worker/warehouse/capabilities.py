"""Probed capabilities (``rrsync_capabilities``): one row per resource and org, replaced by
each probe, read at the start of every run (worker/sync/strategy.py)."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.source.probe import Capabilities
from worker.warehouse.db import reader
from worker.warehouse.schema import capabilities

_FIELDS = tuple(f.name for f in dataclasses.fields(Capabilities))


def load(engine: Engine, resource: str, org: str) -> Capabilities | None:
    with reader(engine).connect() as conn:
        row = conn.execute(
            sa.select(capabilities).where(
                capabilities.c.resource == resource, capabilities.c.org == org
            )
        ).first()
    return None if row is None else Capabilities(**{name: getattr(row, name) for name in _FIELDS})


def save(engine: Engine, org: str, found: Capabilities) -> None:
    """Replace the resource's row (a probe is a whole new observation)."""
    with engine.begin() as conn:
        conn.execute(
            capabilities.delete().where(
                capabilities.c.resource == found.resource, capabilities.c.org == org
            )
        )
        conn.execute(capabilities.insert().values(org=org, **dataclasses.asdict(found)))


def forget(engine: Engine, resource: str, org: str) -> None:
    """Make the next run probe again (an invariant the probe proved broke mid-run)."""
    with engine.begin() as conn:
        conn.execute(
            capabilities.delete().where(
                capabilities.c.resource == resource, capabilities.c.org == org
            )
        )
