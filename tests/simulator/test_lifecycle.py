"""Discovery, start/stop, serve() in the foreground, configuration checks."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import requests

from worker.simulator import RESOURCES, FaultRule, Simulator, SimulatorConfig

from .conftest import MakeSim
from .helpers import CLIENT_SECRET


def test_discovery_document_names_endpoints_on_the_servers_own_url(sim: Simulator) -> None:
    response = requests.get(f"{sim.url}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == f"{sim.url}/"
    assert document["authorization_endpoint"] == f"{sim.url}/authorize"
    assert document["token_endpoint"] == f"{sim.url}/oauth/token"
    assert document["revocation_endpoint"] == f"{sim.url}/oauth/revoke"
    assert document["userinfo_endpoint"] == f"{sim.url}/userinfo"
    assert document["device_authorization_endpoint"] == f"{sim.url}/oauth/device/code"
    assert document["code_challenge_methods_supported"] == ["S256", "plain"]
    assert set(document["scopes_supported"]) == {"openid", "profile", "email", "offline_access"}
    assert set(document["grant_types_supported"]) >= {"authorization_code", "refresh_token"}
    assert document["response_types_supported"] == ["code"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_post", "client_secret_basic"}


def test_url_and_port_come_from_the_bound_socket(sim: Simulator) -> None:
    assert sim.port > 0
    assert sim.url == f"http://127.0.0.1:{sim.port}"


def test_context_manager_starts_and_stops() -> None:
    with Simulator(SimulatorConfig(records=5)) as simulator:
        url = simulator.url
        assert requests.get(f"{url}/.well-known/openid-configuration", timeout=10).ok
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/.well-known/openid-configuration", timeout=10)


def test_stop_closes_open_keep_alive_connections(make_sim: MakeSim) -> None:
    simulator = make_sim()
    session = requests.Session()
    assert session.get(f"{simulator.url}/.well-known/openid-configuration", timeout=10).ok
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{simulator.url}/.well-known/openid-configuration", timeout=10)
    session.close()


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = Simulator(SimulatorConfig(records=1)).url


@pytest.mark.parametrize("overrides", [
    {"consent": "maybe"},
    {"records_by_resource": {"trucks": 5}},
    {"records": -1},
    {"access_ttl": 0},
    {"token_rate_limit": (0, 1.0)},
    {"port": 70000},
    {"client_secret": ""},
    {"poison": {"trucks": ("nul",)}},
    {"poison": {"orders": ("arsenic",)}},
    {"records": 1, "poison": {"orders": ("nul", "yesterday")}},
])
def test_invalid_configuration_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid SimulatorConfig"):
        SimulatorConfig(**overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rule", "problem"), [
    ({"kind": "explode"}, "kind"), ({"kind": "status", "status": 200}, "status"),
    ({"kind": "drop", "rate": 1.5}, "rate"), ({"kind": "drop", "every": -1}, "every"),
    ({"kind": "drop", "path_prefix": "api"}, "path_prefix"),
])
def test_invalid_fault_rules_are_refused(rule: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FaultRule(**rule)  # type: ignore[arg-type]


def test_records_by_resource_overrides_records(make_sim: MakeSim) -> None:
    simulator = make_sim(records=7, records_by_resource={"orders": 23, "bills": 0})
    sizes = {name: len(simulator.dump(name)) for name in RESOURCES}
    assert sizes == {"customers": 7, "orders": 23, "manifests": 7, "partners": 7,
                     "invoices": 7, "bills": 0}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_and_exits_cleanly_on_signal(stop_signal: int) -> None:
    code = (
        "from worker.simulator import SimulatorConfig; from worker.simulator.server import serve; "
        "serve(SimulatorConfig(port=0, records=5))"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"Rose Rocket simulator on (http://127\.0\.0\.1:\d+) "
                             r"\(client_id rrsync-demo, redirect_uri (\S+)\)\n", line)
        assert match, line
        assert match.group(2) == "http://127.0.0.1:8765/callback"
        url = match.group(1)
        assert requests.get(f"{url}/.well-known/openid-configuration", timeout=10).ok
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert CLIENT_SECRET not in line + stdout + stderr
    assert "Traceback" not in stderr
