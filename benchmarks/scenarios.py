"""The three scenarios of issue 7 and the targets each one checks.

- ``throughput``: a static dataset without latency; naive, simple and rosesync side by side on
  each database, so every ratio comes from one simulator, one machine state, one run.
- ``latency``: the simulator adds 100 ms to every API request; orders only. rosesync's wall time
  against ``1.5 x pages x 0.1 s / SYNC_CONCURRENCY``; simple alongside for reference.
- ``memory``: rosesync's peak RSS at the default size and at 10x, on SQLite.

With ``repeat`` > 1 the contenders take turns (so drift hits them all alike) and the run with
the median records/s stands for each contender; every run is kept in the JSON output.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.databases import BASELINE_KINDS
from benchmarks.runner import CONTENDERS, Row, RunContext, run_contender
from benchmarks.simulators import Dataset, RunningSimulator, running_simulator
from config.settings import Settings

RESOURCES = ("orders", "customers")
LATENCY_SECONDS = 0.1
MIN_SPEEDUP_OVER_SIMPLE = 1.5
MIN_SPEEDUP_OVER_NAIVE = 10.0
MAX_PEAK_RSS_MB = 150.0
MAX_RSS_GROWTH = 0.10  # between the default size and 10x
MEMORY_FACTOR = 10


@dataclass(frozen=True, slots=True)
class Plan:
    orders: int
    customers: int
    databases: tuple[str, ...]
    repeat: int
    quick: bool  # a smoke run: the caller shrinks the sizes, and the 10x memory run is skipped


@dataclass(frozen=True, slots=True)
class Check:
    """One target of the issue and how this run did against it (None: not measured)."""

    target: str
    measured: str
    passed: bool | None


@dataclass
class Outcome:
    scenario: str
    rows: list[Row] = field(default_factory=list)  # one representative run per contender
    runs: list[Row] = field(default_factory=list)  # every run
    checks: list[Check] = field(default_factory=list)
    simulators: list[dict[str, Any]] = field(default_factory=list)  # dataset, start-up time

    def started(self, sim: RunningSimulator) -> None:
        d = sim.dataset
        self.simulators.append({"orders": d.orders, "customers": d.customers,
                                "latency_seconds": d.latency,
                                "startup_seconds": round(sim.startup_seconds, 2)})

    def measure(self, runs: Sequence[Row]) -> dict[str, Row]:
        """Keep every run; return the median run (by records/s) of each contender."""
        self.runs.extend(runs)
        chosen: dict[str, Row] = {}
        for contender in sorted({r.contender for r in runs}, key=CONTENDERS.index):
            mine = sorted((r for r in runs if r.contender == contender),
                          key=lambda r: r.records_per_second)
            chosen[contender] = mine[(len(mine) - 1) // 2]
        self.rows.extend(chosen.values())
        return chosen


def _turns(ctx: RunContext, plan: Plan, scenario: str, sim: RunningSimulator, kind: str,
           contenders: Sequence[str], resources: tuple[str, ...]) -> list[Row]:
    rows = []
    for _ in range(plan.repeat):
        for contender in contenders:
            row = run_contender(ctx, scenario, contender, sim, kind, resources)
            print(f"  {scenario} / {kind} / {contender}: {row.records:,} records in "
                  f"{row.sync_seconds:.2f} s ({row.records_per_second:,.0f}/s), "
                  f"peak RSS {row.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def _ratio_check(what: str, rosesync: Row, other: Row, minimum: float) -> Check:
    ratio = rosesync.records_per_second / other.records_per_second
    return Check(f"{what}: rosesync >= {minimum:g}x {other.contender} records/s",
                 f"{ratio:.2f}x", ratio >= minimum)


def throughput(ctx: RunContext, plan: Plan) -> Outcome:
    outcome = Outcome("throughput")
    with running_simulator(Dataset(plan.orders, plan.customers), ctx.run_dir) as sim:
        outcome.started(sim)
        # rosesync first: if it fails, we learn it before the slow naive runs.
        order = ("rosesync", *(c for c in CONTENDERS if c != "rosesync"))
        for kind in plan.databases:
            if kind not in BASELINE_KINDS:  # DuckDB: rosesync's figure, beside the others'
                outcome.measure(_turns(ctx, plan, "throughput", sim, kind, order[:1], RESOURCES))
                continue
            best = outcome.measure(_turns(ctx, plan, "throughput", sim, kind, order, RESOURCES))
            outcome.checks += [
                _ratio_check(kind, best["rosesync"], best["simple"], MIN_SPEEDUP_OVER_SIMPLE),
                _ratio_check(kind, best["rosesync"], best["naive"], MIN_SPEEDUP_OVER_NAIVE),
            ]
    return outcome


def latency(ctx: RunContext, plan: Plan) -> Outcome:
    outcome = Outcome("latency")
    dataset = Dataset(plan.orders, 0, latency=LATENCY_SECONDS)
    concurrency = Settings().sync_concurrency  # rosesync's default, which the contender runs with
    pages = dataset.pages("orders")
    target = 1.5 * pages * LATENCY_SECONDS / concurrency
    with running_simulator(dataset, ctx.run_dir) as sim:
        outcome.started(sim)
        best = outcome.measure(
            _turns(ctx, plan, "latency", sim, "sqlite", ("rosesync", "simple"), ("orders",))
        )
    wall = best["rosesync"].sync_seconds
    outcome.checks.append(Check(
        f"latency: rosesync wall <= 1.5 x {pages} pages x {LATENCY_SECONDS:g} s / {concurrency}"
        f" = {target:.2f} s",
        f"{wall:.2f} s ({best['rosesync'].api_requests} requests)",
        wall <= target,
    ))
    return outcome


def memory(ctx: RunContext, plan: Plan) -> Outcome:
    outcome = Outcome("memory")
    factors = (1,) if plan.quick else (1, MEMORY_FACTOR)
    peaks: dict[int, float] = {}
    for factor in factors:
        dataset = Dataset(plan.orders * factor, plan.customers * factor)
        with running_simulator(dataset, ctx.run_dir) as sim:
            outcome.started(sim)
            runs = _turns(ctx, plan, f"memory x{factor}", sim, "sqlite", ("rosesync",), RESOURCES)
            row = outcome.measure(runs)["rosesync"]
        peaks[factor] = row.peak_rss_mb
        outcome.checks.append(Check(
            f"memory: rosesync peak RSS < {MAX_PEAK_RSS_MB:g} MB at {row.records:,} records",
            f"{row.peak_rss_mb:.0f} MB", row.peak_rss_mb < MAX_PEAK_RSS_MB))
    growth_target = (f"memory: peak RSS within {MAX_RSS_GROWTH:.0%} between 1x and "
                     f"{MEMORY_FACTOR}x the records")
    if MEMORY_FACTOR in peaks:
        growth = peaks[MEMORY_FACTOR] / peaks[1] - 1
        outcome.checks.append(Check(growth_target, f"{growth:+.1%}",
                                    math.fabs(growth) <= MAX_RSS_GROWTH))
    else:
        outcome.checks.append(Check(growth_target, "skipped (--quick)", None))
    return outcome


SCENARIOS: dict[str, Callable[[RunContext, Plan], Outcome]] = {
    "throughput": throughput,
    "latency": latency,
    "memory": memory,
}
