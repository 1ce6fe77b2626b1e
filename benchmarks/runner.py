"""One contender run, end to end: a fresh warehouse, credentials, the measured child process,
and the check that it loaded exactly what the simulator serves (a fast wrong load is worthless).
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.contenders import table_of
from benchmarks.databases import Warehouse, fresh_warehouse
from benchmarks.measure import cpu_seconds_of, run_measured
from benchmarks.simulators import ROOT, RunningSimulator, access_token
from config.settings import load_settings
from worker.credentials.bootstrap import bootstrap
from worker.warehouse import connect

# rosesync-flat: rosesync with its child tables left empty (issue 14), to price them.
CONTENDERS = ("naive", "simple", "rosesync", "rosesync-flat")
# The child's environment: only what a process needs to run, never the caller's rosesync
# settings (SYNC_CONCURRENCY=1 in a developer's shell would quietly change the figures).
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


@dataclass(frozen=True, slots=True)
class Row:
    """One contender run's figures."""

    scenario: str
    database: str
    contender: str
    records: int
    sync_seconds: float  # the sync itself, as the child timed it
    sync_cpu_seconds: float
    process_seconds: float  # spawn to exit: interpreter start-up and imports included
    process_cpu_seconds: float
    peak_rss_mb: float
    simulator_cpu_seconds: float | None  # what the simulator spent serving this run
    api_requests: int | None  # rosesync's own count (run history); None for the baselines

    @property
    def records_per_second(self) -> float:
        return self.records / self.sync_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_second": self.records_per_second}


@dataclass(frozen=True, slots=True)
class RunContext:
    run_dir: Path  # logs, SQLite files, the token file and rosesync's key file
    postgres: str  # libpq URI of the database that gets a fresh schema per run
    timeout: float  # seconds a contender may take before it is killed


def run_contender(
    ctx: RunContext,
    scenario: str,
    contender: str,
    sim: RunningSimulator,
    kind: str,
    resources: tuple[str, ...],
) -> Row:
    label = f"{scenario}-{kind}-{contender}-{uuid.uuid4().hex[:6]}"
    with fresh_warehouse(kind, ctx.run_dir, label, ctx.postgres) as warehouse:
        if contender.startswith("rosesync"):
            env = _rosesync_env(ctx, sim, warehouse)
            _bootstrap(env)
            argv = ["-m", "benchmarks.rosesync_contender"]
            argv += ["--no-children"] if contender == "rosesync-flat" else []
            token_file = None
        else:
            env = _base_env()
            token_file = _write_token(ctx.run_dir / f"{label}.token", access_token(sim))
            argv = ["-m", "benchmarks.contenders", contender, "--api", sim.url,
                    "--token-file", str(token_file), "--database", warehouse.url]
        sim_cpu_before = cpu_seconds_of(sim.pid)
        try:
            measured = run_measured(
                [sys.executable, *argv, "--resources", ",".join(resources)],
                env, ROOT, ctx.run_dir, label, ctx.timeout,
            )
        finally:
            if token_file is not None:
                token_file.unlink()
        sim_cpu_after = cpu_seconds_of(sim.pid)
        records = _verify(warehouse, contender, sim, resources)
        requests = (
            warehouse.scalar("SELECT sum(requests) FROM rrsync_runs")
            if contender.startswith("rosesync") else None
        )
    simulator_cpu = (
        None if sim_cpu_before is None or sim_cpu_after is None
        else sim_cpu_after - sim_cpu_before
    )
    return Row(
        scenario=scenario,
        database=kind,
        contender=contender,
        records=records,
        sync_seconds=measured.sync_seconds,
        sync_cpu_seconds=measured.sync_cpu_seconds,
        process_seconds=measured.process.wall_seconds,
        process_cpu_seconds=measured.process.cpu_seconds,
        peak_rss_mb=measured.peak_rss_mb,
        simulator_cpu_seconds=simulator_cpu,
        api_requests=requests,
    )


def _verify(
    warehouse: Warehouse, contender: str, sim: RunningSimulator, resources: tuple[str, ...]
) -> int:
    """The rows loaded per resource, which must equal what the simulator serves."""
    total = 0
    for resource in resources:
        if contender.startswith("rosesync"):
            query = f"SELECT count(*) FROM rr_{resource} WHERE deleted_at IS NULL"
        else:
            query = f"SELECT count(*) FROM {table_of(resource)}"
        loaded, expected = warehouse.scalar(query), sim.dataset.count(resource)
        if loaded != expected:
            raise AssertionError(
                f"{contender} on {warehouse.kind} loaded {loaded} {resource}, "
                f"but the simulator serves {expected}"
            )
        total += loaded
    return total


def _base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}


def _rosesync_env(ctx: RunContext, sim: RunningSimulator, warehouse: Warehouse) -> dict[str, str]:
    """rosesync's settings for this run: defaults, except where the data and the database are."""
    return {
        **_base_env(),
        "DATABASE_URL": warehouse.sqlalchemy_url,
        "ROSEROCKET_API_URL": sim.url,
        "ROSEROCKET_AUTH_URL": sim.url,
        "ROSEROCKET_CLIENT_ID": sim.client_id,
        "ROSEROCKET_CLIENT_SECRET": sim.client_secret,
        "ROSEROCKET_REDIRECT_URI": sim.redirect_uri,
        "TOKEN_KEY_FILE": str(ctx.run_dir / "rrsync.key"),
    }


def _bootstrap(env: dict[str, str]) -> None:
    """Store rosesync's credential in the fresh warehouse, as `rosesync bootstrap` would (this also
    creates rosesync's tables, so the measured run starts from a migrated, empty warehouse)."""
    settings = load_settings(environ=env, dotenv_path=None)
    engine = connect(settings.database_url)
    try:
        bootstrap(settings, engine, announce=_visit_later, timeout=60)
    finally:
        engine.dispose()


def _visit_later(url: str) -> None:
    """The browser's part: the simulator auto-consents and redirects to rosesync's listener.
    urllib rather than requests: urllib3 would log the code at DEBUG."""
    def visit() -> None:
        with urllib.request.urlopen(url, timeout=60):  # noqa: S310 - a loopback URL we built
            pass

    threading.Thread(target=visit, daemon=True).start()


def _write_token(path: Path, token: str) -> Path:
    """The baselines' token, readable by this user only, created that way from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return path
