"""Syncing and watching: `sync`, `status`."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from config.settings import Settings
from worker.cli.common import (
    EXIT_INTERRUPTED,
    cli,
    err,
    exit_code,
    fail,
    handles_errors,
    out,
    seconds,
    settings,
    table,
    when,
    where_settings_come_from,
)
from worker.cli.setup import paging_text
from worker.errors import ConfigError, RoseSyncError
from worker.source import resources

if TYPE_CHECKING:
    from worker.ops.status import StatusReport
    from worker.sync.run import SyncResult


class ProgressBars:
    """One progress bar per resource on a terminal (stderr); silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bars: dict[str, Any] = {}
        self._done: dict[str, int] = {}
        self._length: dict[str, int] = {}

    def __call__(self, resource: str, records: int, expected: int | None) -> None:
        if not self.enabled:
            return
        if resource not in self._bars:
            self.close()
            length = max(expected or 0, 1)
            bar = click.progressbar(
                length=length, label=f"{resource:<10}", file=sys.stderr, show_pos=True
            )
            bar.__enter__()
            self._bars[resource], self._done[resource], self._length[resource] = bar, 0, length
        # re-reads (lookback, catch-up) can exceed the first page's total; never overshoot
        step = min(records, self._length[resource]) - self._done[resource]
        if step > 0:
            self._bars[resource].update(step)
            self._done[resource] += step

    def close(self) -> None:
        for bar in self._bars.values():
            bar.__exit__(None, None, None)
        self._bars.clear()


def runs_table(results: Sequence[SyncResult]) -> str:
    rows = [
        (
            r.run.resource,
            r.run.mode,
            r.run.status,
            r.run.records,
            r.run.deleted,
            r.run.pages,
            r.run.requests,
            r.run.retries,
            seconds(r.run.seconds),
            r.run.error,
        )
        for r in results
    ]
    headers = (
        "resource",
        "mode",
        "status",
        "records",
        "deleted",
        "pages",
        "requests",
        "retries",
        "time",
        "error",
    )
    return table(headers, rows)


def _run_dicts(results: Sequence[SyncResult]) -> list[dict[str, Any]]:
    from worker.ops.status import run_dict

    return [run_dict(r.run) for r in results]


class _Stop:
    """Set by SIGTERM or Ctrl-C; remembers which, so that Ctrl-C can exit 130 (issue 17)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    """SIGTERM (and Ctrl-C) end an inline sync at its next page boundary, never mid-page."""
    received = _Stop()

    def handle(signum: int, _frame: object) -> None:
        if received.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the page boundary
        received.signal = signum
        received.event.set()
        err("stopping at the next page boundary...")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.command("sync")
@click.argument("resource_names", nargs=-1, metavar="[RESOURCE]...")
@click.option(
    "--full",
    is_flag=True,
    help="Ignore the cursor and re-read everything; rows gone at the source are marked deleted.",
)
@click.option("--enqueue", is_flag=True, help="Send Celery tasks instead; prints their ids.")
@click.option("--wait", is_flag=True, help="With --enqueue: wait for the tasks' outcomes.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=4 * 3600.0,
    show_default=True,
    help="With --wait: give up waiting after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--org", help="The org to sync (`rosesync orgs`; default: ROSEROCKET_ORG_ID).")
@handles_errors
def sync_command(
    resource_names: tuple[str, ...],
    full: bool,
    enqueue: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
    org: str | None,
) -> None:
    """Sync now (default: every resource in SYNC_RESOURCES), inline unless --enqueue.

    Exit status 0 only if every resource succeeded (or was skipped because another run of it
    was in progress); 130 after Ctrl-C.
    """
    from worker.ops import doctor
    from worker.warehouse import connect

    loaded = settings()
    if org:  # one credential per org (issue 15): this run uses ORG's, as if it were the setting
        loaded = dataclasses.replace(loaded, org_id=org)
    chosen = resources.select(resource_names or loaded.sync_resources, loaded.registry)
    if wait and not enqueue:
        raise ConfigError("--wait only goes with --enqueue (an inline sync always waits)")
    engine = connect(loaded.warehouse_url)
    # Up front, not after the first resource failed (issue 17): a credential to sync with.
    doctor.run(loaded, "credential")
    if enqueue:
        _enqueue(loaded, [r.name for r in chosen], full, wait, timeout, as_json)
        return
    from worker.credentials.store import CredentialStore
    from worker.sync.run import sync_resources

    bars = ProgressBars()
    with _stop_on_signals() as received:
        try:
            results = sync_resources(
                loaded,
                engine,
                CredentialStore(loaded, engine),
                list(chosen),
                full=full,
                progress=bars,
                stop=received.event,
            )
        finally:
            bars.close()
    out(json.dumps(_run_dicts(results), indent=2) if as_json else runs_table(results))
    failed = [r for r in results if not r.ok]
    if received.signal == signal.SIGINT:
        why = failed[0].run.error if failed else f"{len(results)} of {len(chosen)} resources ran"
        fail(f"interrupted: {why}", EXIT_INTERRUPTED)
    if failed or len(results) < len(chosen):
        first = failed[0].run.error if failed else "stopped early"
        error = failed[0].error if failed else None
        code = exit_code(error) if isinstance(error, RoseSyncError) else 1
        fail(f"{len(failed)} of {len(chosen)} resources did not sync: {first}", code)


def _enqueue(
    loaded: Settings, names: list[str], full: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    from config.celery import app
    from worker.ops.dispatch import TaskOutcome, check_broker, enqueue_syncs, wait_for
    from worker.ops.presence import workers
    from worker.warehouse import connect

    check_broker(loaded)  # one line at once, not 20 s of retries and a traceback (issue 17)
    tasks = enqueue_syncs(app, names, full, loaded.credential_name)
    if not wait:
        if as_json:
            out(json.dumps(tasks, indent=2))
        else:
            for name, task_id in tasks.items():
                out(f"{name}\t{task_id}")
        return

    def show(outcome: TaskOutcome) -> None:
        if not as_json:
            detail = outcome.error or ""
            if outcome.result:
                detail = f"{outcome.result.get('status')}, {outcome.result.get('records')} records"
            out(f"{outcome.resource:<10} {outcome.task_id}  {outcome.state}  {detail}")

    engine = connect(loaded.warehouse_url)
    outcomes = wait_for(
        app, tasks, show, timeout, workers=lambda: [w.name for w in workers(loaded, engine)]
    )
    if as_json:
        out(json.dumps([o.as_dict() for o in outcomes], indent=2, default=str))
    unfinished = [o for o in outcomes if not o.finished]
    failed = [o for o in outcomes if o.finished and not o.ok]
    if unfinished:
        raise RoseSyncError(f"{len(unfinished)} task(s) still running after {timeout:g} s")
    if failed:
        raise RoseSyncError(f"{failed[0].resource}: {failed[0].error}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@handles_errors
def status_command(as_json: bool) -> None:
    """Token health, then per resource: last run, result, cursor, rows, next scheduled run.

    Reads the database DATABASE_URL names and never creates one: run from another directory,
    a relative SQLite path is an error naming the file it looked for.
    """
    from worker.ops.status import build_status
    from worker.warehouse import connect

    loaded = settings()
    report = build_status(loaded, connect(loaded.warehouse_url, create=False))
    if as_json:
        out(json.dumps(report.as_dict(), indent=2))
        return
    out(f"database: {report.database} ({where_settings_come_from(loaded)})\n")
    out(status_text(report))


def status_text(report: StatusReport) -> str:
    if report.credentials:
        tokens = table(
            ("org", "token", "expires in", "last refresh", "error"),
            [
                (
                    c.org,
                    c.state,
                    f"{c.seconds_left} s",
                    when(c.refreshed_at or c.obtained_at),
                    c.last_error,
                )
                for c in report.credentials
            ],
        )
    else:
        tokens = "no credential stored: run `rosesync bootstrap`"
    # The org column only when there is more than one: a single-org install's status reads as
    # it always did (issue 15).
    many = len({state.org for state in report.resources}) > 1
    rows = []
    for state in report.resources:
        run = state.last_run
        key = (state.org, state.resource)
        rows.append(
            (
                *((state.org,) if many else ()),
                state.resource,
                paging_text(report.paging.get(key))[0],
                when(run.started_at) if run else "never",
                run.status if run else "-",
                run.records if run else "-",
                seconds(run.seconds) if run else "-",
                state.rows,
                state.deleted_rows,
                report.quarantined.get(key, 0),
                when(state.cursor),
                (run.error or "")[:60] if run else None,
            )
        )
    resources_table = table(
        (
            *(("org",) if many else ()),
            "resource",
            "paging",
            "last run",
            "result",
            "records",
            "took",
            "rows",
            "deleted",
            "quarantined",
            "cursor",
            "error",
        ),
        rows,
    )
    if report.beat_leader:
        source = f"the running beat's; beat: {report.beat_leader}"
    else:
        source = "this shell's SYNC_SCHEDULE; no beat running"
    schedule = f"schedule: {report.schedule} (UTC, {source})"
    text = f"{tokens}\n\n{resources_table}\n\n{schedule}; next run {when(report.next_run)}"
    return text + drift_text(report)


DRIFT_LINES = 20  # the most recent changes shown; the table holds them all


def drift_text(report: StatusReport) -> str:
    """Schema drift (issue 14, item 2), most recently seen first; nothing when there is none."""
    if not report.drift:
        return ""
    shown = [f"  {change.describe()}" for change in report.drift[:DRIFT_LINES]]
    more = len(report.drift) - DRIFT_LINES
    if more > 0:
        shown.append(f"  ... and {more} more: the rrsync_drift table has them all")
    heading = "schema drift (recorded, nothing changed; update the registry to keep a change):"
    return "\n\n" + "\n".join([heading, *shown])
