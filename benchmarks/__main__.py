"""``python -m benchmarks`` (``make bench``): run the scenarios, print markdown, save JSON.

Exits non-zero only when a run could not be measured (a contender crashed or loaded the wrong
rows); a missed target is a FAIL in the report, not an error: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks import report
from benchmarks.databases import DEFAULT_POSTGRES, KINDS
from benchmarks.measure import ContenderFailed
from benchmarks.runner import RunContext
from benchmarks.scenarios import SCENARIOS, Plan

DEFAULT_SIZES = (50_000, 20_000)
QUICK_SIZES = (2_000, 800)
RESULTS = Path(__file__).resolve().parent / "results"


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated subset of ``allowed``, as a tuple in the order given."""
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        unknown = [t for t in items if t not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}")
        return items
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="rosesync against a naive and a simple loader, side by side (issues 7, 16).")
    parser.add_argument("--orders", type=int, help=f"default {DEFAULT_SIZES[0]:,} "
                        f"({QUICK_SIZES[0]:,} with --quick)")
    parser.add_argument("--customers", type=int, help=f"default {DEFAULT_SIZES[1]:,} "
                        f"({QUICK_SIZES[1]:,} with --quick)")
    parser.add_argument("--scenarios", type=_choices(tuple(SCENARIOS)), default=tuple(SCENARIOS),
                        help="comma-separated, default: all of " + ",".join(SCENARIOS))
    parser.add_argument("--databases", type=_choices(KINDS), default=KINDS,
                        help="comma-separated, default: " + ",".join(KINDS))
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per contender; the median run is reported")
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run: small dataset, no 10x memory run")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/"
                        "<timestamp>.json)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES,
                        help="libpq URI of a database where fresh schemas may be created")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds one contender run may take before it is killed")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.orders = sizes[0] if args.orders is None else args.orders
    args.customers = sizes[1] if args.customers is None else args.customers
    if args.orders < 1 or args.customers < 0 or args.repeat < 1:
        parser.error("--orders and --repeat must be >= 1, --customers >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The harness bootstraps rosesync's credentials in-process; its INFO and key-file notices
    # are setup chatter, not results.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("worker").setLevel(logging.ERROR)
    if "postgresql" in args.databases:
        try:
            psycopg.connect(args.postgres, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            print(f"PostgreSQL at {args.postgres} is not reachable ({exc}); start it or pass "
                  "--databases sqlite", file=sys.stderr)
            return 2
    load_before = os.getloadavg()[0]  # a busy machine skews everything: say so
    plan = Plan(args.orders, args.customers, args.databases, args.repeat, args.quick)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = args.out or RESULTS / f"{stamp}.json"
    run_dir = Path(tempfile.mkdtemp(prefix=f"rosesync-bench-{stamp}-"))
    ctx = RunContext(run_dir, args.postgres, args.timeout)
    outcomes = []
    try:
        for name in args.scenarios:
            print(f"{name} ...", file=sys.stderr, flush=True)
            outcomes.append(SCENARIOS[name](ctx, plan))
    except (ContenderFailed, AssertionError, RuntimeError) as exc:  # simulator start-up too
        print(f"benchmark aborted: {exc}\n(logs kept in {run_dir})", file=sys.stderr)
        return 1
    facts = report.machine(args.databases, args.postgres)
    facts["load average (1 min) before / after"] = (
        f"{load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(report.markdown(outcomes, facts))
    options = {"orders": args.orders, "customers": args.customers, "repeat": args.repeat,
               "quick": args.quick, "scenarios": list(args.scenarios),
               "databases": list(args.databases)}
    report.save(out, outcomes, facts, options)
    print(f"saved {out}", file=sys.stderr)
    shutil.rmtree(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
