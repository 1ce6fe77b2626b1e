"""Is the warehouse usable as it stands? For `rosesync doctor`: reachable, at the newest
revision, every resource table present. Reads only; never creates or migrates anything."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from worker.warehouse.db import connection_error, engine_for, require_existing
from worker.warehouse.migrate import head_revision, stored_revision
from worker.warehouse.schema import resource_tables


@dataclass(frozen=True, slots=True)
class Health:
    dialect: str
    revision: str | None  # what the database is at
    head: str | None  # what this rosesync expects
    missing_tables: tuple[str, ...]

    @property
    def migrated(self) -> bool:
        return self.revision == self.head and not self.missing_tables


def health(database_url: str) -> Health:
    """Raises the one-line error of :func:`connection_error` when it cannot even connect."""
    require_existing(database_url)
    engine = engine_for(database_url)
    try:
        with engine.connect() as conn:
            revision = stored_revision(conn)
            existing = set(sa.inspect(conn).get_table_names())
    except sa.exc.DBAPIError as exc:
        raise connection_error(database_url, exc) from None
    missing = tuple(t.name for t in resource_tables.values() if t.name not in existing)
    return Health(engine.dialect.name, revision, head_revision(), missing)
