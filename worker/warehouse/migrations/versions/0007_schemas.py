"""rosesync's own tables move to a schema of their own on PostgreSQL (issue 14, item 3).

Before, they sat beside the rr_* tables in the connection's default schema (usually public).
``migrate.upgrade`` runs the migrations with the search path "own, data" (ROSESYNC_SCHEMA, then
the rr_* tables' schema), so the tables found in the second are moved to the first, with their
rows, indexes and sequences (``ALTER TABLE ... SET SCHEMA``); Alembic's version table too, and
the version this migration writes lands in the moved one. SQLite has one file: nothing to do.

Revision ID: 0007_schemas
Revises: 0006_drift
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_schemas"
down_revision = "0006_drift"
branch_labels = None
depends_on = None

# Every own table as of this revision (later revisions create theirs in the right place).
OWN = (
    "rrsync_alembic_version",
    "rrsync_credentials",
    "rrsync_state",
    "rrsync_runs",
    "rrsync_leases",
    "rrsync_capabilities",
    "rrsync_alerts",
    "rrsync_quarantine",
    "rrsync_fields",
    "rrsync_drift",
)


def _move(source: int, target: int) -> None:
    """Moves the own tables from the search path's ``source``-th schema to its ``target``-th."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    path = list(bind.execute(sa.text("SELECT unnest(current_schemas(false))")).scalars())
    if len(path) < 2 or path[0] == path[1]:
        return  # one schema for everything: no ROSESYNC_SCHEMA in effect
    find = sa.text("SELECT to_regclass(:name) IS NOT NULL")
    for table in OWN:
        there = bind.execute(find, {"name": f'"{path[source]}"."{table}"'}).scalar()
        here = bind.execute(find, {"name": f'"{path[target]}"."{table}"'}).scalar()
        if there and not here:
            op.execute(f'ALTER TABLE "{path[source]}"."{table}" SET SCHEMA "{path[target]}"')


def upgrade() -> None:
    _move(source=1, target=0)


def downgrade() -> None:
    _move(source=0, target=1)
