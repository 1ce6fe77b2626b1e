"""`/_admin/...`: the Simulator's Python API over HTTP, for a simulator in another process.

Benchmarks and the demo run the simulator as a separate process and still need to read
counters, inject faults or start live mutation. Only loopback peers may use it: it can revoke
every token and dump every record.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import msgspec

from worker.simulator.config import RESOURCES
from worker.simulator.counters import Counters
from worker.simulator.data import Dataset
from worker.simulator.faults import FaultInjector, FaultRule
from worker.simulator.messages import Request, Response, api_error, json_response, parse_params
from worker.simulator.mutation import LiveMutation
from worker.simulator.oauth import AuthorizationServer

PREFIX = "/_admin/"
# Far more than any test or benchmark needs, small enough that one call cannot stall the server.
MAX_MUTATIONS_PER_CALL = 1_000_000


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class AdminEndpoints:
    def __init__(
        self,
        dataset_of: Callable[[str | None], Dataset],
        counters: Counters,
        faults: FaultInjector,
        mutation: LiveMutation,
        oauth: AuthorizationServer,
        change_api: Callable[..., None],
    ) -> None:
        self._change_api = change_api
        self._dataset_of = dataset_of
        self._counters = counters
        self._faults = faults
        self._mutation = mutation
        self._oauth = oauth

    def handle(self, request: Request) -> Response:
        if not is_loopback(request.peer):
            return api_error(403, "the admin API only answers loopback clients")
        name = request.path[len(PREFIX) :]
        method = "GET" if request.method == "HEAD" else request.method
        if name.startswith("dump/") and method == "GET":
            resource = name[len("dump/") :]
            if resource not in RESOURCES:
                return api_error(404, f"unknown resource {resource!r}")
            try:
                params, _ = parse_params(request.query)
            except ValueError:
                return api_error(400, ["query string is not valid"])
            # ?org=ID: that org's dataset (issue 15); without it the default one.
            return json_response(200, self._dataset_of(params.get("org")).dump(resource))
        if (method, name) == ("GET", "counters"):
            return json_response(200, self._counters.snapshot())
        if (method, name) == ("GET", "faults"):
            return json_response(200, [rule.to_dict() for rule in self._faults.rules()])
        if (method, name) == ("GET", "mutation"):
            return json_response(200, self._mutation.rates())
        if method == "POST" and name in (
            "reset-counters",
            "revoke",
            "faults",
            "mutate",
            "mutation",
            "api",
        ):
            try:
                return self._post(name, msgspec.json.decode(request.body) if request.body else None)
            except (msgspec.DecodeError, ValueError, TypeError) as error:
                return api_error(400, [str(error)])
        return api_error(404, f"Cannot {request.method} {request.path}")

    def _post(self, name: str, payload: Any) -> Response:
        if name == "reset-counters":
            self._counters.reset()
        elif name == "revoke":
            # {"org": ID}: only the grants refreshed for that org; no body: every grant.
            org = None if payload is None else _field(payload, "org", str)
            self._oauth.revoke_all(org)
        elif name == "faults":
            if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
                raise ValueError("expected a JSON list of fault rule objects")
            self._faults.set([FaultRule.from_dict(rule) for rule in payload])
        elif name == "mutate":
            count = _field(payload, "count", int)
            if count is None or not 0 <= count <= MAX_MUTATIONS_PER_CALL:
                raise ValueError(f"count must be an integer within 0..{MAX_MUTATIONS_PER_CALL}")
            resource = payload.get("resource")
            if resource is not None and resource not in RESOURCES:
                raise ValueError(f"resource must be one of {RESOURCES}")
            return json_response(200, self._mutation.mutate(count, resource))
        elif name == "api":  # {"schema_drift_after": true}: what Simulator.change_api changes
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object of settings to change")
            self._change_api(**payload)
        else:  # "mutation"
            per_request = _field(payload, "per_request", int)
            per_second = _field(payload, "per_second", float)
            self._mutation.set(per_request, per_second)
            return json_response(200, self._mutation.rates())
        return json_response(200, {"ok": True})


def _field(payload: Any, name: str, kind: type[int] | type[float] | type[str]) -> Any:
    """payload[name] if it has the JSON type `kind` (an int is a valid float), None if absent."""
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    value = payload.get(name)
    accepted: tuple[type, ...] = (int, float) if kind is float else (kind,)
    if value is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
        raise ValueError(f"{name} must be a {'string' if kind is str else 'number'}")
    return value
