"""Measuring one contender: a child process timed from both sides.

The harness side (:func:`run_measured`) starts the contender as its own process and reaps it
with ``os.wait4``, which hands back that one child's CPU time: nothing of the harness, of the
simulator or of an earlier contender leaks into it.

Peak RSS is the one figure wait4 gets wrong: Linux folds the memory high-water mark of the
process image that called ``exec`` into the child's ``ru_maxrss``, and that image is a copy of
the harness (about 85 MB with rosesync imported). So the child reads its own ``VmHWM`` (the peak
resident set of its exec'd image; Linux only) and reports it.

The child side (:func:`report_phase`) times only the sync itself and prints it, with that
peak, as one JSON line on stdout. Interpreter start-up and imports (rosesync's SQLAlchemy, Alembic,
Celery and friends take over a second here) are a fixed cost per process, not a cost per
record, so records/s is computed on the sync phase; the process totals are reported next to it
so nothing is hidden.

Only the standard library here: contenders import this before they start their clock.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """What the kernel says one finished child process cost."""

    wall_seconds: float  # spawn to exit, interpreter start-up included
    cpu_seconds: float  # user + system, all threads


@dataclass(frozen=True, slots=True)
class Measured:
    """A contender's run: the process as a whole and what it reported itself."""

    process: ProcessUsage
    sync_seconds: float
    sync_cpu_seconds: float
    peak_rss_mb: float | None  # the child's own high-water mark (None: a child that cannot say)
    extra: dict[str, Any] = field(default_factory=dict)  # whatever else the child reported


class ContenderFailed(RuntimeError):
    """The child exited non-zero, timed out or printed no report; the message says which."""


def run_measured(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
    label: str,
    timeout: float,
    reports: bool = True,
) -> Measured:
    """Run ``argv`` to completion and measure it.

    stdout and stderr go to files (a pipe could fill up and stall the child while we sit in
    wait4); a timer kills a child that runs longer than ``timeout`` seconds. ``reports=False``:
    a child that prints no report of its own (the real `rosesync` command, issue 16), whose
    figures are then the whole process's, and whose peak RSS is not known.
    """
    out_path, err_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=out, stderr=err)
        killer = threading.Timer(timeout, child.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
    # wait4 reaped the child; tell Popen so that it does not try to reap it again.
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        reason = "was killed (timeout?)" if child.returncode < 0 else "failed"
        raise ContenderFailed(
            f"{label} {reason} with exit code {child.returncode}:\n{_tail(err_path)}"
        )
    process = ProcessUsage(wall_seconds=wall, cpu_seconds=usage.ru_utime + usage.ru_stime)
    if not reports:
        return Measured(process, wall, process.cpu_seconds, None)
    report = _last_json_line(out_path)
    if report is None:
        raise ContenderFailed(f"{label} printed no report:\n{_tail(err_path)}")
    return Measured(
        process,
        sync_seconds=float(report.pop("seconds")),
        sync_cpu_seconds=float(report.pop("cpu_seconds")),
        peak_rss_mb=float(report.pop("peak_rss_mb")),
        extra=report,
    )


def _last_json_line(path: Path) -> dict[str, Any] | None:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            return value if isinstance(value, dict) else None
    return None


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb_self() -> float:
    """VmHWM of this process image (see the module docstring for why not ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS is measured on Linux only")


def report_phase(work: Callable[[], dict[str, Any] | None]) -> None:
    """Child side: run the measured part and print its wall and CPU seconds, and the process's
    peak RSS so far (start-up included, as the operating system sees it), as JSON, with what
    ``work`` returned (rosesync: the concurrency it settled on)."""
    cpu_before, started = _cpu_self(), time.perf_counter()
    extra = work() or {}
    seconds, cpu = time.perf_counter() - started, _cpu_self() - cpu_before
    report = {**extra, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb_self()}
    print(json.dumps(report), flush=True)


def cpu_seconds_of(pid: int) -> float | None:
    """utime + stime of a running process from /proc (Linux): how busy the simulator was while
    a contender ran, to show whether it, rather than the contender, was the limit."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
