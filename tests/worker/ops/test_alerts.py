"""worker/ops/alerts.py: one notification per state change, delivered for real to a loopback
webhook through apprise (issue 17, item 4)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Webhook, World, make_world
from worker.credentials.bootstrap import bootstrap
from worker.credentials.store import refresh_due_credentials
from worker.ops.alerts import review_credentials, review_sync
from worker.simulator import FaultRule, SimulatorConfig
from worker.simulator.browser import visit_soon
from worker.source.resources import REGISTRY
from worker.sync.run import sync_resource


@pytest.fixture
def world(database_url: str, tmp_path: Path, webhook: Webhook) -> Iterator[World]:
    env = {"ALERT_URLS": webhook.url, "ALERT_AFTER_FAILURES": "2", "HTTP_MAX_ATTEMPTS": "1"}
    with make_world(database_url, tmp_path, SimulatorConfig(records=20), **env) as made:
        yield made


def run(
    world: World, resource: str = "partners", task_id: str | None = None, trigger: str = "celery"
) -> str:
    """One scheduled sync (a Celery task's attempt: a new task unless ``task_id`` is given)."""
    task_id = task_id or str(uuid.uuid4())
    return sync_resource(
        world.settings,
        world.engine,
        world.store,
        REGISTRY[resource],
        trigger=trigger,
        task_id=task_id,
    ).run.status


def test_repeated_failures_alert_once_and_recovery_once(world: World, webhook: Webhook) -> None:
    world.sim.set_faults(FaultRule(kind="status", status=500))
    assert run(world) == "failed"
    assert review_sync(world.settings, world.engine, "partners", "default") is None
    assert webhook.messages() == []  # a single failure alerts nobody

    assert run(world) == "failed"
    # two workers review the same change at once: one notification between them
    threads = [
        threading.Thread(
            target=review_sync, args=(world.settings, world.engine, "partners", "default")
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (alert,) = webhook.messages()
    assert alert["title"] == "rosesync: partners has failed 2 times in a row"
    assert "HTTP 500" in alert["message"] and alert["type"] == "failure"

    assert run(world) == "failed"
    assert review_sync(world.settings, world.engine, "partners", "default") is None
    assert len(webhook.messages()) == 1  # still failing: no second alert

    world.sim.set_faults()
    assert run(world) == "succeeded"
    review_sync(world.settings, world.engine, "partners", "default")
    review_sync(world.settings, world.engine, "partners", "default")
    recovered = webhook.messages()[1:]
    assert [m["title"] for m in recovered] == ["rosesync: partners syncs again"]
    assert recovered[0]["type"] == "success"


def test_a_single_failure_then_success_alerts_nobody(world: World, webhook: Webhook) -> None:
    world.sim.set_faults(FaultRule(kind="status", status=500, count=1))
    assert run(world) == "failed"
    review_sync(world.settings, world.engine, "partners", "default")
    assert run(world) == "succeeded"
    review_sync(world.settings, world.engine, "partners", "default")
    assert webhook.messages() == []


def test_the_retries_of_one_task_are_one_sync(world: World, webhook: Webhook) -> None:
    """A task whose first attempts failed and whose retry succeeded failed zero times; two
    failed attempts of one task are one failure, not two."""
    world.sim.set_faults(FaultRule(kind="status", status=500, count=2))
    task = str(uuid.uuid4())
    assert run(world, task_id=task) == "failed"
    assert run(world, task_id=task) == "failed"
    assert review_sync(world.settings, world.engine, "partners", "default") is None
    assert run(world, task_id=task) == "succeeded"
    assert review_sync(world.settings, world.engine, "partners", "default") is None
    assert webhook.messages() == []


def test_syncs_run_by_hand_do_not_alert(world: World, webhook: Webhook) -> None:
    """The operator who runs `rosesync sync` sees its outcome; alerts are about the schedule."""
    world.sim.set_faults(FaultRule(kind="status", status=500))
    assert run(world, trigger="cli") == "failed"
    assert run(world, trigger="cli") == "failed"
    assert review_sync(world.settings, world.engine, "partners", "default") is None
    assert webhook.messages() == []


def test_reauth_required_alerts_once_and_recovery_once(world: World, webhook: Webhook) -> None:
    world.sim.revoke_all()
    (outcome,) = refresh_due_credentials(world.settings, world.engine, force=True)
    assert outcome.action == "failed"
    assert [a.title for a in review_credentials(world.settings, world.engine)] == [
        "rosesync: the credential for org default needs re-authorization"
    ]
    assert review_credentials(world.settings, world.engine) == []
    (alert,) = webhook.messages()
    assert "run `rosesync bootstrap`" in alert["message"]

    bootstrap(world.settings, world.engine, announce=visit_soon, timeout=60)
    review_credentials(world.settings, world.engine)
    review_credentials(world.settings, world.engine)
    titles = [m["title"] for m in webhook.messages()]
    assert titles[1:] == ["rosesync: the credential for org default works again"]


def test_an_undelivered_alert_is_tried_again(world: World, tmp_path: Path) -> None:
    from dataclasses import replace

    from config.settings import Secret

    unreachable = replace(world.settings, alert_urls=(Secret("json://127.0.0.1:9/nothing"),))
    world.sim.set_faults(FaultRule(kind="status", status=500))
    run(world)
    run(world)
    assert review_sync(unreachable, world.engine, "partners", "default") is None
    with Webhook() as later:
        reachable = replace(world.settings, alert_urls=(Secret(later.url),))
        assert review_sync(reachable, world.engine, "partners", "default") is not None
        assert len(later.messages()) == 1
