"""Many orgs fanned out across real worker processes (issue 15, acceptance): beat enqueues one
task per org x resource, two worker processes with two threads each run them through Redis and
then RabbitMQ, and every org's tables end up equal to its own source; a revoked org alerts once
and stops while the others go on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import Celery

from tests.support import Webhook, World, assert_matches_source, make_world, warehouse_rows
from tests.worker.ops.test_tasks import Process, processes, wait_for
from worker.simulator import FaultRule, SimulatorConfig
from worker.warehouse import credentials as credential_rows
from worker.warehouse.runs import recent_runs

__all__ = ["processes"]  # the fixture, shared with test_tasks.py

ORGS = {"org-a": 11, "org-b": 22, "org-c": 33}
RESOURCES = ("customers", "orders", "partners", "bills")


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url"))


def _done(world: World, org: str, after: int = 0) -> bool:
    """Every resource of ``org`` has a succeeded run (after run id ``after``)."""
    runs = recent_runs(world.engine, limit=1000, org=org)
    finished = {r.resource for r in runs if r.status == "succeeded" and r.id > after}
    return finished >= set(RESOURCES)


def _workers(world: World, tmp_path: Path, start: Callable[..., Process]) -> list[Process]:
    """Two worker processes of two threads; the first also runs beat."""
    return [
        start(world.env, tmp_path, "worker", "-B", "-P", "threads", "-c", "2", "-n", "w1@%h"),
        start(world.env, tmp_path, "worker", "-P", "threads", "-c", "2", "-n", "w2@%h"),
    ]


def test_beat_fans_out_every_org_and_resource_over_two_workers(
    broker: str, postgres_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    config = SimulatorConfig(records=40, orgs=ORGS)
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_SCHEDULE": "@every 3s",
        "SYNC_RESOURCES": ",".join(RESOURCES),
        "SYNC_ORGS": ",".join(ORGS),  # the settings' own org ("default") is left out
    }
    with make_world(postgres_url, tmp_path, config, orgs=tuple(ORGS), **env) as world:
        workers = _workers(world, tmp_path, processes)
        wait_for(lambda: all(_done(world, org) for org in ORGS), 120, "every org x resource")
        for worker in workers:
            worker.stop()
        # tasks run on any worker: both processes took some
        with world.engine.connect() as conn:
            pids = set(conn.execute(sa.text("SELECT DISTINCT pid FROM rrsync_runs")).scalars())
        assert len(pids) == 2
        for org in ORGS:
            for resource in RESOURCES:
                assert_matches_source(world, resource, org)
        assert warehouse_rows(world.engine, "orders") == {}  # "default": not in SYNC_ORGS


def test_a_revoked_org_alerts_once_and_the_others_keep_syncing(
    broker: str,
    postgres_url: str,
    tmp_path: Path,
    processes: Callable[..., Process],
    webhook: Webhook,
) -> None:
    config = SimulatorConfig(records=20, orgs=ORGS)
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_SCHEDULE": "@every 2s",
        "SYNC_RESOURCES": ",".join(RESOURCES),
        "SYNC_ORGS": ",".join(ORGS),
        "ALERT_URLS": webhook.url,
        "HTTP_MAX_ATTEMPTS": "2",
    }
    with make_world(postgres_url, tmp_path, config, orgs=tuple(ORGS), **env) as world:
        _workers(world, tmp_path, processes)
        wait_for(lambda: all(_done(world, org) for org in ORGS), 120, "a first sync of each org")
        world.sim.revoke_all("org-b")
        revoked_at = max(r.id for r in recent_runs(world.engine, limit=1))

        def org_b_state() -> str | None:
            row = credential_rows.read(world.engine, "org-b")
            return row.state if row else None

        wait_for(lambda: org_b_state() == "reauth_required", 60, "org-b to need re-authorization")
        for org in ("org-a", "org-c"):
            wait_for(lambda org=org: _done(world, org, revoked_at), 60, f"{org} to sync again")
        # and once more, so that the beat had every chance to alert twice
        latest = max(r.id for r in recent_runs(world.engine, limit=1))
        wait_for(lambda: _done(world, "org-a", latest), 60, "org-a to sync once more")
        titles = [m["title"] for m in webhook.messages()]
        assert titles.count("rosesync: the credential for org org-b needs re-authorization") == 1
        assert not [t for t in titles if "org-a" in t or "org-c" in t], titles
        for org in ("org-a", "org-c"):
            assert credential_rows.read(world.engine, org).state == "ok"  # type: ignore[union-attr]


LIMIT = 20
# The stated burst: one token of bucket capacity (budget.CAPACITY), plus one for a request
# that took its token just before a second's boundary and reached the simulator just after.
BURST = 2


def test_the_rate_limit_holds_across_workers_and_429s_only_slow_runs_down(
    redis_url: str, postgres_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    # 20 records an org and resource: 48 pages of 5 (and the counts), seconds of work at 20/s
    config = SimulatorConfig(records=20, orgs=ORGS)
    env = {
        "CELERY_BROKER_URL": redis_url,
        "SYNC_SCHEDULE": "@every 3s",
        "SYNC_RESOURCES": ",".join(RESOURCES),
        "SYNC_ORGS": ",".join(ORGS),
        "SYNC_PAGE_SIZE": "5",  # many small pages: unlimited, they would go far above 20/s
        "API_RATE_LIMIT": str(LIMIT),
    }
    with make_world(postgres_url, tmp_path, config, orgs=tuple(ORGS), **env) as world:
        world.sim.reset_counters()
        # the API answers 429 for a while (after a few pages of the first runs); each halves the
        # rate, which grows back by 5 % of the limit a second, so a few make the point
        world.sim.set_faults(FaultRule("status", status=429, retry_after=1.0, after=20, count=3))
        workers = _workers(world, tmp_path, processes)
        wait_for(lambda: all(_done(world, org) for org in ORGS), 240, "every org x resource")
        for worker in workers:
            worker.stop()
        counters = world.sim.counters()
        assert counters["faults_fired"] == {"status": 3}
        peak = counters["peak_per_second"]["clients"][config.client_id]
        assert peak <= LIMIT + BURST, counters["per_second"]["clients"]
        assert max(counters["peak_per_second"]["orgs"].values()) <= LIMIT + BURST
        runs = recent_runs(world.engine, limit=1000)
        assert sum(r.rate_limited for r in runs) == 3
        for org in ORGS:
            for resource in RESOURCES:
                assert_matches_source(world, resource, org)


SMALL = ("small-1", "small-2")
SMALL_RECORDS = 20
BIG_RECORDS = 50 * SMALL_RECORDS
# The bound (issue 15, acceptance): both small orgs are completely synced while the big org,
# queued first and with every worker slot to itself at the start, has stored less than half of
# its records. Without yielding, its four tasks hold all four slots until it is done.
BIG_SHARE_BOUND = 0.5


def test_a_fifty_times_bigger_org_does_not_starve_the_small_ones(
    broker: str, postgres_url: str, tmp_path: Path, processes: Callable[..., Process]
) -> None:
    orgs = {"big": 1, "small-1": 2, "small-2": 3}  # "big" sorts first: its tasks go first
    config = SimulatorConfig(records=SMALL_RECORDS, orgs=orgs, org_records={"big": BIG_RECORDS})
    env = {
        "CELERY_BROKER_URL": broker,
        "SYNC_RESOURCES": ",".join(RESOURCES),
        "SYNC_ORGS": ",".join(orgs),
        "SYNC_PAGE_SIZE": "20",  # the big org: 50 pages a resource (10 tasks), a small one 1
        "SYNC_PAGES_PER_TASK": "5",
    }
    with make_world(postgres_url, tmp_path, config, orgs=tuple(orgs), **env) as world:
        app = Celery(broker=broker)
        app.send_task("rrsync.sync_all")  # what beat sends
        workers = _workers(world, tmp_path, processes)
        wait_for(lambda: all(_done(world, org) for org in SMALL), 180, "the small orgs")
        stored = sum(len(warehouse_rows(world.engine, name, "big")) for name in RESOURCES)
        assert stored < BIG_SHARE_BOUND * BIG_RECORDS * len(RESOURCES), stored
        wait_for(lambda: _done(world, "big"), 240, "the big org")
        for worker in workers:
            worker.stop()
        for org in orgs:
            for resource in RESOURCES:
                assert_matches_source(world, resource, org)
        yielded = [
            r for r in recent_runs(world.engine, limit=5000, org="big") if r.status == "interrupted"
        ]
        assert yielded and all("SYNC_PAGES_PER_TASK=5" in (r.error or "") for r in yielded)
