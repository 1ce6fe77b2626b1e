"""worker/ops/tasks.py and worker/ops/beat.py with real Celery workers and beat processes, on the
embedded SQLite broker and on Redis with PostgreSQL (and RabbitMQ where a broker's own
redelivery is the point)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker

from config.celery import make_app
from config.settings import get_settings
from tests.support import Webhook, World, assert_matches_source, make_world
from worker.clock import utcnow
from worker.logs import registered_secrets
from worker.simulator import RESOURCES, FaultRule, SimulatorConfig
from worker.warehouse.runs import recent_runs
from worker.warehouse.schema import runs

STACKS = {
    "embedded": ("sqlite_url", None),
    "redis+postgresql": ("postgres_url", "redis_url"),
}


@pytest.fixture(params=list(STACKS))
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(DATABASE_URL, CELERY_BROKER_URL) of the embedded stack or the production one."""
    database_fixture, broker_fixture = STACKS[request.param]
    database_url = str(request.getfixturevalue(database_fixture))
    broker = (
        str(request.getfixturevalue(broker_fixture))
        if broker_fixture
        else f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    )
    return database_url, broker


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def activate(
    use_environment: Callable[..., Any],
) -> Callable[[World], Any]:
    """Make a world's settings the process's own (tasks call get_settings())."""

    def apply(world: World) -> Any:
        return use_environment(**world.env)

    return apply


def test_a_worker_runs_tasks_and_returns_results(
    stack: tuple[str, str], tmp_path: Path, activate: Callable[[World], Any]
) -> None:
    database_url, broker = stack
    with make_world(database_url, tmp_path, CELERY_BROKER_URL=broker) as world:
        activate(world)
        app = make_app(get_settings())
        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
            refreshed = app.send_task("rrsync.refresh_tokens").get(timeout=60)
            assert refreshed == [{**refreshed[0], "org": "default", "action": "not_due"}]
            summary = app.send_task("rrsync.sync_resource", args=("partners",)).get(timeout=60)
        assert summary["status"] == "succeeded"
        assert summary["records"] == 300
        assert_matches_source(world, "partners")
        text = json.dumps([refreshed, summary])
        assert "eyJ" not in text and "v1." not in text  # no token in any result


def test_the_same_sync_enqueued_five_times_runs_once(
    stack: tuple[str, str], tmp_path: Path, activate: Callable[[World], Any]
) -> None:
    database_url, broker = stack
    slow = SimulatorConfig(records=300, faults=(FaultRule(kind="latency", latency=0.25),))
    # One request at a time: about 4 s of sync, so all five tasks start while the first holds
    # the lease (adaptive concurrency would finish it in under a second, before a late thread
    # on a loaded machine takes its task, which then succeeds too).
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_PAGE_SIZE": "20",
        "SYNC_CONCURRENCY": "1",
        "SYNC_MAX_CONCURRENCY": "1",
    }
    with make_world(database_url, tmp_path, slow, **env) as world:
        activate(world)
        app = make_app(get_settings())
        with start_worker(app, pool="threads", concurrency=5, perform_ping_check=False):
            results = [app.send_task("rrsync.sync_resource", args=("orders",)) for _ in range(5)]
            statuses = sorted(r.get(timeout=120)["status"] for r in results)
        assert statuses == ["skipped"] * 4 + ["succeeded"]
        runs = recent_runs(world.engine, "orders")
        assert sorted(r.status for r in runs) == statuses
        assert all(r.trigger == "celery" and r.task_id for r in runs)
        world.sim.set_faults()
        assert_matches_source(world, "orders")


# -- real processes ------------------------------------------------------------------------


class Process:
    """An `rosesync ...` subprocess in its own session (killed as a whole, like a container)."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.log = cwd / f"{args[0]}-{time.monotonic_ns()}.log"
        self._file = self.log.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "worker", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self._file.close()


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(env: dict[str, str], cwd: Path, *args: str) -> Process:
        started.append(Process(env, cwd, *args))
        return started[-1]

    yield start
    for process in started:
        process.stop()
    # the workers' own logs (their tokens were never registered in this process): nothing
    # shaped like a token, and none of the secrets this process knows
    logs = "\n".join(process.output() for process in started)
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.|\bv1\.[A-Za-z0-9_-]{20,}", logs)
    assert [s for s in registered_secrets() if s in logs] == []


def _succeeded(world: World, resource: str, after_id: int = 0) -> bool:
    return any(
        r.status == "succeeded" and r.id > after_id for r in recent_runs(world.engine, resource)
    )


def test_beat_syncs_everything_and_keeps_a_short_lived_token_alive(
    stack: tuple[str, str], tmp_path: Path, processes: Callable[..., Process]
) -> None:
    database_url, broker = stack
    config = SimulatorConfig(records=120, access_ttl=4.0)
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_SCHEDULE": "@every 4s",
        "REFRESH_INTERVAL_SECONDS": "1",
    }
    with make_world(database_url, tmp_path, config, **env) as world:
        _beat_keeps_everything_in_step(world, tmp_path, processes, "-P", "threads", "-c", "2")


def test_a_prefork_worker_and_beat_share_a_duckdb_file(
    duckdb_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    """Issue 14, item 5: on DuckDB, whose file one process at a time may open, the worker's
    processes (two prefork pool processes, the embedded beat, the main process's heartbeat)
    and this test's reads take turns at it, through syncs and token refreshes. (Few records:
    the turns are the point, and DuckDB's file opened per transaction makes each sync slow.)"""
    config = SimulatorConfig(records=40, access_ttl=4.0)
    env = {"SYNC_SCHEDULE": "@every 4s", "REFRESH_INTERVAL_SECONDS": "1"}
    with make_world(duckdb_url, tmp_path, config, **env) as world:
        _beat_keeps_everything_in_step(world, tmp_path, processes, "-P", "prefork", "-c", "2")


def _beat_keeps_everything_in_step(
    world: World, tmp_path: Path, processes: Callable[..., Process], *pool: str
) -> None:
    """Syncs and token refreshes by a worker with beat: every resource synced, exactly, and
    several token lifetimes later still no request was refused for an expired token."""
    worker = processes(world.env, tmp_path, "worker", "-B", *pool)
    wait_for(lambda: all(_succeeded(world, name) for name in RESOURCES), 90, "every resource")
    # keep going through several more token lifetimes, syncing all the while
    first_refreshes = world.sim.counters()["grants"].get("refresh_token", 0)
    wait_for(
        lambda: world.sim.counters()["grants"].get("refresh_token", 0) >= first_refreshes + 4,
        60,
        "four more refreshes",
    )
    worker.stop()
    counters = world.sim.counters()
    unauthorized = {k: v for k, v in counters["requests"].items() if k.endswith(" 401")}
    assert unauthorized == {}, worker.output()[-3000:]
    runs = recent_runs(world.engine, limit=500)
    assert sum(r.unauthorized for r in runs) == 0
    assert {r.resource for r in runs if r.status == "succeeded"} == set(RESOURCES)
    for name in RESOURCES:
        assert_matches_source(world, name)


def _queued_tasks(broker: str) -> list[str]:
    """Task names waiting in the broker (nothing consumes them in this test)."""
    if broker.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(broker)
        messages = client.lrange("celery", 0, -1)
        client.close()
        return [json.loads(m)["headers"]["task"] for m in messages]
    engine = sa.create_engine(broker.removeprefix("sqla+"))
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("kombu_message"):
            return []
        payloads = conn.execute(sa.text("SELECT payload FROM kombu_message")).scalars().all()
    engine.dispose()
    return [json.loads(p)["headers"]["task"] for p in payloads]


def test_a_second_beat_does_not_double_the_schedule(
    stack: tuple[str, str], tmp_path: Path, processes: Callable[..., Process]
) -> None:
    database_url, broker = stack
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_SCHEDULE": "@every 2s",
        "REFRESH_INTERVAL_SECONDS": "1",
    }
    with make_world(database_url, tmp_path, **env) as world:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = processes(world.env, tmp_path / "a", "beat")
        second = processes(world.env, tmp_path / "b", "beat")
        started = time.monotonic()
        wait_for(lambda: len(_queued_tasks(broker)) >= 12, 60, "a dozen scheduled messages")
        time.sleep(4)
        first.stop()
        second.stop()
        elapsed = time.monotonic() - started
        queued = _queued_tasks(broker)
        syncs = queued.count("rrsync.sync_all")
        refreshes = queued.count("rrsync.refresh_tokens")
        # One scheduler: at most one message per interval (plus one for rounding).
        assert refreshes <= elapsed / 1 + 1
        assert syncs <= elapsed / 2 + 1
        logs = first.output() + second.output()
        assert logs.count("is now the leader") == 1
        assert "standing by" in logs


def _rows(world: World, resource: str) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM rr_{resource}")).scalar_one())


# one request at a time, not adapted upwards (issue 16)
SLOW_SYNC = {"SYNC_PAGE_SIZE": "25", "SYNC_CONCURRENCY": "1", "SYNC_MAX_CONCURRENCY": "1"}


@pytest.mark.parametrize("broker_fixture", ["redis_url", "amqp_url"])
def test_a_killed_worker_task_is_redelivered_and_completes(
    broker_fixture: str,
    postgres_url: str,
    tmp_path: Path,
    processes: Callable[..., Process],
    request: pytest.FixtureRequest,
) -> None:
    broker = str(request.getfixturevalue(broker_fixture))
    queue = f"rosesync-test-{time.monotonic_ns()}"
    config = SimulatorConfig(records=600, faults=(FaultRule(kind="latency", latency=0.08),))
    visibility = 14  # short, so that Redis redelivers within the test
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_TIME_LIMIT": "12",
        "SYNC_SOFT_TIME_LIMIT": "10",
        "BROKER_VISIBILITY_TIMEOUT": str(visibility),
        **SLOW_SYNC,
    }
    with make_world(postgres_url, tmp_path, config, **env) as world:
        worker = processes(world.env, tmp_path, "worker", "-Q", queue, "-c", "1")
        app = make_app(get_settings_from(world.env))
        app.send_task("rrsync.sync_resource", args=("orders",), queue=queue)
        wait_for(lambda: _rows(world, "orders") >= 100, 60, "the first pages")
        worker.kill()
        assert _rows(world, "orders") < 600, "killed mid-task"
        # RabbitMQ requeues the moment the connection drops; Redis once the message has been
        # unacknowledged for the visibility timeout (the running worker sweeps every ~10 s).
        processes(world.env, tmp_path, "worker", "-Q", queue, "-c", "1")
        wait_for(lambda: _succeeded(world, "orders"), 120, "the redelivered task")
        world.sim.set_faults()
        assert_matches_source(world, "orders")
        runs = recent_runs(world.engine, "orders")
        assert [r.status for r in runs] == ["succeeded", "abandoned"]


def get_settings_from(env: dict[str, str]) -> Any:
    from config.settings import load_settings

    return load_settings(environ=env, dotenv_path=None)


def test_embedded_broker_resumes_from_the_checkpoint_on_the_next_tick(
    sqlite_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    config = SimulatorConfig(records=600, faults=(FaultRule(kind="latency", latency=0.08),))
    env = {"SYNC_SCHEDULE": "@every 3s", "SYNC_RESOURCES": "orders", **SLOW_SYNC}
    with make_world(sqlite_url, tmp_path, config, **env) as world:
        worker = processes(world.env, tmp_path, "worker", "-B", "-c", "1")
        wait_for(lambda: _rows(world, "orders") >= 100, 60, "the first pages")
        worker.kill()
        partial = _rows(world, "orders")
        assert partial < 600, "killed mid-task"
        processes(world.env, tmp_path, "worker", "-B", "-c", "1")
        wait_for(lambda: _succeeded(world, "orders"), 120, "the next scheduled run")
        world.sim.set_faults()
        assert_matches_source(world, "orders")
        runs = recent_runs(world.engine, "orders")
        succeeded = next(r for r in runs if r.status == "succeeded")
        assert succeeded.cursor_before is not None, "resumed from the committed cursor"
        assert succeeded.records <= 600 - partial + 25  # one page of overlap, not a restart
        assert "abandoned" in [r.status for r in runs]


def test_sigterm_to_a_prefork_worker_stops_the_sync_at_a_page_boundary(
    sqlite_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    slow = SimulatorConfig(records=800, faults=(FaultRule(kind="latency", latency=0.1),))
    with make_world(sqlite_url, tmp_path, slow, **SLOW_SYNC) as world:
        worker = processes(world.env, tmp_path, "worker", "-P", "prefork", "-c", "1")
        app = make_app(get_settings_from(world.env))
        app.send_task("rrsync.sync_resource", args=("orders",))
        wait_for(lambda: _rows(world, "orders") >= 100, 60, "the first pages")
        worker.popen.send_signal(signal.SIGTERM)  # warm shutdown, as `docker stop` does
        worker.popen.wait(timeout=30)  # the full sync would take ~4 s more at this pace
        interrupted = recent_runs(world.engine, "orders")[0]
        assert interrupted.status == "interrupted", worker.output()[-2000:]
        assert _rows(world, "orders") == interrupted.records < 800  # only whole pages
        # the task was re-queued: the next worker finishes it from the checkpoint
        processes(world.env, tmp_path, "worker", "-P", "prefork", "-c", "1")
        wait_for(lambda: _succeeded(world, "orders"), 120, "the re-queued task")
        world.sim.set_faults()
        assert_matches_source(world, "orders")


def test_a_failing_sync_task_retries_a_bounded_number_of_times_but_not_a_revoked_grant(
    sqlite_url: str, tmp_path: Path, activate: Callable[[World], Any]
) -> None:
    env = {"SYNC_MAX_RETRIES": "2", "SYNC_RETRY_BACKOFF_SECONDS": "1", "HTTP_MAX_ATTEMPTS": "2"}
    with make_world(sqlite_url, tmp_path, **env) as world:
        activate(world)
        app = make_app(get_settings())
        world.sim.set_faults(FaultRule(kind="status", status=503, retry_after=0))
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
            outcome = app.send_task("rrsync.sync_resource", args=("bills",))
            with pytest.raises(Exception, match="server error"):
                outcome.get(timeout=120)
            # the first try and two retries, each recorded; then it stops
            assert [r.status for r in recent_runs(world.engine, "bills")] == ["failed"] * 3
            world.sim.set_faults()
            world.sim.revoke_all()
            outcome = app.send_task("rrsync.sync_resource", args=("partners",))
            with pytest.raises(Exception, match="rosesync bootstrap"):
                outcome.get(timeout=120)
        assert [r.status for r in recent_runs(world.engine, "partners")] == ["failed"]


def test_a_sync_task_that_succeeds_on_its_retry_alerts_nobody(
    sqlite_url: str, tmp_path: Path, activate: Callable[[World], Any], webhook: Webhook
) -> None:
    """Alerts review a sync's outcome, which is its last attempt's: with ALERT_AFTER_FAILURES=1
    a first attempt that fails and a retry that succeeds is no failure (issue 17, item 4)."""
    env = {
        "SYNC_MAX_RETRIES": "2",
        "SYNC_RETRY_BACKOFF_SECONDS": "1",
        "HTTP_MAX_ATTEMPTS": "1",
        "ALERT_URLS": webhook.url,
        "ALERT_AFTER_FAILURES": "1",
    }
    with make_world(sqlite_url, tmp_path, **env) as world:
        activate(world)
        app = make_app(get_settings())
        world.sim.set_faults(FaultRule(kind="status", status=503, retry_after=0, count=1))
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
            outcome = app.send_task("rrsync.sync_resource", args=("bills",))
            assert outcome.get(timeout=120)["status"] == "succeeded"
        assert [r.status for r in recent_runs(world.engine, "bills")] == ["succeeded", "failed"]
        assert webhook.messages() == []


def test_a_worker_prunes_old_run_history_but_keeps_the_latest_and_running_runs(
    stack: tuple[str, str], tmp_path: Path, activate: Callable[[World], Any]
) -> None:
    """issue 14, item 6: rrsync.prune_runs on a real worker, RUNS_RETENTION_DAYS from the
    environment; beat schedules it only when retention is on."""
    database_url, broker = stack
    config = SimulatorConfig(records=20)
    env = {"CELERY_BROKER_URL": broker, "RUNS_RETENTION_DAYS": "30"}
    with make_world(database_url, tmp_path, config, **env) as world:
        activate(world)
        app = make_app(get_settings())
        assert app.conf.beat_schedule["prune-runs"]["task"] == "rrsync.prune_runs"
        # a queue of its own: other test sessions' workers may share the Redis database
        app.conf.task_default_queue = f"prune-{tmp_path.name}-{os.getpid()}"
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
            for _ in range(3):
                summary = app.send_task("rrsync.sync_resource", args=("partners",)).get(60)
                assert summary["status"] == "succeeded"
            stuck, _pruned, latest = sorted(run.id for run in recent_runs(world.engine, "partners"))
            with world.engine.begin() as conn:  # all ran 40 days ago; the first never ended
                conn.execute(runs.update().values(started_at=utcnow() - timedelta(days=40)))
                conn.execute(runs.update().where(runs.c.id == stuck).values(status="running"))
            assert app.send_task("rrsync.prune_runs").get(timeout=60) == 1
            assert app.send_task("rrsync.prune_runs").get(timeout=60) == 0
        assert {run.id for run in recent_runs(world.engine)} == {stuck, latest}
    activate(replace(world, env={**world.env, "RUNS_RETENTION_DAYS": "0"}))
    assert "prune-runs" not in make_app(get_settings()).conf.beat_schedule
