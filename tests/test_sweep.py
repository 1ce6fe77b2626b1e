"""Issue 17's acceptance sweep: every command, with each dependency unreachable or misconfigured
in turn, answers without a traceback and within 10 seconds.

Each run's wall time is measured as a bound with a generous margin (the commands answer in one
or two seconds; 10 s is the issue's limit), the one place a time is asserted. `make test` runs
this beside other tests on two cores, where a command can spend more time waiting for a CPU
than running: what is measured is the wall time less the time its process was ready to run but
queued behind others (Linux's /proc/PID/schedstat), so that a wait, retry or hang of rosesync's
counts in full and the machine's load does not. Long-running
commands (worker, beat) that find nothing wrong at start-up keep running: they are given a few
seconds, stopped, and their output checked the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import World, make_world
from worker.simulator import SimulatorConfig

LIMIT_SECONDS = 10.0
LONG_RUNNING = {"worker", "beat"}

COMMANDS: list[tuple[str, ...]] = [
    ("db", "upgrade"),
    ("resources",),
    ("doctor",),
    ("status",),
    ("token", "status"),
    ("token", "refresh"),
    ("sync", "partners"),
    ("sync", "--enqueue", "partners"),
    ("sync", "--enqueue", "--wait", "partners"),
    ("bootstrap", "--no-browser", "--timeout", "1"),
    ("worker", "--pool", "solo"),
    ("beat",),
]

BREAKAGES: dict[str, dict[str, str]] = {
    "database unreachable": {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"},
    "database misspelt": {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_db"},
    "database two slashes": {"DATABASE_URL": "sqlite://var/x.db"},
    "broker unreachable": {"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
    "api unreachable": {"ROSEROCKET_API_URL": "http://127.0.0.1:1"},
    "auth unreachable": {"ROSEROCKET_AUTH_URL": "http://127.0.0.1:1"},
    "wrong client secret": {"ROSEROCKET_CLIENT_SECRET": "not-the-registered-secret"},
    "changed key": {"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()},
    "bad schedule": {"SYNC_SCHEDULE": "0 25 * * *"},
    "infinite timeout": {"HTTP_TIMEOUT_SECONDS": "inf"},
}


@dataclass
class Run:
    command: tuple[str, ...]
    seconds: float
    code: int | None
    output: str


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    env = {"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    with make_world(sqlite_url, tmp_path, SimulatorConfig(records=20), **env) as made:
        yield made


def queued_seconds(pid: int, before: float) -> float:
    """How long ``pid`` (its main thread) has been ready to run but waiting for a CPU; ``before``
    once it is gone, or 0 where the kernel does not say (the bound is then on wall time)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return before


def run(command: tuple[str, ...], env: dict[str, str], cwd: Path) -> Run:
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "worker", *command],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    patience = 3 if command[0] in LONG_RUNNING else 30
    queued = 0.0
    while True:
        try:  # sampled every 50 ms: the last moments' queueing is left in, not taken out
            output, _ = child.communicate(timeout=0.05)
            return Run(command, time.monotonic() - started - queued, child.returncode, output)
        except subprocess.TimeoutExpired:
            queued = queued_seconds(child.pid, queued)
            if time.monotonic() - started >= patience:
                break
    if command[0] not in LONG_RUNNING:
        child.kill()
        output, _ = child.communicate()
        return Run(command, time.monotonic() - started - queued, None, output)
    child.send_signal(signal.SIGTERM)  # running happily: stop it, and time only its start
    output, _ = child.communicate(timeout=60)
    return Run(command, 0.0, child.returncode, output)


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_every_command_answers_in_one_line(world: World, tmp_path: Path, breakage: str) -> None:
    env = {**os.environ, **world.env, **BREAKAGES[breakage]}
    problems = []
    for command in COMMANDS:
        result = run(command, env, tmp_path)
        shown = " ".join(command)
        if "Traceback" in result.output:
            problems.append(f"`{shown}`: a traceback:\n{result.output[-2000:]}")
        if result.seconds > LIMIT_SECONDS:
            problems.append(f"`{shown}`: took {result.seconds:.1f} s")
        if result.code == 70:
            problems.append(f"`{shown}`: exit 70 (a bug):\n{result.output[-2000:]}")
        if result.code not in (0, None) and command[0] not in LONG_RUNNING:
            last = result.output.rstrip().splitlines()[-1] if result.output.strip() else ""
            if not last.startswith("rosesync: error: "):
                problems.append(f"`{shown}`: exit {result.code} without a one-line error:\n{last}")
    assert problems == [], "\n\n".join(problems)
