"""Where things land on PostgreSQL (issue 14, item 3): rosesync's own tables in a schema of
their own, the rr_* tables in WAREHOUSE_SCHEMA or the connection's default; an existing install
(everything in one schema) is moved by the migration with its data, and syncs go on."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from config.settings import load_settings
from tests.support import make_world, warehouse_rows
from worker.credentials.store import CredentialStore
from worker.simulator import SimulatorConfig
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource
from worker.warehouse import connect
from worker.warehouse.credentials import read as read_credential
from worker.warehouse.runs import recent_runs
from worker.warehouse.schema import OWN_TABLES

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def tables(schema: str) -> set[str]:
    engine = sa.create_engine(ADMIN, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        )
        names = set(found.scalars())
    engine.dispose()
    return names


def schemas_of(url: str) -> tuple[str, str]:
    data = url.split("search_path%3D", 1)[1].split("&", 1)[0]
    return data, f"{data}_own"


def test_an_install_with_everything_in_one_schema_is_moved_with_its_data(
    postgres_url: str, tmp_path: Path
) -> None:
    data, own = schemas_of(postgres_url)
    legacy = postgres_url.split("&rrsync_own=", 1)[0]  # the layout before: one schema
    config = SimulatorConfig(records=60)
    with make_world(legacy, tmp_path, config, ROSESYNC_SCHEMA=own) as world:
        # what an install of the revision before looked like: own tables beside rr_*, at 0006
        assert world.settings.warehouse_url == postgres_url  # ROSESYNC_SCHEMA is in effect...
        old = connect(legacy)  # ...but this engine is the old layout's
        result = sync_resource(world.settings, old, world.store, REGISTRY["orders"], full=True)
        assert result.ok, result.run.error
        with old.begin() as conn:
            conn.exec_driver_sql("UPDATE rrsync_alembic_version SET version_num = '0006_drift'")
        before = warehouse_rows(old, "orders")
        assert {t.name for t in OWN_TABLES} <= tables(data) and not tables(own)
        credential = read_credential(old, "default")
        with old.begin() as conn:  # what a later revision adds (0008_orgs; rr_* have their org)
            conn.exec_driver_sql("ALTER TABLE rrsync_credentials DROP COLUMN paused_at")

        engine = connect(world.settings.warehouse_url)  # the upgrade moves them
        assert {t.name for t in OWN_TABLES} | {"rrsync_alembic_version"} <= tables(own)
        assert not {t.name for t in OWN_TABLES} & tables(data)
        assert {"rr_orders", "rr_customers"} <= tables(data)
        assert read_credential(engine, "default") == credential
        assert [r.status for r in recent_runs(engine, "orders")] == ["succeeded"]
        assert warehouse_rows(engine, "orders") == before

        world.sim.mutate(10, "orders")
        store = CredentialStore(world.settings, engine)  # reads the moved credential
        again = sync_resource(world.settings, engine, store, REGISTRY["orders"])
        assert again.ok, again.run.error
        assert again.run.cursor_before is not None  # incremental: the cursor came along
        assert len(recent_runs(engine, "orders")) == 2


def test_warehouse_schema_takes_the_rr_tables_and_a_new_table_resets_its_cursor(
    postgres_url: str, tmp_path: Path
) -> None:
    data, own = schemas_of(postgres_url)
    analytics = f"{data}_wh"
    config = SimulatorConfig(records=30)
    try:
        with make_world(postgres_url, tmp_path, config) as world:
            result = sync_resource(
                world.settings, world.engine, world.store, REGISTRY["partners"], full=True
            )
            assert result.ok, result.run.error
            # the operator points WAREHOUSE_SCHEMA elsewhere: new, empty tables there, and
            # their cursors forgotten, so the next runs read everything into them
            env = {**world.env, "WAREHOUSE_SCHEMA": analytics}
            settings = load_settings(environ=env, dotenv_path=None)
            engine = connect(settings.warehouse_url)
            assert {"rr_partners", "rr_orders"} <= tables(analytics)
            assert not {t.name for t in OWN_TABLES} & tables(analytics)
            again = sync_resource(settings, engine, world.store, REGISTRY["partners"])
            assert again.ok, again.run.error
            assert again.run.cursor_before is None
            assert len(warehouse_rows(engine, "partners")) == 30
            assert tables(own) >= {"rrsync_state", "rrsync_runs"}
    finally:
        admin = sa.create_engine(ADMIN, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {analytics} CASCADE")
        admin.dispose()
