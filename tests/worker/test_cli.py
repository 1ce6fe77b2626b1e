"""worker/cli.py: every command has help text; errors are one line with the right exit code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tests.support import World, make_world
from worker.cli import cli
from worker.simulator import FaultRule, SimulatorConfig
from worker.warehouse.runs import recent_runs


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


ALL_COMMANDS = _commands(cli)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert (command.help or "").strip(), f"`rosesync {' '.join(path)}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts} has no help"


@pytest.mark.parametrize(
    "path", [p for p in ALL_COMMANDS if p[0] not in ("worker", "beat")], ids=" ".join
)
def test_help_runs(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_contract_commands_exist() -> None:
    expected = {("db", "upgrade"), ("resources",), ("worker",), ("beat",)}
    assert expected <= set(ALL_COMMANDS)


def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "resources"],
        env={**os.environ, "SYNC_RESOURCES": "orders,lorries"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("rosesync: error: SYNC_RESOURCES: expected")
    assert "Traceback" not in result.stderr


# -- commands end to end (subprocesses, against the simulator) ------------------------------


def rosesync(
    world: World | None, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, with the world's environment (if any) and ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **(world.env if world else {}), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    with make_world(sqlite_url, tmp_path, SimulatorConfig(records=150)) as w:
        yield w


def test_sync_inline_then_status(world: World, tmp_path: Path) -> None:
    result = rosesync(world, tmp_path, "sync", "orders", "customers", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["resource"], r["status"]) for r in runs] == [
        ("customers", "succeeded"),
        ("orders", "succeeded"),
    ]
    table = rosesync(world, tmp_path, "status")
    assert table.returncode == 0, table.stderr
    assert "orders" in table.stdout and "succeeded" in table.stdout
    report = json.loads(rosesync(world, tmp_path, "status", "--json").stdout)
    assert report["credentials"][0]["state"] == "ok"
    rows = {r["resource"]: r for r in report["resources"]}
    assert rows["orders"]["rows"] == 150
    assert rows["orders"]["last_run"]["status"] == "succeeded"
    assert rows["invoices"]["last_run"] is None
    assert report["next_run"].endswith("T02:00:00+00:00")


def test_sync_failure_is_one_line_and_exit_1(world: World, tmp_path: Path) -> None:
    world.sim.set_faults(FaultRule(kind="status", status=400))
    result = rosesync(world, tmp_path, "sync", "partners")
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("rosesync: error:")]
    assert len(error) == 1
    assert "HTTP 400" in error[0] and "partners" in error[0]
    assert "Traceback" not in result.stderr


def test_resources_probe_shows_the_paging_and_why(sqlite_url: str, tmp_path: Path) -> None:
    config = SimulatorConfig(records=60, profile="documented")
    with make_world(sqlite_url, tmp_path, config) as documented:
        before = rosesync(documented, tmp_path, "resources")
        assert before.returncode == 0, before.stderr
        assert "not probed yet" in before.stdout
        probed = rosesync(documented, tmp_path, "resources", "--probe")
        assert probed.returncode == 0, probed.stderr
        lines = {line.split()[0]: line for line in probed.stdout.splitlines()[2:]}
        assert "sweep" in lines["orders"] and "not honoured" in lines["orders"]
        assert "missing" in lines["invoices"] and "404" in lines["invoices"]
        entries = json.loads(rosesync(documented, tmp_path, "resources", "--json").stdout)
        orders = next(e for e in entries if e["name"] == "orders")
        assert orders["paging"]["strategy"] == "sweep"
        assert orders["paging"]["capabilities"]["page_size"] == 50
        # `sync` of everything: the missing endpoint is named, the others sync, exit 1
        result = rosesync(documented, tmp_path, "sync", "--json")
        assert result.returncode == 1
        statuses = {r["resource"]: r["status"] for r in json.loads(result.stdout)}
        assert statuses.pop("invoices") == "failed"
        assert set(statuses.values()) == {"succeeded"}
        assert "1 of 6 resources did not sync: invoices:" in result.stderr
        assert "SYNC_ENDPOINTS" in result.stderr


def test_sync_unknown_resource_is_a_usage_error(world: World, tmp_path: Path) -> None:
    result = rosesync(world, tmp_path, "sync", "trucks")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("rosesync: error: unknown resource 'trucks'")


@pytest.mark.parametrize(
    ("stop", "code"),
    # Ctrl-C exits 130 as shells expect (issue 17, finding 15: it exited 1)
    [(signal.SIGTERM, 1), (signal.SIGINT, 130)],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_a_signal_stops_an_inline_sync_at_a_page_boundary(
    sqlite_url: str, tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    slow = SimulatorConfig(records=600, faults=(FaultRule(kind="latency", latency=0.05),))
    # one request at a time, not adapted upwards (issue 16): slow enough to stop mid-run
    env = {"SYNC_PAGE_SIZE": "20", "SYNC_CONCURRENCY": "1", "SYNC_MAX_CONCURRENCY": "1"}
    with make_world(sqlite_url, tmp_path, slow, **env) as world:
        child = subprocess.Popen(
            [sys.executable, "-m", "worker", "sync", "orders"],
            env={**os.environ, **world.env},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not any(r.pages >= 3 for r in recent_runs(world.engine, "orders")):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        child.send_signal(stop)
        _out, err = child.communicate(timeout=60)
        assert child.returncode == code, err
        assert "stopped at a page boundary" in err and "Traceback" not in err
        (run,) = recent_runs(world.engine, "orders")
        assert run.status == "interrupted"
        with world.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM rr_orders").scalar_one()
        assert stored == run.records < 600  # every committed page, and nothing half-written


def test_enqueue_and_wait(
    world: World, tmp_path: Path, use_environment: Callable[..., Any]
) -> None:
    from celery.contrib.testing.worker import start_worker

    from config.celery import make_app
    from worker.ops.dispatch import check_broker

    settings = use_environment(**world.env)
    # As `rosesync worker` starts: its broker check opens the embedded broker's file first,
    # which puts it in WAL mode before kombu's connections hold it. Started bare, kombu made
    # the file and kept it busy, and the first `--enqueue`'s switch to WAL found it locked
    # (seen once in three CI runs).
    check_broker(settings)
    app = make_app(settings)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
        sent = rosesync(world, tmp_path, "sync", "--enqueue", "--json", "bills")
        assert sent.returncode == 0, sent.stderr
        task_id = json.loads(sent.stdout)["bills"]
        assert len(task_id) == 36
        waited = rosesync(world, tmp_path, "sync", "--enqueue", "--wait", "partners", "bills")
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.count("SUCCESS") == 2
        # issue 17, finding 2: --json crashed with TypeError (exit 70) although the tasks ran
        as_json = rosesync(world, tmp_path, "sync", "--enqueue", "--wait", "--json", "bills")
        assert as_json.returncode == 0, as_json.stderr
        (outcome,) = json.loads(as_json.stdout)
        assert (outcome["resource"], outcome["state"]) == ("bills", "SUCCESS")
        assert outcome["result"]["status"] == "succeeded"
        world.sim.set_faults(FaultRule(kind="status", status=404))
        failed = rosesync(world, tmp_path, "sync", "--enqueue", "--wait", "orders")
        assert failed.returncode == 1
        assert "HTTP 404" in failed.stderr
    statuses = {(r.resource, r.status, r.trigger) for r in recent_runs(world.engine)}
    assert ("bills", "succeeded", "celery") in statuses
    assert ("orders", "failed", "celery") in statuses


def test_simulator_command(tmp_path: Path) -> None:
    import urllib.request

    child = subprocess.Popen(
        [sys.executable, "-m", "worker", "simulator", "--port", "0", "--records", "10"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    url = line.split(" on ", 1)[1].split()[0]
    with urllib.request.urlopen(f"{url}/.well-known/openid-configuration") as answer:  # noqa: S310
        assert json.loads(answer.read())["token_endpoint"] == f"{url}/oauth/token"
    assert "rrsync-demo-secret" not in line
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) == 0


def test_progress_bars_on_a_terminal(world: World, tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "worker", "sync", "orders", "partners"],
        env={**os.environ, **world.env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    out, _ = child.communicate(timeout=120)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert child.returncode == 0
    text = screen.decode(errors="replace")
    assert "orders" in text and "partners" in text  # a bar per resource, labelled
    assert "150/150" in text
    assert "succeeded" in out  # the summary table goes to stdout


# -- issue 17: what an operator types, and the one line that answers -------------------------


def test_enqueue_wait_without_a_worker_says_so(world: World, tmp_path: Path) -> None:
    """Finding 8: no worker consuming waited in PENDING for up to four hours."""
    result = rosesync(world, tmp_path, "sync", "--enqueue", "--wait", "orders")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "rosesync: error: no worker is consuming from CELERY_BROKER_URL (sqla+sqlite:///"
    )
    assert "start `rosesync worker`; the 1 task(s) stay queued" in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_before_bootstrap_says_so_up_front(sqlite_url: str, tmp_path: Path) -> None:
    """Finding 9: sync tried a resource, failed, and never said "run bootstrap first"."""
    result = rosesync(
        None, tmp_path, "sync", DATABASE_URL=sqlite_url, TOKEN_KEY_FILE=str(tmp_path / "k")
    )
    assert result.returncode == 1
    assert result.stderr == (
        "rosesync: error: no credential stored for org 'default': "
        "run `rosesync bootstrap` first\n"
    )
    assert result.stdout == ""  # no resource was tried


def test_a_misspelt_resource_gets_a_suggestion(world: World, tmp_path: Path) -> None:
    result = rosesync(world, tmp_path, "sync", "order")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "rosesync: error: unknown resource 'order' (did you mean orders?)"
    )


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_take_dash_h(command: str, tmp_path: Path) -> None:
    """Finding 15: `worker -h` failed while every other command takes -h."""
    result = rosesync(None, tmp_path, command, "-h")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "--loglevel" in result.stdout


def test_status_from_another_directory_creates_nothing(world: World, tmp_path: Path) -> None:
    """Finding 12: `status` elsewhere silently created ./var/rrsync.db and said "no
    credential"; it now says which database it looked for."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = rosesync(world, elsewhere, "status", DATABASE_URL="")  # empty: the default
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"rosesync: error: DATABASE_URL: there is no database at {elsewhere}/var/rrsync.db"
    )
    assert not (elsewhere / "var").exists()
    shown = rosesync(world, tmp_path, "status")
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first == f"database: {world.env['DATABASE_URL']} (no .env in {tmp_path})"


def test_unknown_variables_are_warned_about(world: World, tmp_path: Path) -> None:
    """Finding 12: a misspelt SYNC_SCHEDUEL was silently ignored."""
    result = rosesync(world, tmp_path, "resources", SYNC_SCHEDUEL="@hourly")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "rosesync: warning: SYNC_SCHEDUEL in the environment is not a rosesync setting "
        "(did you mean SYNC_SCHEDULE?); it is ignored\n"
    )


def test_status_shows_the_running_beats_schedule(world: World, tmp_path: Path) -> None:
    """Finding 7: status printed its own SYNC_SCHEDULE, and named the beat by its lease owner."""
    beat_env = {**os.environ, **world.env, "SYNC_SCHEDULE": "@every 1h30m"}
    beat = subprocess.Popen(
        [sys.executable, "-m", "worker", "beat", "--loglevel=INFO"],
        env=beat_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            report = json.loads(rosesync(world, tmp_path, "status", "--json").stdout)
            if report["beat_leader"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert report["schedule"] == "@every 1h30m"
        assert report["schedule_source"] == "beat"
        assert re.fullmatch(r"beat@\S+ pid \d+", report["beat_leader"]), report["beat_leader"]
        text = rosesync(world, tmp_path, "status").stdout
        assert "schedule: @every 1h30m (UTC, the running beat's; beat: beat@" in text
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(timeout=60)
    shown = rosesync(world, tmp_path, "status").stdout
    assert "schedule: 0 2 * * * (UTC, this shell's SYNC_SCHEDULE; no beat running)" in shown


def test_status_and_doctor_list_schema_drift(world: World, tmp_path: Path) -> None:
    """issue 14, item 2: the CLI shows what the runs recorded; doctor warns about it."""
    assert rosesync(world, tmp_path, "sync", "orders").returncode == 0
    assert "schema drift" not in rosesync(world, tmp_path, "status").stdout
    world.sim.change_api(schema_drift_after=0)
    result = rosesync(world, tmp_path, "sync", "orders", "--full")
    assert result.returncode == 0, result.stderr
    shown = rosesync(world, tmp_path, "status").stdout
    assert "schema drift (recorded, nothing changed" in shown
    assert "orders: full_id type (string -> object;" in shown
    assert "orders: full_id unparsable (not text: stored NULL in full_id;" in shown
    report = json.loads(rosesync(world, tmp_path, "doctor", "--json").stdout)
    (drift,) = [c for c in report["checks"] if c["check"] == "schema_drift"]
    assert drift["status"] == "warn" and "drift_added_field added" in drift["summary"]
