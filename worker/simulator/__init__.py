"""A faithful stand-in for Rose Rocket: Auth0-like OAuth server + v1 data API, on one port.

We cannot reach the real service, so every test, the demo and every benchmark runs against this.
It imports nothing from the rest of the project (the worker must work against the real thing
unchanged), and it misbehaves on request: faults (`FaultRule`), live data changes while a client
pages (`mutation_per_request` / `mutation_per_second`), token expiry, rotation and reuse detection.

    from worker.simulator import Simulator, SimulatorConfig, FaultRule

    with Simulator(SimulatorConfig(records=500, consent="approve")) as sim:
        ...  # sim.url is the base URL of both the authorization server and the API

Module map: `config` (settings), `records` (what seeded records look like), `data` (the live
dataset), `oauth` (authorization-server state), `oauth_endpoints` (its HTTP endpoints), `api` (the
data API), `faults`, `mutation`, `counters`, `admin` (`/_admin/...`), `app` (routing), `server`
(HTTP transport, `Simulator`, `serve`).
"""

from worker.simulator.config import PATHS, RESOURCES, SINGULAR, SimulatorConfig
from worker.simulator.faults import FaultRule
from worker.simulator.server import Simulator, serve

__all__ = ["PATHS", "RESOURCES", "SINGULAR", "FaultRule", "Simulator", "SimulatorConfig", "serve"]
