"""The benchmark's simulator, run as its own process: ``python -m benchmarks.simulator_process``.

A separate process so that the simulator never competes with a contender for the GIL: a
contender's figures then measure the contender, not a shared interpreter. The dataset is static
(no live mutation), so every contender in a scenario reads exactly the same records.

Only orders and customers get records; every other resource is empty, because the contenders
sync those two. The harness (``benchmarks/simulators.py``) waits until the port answers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from worker.simulator import RESOURCES, FaultRule, SimulatorConfig, serve


def config_from(argv: Sequence[str] | None = None) -> SimulatorConfig:
    parser = argparse.ArgumentParser(description="Serve a static Rose Rocket dataset.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every API request")
    parser.add_argument("--profile", default="extended",
                        help="extended (200 a page, keyset filters) or documented (50 a page)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--access-ttl", type=float, default=86400.0,
                        help="long by default: the baseline loaders do not refresh tokens")
    args = parser.parse_args(argv)
    sizes = dict.fromkeys(RESOURCES, 0) | {"orders": args.orders, "customers": args.customers}
    faults = (FaultRule(kind="latency", latency=args.latency),) if args.latency > 0 else ()
    return SimulatorConfig(
        host="127.0.0.1",
        port=args.port,
        records=0,
        records_by_resource=sizes,
        seed=args.seed,
        profile=args.profile,
        redirect_uri=args.redirect_uri,
        consent="approve",
        access_ttl=args.access_ttl,
        faults=faults,
    )


if __name__ == "__main__":
    serve(config_from())
