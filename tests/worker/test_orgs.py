"""Many organizations in one warehouse (issue 15, items 1 and 2): one credential per org under
the one client, every resource row keyed by its org, `rosesync orgs` to list, pause, resume and
remove them, and a single-org warehouse from before the change upgraded in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config.settings import load_settings
from tests.support import assert_matches_source, make_world, warehouse_rows
from worker.credentials.orgs import orgs_to_sync
from worker.credentials.store import CredentialStore
from worker.simulator import SimulatorConfig
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resources
from worker.warehouse import connect
from worker.warehouse.migrate import VERSION_TABLE, upgrade
from worker.warehouse.schema import child_tables, resource_tables

RESOURCES = ["customers", "orders"]
# org-a and org-b share a seed: the same ids in both, which must not collide in the warehouse.
ORGS = {"org-a": 5, "org-b": 5, "org-c": 9}


def _sync(store: CredentialStore, world_settings: object, engine: Engine) -> None:
    results = sync_resources(
        world_settings,  # type: ignore[arg-type]
        engine,
        store,
        [REGISTRY[name] for name in RESOURCES],
    )
    assert [r.run.status for r in results] == ["succeeded"] * len(RESOURCES)


def test_each_org_syncs_its_own_records(database_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=60, orgs=ORGS, org_records={"org-c": 90})
    with make_world(database_url, tmp_path, config, orgs=tuple(ORGS)) as world:
        for store in world.stores.values():
            _sync(store, world.settings, world.engine)
        world.sim.mutate(40, org="org-a")  # only org-a's source changes
        for store in world.stores.values():
            _sync(store, world.settings, world.engine)
        for org in ORGS:
            for resource in RESOURCES:
                assert_matches_source(world, resource, org)
        shared = set(warehouse_rows(world.engine, "customers", "org-b"))
        assert shared & set(warehouse_rows(world.engine, "customers", "org-a"))
        # The settings' own org (no ROSEROCKET_ORG_ID: "default") was never synced.
        assert warehouse_rows(world.engine, "orders") == {}


def _rosesync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_orgs_are_listed_paused_resumed_and_removed(sqlite_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=20, orgs=ORGS)
    with make_world(sqlite_url, tmp_path, config, orgs=("org-a", "org-b")) as world:
        _sync(world.stores["org-a"], world.settings, world.engine)
        _sync(world.stores["org-b"], world.settings, world.engine)
        listed = _rosesync(world.env, "orgs")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert any(line.split()[:3] == ["org-a", "syncing", "ok"] for line in lines), lines
        assert orgs_to_sync(world.settings, world.engine) == ["default", "org-a", "org-b"]
        status = _rosesync(world.env, "status")  # every org, the org column first
        assert status.returncode == 0, status.stderr
        table = [line.split()[:2] for line in status.stdout.splitlines()]
        assert ["org", "resource"] in table
        assert {("org-a", "orders"), ("org-b", "orders"), ("default", "orders")} <= {
            (row[0], row[1]) for row in table if len(row) == 2
        }

        assert _rosesync(world.env, "orgs", "pause", "org-a").returncode == 0
        assert orgs_to_sync(world.settings, world.engine) == ["default", "org-b"]
        assert "paused" in _rosesync(world.env, "orgs").stdout
        assert _rosesync(world.env, "orgs", "resume", "org-a").returncode == 0
        only = load_settings(environ={**world.env, "SYNC_ORGS": "org-b"}, dotenv_path=None)
        assert orgs_to_sync(only, world.engine) == ["org-b"]

        removed = _rosesync(world.env, "orgs", "remove", "org-a")
        assert removed.returncode == 0, removed.stderr
        assert "rows are kept" in removed.stdout
        assert warehouse_rows(world.engine, "orders", "org-a")  # kept
        assert "org-a" not in orgs_to_sync(world.settings, world.engine)
        purged = _rosesync(world.env, "orgs", "remove", "org-a", "--purge")
        assert purged.returncode == 0, purged.stderr
        assert warehouse_rows(world.engine, "orders", "org-a") == {}
        assert warehouse_rows(world.engine, "orders", "org-b")  # another org's rows stay
        unknown = _rosesync(world.env, "orgs", "pause", "org-zz")
        assert unknown.returncode != 0
        assert (
            unknown.stderr.strip()
            .splitlines()[-1]
            .endswith("`rosesync bootstrap --org org-zz` adds it")
        )


def _pre_org_layout(engine: Engine) -> None:
    """Turn the warehouse back into the layout before this wave's tables (the last release):
    resource tables keyed by id alone, no views, child tables or drift tables, no pause column,
    Alembic at 0005_quarantine; the rows are kept."""
    with engine.begin() as conn:
        for name in sa.inspect(conn).get_view_names():
            if name.startswith("v_"):
                conn.exec_driver_sql(f'DROP VIEW "{name}"')
        for table in [t for declared in child_tables.values() for _, t in declared]:
            conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
        conn.exec_driver_sql("DROP TABLE rrsync_drift")
        conn.exec_driver_sql("DROP TABLE rrsync_fields")
        for table in resource_tables.values():
            kept = [c for c in table.columns if c.name != "org"]
            rows = conn.execute(sa.select(*kept)).mappings().all()
            conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
            old = sa.Table(
                table.name,
                sa.MetaData(),
                *(c._copy(primary_key=c.name == "id") for c in kept),
            )
            old.create(conn)
            if rows:
                conn.execute(old.insert(), [dict(row) for row in rows])
        conn.exec_driver_sql("ALTER TABLE rrsync_credentials DROP COLUMN paused_at")
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0005_quarantine'"))


def test_a_single_org_warehouse_upgrades_and_keeps_syncing(
    database_url: str, tmp_path: Path
) -> None:
    """An install with ROSEROCKET_ORG_ID and synced rows, from before orgs were data: the
    upgrade fills the org from its state, and incremental syncs go on, exact, with no new
    setting."""
    config = SimulatorConfig(records=80)
    with make_world(database_url, tmp_path, config, ROSEROCKET_ORG_ID="acme") as world:
        _sync(world.store, world.settings, world.engine)
        _pre_org_layout(world.engine)
        changes = upgrade(world.engine)  # (PostgreSQL: also LZ4 for the tables rebuilt above)
        assert changes[0] == "worker tables: revision 0005_quarantine -> 0008_orgs"
        primary_key = sa.inspect(world.engine).get_pk_constraint("rr_orders")
        assert primary_key["constrained_columns"] == ["org", "id"]
        indexes = {
            i["name"]: i["column_names"] for i in sa.inspect(world.engine).get_indexes("rr_orders")
        }
        assert indexes["ix_rr_orders_org_updated_at"] == ["org", "updated_at"]
        assert len(warehouse_rows(world.engine, "orders", "acme")) == 80
        world.sim.mutate(30)
        store = CredentialStore(world.settings, connect(world.settings.warehouse_url))
        _sync(store, world.settings, world.engine)
        for resource in RESOURCES:
            assert_matches_source(world, resource)
        with world.engine.connect() as conn:
            orgs = conn.execute(sa.text("SELECT DISTINCT org FROM rr_orders")).scalars().all()
        assert orgs == ["acme"]


def test_an_ambiguous_pre_org_warehouse_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=10)
    with make_world(sqlite_url, tmp_path, config) as world:
        _sync(world.store, world.settings, world.engine)
        _pre_org_layout(world.engine)
        with world.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO rrsync_state (resource, org, updated_at) "
                    "VALUES ('orders', 'other', '2026-01-01 00:00:00.000000')"
                )
            )
        with pytest.raises(RuntimeError, match="cannot tell which org its 10 rows belong to"):
            upgrade(world.engine)


def test_sync_inline_for_one_org(sqlite_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=15, orgs=ORGS)
    with make_world(sqlite_url, tmp_path, config, orgs=("org-c",)) as world:
        done = _rosesync(world.env, "sync", "--org", "org-c", "customers")
        assert done.returncode == 0, done.stderr
        assert_matches_source(world, "customers", "org-c")
        assert warehouse_rows(world.engine, "customers") == {}  # the settings' org: untouched
        missing = _rosesync(world.env, "sync", "--org", "org-zz", "customers")
        assert missing.returncode != 0
        assert "org-zz" in missing.stderr.strip().splitlines()[-1]
