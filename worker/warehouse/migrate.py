"""``rosesync db upgrade``: bring the worker's tables and the resource tables up to date.

Idempotent and safe to run from several processes at once (a worker restart, beat and a CLI
command starting together): everything happens in one transaction that first takes a lock
(a PostgreSQL advisory lock; on SQLite our ``BEGIN IMMEDIATE`` already holds the write lock).

On PostgreSQL the resource tables' ``data`` column is compressed with LZ4 where the server has
it (PostgreSQL 14 and later, built ``--with-lz4`` as the Debian and Docker images are). A 2 KB
order's JSONB is compressed on every write, and the default, pglz, cost 25 to 55 us a record
more than LZ4 on the benchmark machine, up to a third of PostgreSQL's time per record; reads
decompress faster too (benchmarks/README.md).
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

from worker.warehouse.db import column_names, is_postgres
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
        have = set(column_names(conn, table.name))
        gaps.extend((table, column) for column in table.columns if column.name not in have)
    return gaps


def _lz4_gaps(conn: sa.Connection) -> list[str]:
    """Resource tables whose ``data`` column could use LZ4 and does not (PostgreSQL only)."""
    lz4 = conn.execute(
        sa.text(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
    ).scalar()
    if not lz4:  # before PostgreSQL 14 the setting does not exist; or built without LZ4
        return []
    query = sa.text(
        "SELECT attcompression FROM pg_attribute "
        "WHERE attrelid = to_regclass(:table) AND attname = 'data'"
    )
    return [
        table.name
        for table in resource_tables.values()
        if conn.execute(query, {"table": table.name}).scalar() != "l"
    ]


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
        if is_postgres(conn):
            for name in _lz4_gaps(conn):
                # Applies to values written from now on; existing rows keep theirs until rewritten.
                conn.exec_driver_sql(f'ALTER TABLE "{name}" ALTER COLUMN data SET COMPRESSION lz4')
                if f"created {name}" not in changes:
                    changes.append(f"compressing {name}.data with lz4")
    return changes
