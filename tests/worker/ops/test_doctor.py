"""worker/ops/doctor.py and `rosesync doctor`: healthy exits 0; each dependency broken in turn
is the one named (issue 17, item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from cryptography.fernet import Fernet

from config.celery import make_app
from config.settings import load_settings
from tests.support import World, make_world
from worker.ops.doctor import diagnose
from worker.simulator import SimulatorConfig


@pytest.fixture
def world(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[World]:
    key = Fernet.generate_key().decode()
    env = {"CELERY_BROKER_URL": redis_url, "TOKEN_ENCRYPTION_KEY": key}
    with make_world(postgres_url, tmp_path, SimulatorConfig(records=10), **env) as made:
        yield made


@pytest.fixture
def worker(world: World, use_environment: Callable[..., Any]) -> Iterator[None]:
    app = make_app(use_environment(**world.env))
    with start_worker(app, pool="solo", perform_ping_check=False):
        yield


def doctor(world: World, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "doctor", "--json"],
        env={**os.environ, **world.env, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in report["checks"]}


def test_a_healthy_setup_exits_0(world: World, worker: None, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SYNC_PAGE_SIZE=100\n")
    result = doctor(world, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["dotenv"] == str(dotenv)
    assert set(statuses(report).values()) == {"ok"}, report["checks"]
    shown = {s["variable"]: s for s in report["settings"]}
    assert (shown["SYNC_PAGE_SIZE"]["value"], shown["SYNC_PAGE_SIZE"]["source"]) == ("100", ".env")
    assert shown["ROSEROCKET_CLIENT_SECRET"]["value"] == "(set)"
    assert shown["TOKEN_ENCRYPTION_KEY"] == {
        "variable": "TOKEN_ENCRYPTION_KEY", "value": "(set)", "source": "environment"
    }
    assert shown["SYNC_SCHEDULE"] == {
        "variable": "SYNC_SCHEDULE", "value": "0 2 * * *", "source": "default"
    }
    assert world.env["TOKEN_ENCRYPTION_KEY"] not in result.stdout
    assert world.sim.config.client_secret not in result.stdout
    text = subprocess.run(
        [sys.executable, "-m", "worker", "doctor"],
        env={**os.environ, **world.env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == f".env read: {dotenv}"


BROKEN = {
    "database": {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"},
    "broker": {"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
    "authorization_server": {"ROSEROCKET_AUTH_URL": "http://127.0.0.1:1"},
    "api": {"ROSEROCKET_API_URL": "http://127.0.0.1:1"},
    "credential": {"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()},
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_each_broken_dependency_is_named(world: World, worker: None, broken: str) -> None:
    settings = load_settings(environ={**world.env, **BROKEN[broken]}, dotenv_path=None)
    report = diagnose(settings)
    failed = {f.name: f.summary for f in report.findings if f.status == "fail"}
    assert list(failed) == [broken], report.findings
    assert not report.ok
    variable = next(iter(BROKEN[broken]))
    assert variable in failed[broken]


def test_no_worker_is_named(world: World, tmp_path: Path) -> None:
    result = doctor(world, tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [c["check"] for c in report["checks"] if c["status"] == "fail"] == ["worker"]
    assert result.stderr.strip() == "rosesync: error: 1 check(s) failed: worker"


def test_unknown_variables_are_listed_not_fatal(world: World, worker: None, tmp_path: Path) -> None:
    result = doctor(world, tmp_path, SYNC_SCHEDUEL="@daily")
    assert result.returncode == 0, result.stdout
    (settings_check,) = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "settings"]
    assert settings_check["status"] == "warn"
    assert "did you mean SYNC_SCHEDULE?" in settings_check["summary"]
