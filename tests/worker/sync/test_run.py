"""worker/sync/run.py against the simulator, on SQLite, PostgreSQL and DuckDB and on both API
profiles (keyset paging on the extended one, sweeps on the documented one), with concurrency on:
the warehouse ends equal to the source under live changes, faults, crashes and bad pages."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import psycopg
import pytest
import sqlalchemy as sa

from config.settings import ENVIRONMENT_VARIABLES
from tests.support import World, assert_matches_source, make_world, warehouse_rows
from worker.clock import format_timestamp, parse_timestamp, utcnow
from worker.errors import (
    MalformedResponse,
    QuarantineFull,
    RefreshBlocked,
    TransientError,
    WarehouseFull,
)
from worker.ops.status import build_status
from worker.simulator import RESOURCES, FaultRule, SimulatorConfig
from worker.source.api import RoseRocketClient
from worker.source.records import Decoder
from worker.source.resources import REGISTRY
from worker.sync.collector import RUN_THRESHOLD
from worker.sync.run import SyncResult, sync_resource
from worker.sync.strategy import probe_resources
from worker.warehouse.credentials import read as read_credential
from worker.warehouse.db import is_disk_full
from worker.warehouse.quarantine import add as add_to_quarantine
from worker.warehouse.quarantine import counts as quarantine_counts
from worker.warehouse.rows import Poison
from worker.warehouse.runs import recent_runs
from worker.warehouse.schema import credentials, quarantine, state

# Small pages so that a few hundred records make several pages and four concurrent slices.
SMALL_PAGES = {"SYNC_PAGE_SIZE": "40", "SYNC_CONCURRENCY": "4"}

# `make test` runs every test here on SQLite and PostgreSQL with both API profiles, and on DuckDB
# with the extended one; DuckDB with the documented profile (sweeps) runs the exactness test,
# full then incremental, in `make test` and the rest under `make soak`. The profile decides what
# is read and the warehouse how it is written; the two meet in the loader's batches and in
# marking what a complete sweep missed as deleted, both of which that test does. DuckDB is the
# slowest writer (it opens its file for each transaction, worker/warehouse/duck.py).
# DEVELOPERS.md, "What make test runs".
DUCKDB_DOCUMENTED = pytest.mark.soak_only(warehouse_url="duckdb", api_profile="documented")


def sync(world: World, resource: str, full: bool = False) -> SyncResult:
    return sync_resource(world.settings, world.engine, world.store, REGISTRY[resource], full=full)


def served(world: World) -> list[str]:
    """The resources the simulator's API has an endpoint for (documented: no invoices)."""
    return [name for name in RESOURCES if world.sim.config.serves(name)]


@pytest.fixture
def world(warehouse_url: str, api_profile: str, tmp_path: Path) -> Iterator[World]:
    config = SimulatorConfig(records=300, profile=api_profile)
    with make_world(warehouse_url, tmp_path, config, **SMALL_PAGES) as w:
        yield w


def test_full_then_incremental_reads_only_what_changed(world: World) -> None:
    for name in served(world):
        result = sync(world, name, full=True)
        assert result.ok, result.run.error
        assert result.run.records >= 300
        assert_matches_source(world, name)
    before = {name: {r["id"] for r in world.dump(name)} for name in served(world)}
    world.sim.mutate(12)
    for name in served(world):
        cursor = recent_runs(world.engine, name, limit=1)[0].cursor_after
        assert cursor is not None
        lookback = timedelta(seconds=world.settings.sync_lookback_seconds)
        changed = [
            r for r in world.dump(name) if parse_timestamp(r["updated_at"]) >= cursor - lookback
        ]
        deleted = before[name] - {r["id"] for r in world.dump(name)}
        result = sync(world, name)
        assert result.ok, result.run.error
        assert result.run.deleted == len(deleted)
        if world.sim.config.documented:
            # a sweep reads every page (40 a page, overlapping by 2), then confirms each
            # deletion by id
            pages = -(-len(world.dump(name)) // 38)
            assert result.run.records >= len(world.dump(name))
            assert result.run.requests <= pages + 4 + len(deleted)
        elif not deleted:
            # one page of changes, one count to look for deletions: nothing else
            assert (result.run.records, result.run.requests) == (len(changed), 2)
        else:
            # plus a few counting requests, a listing of the affected range, a fetch by id
            assert result.run.records >= len(changed)
            assert result.run.requests <= 2 + 12 * len(deleted)
        assert_matches_source(world, name)


@DUCKDB_DOCUMENTED
def test_typed_columns_and_raw_data(world: World) -> None:
    assert sync(world, "orders").ok
    rows = warehouse_rows(world.engine, "orders")
    for record in world.dump("orders")[:50]:
        row = rows[record["id"]]
        assert row["data"] == record
        assert row["full_id"] == record["full_id"]
        assert row["status"] == record["status"]
        assert row["customer_id"] == record["customer"]["id"]
        assert float(row["total_amount"]) == pytest.approx(record["billing"]["total_amount"])
        assert row["created_at"] == parse_timestamp(record["created_at"])
        assert row["synced_at"] is not None and row["deleted_at"] is None


@DUCKDB_DOCUMENTED
def test_cursor_never_passes_run_start_less_skew(
    warehouse_url: str, api_profile: str, tmp_path: Path
) -> None:
    # Live changes stamp records with the current time: the cursor must stop short of them.
    config = SimulatorConfig(records=100, mutation_per_request=3, profile=api_profile)
    with make_world(warehouse_url, tmp_path, config, SYNC_CLOCK_SKEW_SECONDS="30") as world:
        result = sync(world, "orders")
        assert result.ok
        cursor = result.run.cursor_after
        assert cursor is not None
        assert cursor <= result.run.started_at - timedelta(seconds=30)


@pytest.mark.soak
@DUCKDB_DOCUMENTED
def test_live_mutation_then_one_more_incremental_is_exact(
    warehouse_url: str, api_profile: str, tmp_path: Path, soak_seed: int
) -> None:
    config = SimulatorConfig(
        records=400, seed=soak_seed, mutation_per_request=3, profile=api_profile
    )
    with make_world(warehouse_url, tmp_path, config, **SMALL_PAGES) as world:
        for name in ("orders", "customers"):
            assert sync(world, name, full=True).ok
            assert sync(world, name).ok
        world.sim.set_mutation(per_request=0)
        for name in ("orders", "customers"):
            assert sync(world, name).ok
            assert_matches_source(world, name)
        assert world.sim.counters()["mutations"]["deleted"] > 0


@pytest.mark.soak
@DUCKDB_DOCUMENTED
def test_faults_do_not_change_the_result(
    warehouse_url: str, api_profile: str, tmp_path: Path, soak_seed: int
) -> None:
    faults = (
        FaultRule(kind="status", status=500, rate=0.04),
        FaultRule(kind="status", status=503, rate=0.02, retry_after=0.2),
        FaultRule(kind="status", status=429, rate=0.04, retry_after=0.2),
        FaultRule(kind="unauthorized", every=13),  # by count: some seeds drew no 401 at 4%
        FaultRule(kind="drop", rate=0.03),
        FaultRule(kind="truncate", rate=0.02),  # a 200 whose JSON is cut short (issue 13)
        FaultRule(kind="malformed", rate=0.02),  # a 200 with a proxy's HTML page
        FaultRule(kind="latency", latency=0.005),
    )
    config = SimulatorConfig(records=400, seed=soak_seed, profile=api_profile)
    with make_world(warehouse_url, tmp_path, config, **SMALL_PAGES) as world:
        world.sim.set_faults(*faults)
        for name in ("orders", "bills"):
            result = sync(world, name, full=True)
            assert result.ok, result.run.error
        world.sim.mutate(20)
        for name in ("orders", "bills"):
            result = sync(world, name)
            assert result.ok, result.run.error
        world.sim.set_faults()
        for name in ("orders", "bills"):
            assert_matches_source(world, name)
        fired = world.sim.counters()["faults_fired"]
        assert fired.get("truncate", 0) + fired.get("malformed", 0) > 0
        runs = recent_runs(world.engine)
        assert sum(r.retries for r in runs) > 0
        assert sum(r.unauthorized for r in runs) > 0


# Retrying a bad body happens before anything is written: DuckDB adds nothing to it.
@pytest.mark.soak_only(warehouse_url="duckdb")
@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_a_bad_200_body_is_fetched_again(world: World, kind: str) -> None:
    """Issue 13, item 4: a page cut short or replaced by a proxy's HTML is retried like a 502,
    both when listing and when fetching one record by id."""
    world.sim.set_faults(FaultRule(kind=kind, every=3, count=2))
    result = sync(world, "orders")
    assert result.ok, result.run.error
    assert result.run.retries == 2
    assert_matches_source(world, "orders")
    record = world.dump("orders")[0]
    world.sim.set_faults(FaultRule(kind=kind, count=1))
    client = RoseRocketClient(world.settings, world.store)
    found = client.get_record(REGISTRY["orders"], record["id"])
    assert found is not None and found.id == record["id"]
    assert client.stats.retries == 1


@DUCKDB_DOCUMENTED
def test_a_malformed_page_fails_the_run_and_keeps_what_was_committed(world: World) -> None:
    probe_resources(world.settings, world.engine, world.store, [REGISTRY["orders"]], "default")
    world.sim.set_faults(FaultRule(kind="malformed", after=6))
    result = sync(world, "orders")
    assert not result.ok
    assert isinstance(result.error, MalformedResponse)
    assert result.run.status == "failed"
    assert "not valid JSON" in (result.run.error or "")
    rows = warehouse_rows(world.engine, "orders")
    assert rows, "pages before the malformed one stay committed"
    cursor = _cursor(world, "orders")
    if cursor is not None:
        # Everything below the cursor is in the warehouse. (The cursor may lie beyond the newest
        # row: at the lower bound of a slice that had delivered nothing when the run failed,
        # all the slices before it being complete.)
        source_below = {
            r["id"] for r in world.dump("orders") if parse_timestamp(r["updated_at"]) < cursor
        }
        assert source_below <= set(rows)
    world.sim.set_faults()
    assert sync(world, "orders").ok
    assert_matches_source(world, "orders")


@DUCKDB_DOCUMENTED
def test_full_refresh_marks_deleted_only_after_a_complete_pass(world: World) -> None:
    assert sync(world, "customers", full=True).ok
    before = {r["id"] for r in world.dump("customers")}
    world.sim.mutate(60, resource="customers")
    gone = before - {r["id"] for r in world.dump("customers")}
    assert gone, "the mutation deleted some customers"
    # A pass that fails half-way marks nothing.
    world.sim.set_faults(FaultRule(kind="status", status=400, after=2))
    failed = sync(world, "customers", full=True)
    assert failed.run.status == "failed"
    rows = warehouse_rows(world.engine, "customers")
    assert all(rows[i]["deleted_at"] is None for i in gone)
    world.sim.set_faults()
    result = sync(world, "customers", full=True)
    assert result.ok
    assert result.run.deleted == len(gone)
    rows = warehouse_rows(world.engine, "customers")
    assert {i for i, r in rows.items() if r["deleted_at"] is not None} == gone
    assert_matches_source(world, "customers")


@DUCKDB_DOCUMENTED
def test_an_older_version_never_overwrites_a_newer_one(world: World) -> None:
    assert sync(world, "orders").ok
    record = world.dump("orders")[0]
    from worker.warehouse.load import Loader

    loader = Loader(world.engine, REGISTRY["orders"], "default", recent_runs(world.engine)[0].id)
    stale_time = parse_timestamp(record["updated_at"]) - timedelta(days=1)
    # other commodities too: the newer version's child rows must stay (issue 14)
    older = dict(record, status="stale", commodities=[], updated_at=format_timestamp(stale_time))
    stale = Decoder(REGISTRY["orders"]).record(msgspec.json.encode(older), "test")
    loader.commit(loader.rows([stale]), 1, lambda: None, {}, lambda _conn: None)
    row = warehouse_rows(world.engine, "orders")[record["id"]]
    assert row["data"] == record
    assert row["updated_at"] == parse_timestamp(record["updated_at"])
    assert_matches_source(world, "orders")


@DUCKDB_DOCUMENTED
def test_a_second_run_while_one_holds_the_lease_is_skipped(world: World) -> None:
    from worker.sync.lease import Lease
    from worker.sync.run import lease_name

    other = Lease(world.engine, lease_name("orders", "default"), ttl=60)
    assert other.acquire()
    result = sync(world, "orders")
    assert result.ok and result.run.status == "skipped"
    assert result.run.records == 0
    other.release()
    assert sync(world, "orders").run.status == "succeeded"


# Batches of two pages, and once 300 records are committed the writer that committed them
# stops there (the other may still be mid-transaction): the kill lands mid-run, every time.
CHILD = """
import sys, time
import worker.sync.run
from config.settings import load_settings
from worker.credentials.store import CredentialStore
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource
from worker.warehouse import connect
worker.sync.run.BATCH_RECORDS = 100
settings = load_settings(dotenv_path=None)
engine = connect(settings.database_url)
def progress(name, done, total):
    print(done, flush=True)
    if done >= 300:
        time.sleep(600)
sync_resource(settings, engine, CredentialStore(settings, engine), REGISTRY[sys.argv[1]],
              full=True, progress=progress)
"""


@DUCKDB_DOCUMENTED
def test_kill_9_mid_run_then_rerun_is_exact(
    warehouse_url: str, api_profile: str, tmp_path: Path
) -> None:
    latency = (FaultRule(kind="latency", latency=0.03),)
    config = SimulatorConfig(records=1500, faults=latency, profile=api_profile)
    with make_world(warehouse_url, tmp_path, config, SYNC_PAGE_SIZE="50") as world:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, "orders"],
            env={**os.environ, **world.env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        committed = 0
        while committed < 300:  # a few pages in, well before the end
            line = child.stdout.readline()
            assert line, "the child ended before it could be killed"
            committed = int(line)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        partial = warehouse_rows(world.engine, "orders")
        assert 0 < len(partial) < 1500
        world.sim.set_faults()
        result = sync(world, "orders")
        assert result.ok, result.run.error
        assert_matches_source(world, "orders")
        runs = recent_runs(world.engine, "orders")
        assert [r.status for r in runs[:2]] == ["succeeded", "abandoned"]
        assert "died" in (runs[1].error or "")
        with world.engine.connect() as conn:
            count, distinct = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT id) FROM rr_orders")
            ).one()
        assert count == distinct == 1500


@DUCKDB_DOCUMENTED
def test_interrupt_stops_at_a_page_boundary(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr("worker.sync.run.BATCH_RECORDS", 40)  # a page per batch: many batches
    stop = threading.Event()
    pages: list[int] = []

    def progress(_name: str, done: int, _total: int | None) -> None:
        pages.append(done)
        if len(pages) == 2:
            stop.set()

    result = sync_resource(
        world.settings, world.engine, world.store, REGISTRY["orders"], progress=progress, stop=stop
    )
    assert result.run.status == "interrupted"
    assert result.run.records == pages[-1]
    # (a sweep's parts overlap by a record or two: those are written twice, harmlessly)
    assert 0 < len(warehouse_rows(world.engine, "orders")) <= pages[-1]
    assert sync(world, "orders").ok
    assert_matches_source(world, "orders")


def test_a_run_writes_with_the_collector_held_back(world: World) -> None:
    """worker/sync/collector.py, as a run's batches are written (issue 16)."""
    thresholds: set[int] = set()

    def progress(_name: str, _done: int, _total: int | None) -> None:
        thresholds.add(gc.get_threshold()[0])

    before = gc.get_threshold()
    result = sync_resource(world.settings, world.engine, world.store, REGISTRY["orders"],
                           full=True, progress=progress)
    assert result.ok
    assert thresholds == {RUN_THRESHOLD}
    assert gc.get_threshold() == before


@DUCKDB_DOCUMENTED
def test_run_history_records_the_counts(world: World) -> None:
    world.sim.set_faults(FaultRule(kind="status", status=502, every=4, count=2))
    started = time.time()
    result = sync(world, "bills", full=True)
    assert result.ok
    run = result.run
    assert run.mode == "full" and run.trigger == "cli"
    assert run.pages >= 300 // 40
    assert run.records >= 300
    assert run.requests >= run.pages
    assert run.retries == 2
    assert run.cursor_before is None and run.cursor_after is not None
    assert run.finished_at is not None and run.started_at.timestamp() >= started - 5


@DUCKDB_DOCUMENTED
def test_losing_the_database_mid_run_is_transient(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.errors import TransientError, WarehouseUnavailable
    from worker.warehouse.load import Loader

    real_commit = Loader.commit
    calls = []

    def failing_commit(self: Loader, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the second batch: as if the server restarted under us
            raise sa.exc.OperationalError("COMMIT", {}, ConnectionResetError("reset by peer"))
        real_commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Loader, "commit", failing_commit)
    monkeypatch.setattr("worker.sync.run.BATCH_RECORDS", 40)  # one page per batch
    result = sync(world, "orders")
    assert isinstance(result.error, WarehouseUnavailable)
    assert isinstance(result.error, TransientError)  # so the Celery task retries it
    assert result.run.status == "failed"
    assert "failed mid-run (ConnectionResetError)" in (result.run.error or "")
    monkeypatch.undo()
    assert sync(world, "orders").ok
    assert_matches_source(world, "orders")


def test_a_failed_batch_leaves_the_cursor_behind_it_with_two_writers(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches commit side by side (worker/sync/commits.py). The database refuses one of them (a
    trigger), slowly, so that on PostgreSQL the next batch commits while it fails. The cursor
    must still cover only committed rows, so that the next incremental run fills the hole.
    (Keyset paging only: a sweep moves no cursor until it is complete.)"""
    monkeypatch.setattr("worker.sync.run.BATCH_RECORDS", 40)  # one page per batch: many batches
    # one slice (as many as requests may be in flight, issue 16): a cursor after each batch
    pages = {"SYNC_PAGE_SIZE": "40", "SYNC_CONCURRENCY": "1", "SYNC_MAX_CONCURRENCY": "1"}
    # No quarantine: a refused record fails its batch (else it is set aside, tested below).
    pages["SYNC_MAX_QUARANTINE"] = "0"
    with make_world(database_url, tmp_path, SimulatorConfig(records=300), **pages) as world:
        assert world.settings.sync_writers == 2
        source = world.dump("orders")
        refused = source[len(source) // 2]
        with world.engine.begin() as conn:
            for statement in _refusing_trigger(conn.dialect.name, refused["id"]):
                conn.exec_driver_sql(statement)
        result = sync(world, "orders")
        assert result.run.status == "failed" and "refused" in (result.run.error or "")
        stored = _cursor(world, "orders")
        loaded = warehouse_rows(world.engine, "orders")
        assert refused["id"] not in loaded
        assert stored is not None and stored <= parse_timestamp(refused["updated_at"])
        below = [r["id"] for r in source if parse_timestamp(r["updated_at"]) < stored]
        assert below and all(i in loaded for i in below)
        _drop_refusing_trigger(world)
        assert sync(world, "orders").ok
        assert_matches_source(world, "orders")


@pytest.mark.parametrize("writers", [1, 2, 4])
def test_the_writers_share_one_batch_of_records(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: int
) -> None:
    """Issue 16, target 5: each of SYNC_WRITERS takes batches of BATCH_RECORDS / SYNC_WRITERS,
    so the records held by the batches being written do not grow with the number of writers
    (two writers of full batches with child tables peaked 30 MB above one)."""
    from worker.warehouse.load import Loader

    monkeypatch.setattr("worker.sync.run.BATCH_RECORDS", 100)
    sizes: list[int] = []
    real_commit = Loader.commit

    def counting_commit(self: Loader, rows: Any, *args: Any, **kwargs: Any) -> None:
        sizes.append(len(rows))
        real_commit(self, rows, *args, **kwargs)

    monkeypatch.setattr(Loader, "commit", counting_commit)
    config = SimulatorConfig(records_by_resource=_only("orders", 500))
    pages = {"SYNC_PAGE_SIZE": "25", "SYNC_WRITERS": str(writers)}
    with make_world(postgres_url, tmp_path, config, **pages) as world:
        assert sync(world, "orders", full=True).ok
        assert_matches_source(world, "orders")
    assert sum(sizes) == 500
    # a batch closes at the page that fills it (pages hold up to 25 records)
    assert max(sizes) < 100 // writers + 25


def _drop_refusing_trigger(world: World) -> None:
    with world.engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER refuse ON rr_orders"
            if conn.dialect.name == "postgresql"
            else "DROP TRIGGER refuse"
        )


def _refusing_trigger(dialect: str, record_id: str, sleep: bool = True) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER refuse BEFORE INSERT ON rr_orders WHEN NEW.id = '{record_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
    pause = "PERFORM pg_sleep(1); " if sleep else ""
    return [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.id = '{record_id}' THEN {pause}"
        "RAISE EXCEPTION 'refused by the test'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON rr_orders FOR EACH ROW EXECUTE FUNCTION refuse()",
    ]


def _cursor(world: World, resource: str) -> datetime | None:
    with world.engine.connect() as conn:
        return conn.execute(sa.select(state.c.cursor).where(state.c.resource == resource)).scalar()


@DUCKDB_DOCUMENTED
def test_records_changed_and_deleted_above_the_cursor_are_found(
    warehouse_url: str, api_profile: str, tmp_path: Path
) -> None:
    """Every order is recent, so the cursor (held back by the clock-skew allowance) stays below
    all of them and counting below it sees nothing; the deletions must still be found, because
    the run listed that window and did not see them (make soak's seeds 8 and 10 found this)."""
    sizes = dict.fromkeys(RESOURCES, 0)
    config = SimulatorConfig(records_by_resource=sizes, seed=3, profile=api_profile)
    with make_world(warehouse_url, tmp_path, config, **SMALL_PAGES) as world:
        world.sim.mutate(60, resource="orders")
        first = sync(world, "orders")
        assert first.ok and first.run.records == len(world.dump("orders"))
        cursor = _cursor(world, "orders")
        # held back even as a resource's first cursor (a second of slack: the run row's
        # started_at is stamped a moment before the run's own clock reading)
        skew = timedelta(seconds=world.settings.sync_clock_skew_seconds - 1)
        assert cursor is not None and cursor <= first.run.started_at - skew
        assert world.sim.mutate(40, resource="orders")["deleted"] > 0
        second = sync(world, "orders")
        assert second.ok and second.run.deleted > 0
        assert_matches_source(world, "orders")


@pytest.mark.parametrize(
    "outage",
    [
        FaultRule(kind="status", status=500, path_prefix="/oauth/token"),
        FaultRule(kind="status", status=429, retry_after=1, path_prefix="/oauth/token"),
    ],
    ids=["500", "429"],
)
def test_a_token_endpoint_outage_stops_the_run_and_every_process(
    database_url: str, tmp_path: Path, outage: FaultRule
) -> None:
    """Issue 13, item 3: every API request is refused (401) and the token endpoint is down. One
    run of all six resources makes one refresh cycle (at most 3 token requests) and stops with
    one error; a second process started meanwhile asks the token endpoint nothing."""
    from worker.sync.run import sync_resources

    with make_world(database_url, tmp_path, SimulatorConfig(records=100), **SMALL_PAGES) as world:
        world.sim.set_faults(outage, FaultRule(kind="unauthorized"))
        before = world.sim.counters()["token_requests"]
        resources = [REGISTRY[name] for name in RESOURCES]
        results = sync_resources(world.settings, world.engine, world.store, resources)
        assert world.sim.counters()["token_requests"] - before <= 3
        assert len(results) == 1 and not results[0].ok
        assert isinstance(results[0].error, RefreshBlocked)
        error = results[0].run.error or ""
        assert "no rosesync process asks for a token before" in error and "\n" not in error

        second = _rosesync(world, tmp_path, "sync", "orders")
        assert second.returncode == 1
        assert "no rosesync process asks for a token before" in second.stderr
        assert world.sim.counters()["token_requests"] - before <= 3

        # The outage ends and the back-off runs out: the next refresh clears it.
        world.sim.set_faults()
        with world.engine.begin() as conn:
            conn.execute(credentials.update().values(refresh_blocked_until=utcnow()))
        assert world.store.refresh(force=True).action == "refreshed"
        assert sync(world, "orders").ok
        row = read_credential(world.engine, "default")
        assert row is not None and row.refresh_failures == 0
        assert row.refresh_blocked_until is None


def _rosesync(world: World, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, pointed at the world."""
    clean = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**clean, **world.env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _only(resource: str, size: int) -> dict[str, int]:
    return {name: size if name == resource else 0 for name in RESOURCES}


def _quarantined(world: World) -> dict[str, dict[str, Any]]:
    with world.engine.connect() as conn:
        found = conn.execute(sa.select(quarantine)).mappings().all()
    return {str(row["key"]): dict(row) for row in found}


# DuckDB's quarantine is held to the same by the tests of a record DuckDB refuses, a page of
# nothing but poison and SYNC_MAX_QUARANTINE; 2,000 orders on DuckDB took half a minute.
@pytest.mark.soak_only(warehouse_url="duckdb")
def test_poison_records_are_quarantined_and_the_rest_syncs(
    warehouse_url: str, api_profile: str, tmp_path: Path
) -> None:
    """Issue 13, item 5: 3 poison records among 2,000 orders. The other 1,997 sync, the run
    succeeds, `rosesync status` shows the 3, and the next run fetches them again by id."""
    postgres = warehouse_url.startswith("postgresql")
    kinds = ("nul" if postgres else "number_updated_at", "surrogate", "yesterday")
    config = SimulatorConfig(
        records_by_resource=_only("orders", 2000), poison={"orders": kinds}, profile=api_profile
    )
    with make_world(warehouse_url, tmp_path, config, **SMALL_PAGES) as world:
        poisoned = world.sim.poisoned("orders")
        result = sync(world, "orders")
        assert result.ok, result.run.error
        assert result.run.error is None
        rows = warehouse_rows(world.engine, "orders")
        source = {r["id"]: r for r in world.dump("orders")}
        assert set(rows) == set(source) - set(poisoned) and len(rows) == 1997
        for record_id, row in rows.items():
            assert row["data"] == source[record_id]

        held = _quarantined(world)
        assert set(held) == set(poisoned)
        reasons = {key: str(row["reason"]) for key, row in held.items()}
        assert "\\u0000" in reasons[poisoned[0]] or "is 1700000000" in reasons[poisoned[0]]
        assert "surrogate" in reasons[poisoned[1]]
        assert "'yesterday' is not an ISO-8601 timestamp" in reasons[poisoned[2]]
        for row in held.values():
            assert row["record_id"] in poisoned and row["first_seen"] <= row["last_seen"]
            assert '"id":"' + str(row["record_id"]) + '"' in str(row["raw"])
        assert quarantine_counts(world.engine) == {"orders": 3}

        report = build_status(world.settings, world.engine).as_dict()
        assert {r["resource"]: r["quarantined"] for r in report["resources"]}["orders"] == 3
        shown = _rosesync(world, tmp_path, "status")
        assert shown.returncode == 0, shown.stderr
        header, orders = (
            [cell.strip() for cell in line.split("  ") if cell.strip()]
            for line in shown.stdout.splitlines()
            if line.startswith(("resource ", "orders "))
        )
        assert orders[header.index("quarantined")] == "3"

        # The next run asks for each again by id: still poison, so still held, seen again.
        again = sync(world, "orders")
        assert again.ok, again.run.error
        assert again.run.requests >= 3
        later = _quarantined(world)
        assert set(later) == set(poisoned)
        assert all(row["last_seen"] > held[key]["last_seen"] for key, row in later.items())
        assert all(row["first_seen"] == held[key]["first_seen"] for key, row in later.items())

        # A complete full run releases what it no longer sees (gone at the source), and only it.
        gone = Poison("gone-at-the-source", '{"id":"gone-at-the-source"}', "a test")
        with world.engine.begin() as conn:
            add_to_quarantine(conn, "orders", "default", [gone], utcnow() - timedelta(hours=1))
        assert quarantine_counts(world.engine) == {"orders": 4}
        assert sync(world, "orders", full=True).ok
        assert set(_quarantined(world)) == set(poisoned)


def test_a_record_the_database_refuses_is_quarantined_and_released_once_it_loads(
    database_url: str, api_profile: str, tmp_path: Path
) -> None:
    """The database refuses one record of a batch (a trigger): the batch is split until that
    record is found, everything else commits, and once the database takes it again the next
    incremental run's fetch by id stores it and empties the quarantine."""
    config = SimulatorConfig(records_by_resource=_only("orders", 300), profile=api_profile)
    with make_world(database_url, tmp_path, config, **SMALL_PAGES) as world:
        refused = world.dump("orders")[123]
        with world.engine.begin() as conn:
            for statement in _refusing_trigger(conn.dialect.name, refused["id"], sleep=False):
                conn.exec_driver_sql(statement)
        result = sync(world, "orders")
        assert result.ok, result.run.error
        rows = warehouse_rows(world.engine, "orders")
        assert len(rows) == 299 and refused["id"] not in rows
        (held,) = _quarantined(world).values()
        assert held["record_id"] == refused["id"]
        assert str(held["reason"]).startswith("the database refused it: ")
        assert "refused by the test" in str(held["reason"])
        assert "\n" not in str(held["reason"])
        _drop_refusing_trigger(world)
        again = sync(world, "orders")
        assert again.ok, again.run.error
        assert _quarantined(world) == {}
        assert_matches_source(world, "orders")


def test_a_record_duckdb_refuses_is_found_without_savepoints(
    duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB has no triggers to refuse a record with, nor savepoints to split a batch in
    (worker/warehouse/load.py probes each half in a transaction of its own): one row's
    ``updated_at`` is made a value DuckDB cannot cast. It is quarantined, the other 299 commit,
    and once it loads the quarantine is empty."""
    from worker.warehouse.rows import RowBuilder

    config = SimulatorConfig(records_by_resource=_only("orders", 300))
    with make_world(duckdb_url, tmp_path, config, **SMALL_PAGES) as world:
        refused = world.dump("orders")[123]["id"]
        real_rows = RowBuilder.rows

        def spoiled(self: RowBuilder, *args: Any) -> list[Any]:
            built = real_rows(self, *args)
            spot = self.columns.index("updated_at")
            return [
                (*row[:spot], "not a time", *row[spot + 1 :]) if row[0] == refused else row
                for row in built
            ]

        monkeypatch.setattr(RowBuilder, "rows", spoiled)
        result = sync(world, "orders")
        assert result.ok, result.run.error
        rows = warehouse_rows(world.engine, "orders")
        assert len(rows) == 299 and refused not in rows
        (held,) = _quarantined(world).values()
        assert held["record_id"] == refused
        assert str(held["reason"]).startswith("the database refused it: ")
        assert "not a time" in str(held["reason"]) and "\n" not in str(held["reason"])
        monkeypatch.undo()
        assert sync(world, "orders").ok
        assert _quarantined(world) == {}
        assert_matches_source(world, "orders")


@DUCKDB_DOCUMENTED
def test_more_poison_than_sync_max_quarantine_fails_the_resource(
    warehouse_url: str, api_profile: str, tmp_path: Path
) -> None:
    kinds = ("no_updated_at", "null_updated_at", "yesterday")
    config = SimulatorConfig(
        records_by_resource=_only("orders", 200), poison={"orders": kinds}, profile=api_profile
    )
    env = {**SMALL_PAGES, "SYNC_MAX_QUARANTINE": "2"}
    with make_world(warehouse_url, tmp_path, config, **env) as world:
        result = sync(world, "orders")
        assert not result.ok and isinstance(result.error, QuarantineFull)
        error = result.run.error or ""
        assert "more than SYNC_MAX_QUARANTINE=2 allows" in error and "\n" not in error
        assert len(_quarantined(world)) <= 2


def test_a_full_disk_is_reported_as_one_and_is_transient(sqlite_url: str, tmp_path: Path) -> None:
    """Issue 13, item 8: SQLite's size limit (PRAGMA max_page_count, as a full disk would)
    stops the run with one line naming the database and what to do; the Celery task retries
    it (transient), and once there is room the next run completes."""
    config = SimulatorConfig(records_by_resource=_only("orders", 1500))
    with make_world(sqlite_url, tmp_path, config, **SMALL_PAGES) as world:
        with world.engine.connect() as conn:
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())

        def cap(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={pages + 20}")

        sa.event.listen(world.engine, "connect", cap)
        world.engine.dispose()  # every connection from now on has the cap
        result = sync(world, "orders")
        assert isinstance(result.error, WarehouseFull)
        assert isinstance(result.error, TransientError)
        error = result.run.error or ""
        assert result.run.status == "failed" and "\n" not in error
        assert "out of disk space" in error and str(tmp_path / "warehouse.db") in error
        assert "free space" in error and "OperationalError" not in error

        sa.event.remove(world.engine, "connect", cap)
        world.engine.dispose()
        assert sync(world, "orders").ok
        assert_matches_source(world, "orders")


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (psycopg.errors.DiskFull('could not extend file "base/1/2": No space left'), True),
        (psycopg.errors.OutOfMemory("out of memory"), False),
        (sqlite3.OperationalError("database is locked"), False),
        (duckdb.IOException('Could not write file "w.duckdb": No space left on device'), True),
        (duckdb.IOException('Could not set lock on file "w.duckdb": Conflicting lock'), False),
    ],
)
def test_which_errors_are_a_full_disk(error: Exception, full: bool) -> None:
    assert is_disk_full(error) is full
    assert is_disk_full(sa.exc.OperationalError("COMMIT", {}, error)) is full


def test_a_page_holding_only_poison_is_paged_past(warehouse_url: str, tmp_path: Path) -> None:
    """A poison record has no position to page from: a page holding nothing else (one record a
    page here) is stepped over by offset, not taken for paging that makes no progress."""
    kinds = ("yesterday", "surrogate")
    config = SimulatorConfig(records_by_resource=_only("orders", 30), poison={"orders": kinds})
    pages = {"SYNC_PAGE_SIZE": "1", "SYNC_CONCURRENCY": "1", "SYNC_STRATEGY": "keyset"}
    with make_world(warehouse_url, tmp_path, config, **pages) as world:
        result = sync(world, "orders")
        assert result.ok, result.run.error
        assert set(_quarantined(world)) == set(world.sim.poisoned("orders"))
        assert len(warehouse_rows(world.engine, "orders")) == 28


def test_status_runs_in_another_process_while_a_sync_writes_to_duckdb(
    duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14, item 5: DuckDB lets one process at a time open its file, and rosesync's
    processes share it (worker/warehouse/duck.py). `rosesync status` runs over and over in
    processes of its own while this one syncs: every one succeeds, one of them (the sync waits
    for it after its first batch) sees the rows half loaded, and the sync ends exact."""
    import json
    import threading

    monkeypatch.setattr("worker.sync.run.BATCH_RECORDS", 100)  # many batches, many commits
    latency = (FaultRule(kind="latency", latency=0.02),)
    config = SimulatorConfig(records_by_resource=_only("orders", 1200), faults=latency)
    pages = {"SYNC_PAGE_SIZE": "50", "SYNC_CONCURRENCY": "2"}
    with make_world(duckdb_url, tmp_path, config, **pages) as world:
        syncing = threading.Event()
        done = threading.Event()
        mid_sync = threading.Event()
        seen: list[int] = []
        failures: list[str] = []

        def status_loop() -> None:
            syncing.wait(timeout=120)
            while not done.is_set():
                shown = _rosesync(world, tmp_path, "status", "--json")
                if shown.returncode != 0:
                    failures.append(shown.stderr)
                    continue
                report = json.loads(shown.stdout)
                rows = {r["resource"]: r["rows"] for r in report["resources"]}["orders"]
                seen.append(rows)
                if 0 < rows < 1200:
                    mid_sync.set()

        def progress(_name: str, records: int, _total: int | None) -> None:
            syncing.set()
            if records < 1200:
                mid_sync.wait(timeout=120)  # the first batch waits for a status to read it

        looping = threading.Thread(target=status_loop)
        looping.start()
        try:
            result = sync_resource(
                world.settings,
                world.engine,
                world.store,
                REGISTRY["orders"],
                full=True,
                progress=progress,
            )
        finally:
            done.set()
            looping.join(timeout=180)
        assert failures == []
        assert result.ok, result.run.error
        assert mid_sync.is_set() and any(0 < rows < 1200 for rows in seen), seen
        assert_matches_source(world, "orders")
