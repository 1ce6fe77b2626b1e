"""The simulator as one request -> response function: routing, fault injection and counting.

`App` owns every component (dataset, authorization server, faults, live mutation, counters) and
knows nothing of sockets; `server` feeds it parsed requests and writes its responses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

from worker.simulator import api
from worker.simulator.admin import PREFIX as ADMIN_PREFIX
from worker.simulator.admin import AdminEndpoints
from worker.simulator.config import RESOURCES, SimulatorConfig
from worker.simulator.counters import Counters
from worker.simulator.data import Dataset
from worker.simulator.faults import FaultInjector, FaultRule
from worker.simulator.messages import (
    Request,
    Response,
    api_error,
    bearer_token,
    reason,
    unauthorized,
    v1_error,
)
from worker.simulator.mutation import LiveMutation
from worker.simulator.oauth import AuthorizationServer
from worker.simulator.oauth_endpoints import OAuthEndpoints

Handler = Callable[[Request], Response]

# Methods counted by name; anything else a client invents is counted as "OTHER", so junk input
# cannot grow the counters without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"

# What the "malformed" fault sends with a 200: a proxy's error page where JSON was expected.
MALFORMED_BODY = b"<html><body><h1>Service temporarily unavailable</h1></body></html>\n"


# What `change_api` (and `POST /_admin/api`) may change while the simulator runs.
LIVE_API_CHANGES = frozenset(
    {
        "profile",
        "end_inclusive",
        "by_id",
        "max_limit",
        "oversize_limit",
        "include_total",
        "schema_drift_after",
    }
)


class App:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.counters = Counters()
        sizes = {name: config.size_of(name) for name in RESOURCES}
        self.dataset = Dataset(sizes, config.seed, poison=config.poison)
        # One dataset per configured org, each from its own seed (issue 15, item 5).
        self.org_datasets = {
            org: Dataset({name: config.size_of(name, org) for name in RESOURCES}, seed)
            for org, seed in config.orgs.items()
        }
        self.oauth = AuthorizationServer(config, self.counters)
        self.faults = FaultInjector(config.faults, config.seed)
        self.mutation = LiveMutation(
            self.dataset, self.counters, config.mutation_per_request, config.mutation_per_second
        )
        self._api = api.DataApi(config, self.dataset_of, self.oauth, self.mutation.after_read)
        self._admin = AdminEndpoints(
            self.dataset_of, self.counters, self.faults, self.mutation, self.oauth, self.change_api
        )
        endpoints = OAuthEndpoints(config, self.oauth, self.counters)
        # path -> (the one method it takes, handler); GET routes also answer HEAD.
        self._fixed: dict[str, tuple[str, Handler]] = {
            "/.well-known/openid-configuration": ("GET", endpoints.discovery),
            "/authorize": ("GET", endpoints.authorize),
            "/authorize/decision": ("POST", endpoints.decision),
            "/oauth/token": ("POST", endpoints.token),
            "/oauth/revoke": ("POST", endpoints.revoke),
            "/oauth/device/code": ("POST", endpoints.device_code),
            "/userinfo": ("GET", endpoints.userinfo),
        }

    def dataset_of(self, org_id: str | None) -> Dataset:
        """The dataset a token refreshed for ``org_id`` reads: the org's own if it is configured,
        else the default one (a token without an org, or a single-org simulator)."""
        return self.org_datasets.get(org_id or "", self.dataset)

    def change_api(self, **changes: Any) -> None:
        """Change how the data API behaves from now on (its profile, bounds, page limits, by-id
        route, the records' shape), as a real API changes under a deployed client; checked
        like the configuration it changes (a ValueError)."""
        unknown = sorted(set(changes) - LIVE_API_CHANGES)
        if unknown:
            raise ValueError(f"change_api cannot change {unknown}; only {sorted(LIVE_API_CHANGES)}")
        self.config = dataclasses.replace(self.config, **changes)
        self._api.config = self.config
        if "schema_drift_after" in changes:
            self._api.count_drift_from_now()

    def handle(self, request: Request) -> Response | None:
        """The response to `request`, or None when a fault says to drop the connection."""
        path = request.path
        if path.startswith(ADMIN_PREFIX):
            # The control plane: never faulted, never counted, so tests can always reach it.
            return self._admin.handle(request)
        if path.startswith("/api/"):
            self.counters.api_request(time.time())
            self._count_caller(request)
        elif path == "/oauth/token" and request.method == "POST":
            self.counters.add("token_requests")
        template, handler = self._resolve(request)
        method = request.method if request.method in KNOWN_METHODS else "OTHER"

        decision = self.faults.decide(path)
        for kind in decision.fired:
            self.counters.add_to("faults_fired", kind)
        if decision.latency:
            time.sleep(decision.latency)
        rule = decision.rule
        if rule is not None and rule.kind == "drop":
            self.counters.add_to("requests", f"{method} {template} dropped")
            return None
        if rule is not None and rule.kind != "truncate":
            response = _fault_response(rule, request)
        else:
            response = handler(request)
            if rule is not None:
                # Cut the JSON in half; Content-Length will match the cut body, so the client
                # gets a complete HTTP message whose JSON is broken.
                half = response.body[: len(response.body) // 2]
                response = dataclasses.replace(response, body=half)
        self.counters.add_to("requests", f"{method} {template} {response.status}")
        if self.config.documented and path.startswith("/api/") and response.status >= 400:
            response = v1_error(response)
        return response

    def _count_caller(self, request: Request) -> None:
        """Per-second counts by the token's client and org, whatever the answer (a 401 or a
        faulted 429 still counts against a real API's rate limit)."""
        token = bearer_token(request)
        caller = None if token is None else self.oauth.issued_to(token)
        if caller is not None:
            self.counters.add_request(*caller, int(time.time()))

    def _resolve(self, request: Request) -> tuple[str, Handler]:
        """(route template for the counters, handler) for the request's path and method."""
        path = request.path
        fixed = self._fixed.get(path)
        handler: Handler
        if fixed is not None:
            template, (allowed, handler) = path, fixed
        else:
            route = self._api.route_of(path)
            if route is None:
                return UNMATCHED, _not_found
            template, allowed = api.template_of(route), "GET"
            handler = functools.partial(self._api.handle, route=route)
        if request.method == allowed or (allowed == "GET" and request.method == "HEAD"):
            return template, handler
        allow = "GET, HEAD" if allowed == "GET" else allowed
        return template, lambda _req: api_error(405, "Method Not Allowed", (("Allow", allow),))


def _not_found(request: Request) -> Response:
    # NestJS's wording for an unknown route.
    return api_error(404, f"Cannot {request.method} {request.path}")


def _fault_response(rule: FaultRule, request: Request) -> Response:
    if rule.kind == "status":
        headers: tuple[tuple[str, str], ...] = ()
        if rule.status in (429, 503):
            # Retry-After is whole seconds (RFC 9110 section 10.2.3), rounded up so that a
            # client honouring it never comes back early.
            headers = (("Retry-After", str(math.ceil(rule.retry_after))),)
        return api_error(rule.status, reason(rule.status), headers)
    if rule.kind == "echo":
        header = request.header("Authorization") or "(none)"
        return api_error(400, f"Invalid request: header was {header}")
    if rule.kind == "unauthorized":
        # Exactly what an expired token gets; nothing is revoked.
        return unauthorized(request, "the access token expired")
    return Response(200, MALFORMED_BODY)  # "malformed"
