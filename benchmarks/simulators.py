"""The harness's side of the simulator: start it in its own process, wait for it, log in, stop it.

One simulator per scenario dataset, shared by every contender of the scenario: the dataset is
static, so they all read the very same records, and its start-up (building 700,000 records takes
a while) is paid once.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from worker.simulator import SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 200  # the v1 API's maximum, and what every contender asks for
DOCUMENTED_PAGE_SIZE = 50  # the documented profile's maximum (issue 16)
_CLIENT = SimulatorConfig()  # the simulator's one registered client: its defaults


@dataclass(frozen=True, slots=True)
class Dataset:
    """What a scenario's simulator serves."""

    orders: int
    customers: int
    latency: float = 0.0  # seconds added to every API request
    profile: str = "extended"  # the simulator's API profile (worker/simulator/config.py)

    @property
    def page_size(self) -> int:
        return DOCUMENTED_PAGE_SIZE if self.profile == "documented" else PAGE_SIZE

    def count(self, resource: str) -> int:
        return {"orders": self.orders, "customers": self.customers}[resource]

    def pages(self, resource: str) -> int:
        return math.ceil(self.count(resource) / self.page_size)

    @property
    def total(self) -> int:
        return self.orders + self.customers


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    url: str
    redirect_uri: str  # registered with the simulator; rosesync's bootstrap listens on it
    pid: int
    dataset: Dataset
    startup_seconds: float  # process start to the port answering: mostly building the dataset

    @property
    def client_id(self) -> str:
        return _CLIENT.client_id

    @property
    def client_secret(self) -> str:
        return _CLIENT.client_secret


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_simulator(
    dataset: Dataset, log_dir: Path, timeout: float = 900.0
) -> Iterator[RunningSimulator]:
    """A simulator process serving ``dataset``, stopped on the way out."""
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    argv = [
        sys.executable, "-m", "benchmarks.simulator_process", "--port", str(port),
        "--orders", str(dataset.orders), "--customers", str(dataset.customers),
        "--latency", str(dataset.latency), "--redirect-uri", redirect_uri,
        "--profile", dataset.profile,
    ]
    label = (f"simulator-{dataset.profile}-{dataset.orders}-{dataset.customers}-"
             f"{dataset.latency:g}")
    with (log_dir / f"{label}.log").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(process, port, timeout)
            yield RunningSimulator(
                url=f"http://127.0.0.1:{port}",
                redirect_uri=redirect_uri,
                pid=process.pid,
                dataset=dataset,
                startup_seconds=time.perf_counter() - started,
            )
        finally:
            process.terminate()  # serve() stops cleanly on SIGTERM
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with code {process.returncode} at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the simulator did not answer on port {port} within {timeout:g} s")


def counters(sim: RunningSimulator, reset: bool = False) -> dict[str, Any]:
    """The simulator's counters (worker/simulator/counters.py); ``reset``: zero them instead."""
    if reset:
        requests.post(f"{sim.url}/_admin/reset-counters", timeout=30).raise_for_status()
        return {}
    answer = requests.get(f"{sim.url}/_admin/counters", timeout=30)
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def mutate(sim: RunningSimulator, count: int, resource: str) -> None:
    """Change ``count`` records of ``resource`` at the source (updates, inserts and deletes,
    worker/simulator/mutation.py), as the business does between two syncs."""
    answer = requests.post(f"{sim.url}/_admin/mutate",
                           json={"count": count, "resource": resource}, timeout=60)
    answer.raise_for_status()


def access_token(sim: RunningSimulator) -> str:
    """An access token for the baseline loaders: the authorization code flow with the
    simulator's auto-consent (the redirect is read, not followed: nobody listens there)."""
    authorize = requests.get(
        f"{sim.url}/authorize",
        allow_redirects=False,
        timeout=30,
        params={
            "audience": _CLIENT.audience,
            "response_type": "code",
            "state": "benchmark",
            "client_id": sim.client_id,
            "redirect_uri": sim.redirect_uri,
            "scope": "offline_access email profile",
        },
    )
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    tokens = requests.post(
        f"{sim.url}/oauth/token",
        timeout=30,
        data={
            "grant_type": "authorization_code",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "code": code,
            "redirect_uri": sim.redirect_uri,
        },
    )
    tokens.raise_for_status()
    token: str = tokens.json()["access_token"]
    return token
