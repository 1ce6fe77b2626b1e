"""worker/warehouse/migrate.py: `rosesync db upgrade` is idempotent on SQLite, PostgreSQL and
DuckDB, the migrations match the table definitions, and new registry columns get added."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.support import assert_children_match
from worker.clock import utcnow
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.warehouse import children, connect, views
from worker.warehouse.db import create_engine
from worker.warehouse.load import Loader
from worker.warehouse.migrate import VERSION_TABLE, head_revision, upgrade
from worker.warehouse.rows import RowBuilder
from worker.warehouse.schema import OWN_TABLES, child_tables, metadata, resource_tables


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
        for view in views.definitions():  # the views over rr_orders read the column
            if view == "v_orders" or view.startswith("v_orders__"):
                conn.exec_driver_sql(f'DROP VIEW "{view}"')
        conn.exec_driver_sql("DROP TABLE rr_orders")
        older.create(conn)
    changes = upgrade(engine)
    assert changes[0] == "added rr_orders.status" and "created view v_orders" in changes
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

        def types(table: str) -> dict[str, tuple[int, str]]:
            query = sa.text(
                "SELECT attname, atttypid::int, attcompression FROM pg_attribute "
                "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped"
            )
            return {name: (oid, z) for name, oid, z in conn.execute(query, {"table": table})}

        def oids(names: list[str], wires: list[str]) -> dict[str, int]:
            query = sa.text("SELECT to_regtype(:t)::oid::int")
            pairs = zip(names, wires, strict=True)
            return {n: conn.execute(query, {"t": w}).scalar_one() for n, w in pairs}

        for resource in REGISTRY.values():
            columns = types(resource.table)
            assert columns["data"][1] == "l"
            builder = RowBuilder(resource, postgres=True, org="default")
            wanted = oids(builder.columns, builder.postgres_types)
            assert wanted == {name: oid for name, (oid, _) in columns.items()}
            for child, table in child_tables[resource.name]:  # issue 14: COPY into them too
                wanted = oids([c.name for c in table.columns], children.postgres_types(child))
                assert wanted == {name: oid for name, (oid, _) in types(table.name).items()}


def test_an_install_from_before_child_tables_gets_them_filled(warehouse_url: str) -> None:
    """Issue 14: upgrading an install whose rr_* rows predate child tables (dropped here) creates
    them and derives their rows from the stored parents, soft-deleted ones included; a child
    table given a new column is derived again, so the column is filled too."""
    engine = connect(warehouse_url)
    loader = Loader(engine, REGISTRY["orders"], "default", run_id=0)
    decoder = Decoder(REGISTRY["orders"])
    records = [
        {
            "id": f"o{n}",
            "updated_at": f"2024-01-0{n}T00:00:00.000Z",
            "commodities": [{"weight": w, "description": "Lumber"} for w in range(n)],
            "reference_numbers": [{"type": "PO", "value": f"PO-{n}"}],
            "billing": {"line_items": [{"code": "LH", "amount": 12.5 * n}]},
        }
        for n in range(1, 4)
    ]
    rows = loader.rows([decoder.record(msgspec.json.encode(r), "test") for r in records])
    loader.commit(rows, 1, lambda: None, {}, lambda _conn: None)
    with engine.begin() as conn:
        conn.execute(
            resource_tables["orders"]
            .update()
            .where(resource_tables["orders"].c.id == "o2")
            .values(deleted_at=utcnow())
        )
        for _, table in child_tables["orders"]:
            conn.exec_driver_sql(f'DROP VIEW "v_{table.name[3:]}"')
            conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
    assert upgrade(engine) == [
        "created rr_orders__commodities",
        "created rr_orders__reference_numbers",
        "created view v_orders__commodities",
        "created view v_orders__reference_numbers",
    ]
    assert_children_match(engine, "orders", "default")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP VIEW v_orders__commodities")
        conn.exec_driver_sql("ALTER TABLE rr_orders__commodities DROP COLUMN description")
    assert upgrade(engine) == [
        "added rr_orders__commodities.description",
        "created view v_orders__commodities",
    ]
    assert_children_match(engine, "orders", "default")
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM rr_orders__commodities").scalar()
    assert count == 1 + 2 + 3


def test_sqlite_amounts_stored_as_real_become_exact_text(sqlite_url: str) -> None:
    """Issue 14: an install from before stored amounts REAL; upgrading rebuilds the table with
    the amounts as decimal text, keeping its rows, its index and (made again) its views."""
    engine = connect(sqlite_url)
    with engine.begin() as conn:
        ddl = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'rr_orders'"
        ).scalar_one()
        assert "total_amount TEXT" in ddl
        conn.exec_driver_sql("DROP VIEW v_orders")
        conn.exec_driver_sql("DROP VIEW v_orders__commodities")
        conn.exec_driver_sql("DROP VIEW v_orders__reference_numbers")
        conn.exec_driver_sql("DROP TABLE rr_orders")
        conn.exec_driver_sql(ddl.replace("total_amount TEXT", "total_amount FLOAT"))
        conn.exec_driver_sql("CREATE INDEX ix_rr_orders_updated_at ON rr_orders (updated_at)")
        conn.exec_driver_sql(
            "INSERT INTO rr_orders (org, id, total_amount, data, updated_at, synced_at) "
            "VALUES ('default', 'o1', 1234.56, '{}', '2024-01-01 00:00:00.000000', "
            "'2024-01-01 00:00:00.000000')"
        )
    assert upgrade(engine) == [
        "made rr_orders.total_amount exact (decimal text)",
        *(f"created view {name}" for name in views.definitions()),
    ]
    assert upgrade(engine) == []
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT total_amount, typeof(total_amount) FROM rr_orders")
        assert stored.one() == ("1234.56", "text")
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("rr_orders")}
        assert "ix_rr_orders_updated_at" in indexes
        assert conn.exec_driver_sql("SELECT count(*) FROM v_orders").scalar() == 1


def test_head_revision_read_from_the_scripts_is_alembics() -> None:
    """Start-up reads the newest revision from the scripts' text, not through Alembic (issue
    16): the two must agree, or a pending revision would never be applied."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from worker.warehouse import migrate

    config = Config()
    config.set_main_option("script_location", str(migrate._MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
    assert head_revision() is not None


def test_a_runs_range_queries_use_the_org_updated_at_index(sqlite_url: str) -> None:
    """Reconcile's counts are "this org, updated_at in a range": with only an index on
    updated_at, SQLite read the whole org through the primary key's org prefix for every count
    (an incremental run after 500 changes among 50,000 orders took 407 s, not 7 s)."""
    engine = connect(sqlite_url)
    loader = Loader(engine, REGISTRY["orders"], "default", run_id=0)
    now = utcnow()
    query = sa.select(sa.func.count()).where(*loader._live_in(now, now))
    with engine.connect() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_rr_orders_org_updated_at" in plan, plan
