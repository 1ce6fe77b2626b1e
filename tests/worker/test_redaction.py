"""Redaction at every exit (issue 13, item 1): an API error that quotes the bearer token must not
reach the log, the CLI's output, the stored run error, a task result or an alert.

The simulator's ``echo`` fault answers 400 with the request's Authorization header in the
message, exactly what was observed; each exit is then searched for the token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import make_app
from tests.support import Webhook, World, make_world
from worker.simulator import FaultRule, SimulatorConfig
from worker.warehouse.runs import recent_runs


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path, webhook: Webhook) -> Iterator[World]:
    env = {"ALERT_URLS": webhook.url, "ALERT_AFTER_FAILURES": "1", "SYNC_MAX_RETRIES": "0"}
    with make_world(sqlite_url, tmp_path, SimulatorConfig(records=20), **env) as made:
        made.sim.set_faults(FaultRule(kind="echo", status=400))
        yield made


def token_parts(world: World) -> list[str]:
    """Pieces of the access token that would show even if a message were cut short."""
    token = world.store.access_token()
    _header, payload, signature = token.split(".")
    return [payload[:16], payload[-16:], signature[:16]]


def leaks(world: World, text: str) -> list[str]:
    return [part for part in token_parts(world) if part in text]


def test_the_echo_fault_really_echoes(world: World) -> None:
    """The premise: without redaction the token would be in the message."""
    import requests

    token = world.store.access_token()
    answer = requests.get(
        f"{world.sim.url}/api/v1/partners",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400 and token in answer.text


def test_no_exit_carries_the_token(
    world: World,
    webhook: Webhook,
    tmp_path: Path,
    use_environment: Callable[..., Any],
) -> None:
    # the CLI: summary table, the error line, its log lines (DEBUG: everything)
    cli = subprocess.run(
        [sys.executable, "-m", "worker", "sync", "partners"],
        env={**os.environ, **world.env, "LOG_LEVEL": "DEBUG"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 1
    assert "HTTP 400: Invalid request: header was Bearer [REDACTED]" in cli.stdout
    # ...its log (stderr, at DEBUG: every line) and its error line
    logged = [line for line in cli.stderr.splitlines() if " worker.sync.run: partners: " in line]
    assert any("Bearer [REDACTED]" in line for line in logged), cli.stderr
    assert cli.stderr.splitlines()[-1].startswith("rosesync: error: 1 of 1 resources did not")
    assert leaks(world, cli.stdout) == [] and leaks(world, cli.stderr) == []

    # the run table
    (stored,) = recent_runs(world.engine, "partners")
    assert stored.error is not None and "Bearer [REDACTED]" in stored.error
    assert leaks(world, stored.error) == []

    # a task's result (the failure Celery stores and shows every client), and the alert it sends
    app = make_app(use_environment(**world.env))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
        result = app.send_task("rrsync.sync_resource", args=["partners"])
        with pytest.raises(Exception, match="HTTP 400") as raised:
            result.get(timeout=120, propagate=True)
        assert result.state == "FAILURE"
        assert "Bearer [REDACTED]" in str(raised.value)
        assert leaks(world, str(raised.value)) == []
        assert leaks(world, str(result.traceback)) == []
    alerts = webhook.messages()
    assert alerts, "the failed task sent no alert"
    assert "Bearer [REDACTED]" in alerts[-1]["message"]
    assert leaks(world, repr(alerts)) == []

