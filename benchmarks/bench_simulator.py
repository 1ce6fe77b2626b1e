"""How fast the Rose Rocket simulator serves pages, so it is never the bottleneck of a benchmark.

Starts the simulator in a separate process (as `rosesync simulator` would run), logs in through the
OAuth flow, then reads every order with limit=200 pages: once sequentially over one keep-alive
`requests.Session`, then with N threads (one session each) splitting the pages between them.

    .venv/bin/python -m benchmarks.bench_simulator [--orders 50000] [--threads 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import msgspec
import requests

from benchmarks.measure import cpu_seconds_of

PAGE = 200
CLIENT = {"client_id": "rrsync-demo", "client_secret": "rrsync-demo-secret"}
REDIRECT_URI = "http://127.0.0.1:8765/callback"


@dataclass
class Result:
    label: str
    pages: int
    records: int
    nbytes: int
    seconds: float
    server_cpu: float | None  # CPU seconds the simulator process used meanwhile

    def row(self) -> str:
        seconds = self.seconds
        cpu = "n/a" if self.server_cpu is None else f"{100 * self.server_cpu / seconds:.0f}%"
        return (f"{self.label:<28} {self.pages / seconds:>9.0f} {self.records / seconds:>11.0f}"
                f" {self.nbytes / seconds / 1e6:>8.1f} {cpu:>11}")


def start_simulator(orders: int) -> tuple[subprocess.Popen[str], str, float]:
    code = (
        "from worker.simulator import SimulatorConfig; from worker.simulator.server import serve; "
        f"serve(SimulatorConfig(port=0, records=200, records_by_resource={{'orders': {orders}}}, "
        "consent='approve', access_ttl=86400.0))"
    )
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"on (http://\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return process, match.group(1), time.perf_counter() - started


def access_token(url: str) -> str:
    authorize = requests.get(f"{url}/authorize", allow_redirects=False, timeout=30, params={
        "audience": "https://roserocket.com", "response_type": "code", "state": "bench",
        "client_id": CLIENT["client_id"], "redirect_uri": REDIRECT_URI,
        "scope": "offline_access email profile"})
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    tokens = requests.post(f"{url}/oauth/token", timeout=30, data={
        **CLIENT, "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
    token: str = tokens.json()["access_token"]
    return token


def read_pages(url: str, token: str, offsets: list[int], parse: bool) -> tuple[int, int, int]:
    """(pages, records, bytes) read from the given offsets over one keep-alive session."""
    records = nbytes = 0
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for offset in offsets:
            response = session.get(f"{url}/api/v1/orders", params={"limit": PAGE, "offset": offset},
                                   timeout=60)
            response.raise_for_status()
            nbytes += len(response.content)
            # Without parsing, count records cheaply; with it, this is what a real client pays.
            records += len(msgspec.json.decode(response.content)["orders"]) if parse \
                else response.content.count(b'"full_id":"O-')
    return len(offsets), records, nbytes


def timed(label: str, run: Callable[[], list[tuple[int, int, int]]], server_pid: int) -> Result:
    cpu_before = cpu_seconds_of(server_pid)
    started = time.perf_counter()
    parts = run()
    seconds = time.perf_counter() - started
    cpu_after = cpu_seconds_of(server_pid)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Result(label, sum(p[0] for p in parts), sum(p[1] for p in parts),
                  sum(p[2] for p in parts), seconds, server_cpu)


def threaded(url: str, token: str, offsets: list[int], threads: int,
             parse: bool) -> list[tuple[int, int, int]]:
    results: list[tuple[int, int, int]] = [(0, 0, 0)] * threads

    def work(index: int) -> None:
        results[index] = read_pages(url, token, offsets[index::threads], parse)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    process, url, startup = start_simulator(args.orders)
    try:
        token = access_token(url)
        offsets = list(range(0, args.orders, PAGE))
        scenarios: list[tuple[str, Callable[[], list[tuple[int, int, int]]]]] = [
            ("sequential, 1 session", lambda: [read_pages(url, token, offsets, False)]),
            (f"{args.threads} threads, 1 session each",
             lambda: threaded(url, token, offsets, args.threads, False)),
            ("sequential + msgspec decode", lambda: [read_pages(url, token, offsets, True)]),
        ]
        print(f"simulator: {args.orders} orders, started (process + dataset) in {startup:.1f} s; "
              f"{len(offsets)} pages of {PAGE}; best of {args.rounds}; cpus: {os.cpu_count()}")
        print(f"{'scenario':<28} {'pages/s':>9} {'records/s':>11} {'MB/s':>8} {'server CPU':>11}")
        for label, run in scenarios:
            best = max((timed(label, run, process.pid) for _ in range(args.rounds)),
                       key=lambda result: result.records / result.seconds)
            assert best.records == args.orders, best
            print(best.row())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
