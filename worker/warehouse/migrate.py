"""``rosesync db upgrade``: bring the worker's tables, the resource and child tables and the
views over them (views.py) up to date.

Idempotent and safe to run from several processes at once (a worker restart, beat and a CLI
command starting together): everything happens in one transaction that first takes a lock
(a PostgreSQL advisory lock; on SQLite our ``BEGIN IMMEDIATE`` already holds the write lock).

On PostgreSQL with ROSESYNC_SCHEMA in effect (issue 14, item 3; worker/warehouse/db.py), the
schemas are created if missing, Alembic runs with rosesync's own schema first in the search
path (so its tables, and its version table, are created there; revision 0007 moves those of an
install from before), and the resource tables are created in the rr_* tables' schema.

On PostgreSQL the resource tables' ``data`` column is compressed with LZ4 where the server has
it (PostgreSQL 14 and later, built ``--with-lz4`` as the Debian and Docker images are). A 2 KB
order's JSONB is compressed on every write, and the default, pglz, cost 25 to 55 us a record
more than LZ4 on the benchmark machine, up to a third of PostgreSQL's time per record; reads
decompress faster too (benchmarks/README.md).

Every process runs :func:`upgrade` on its first connection (``worker.warehouse.connect``), so
on a current database it must cost next to nothing: Alembic is imported only when a revision is
pending (or a column is to be added). Its import and the loading of the revision scripts were
about 0.1 s of every command's start-up (issue 16); the stored revision is read with one SELECT
and the newest one from the scripts' text (:func:`head_revision`; test_migrate.py checks it
against Alembic's own answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.source.resources import REGISTRY, Child, Resource
from worker.warehouse import views
from worker.warehouse.db import column_names, is_postgres, schemas
from worker.warehouse.schema import child_tables, resource_tables, state

VERSION_TABLE = "rrsync_alembic_version"  # our own name: the warehouse may host other apps
_MIGRATION_LOCK = 7_273_796_001  # arbitrary constant key for pg_advisory_xact_lock
_MIGRATIONS = Path(__file__).with_name("migrations")
# The two assignments every revision script has (Alembic's template, script.py.mako).
_REVISION = re.compile(r"^revision\b[^=]*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=]*=\s*(?:[\"']([^\"']+)[\"']|None)", re.MULTILINE)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.operations import Operations


def _refiller(resource: Resource, child: Child) -> Callable[[sa.Connection], None]:
    def refill(conn: sa.Connection) -> None:
        # Imported when there is a child table to fill: the decoder, msgspec and the row
        # builders cost every command's first connection about 15 ms otherwise (issue 16).
        from worker.warehouse import children

        children.refill(conn, resource, child)

    return refill


# A child table created or given a column is derived again from the stored parents, in the
# upgrade's transaction: an existing install gets its children without a full sync (issue 14).
_CHILDREN = {
    REGISTRY[name].child_table(child): _refiller(REGISTRY[name], child)
    for name, declared in child_tables.items()
    for child, _ in declared
}


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest revision: the one no script names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (_MIGRATIONS / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision, parent = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or parent is None:
            raise RuntimeError(f"{script.name}: no revision/down_revision line (a bug)")
        revisions.add(revision.group(1))
        if parent.group(1):
            parents.add(parent.group(1))
    heads = revisions - parents
    if len(heads) > 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {sorted(heads)} (a bug)")
    return heads.pop() if heads else None


def stored_revision(conn: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    return conn.execute(sa.select(version.c.version_num)).scalar()


def _registry_tables() -> list[sa.Table]:
    return [*resource_tables.values(), *(t for c in child_tables.values() for _, t in c)]


def _resource_gaps(conn: sa.Connection) -> list[tuple[sa.Table, sa.Column[object] | None]]:
    """What the registry wants that the database lacks: (table, None) for a whole table."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    gaps: list[tuple[sa.Table, sa.Column[object] | None]] = []
    for table in _registry_tables():
        if table.name not in existing:
            gaps.append((table, None))
            continue
        have = set(column_names(conn, table.name))
        gaps.extend((table, column) for column in table.columns if column.name not in have)
    return gaps


def _inexact_money(conn: sa.Connection) -> list[tuple[sa.Table, list[str]]]:
    """SQLite tables from before issue 14 whose amounts are REAL, and those columns."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    found = []
    for table in _registry_tables():
        if table.name not in existing:
            continue
        declared = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        columns = [
            c.name
            for c in table.columns
            if isinstance(c.type, sa.Numeric) and isinstance(declared.get(c.name), sa.Float)
        ]
        if columns:
            found.append((table, columns))
    return found


def _exact_money(conn: sa.Connection) -> list[str]:
    """Amounts stored REAL on SQLite become exact decimal text (issue 14, item 4). SQLite cannot
    change a column's type: the table is rebuilt (Alembic's batch mode: copy, drop, rename),
    and the copy converts each REAL to its text as it goes, by the TEXT column's affinity.
    The views go first (a rename checks every view) and ``views.ensure`` makes them again."""
    tables = _inexact_money(conn)
    if not tables:
        return []
    operations = _operations(conn)
    for name in sa.inspect(conn).get_view_names():
        if name.startswith("v_"):
            conn.exec_driver_sql(f'DROP VIEW "{name}"')
    for table, columns in tables:
        with operations.batch_alter_table(table.name, recreate="always") as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.Text(), existing_type=sa.Float())
    return [f"made {t.name}.{c} exact (decimal text)" for t, columns in tables for c in columns]


def _operations(conn: sa.Connection) -> Operations:
    """Alembic's operations on ``conn``, imported only when there is something to change."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    return Operations(MigrationContext.configure(conn))


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
        placed = schemas(conn) if is_postgres(conn) else None
        if placed is not None:  # rosesync's own tables are created in their own schema
            data, own = placed
            for name in dict.fromkeys((data, own)):
                # only when missing: CREATE SCHEMA needs a privilege on the database that a
                # role given existing schemas may lack, even with IF NOT EXISTS
                query = sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name")
                if conn.execute(query, {"name": name}).scalar() is None:
                    conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{own}", "{data}"')
        before, head = stored_revision(conn), head_revision()
        if before != head:
            from alembic import command

            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            changes.append(f"worker tables: revision {before or 'none'} -> {head}")
        if placed is not None:
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{data}", "{own}"')
        refill: dict[str, Callable[[sa.Connection], None]] = {}
        for table, column in _resource_gaps(conn):
            if column is None:
                table.create(conn)
                changes.append(f"created {table.name}")
                # A new, empty table under a cursor that says its rows are stored (the table
                # was dropped, or WAREHOUSE_SCHEMA now names another schema): forget the
                # cursor, so that the next run reads everything instead of skipping it.
                resource = table.name.removeprefix("rr_")
                if conn.execute(state.delete().where(state.c.resource == resource)).rowcount:
                    changes.append(f"reset the cursor of {resource}: its table is new")
            else:
                _operations(conn).add_column(table.name, column._copy())
                changes.append(f"added {table.name}.{column.name}")
            if table.name in _CHILDREN:
                refill[table.name] = _CHILDREN[table.name]
        for derive in refill.values():
            derive(conn)
        if conn.dialect.name == "sqlite":  # DuckDB's amounts are DECIMAL(18, 4) already
            changes += _exact_money(conn)
        changes += views.ensure(conn)
        if is_postgres(conn):
            for name in _lz4_gaps(conn):
                # Applies to values written from now on; existing rows keep theirs until rewritten.
                conn.exec_driver_sql(f'ALTER TABLE "{name}" ALTER COLUMN data SET COMPRESSION lz4')
                if f"created {name}" not in changes:
                    changes.append(f"compressing {name}.data with lz4")
    return changes
