"""worker/warehouse/migrate.py: `rosesync db upgrade` is idempotent on SQLite, PostgreSQL and
DuckDB, the migrations match the table definitions, and new registry columns get added."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from worker.source.resources import REGISTRY
from worker.warehouse import connect
from worker.warehouse.db import create_engine
from worker.warehouse.migrate import VERSION_TABLE, head_revision, upgrade
from worker.warehouse.rows import RowBuilder
from worker.warehouse.schema import OWN_TABLES, metadata, resource_tables


def _rosesync(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_twice_from_the_cli(warehouse_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": warehouse_url}
    first = _rosesync("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created rr_orders" in first.stdout
    second = _rosesync("db", "upgrade", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"
    engine = create_engine(warehouse_url)
    names = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in OWN_TABLES} <= names
    assert {"rr_orders", "rr_customers", VERSION_TABLE} <= names


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    engine = create_engine(database_url)
    upgrade(engine)
    own = {t.name for t in OWN_TABLES}
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [
            d
            for d in compare_metadata(context, metadata)
            if not isinstance(d, tuple) or _table_of(d) in own
        ]
    assert diffs == []


def _table_of(diff: tuple[object, ...]) -> str | None:
    for part in diff:
        name = getattr(part, "table", None)
        if name is not None:
            return str(getattr(name, "name", name))
        if isinstance(part, sa.Table):
            return part.name
    return None


def test_missing_registry_column_is_added(warehouse_url: str) -> None:
    engine = create_engine(warehouse_url)
    upgrade(engine)
    # rr_orders as an older registry made it (DuckDB cannot drop a column an index follows)
    older = sa.Table(
        "rr_orders",
        sa.MetaData(),
        *(c._copy() for c in resource_tables["orders"].columns if c.name != "status"),
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE rr_orders")
        older.create(conn)
    assert upgrade(engine)[0] == "added rr_orders.status"  # (PostgreSQL: then LZ4 again)
    assert upgrade(engine) == []


def test_first_use_brings_the_schema_up_to_date(sqlite_url: str) -> None:
    engine = connect(sqlite_url)
    assert upgrade(engine) == []  # connect() already did everything
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert context.get_current_revision() == head_revision()


def test_postgres_tables_compress_data_with_lz4_and_match_the_copy_types(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as conn:  # a warehouse created before rosesync chose LZ4
        conn.exec_driver_sql("ALTER TABLE rr_orders ALTER COLUMN data SET COMPRESSION pglz")
    assert upgrade(engine) == ["compressing rr_orders.data with lz4"]
    assert upgrade(engine) == []
    with engine.connect() as conn:
        for resource in REGISTRY.values():
            columns = conn.execute(
                sa.text(
                    "SELECT attname, atttypid::int, attcompression FROM pg_attribute "
                    "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
                ),
                {"table": resource.table},
            ).all()
            assert {name: compression for name, _, compression in columns}["data"] == "l"
            builder = RowBuilder(resource, postgres=True)
            wanted = {
                name: conn.execute(sa.text("SELECT to_regtype(:t)::oid::int"), {"t": wire}).scalar()
                for name, wire in zip(builder.columns, builder.postgres_types, strict=True)
            }
            assert wanted == {name: oid for name, oid, _ in columns}
