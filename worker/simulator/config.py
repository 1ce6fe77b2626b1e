"""The simulator's settings: one frozen dataclass, validated on construction.

Every knob a test, the demo or a benchmark turns lives here, so a run is fully described by one
value (and reproducible from it: the same config and seed give the same dataset).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from worker.simulator.faults import FaultRule
from worker.simulator.poison import POISON_KINDS

RESOURCES: tuple[str, ...] = ("customers", "orders", "manifests", "partners", "invoices", "bills")

#: Where each resource is served, `GET /api/v1/<path>`; the list body's key is the path too.
#: Partners are carriers, at `partner_carriers` (public client code; ROSE_ROCKET_API.md).
PATHS: Mapping[str, str] = MappingProxyType(
    {name: "partner_carriers" if name == "partners" else name for name in RESOURCES}
)

#: The key a single record sits under in `GET /api/v1/<path>/<id>`.
SINGULAR: Mapping[str, str] = MappingProxyType(
    {name: path.removesuffix("s") for name, path in PATHS.items()}
)

CONSENT_MODES = ("page", "approve", "deny")

#: What the data API promises. "documented" is Rose Rocket's own v1 description (the 2018
#: swagger, confirmed by public client code from 2025): limit 20 by default and 50 at most,
#: `created_*` filters on orders only, no `updated_*` filter (ignored like any unknown
#: parameter), no sort (records come newest-created first), the v1 error envelope, and no
#: invoices endpoint. "extended" is what rosesync was first built against: `updated_*` filters,
#: `updated_at` order, 200 a page, NestJS error envelopes.
PROFILES = ("extended", "documented")
OVERSIZE_LIMITS = ("clamp", "reject")


@dataclass(frozen=True)
class SimulatorConfig:
    """How one simulator instance behaves.

    - host, port: where to listen (port 0 picks a free port; see `Simulator.url`).
    - records: records per resource; records_by_resource overrides it per resource.
    - seed: makes the dataset, fault randomness and live mutation reproducible.
    - client_id, client_secret, redirect_uri: the one registered OAuth client (the redirect
      URI is compared exactly); audience: the API identifier /authorize requires.
    - consent: "page" (HTML approve/deny form), "approve" or "deny" (answer at once).
    - access_ttl, refresh_ttl (absolute lifetime of a token family), code_ttl: seconds.
    - reuse_leeway: seconds during which a rotated refresh token is still honoured (Auth0's
      reuse interval); rotation: refresh-token rotation on or off.
    - token_rate_limit: (max requests, per seconds) on /oauth/token, else no limit.
    - faults: fault rules active from the start.
    - mutation_per_request / mutation_per_second: live data changes (see `mutation`).
    - include_total: whether list bodies carry "total"; gzip: compress when accepted.
    - idle_timeout: seconds a silent connection is kept open.
    - profile: "extended" or "documented" (see PROFILES); max_limit: the largest page (default
      200 extended, 50 documented); oversize_limit: a larger `limit` is "clamp"ed silently or
      "reject"ed with a 400 (default: rejected by extended, clamped by documented).
    - end_inclusive: `updated_end_at` includes its bound (an API's choice; issue 13).
    - by_id: whether `GET /api/v1/<path>/<id>` exists at all (without it: 404 for every id).
    - poison: resource -> kinds of poison record to plant among its records, one per kind
      (see `poison`).
    - schema_drift_after: the API changes its records' shape (issue 14, item 2) once it has
      answered this many data requests since the setting took effect (at start, or when
      changed live; 0: at once, None: never): every record served from then on, listed or by
      id, gets a new field (``api.DRIFT_FIELD``) and its ``full_id`` turns from a string into
      an object (see `api.drifted`); the stored dataset is unchanged. Live:
      `Simulator.change_api(schema_drift_after=N)` or ``POST /_admin/api
      {"schema_drift_after": N}``.
    - orgs: org_id -> seed. A token whose family was refreshed for one of these orgs reads that
      org's own dataset, built from its seed (issue 15, item 5); any other token (no org_id,
      or an org not listed) reads the default dataset built from `seed`, as before.
    - org_records: org_id -> records per resource of that org's dataset (default `records`
      and `records_by_resource`), so one org can hold many times the records of the others.
    """

    host: str = "127.0.0.1"
    port: int = 0
    records: int = 200
    records_by_resource: Mapping[str, int] = field(default_factory=dict)
    seed: int = 1
    client_id: str = "rrsync-demo"
    client_secret: str = field(default="rrsync-demo-secret", repr=False)
    redirect_uri: str = "http://127.0.0.1:8765/callback"
    audience: str = "https://roserocket.com"
    consent: str = "page"
    access_ttl: float = 3600.0
    refresh_ttl: float = 30 * 86400.0
    code_ttl: float = 60.0
    reuse_leeway: float = 0.0
    rotation: bool = True
    token_rate_limit: tuple[int, float] | None = None
    faults: tuple[FaultRule, ...] = ()
    mutation_per_request: int = 0
    mutation_per_second: float = 0.0
    include_total: bool = True
    gzip: bool = False
    # How long a connection may stay silent (mid-request or idle between keep-alive requests)
    # before the server closes it. Tests shorten it to prove that a half-sent request cannot
    # pin a server thread for long.
    idle_timeout: float = 15.0
    profile: str = "extended"
    max_limit: int | None = None
    oversize_limit: str | None = None
    end_inclusive: bool = False
    by_id: bool = True
    poison: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schema_drift_after: int | None = None
    orgs: Mapping[str, int] = field(default_factory=dict)
    org_records: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid SimulatorConfig: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append("port must be within 0..65535")
        if self.records < 0:
            problems.append("records must be >= 0")
        unknown = sorted(set(self.records_by_resource) - set(RESOURCES))
        if unknown:
            problems.append(f"records_by_resource names unknown resources {unknown}")
        if any(count < 0 for count in self.records_by_resource.values()):
            problems.append("records_by_resource counts must be >= 0")
        if self.consent not in CONSENT_MODES:
            problems.append(f"consent must be one of {CONSENT_MODES}")
        for name in ("access_ttl", "refresh_ttl", "code_ttl", "idle_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if self.reuse_leeway < 0:
            problems.append("reuse_leeway must be >= 0")
        if self.token_rate_limit is not None:
            max_requests, per_seconds = self.token_rate_limit
            if max_requests < 1 or not per_seconds > 0:
                problems.append("token_rate_limit must be (max_requests >= 1, per_seconds > 0)")
        if self.mutation_per_request < 0 or self.mutation_per_second < 0:
            problems.append("mutation rates must be >= 0")
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {PROFILES}")
        if self.oversize_limit not in (None, *OVERSIZE_LIMITS):
            problems.append(f"oversize_limit must be one of {OVERSIZE_LIMITS}")
        if self.max_limit is not None and self.max_limit < 1:
            problems.append("max_limit must be >= 1")
        for resource, kinds in self.poison.items():
            if resource not in RESOURCES:
                problems.append(f"poison names an unknown resource {resource!r}")
            elif len(kinds) > self.size_of(resource):
                problems.append(f"poison: more kinds than {resource} has records")
            if any(kind not in POISON_KINDS for kind in kinds):
                problems.append(f"poison kinds must be among {POISON_KINDS}")
        drift = self.schema_drift_after  # it may come from /_admin/api's JSON
        if drift is not None and (type(drift) is not int or drift < 0):
            problems.append("schema_drift_after must be null or an integer >= 0")
        if any(not org for org in self.orgs):
            problems.append("orgs: org ids must be non-empty")
        if sorted(set(self.org_records) - set(self.orgs)):
            problems.append("org_records names orgs that are not in orgs")
        if any(count < 0 for count in self.org_records.values()):
            problems.append("org_records counts must be >= 0")
        if not self.client_id or not self.client_secret or not self.redirect_uri:
            problems.append("client_id, client_secret and redirect_uri must be non-empty")
        return problems

    @property
    def documented(self) -> bool:
        return self.profile == "documented"

    @property
    def page_limits(self) -> tuple[int, int]:
        """(default, maximum) `limit` of a list request."""
        if self.documented:
            return 20, self.max_limit or 50
        return 50, self.max_limit or 200

    @property
    def rejects_oversize_limit(self) -> bool:
        return (self.oversize_limit or ("clamp" if self.documented else "reject")) == "reject"

    def serves(self, resource: str) -> bool:
        """Whether the API has an endpoint for ``resource`` (no public code lists invoices)."""
        return not (self.documented and resource == "invoices")

    def size_of(self, resource: str, org: str | None = None) -> int:
        """How many records `resource` starts with (in ``org``'s dataset, if given)."""
        if org is not None and org in self.org_records:
            return self.org_records[org]
        return self.records_by_resource.get(resource, self.records)
