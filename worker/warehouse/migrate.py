"""``rrsync db upgrade``: bring the worker's tables and the resource tables up to date.

Idempotent and safe to run from several processes at once (a worker restart, beat and a CLI
command starting together): everything happens in one transaction that first takes a lock
(a PostgreSQL advisory lock; on SQLite our ``BEGIN IMMEDIATE`` already holds the write lock).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from worker.warehouse.db import is_postgres
from worker.warehouse.schema import resource_tables

VERSION_TABLE = "rrsync_alembic_version"  # our own name: the warehouse may host other apps
_MIGRATION_LOCK = 7_273_796_001  # arbitrary constant key for pg_advisory_xact_lock


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _resource_gaps(conn: sa.Connection) -> list[tuple[sa.Table, sa.Column[object] | None]]:
    """What the registry wants that the database lacks: (table, None) for a whole table."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    gaps: list[tuple[sa.Table, sa.Column[object] | None]] = []
    for table in resource_tables.values():
        if table.name not in existing:
            gaps.append((table, None))
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        gaps.extend((table, column) for column in table.columns if column.name not in have)
    return gaps


def upgrade(engine: Engine) -> list[str]:
    """Apply what is missing; returns what changed (empty when already up to date)."""
    changes: list[str] = []
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        before = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        if before != head_revision():
            changes.append(f"worker tables: revision {before or 'none'} -> {head_revision()}")
        operations = Operations(MigrationContext.configure(conn))
        for table, column in _resource_gaps(conn):
            if column is None:
                table.create(conn)
                changes.append(f"created {table.name}")
            else:
                operations.add_column(table.name, column._copy())
                changes.append(f"added {table.name}.{column.name}")
    return changes
