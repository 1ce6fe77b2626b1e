"""Fixtures: simulators started on a free loopback port, and clients for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.simulator import Simulator, SimulatorConfig

from .helpers import OAuthClient

# Small datasets keep each simulator's start-up in the milliseconds.
DEFAULTS: dict[str, Any] = {"records": 40, "consent": "approve", "idle_timeout": 2.0}

MakeSim = Callable[..., Simulator]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    """Start a simulator with DEFAULTS overridden by keyword arguments; stopped at teardown."""
    started: list[Simulator] = []

    def factory(**overrides: Any) -> Simulator:
        simulator = Simulator(SimulatorConfig(**{**DEFAULTS, **overrides})).start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        simulator.stop()


@pytest.fixture
def sim(make_sim: MakeSim) -> Simulator:
    return make_sim()


@pytest.fixture
def make_client() -> Iterator[Callable[[Simulator], OAuthClient]]:
    clients: list[OAuthClient] = []

    def factory(simulator: Simulator) -> OAuthClient:
        client = OAuthClient(simulator.url)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def client(sim: Simulator, make_client: Callable[[Simulator], OAuthClient]) -> OAuthClient:
    return make_client(sim)


@pytest.fixture
def tokens(client: OAuthClient) -> dict[str, Any]:
    """A fresh access + refresh token pair from the authorization-code flow."""
    return client.login()
