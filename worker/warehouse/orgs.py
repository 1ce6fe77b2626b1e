"""An org's data in the warehouse, as a whole: what ``rosesync orgs remove --purge`` deletes
(issue 15, item 1). The credential itself is credentials.py's."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.warehouse.schema import capabilities, quarantine, resource_tables, state


def purge(engine: Engine, org: str) -> dict[str, int]:
    """Delete the org's rows from every resource table, and its cursors, probed capabilities
    and quarantine, in one transaction; returns table -> rows deleted (those with any). The run
    history stays: it is the record of what was done."""
    deleted: dict[str, int] = {}
    tables = [*resource_tables.values(), state, capabilities, quarantine]
    with engine.begin() as conn:
        for table in tables:
            count = conn.execute(sa.delete(table).where(table.c.org == org)).rowcount
            if count:
                deleted[table.name] = int(count)
    return deleted
