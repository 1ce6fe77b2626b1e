"""CPU per request of rosesync's API client, A/B between source trees (issue 16).

Starts the simulator in its own process (the documented profile: 50 records a page), logs in,
then runs each tree's ``RoseRocketClient`` in a fresh process, taking turns: every child makes
``--requests`` sequential GETs of a 50-record page and reports ``time.process_time()`` per
request (its own CPU only: the simulator's is in another process).

    .venv/bin/python -m benchmarks.bench_client --tree old=/path/to/base --tree new=. [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGE = 50


def child(url: str, token: str, count: int, pages: int) -> None:
    """One tree's client: ``count`` pages (after a warm-up), CPU seconds per request."""
    from config.settings import load_settings
    from worker.source.api import RoseRocketClient
    from worker.source.resources import REGISTRY

    class Tokens:
        refreshes = 0
        org = "bench"

        def access_token(self) -> str:
            return token

        def refresh_after_401(self, rejected: str) -> str:
            raise AssertionError("the benchmark's token lives for a day")

    settings = load_settings(environ={"ROSEROCKET_API_URL": url}, dotenv_path=None)
    client = RoseRocketClient(settings, Tokens(), concurrency=1)
    orders = REGISTRY["orders"]
    for offset in range(20):  # connection, decoder, first-call caches
        client.list_page(orders, offset=offset * PAGE, limit=PAGE)
    started = time.process_time()
    for n in range(count):
        client.list_page(orders, offset=(n % pages) * PAGE, limit=PAGE)
    print(json.dumps({"cpu_per_request_ms": 1000 * (time.process_time() - started) / count}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="label=path, 2 or more")
    parser.add_argument("--pairs", type=int, default=3, help="rounds, each tree once per round")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--child", nargs=2, metavar=("URL", "TOKEN_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    pages = args.orders // PAGE
    if args.child:
        url, token_file = args.child
        child(url, Path(token_file).read_text().strip(), args.requests, pages)
        return

    from benchmarks.simulators import Dataset, access_token, running_simulator

    trees = dict(tree.split("=", 1) for tree in args.tree)
    results: dict[str, list[float]] = {label: [] for label in trees}
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_simulator(
            Dataset(orders=args.orders, customers=0, profile="documented"), Path(scratch)
        ) as sim,
    ):
        token_file = Path(scratch) / "token"
        token_file.write_text(access_token(sim))
        token_file.chmod(0o600)
        for _ in range(args.pairs):
            for label, tree in trees.items():
                done = subprocess.run(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--tree",
                        "unused=.",
                        "--requests",
                        str(args.requests),
                        "--orders",
                        str(args.orders),
                        "--child",
                        sim.url,
                        str(token_file),
                    ],
                    env={**os.environ, "PYTHONPATH": os.path.abspath(tree)},
                    cwd=scratch,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                value = json.loads(done.stdout.splitlines()[-1])["cpu_per_request_ms"]
                results[label].append(value)
                print(f"{label:<8} {value:.3f} ms CPU/request", flush=True)
    for label, values in results.items():
        print(
            f"{label:<8} median {statistics.median(values):.3f} ms "
            f"({', '.join(f'{v:.3f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
