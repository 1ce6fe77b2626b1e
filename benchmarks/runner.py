"""One contender run, end to end: a fresh warehouse, credentials, the measured child process,
and the check that it loaded exactly what the simulator serves (a fast wrong load is worthless).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.contenders import table_of
from benchmarks.databases import Warehouse, fresh_warehouse
from benchmarks.measure import cpu_seconds_of, run_measured
from benchmarks.simulators import ROOT, RunningSimulator, access_token, counters, mutate
from config.settings import load_settings
from worker.credentials.bootstrap import bootstrap
from worker.warehouse import connect

# rosesync-flat: rosesync with its child tables left empty (issue 14), to price them;
# rosesync-cli: the installed command as an operator runs it (issue 16).
CONTENDERS = ("naive", "simple", "rosesync", "rosesync-flat", "rosesync-cli")
# The installed console script: `rosesync sync --full` as an operator runs it (issue 16), next
# to this interpreter in the virtualenv.
ROSESYNC = str(Path(sys.executable).with_name("rosesync"))
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
    peak_rss_mb: float | None  # None: the real command, which does not report it
    simulator_cpu_seconds: float | None  # what the simulator spent serving this run
    api_requests: int | None  # rosesync's own count (run history); None for the baselines
    extra: dict[str, Any] = field(default_factory=dict)  # rosesync: the concurrency it settled on

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
        token_file = None
        if contender in ("rosesync", "rosesync-flat"):
            env = _rosesync_env(ctx, sim, warehouse)
            _bootstrap(env)
            argv = [sys.executable, "-m", "benchmarks.rosesync_contender",
                    "--resources", ",".join(resources)]
            argv += ["--no-children"] if contender == "rosesync-flat" else []
        elif contender == "rosesync-cli":
            env = _rosesync_env(ctx, sim, warehouse)
            _bootstrap(env)
            argv = [ROSESYNC, "sync", "--full", *resources]
        else:
            env = _base_env()
            token_file = _write_token(ctx.run_dir / f"{label}.token", access_token(sim))
            argv = [sys.executable, "-m", "benchmarks.contenders", contender, "--api", sim.url,
                    "--token-file", str(token_file), "--database", warehouse.url,
                    "--resources", ",".join(resources)]
        sim_cpu_before = cpu_seconds_of(sim.pid)
        try:
            measured = run_measured(argv, env, ROOT, ctx.run_dir, label, ctx.timeout,
                                    reports=contender != "rosesync-cli")
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
        extra=measured.extra,
    )


def run_startup(ctx: RunContext, sim: RunningSimulator, repeat: int) -> dict[str, list[float]]:
    """Seconds, per command, of ``repeat`` runs each, taking turns: ``python -c pass`` (the
    interpreter alone), `rosesync --help`, `rosesync status` on a migrated warehouse holding a
    credential, and from spawn to the simulator receiving the first API request of `rosesync
    sync` (issue 16, target 2). SQLite: the default deployment."""
    times: dict[str, list[float]] = {"python": [], "help": [], "status": [], "first request": []}
    with fresh_warehouse("sqlite", ctx.run_dir, f"startup-{uuid.uuid4().hex[:6]}",
                         ctx.postgres) as warehouse:
        env = _rosesync_env(ctx, sim, warehouse)
        _bootstrap(env)
        commands = {"python": [sys.executable, "-c", "pass"], "help": [ROSESYNC, "--help"],
                    "status": [ROSESYNC, "status"]}
        for turn in range(repeat):
            for name, argv in commands.items():
                measured = run_measured(argv, env, ROOT, ctx.run_dir, f"startup-{name}-{turn}",
                                        ctx.timeout, reports=False)
                times[name].append(measured.process.wall_seconds)
            counters(sim, reset=True)
            spawned = time.time()
            run_measured([ROSESYNC, "sync", "--full", "orders"], env, ROOT, ctx.run_dir,
                         f"startup-sync-{turn}", ctx.timeout, reports=False)
            first = counters(sim)["first_api_request_at"]
            if first is None:
                raise AssertionError("rosesync sync made no API request")
            times["first request"].append(first - spawned)
    return times


def run_incremental(ctx: RunContext, sim: RunningSimulator, kind: str,
                    resources: tuple[str, ...]) -> dict[str, int]:
    """API requests per resource of an incremental sync right after a full one, nothing having
    changed in between, as the simulator counted them (issue 16, target 4)."""
    label = f"incremental-{sim.dataset.profile}-{uuid.uuid4().hex[:6]}"
    with fresh_warehouse(kind, ctx.run_dir, label, ctx.postgres) as warehouse:
        env = _rosesync_env(ctx, sim, warehouse)
        _bootstrap(env)
        contender = [sys.executable, "-m", "benchmarks.rosesync_contender",
                     "--resources", ",".join(resources)]
        run_measured(contender, env, ROOT, ctx.run_dir, f"{label}-full", ctx.timeout)
        counters(sim, reset=True)
        run_measured([*contender, "--incremental"], env, ROOT, ctx.run_dir, f"{label}-incr",
                     ctx.timeout)
        seen = counters(sim)["requests"]
    # "GET /api/v1/orders 200" -> n; a resource's list and by-id routes both count
    return {resource: sum(n for route, n in seen.items()
                          if route.split()[1].startswith(f"/api/v1/{resource}"))
            for resource in resources}


@dataclass(frozen=True, slots=True)
class SyncFigures:
    """One rosesync run of a profile run (issue 12): its kind, time and API requests."""

    run: str  # full | incremental (changes) | incremental (nothing changed)
    records: int  # records the runs stored (rrsync_runs)
    seconds: float  # the sync itself, timed in the child after its imports
    requests: int  # API requests the simulator counted

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def run_profile(ctx: RunContext, sim: RunningSimulator, kind: str, resources: tuple[str, ...],
                changes: int) -> list[SyncFigures]:
    """A full sync, an incremental one after ``changes`` records changed at the source (updated,
    created and deleted, the simulator's live mutation), then one with nothing changed: the
    figures issue 12 asks per API profile. Each run's warehouse is checked against the source."""
    label = f"profile-{sim.dataset.profile}-{uuid.uuid4().hex[:6]}"
    contender = [sys.executable, "-m", "benchmarks.rosesync_contender",
                 "--resources", ",".join(resources)]
    figures = []
    with fresh_warehouse(kind, ctx.run_dir, label, ctx.postgres) as warehouse:
        env = _rosesync_env(ctx, sim, warehouse)
        _bootstrap(env)
        for run, extra in (("full", []), ("incremental (changes)", ["--incremental"]),
                           ("incremental (nothing changed)", ["--incremental"])):
            if run == "incremental (changes)":
                for resource in resources:
                    share = max(1, changes * sim.dataset.count(resource) // sim.dataset.total)
                    mutate(sim, share, resource)
            counters(sim, reset=True)
            before = warehouse.scalar("SELECT coalesce(sum(records), 0) FROM rrsync_runs")
            measured = run_measured([*contender, *extra], env, ROOT, ctx.run_dir,
                                    f"{label}-{run.split()[0]}", ctx.timeout)
            stored = warehouse.scalar("SELECT coalesce(sum(records), 0) FROM rrsync_runs")
            figures.append(SyncFigures(run, stored - before, measured.sync_seconds,
                                       int(counters(sim)["api_requests"])))
    return figures


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
    """rosesync's settings for this run: defaults, except where the data and the database are,
    and the page size: what the simulator's profile serves, as the baselines ask for (200 on
    the extended profile, where rosesync's default, the documented 50, would make it do four
    times their requests for the same records)."""
    return {
        **_base_env(),
        "SYNC_PAGE_SIZE": str(sim.dataset.page_size),
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
    engine = connect(settings.warehouse_url)
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
