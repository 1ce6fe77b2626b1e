"""What a run prints and saves: the machine, a markdown table of the figures, the targets.

Markdown so that the output can be pasted into ``benchmarks/README.md`` as it is; JSON (every
run, not only the representative ones) so that runs can be compared later.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.databases import postgres_version
from benchmarks.scenarios import Outcome
from benchmarks.simulators import ROOT

_LIBRARIES = ("requests", "psycopg", "msgspec", "sqlalchemy")


def machine(databases: Sequence[str], postgres: str) -> dict[str, str]:
    """The facts a reader needs to compare these figures with their own."""
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{_memory_gib():.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version(postgres) if "postgresql" in databases else "not used",
        "DuckDB": importlib.metadata.version("duckdb") if "duckdb" in databases else "not used",
        "libraries": ", ".join(f"{n} {importlib.metadata.version(n)}" for n in _LIBRARIES),
        "rosesync code": _code_version(),
    }


def _code_version() -> str:
    """The commit measured (``-dirty``: with uncommitted changes to tracked files), so that a
    figure can be traced to the code that produced it."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
            text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return described.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return float("nan")


def markdown(outcomes: Sequence[Outcome], facts: dict[str, str]) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {name}: {value}" for name, value in facts.items()]
    lines += ["", "## Figures", "",
              "| scenario | database | contender | records | records/s | wall s | CPU s "
              "| peak RSS MB | process wall s | simulator CPU s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for outcome in outcomes:
        for r in outcome.rows:
            sim_cpu = "n/a" if r.simulator_cpu_seconds is None else f"{r.simulator_cpu_seconds:.2f}"
            peak = "n/a" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"
            lines.append(
                f"| {r.scenario} | {r.database} | {r.contender} | {r.records:,} "
                f"| {r.records_per_second:,.0f} | {r.sync_seconds:.2f} | {r.sync_cpu_seconds:.2f} "
                f"| {peak} | {r.process_seconds:.2f} | {sim_cpu} |"
            )
    lines += ["", "## Targets (issues 7 and 16)", "", "| target | measured | result |",
              "|---|---|---|"]
    for outcome in outcomes:
        for check in outcome.checks:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[check.passed]
            lines.append(f"| {check.target} | {check.measured} | {verdict} |")
    lines += ["", "## Simulators", ""]
    for outcome in outcomes:
        for sim in outcome.simulators:
            lines.append(
                f"- {outcome.scenario}: {sim['orders']:,} orders + {sim['customers']:,} "
                f"customers, {sim['profile']} profile, {sim['latency_seconds']:g} s latency; "
                f"ready in {sim['startup_seconds']:.1f} s"
            )
    return "\n".join(lines) + "\n"


def save(path: Path, outcomes: Sequence[Outcome], facts: dict[str, str],
         options: dict[str, Any]) -> None:
    payload = {
        "machine": facts,
        "options": options,
        "scenarios": [
            {
                "name": o.scenario,
                "simulators": o.simulators,
                "representative": [r.as_dict() for r in o.rows],
                "runs": [r.as_dict() for r in o.runs],
                "figures": o.figures,
                "checks": [{"target": c.target, "measured": c.measured, "passed": c.passed}
                           for c in o.checks],
            }
            for o in outcomes
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
