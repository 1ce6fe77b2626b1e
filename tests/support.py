"""Test support shared across modules: a "world" (the Rose Rocket simulator, rosesync settings
pointed at it, a warehouse, a bootstrapped credential) and the warehouse-equals-source check.

A module rather than conftest.py so that subprocess helpers can import it by name."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config.settings import Settings, load_settings
from worker.clock import parse_timestamp
from worker.credentials.bootstrap import bootstrap
from worker.credentials.store import CredentialStore
from worker.simulator import Simulator, SimulatorConfig
from worker.simulator.browser import visit_soon
from worker.source.resources import REGISTRY, Child, Column
from worker.warehouse import connect
from worker.warehouse.schema import child_tables, resource_tables


def free_port() -> int:
    """A port to listen on later. Below Linux's ephemeral range (32768 and up), where the
    kernel's own picks for outgoing connections would otherwise take it in the meantime.

    The port is free now, not when it is bound: under pytest-xdist each worker process draws
    from a slice of the range of its own, so that two workers never pick the same port and race
    to bind it (the bind check below only sees ports already bound)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    span = 12_000 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    low = 20_000 + worker * span
    while True:
        port = random.randint(low, low + span - 1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class World:
    sim: Simulator
    settings: Settings
    env: dict[str, str]
    engine: Engine
    store: CredentialStore
    stores: dict[str, CredentialStore] = field(default_factory=dict)  # per extra org

    def dump(self, resource: str, org: str | None = None) -> list[dict[str, Any]]:
        return self.sim.dump(resource, org)


def world_env(sim: Simulator, database_url: str, tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment that points rosesync at ``sim`` (for load_settings and subprocesses)."""
    base = {
        "ROSEROCKET_CLIENT_ID": sim.config.client_id,
        "ROSEROCKET_CLIENT_SECRET": sim.config.client_secret,
        "ROSEROCKET_REDIRECT_URI": sim.config.redirect_uri,
        "ROSEROCKET_AUTH_URL": sim.url,
        "ROSEROCKET_API_URL": sim.url,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "TOKEN_KEY_FILE": str(tmp_path / "rrsync.key"),
        "SYNC_LOOKBACK_SECONDS": "60",
        "SYNC_CLOCK_SKEW_SECONDS": "5",
        "HTTP_TIMEOUT_SECONDS": "10",
        "HTTP_MAX_ATTEMPTS": "8",
        "RETRY_AFTER_CAP_SECONDS": "2",
        "HTTP_BACKOFF_SECONDS": "0.05",
    }
    base.update(env)
    return base


@contextmanager
def make_world(
    database_url: str,
    tmp_path: Path,
    sim_config: SimulatorConfig | None = None,
    orgs: tuple[str, ...] = (),
    **env: str,
) -> Iterator[World]:
    """A simulator, settings pointed at it, a warehouse and the settings' credential; and one
    more credential per org of ``orgs`` (issue 15), each bootstrapped as `bootstrap --org`."""
    config = replace(
        sim_config or SimulatorConfig(records=300),
        consent="approve",
        redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )
    with Simulator(config) as sim:
        variables = world_env(sim, database_url, tmp_path, **env)
        settings = load_settings(environ=variables, dotenv_path=None)
        engine = connect(settings.database_url)
        bootstrap(settings, engine, announce=visit_soon, timeout=60)
        stores = {}
        for org in orgs:
            bootstrap(settings, engine, announce=visit_soon, org=org, timeout=60)
            stores[org] = CredentialStore(settings, engine, org=org)
        try:
            yield World(
                sim, settings, variables, engine, CredentialStore(settings, engine), stores
            )
        finally:
            engine.dispose()  # each writer keeps a pooled connection; a soak run makes hundreds


def warehouse_rows(
    engine: Engine, resource: str, org: str = "default"
) -> dict[str, dict[str, Any]]:
    """One org's rows of ``resource``, by id."""
    table = resource_tables[resource]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.org == org)).mappings().all()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = dict(row)
        if isinstance(item["data"], str):  # SQLite returns JSON as text through raw writes
            item["data"] = json.loads(item["data"])
        out[item["id"]] = item
    return out


def assert_matches_source(world: World, resource: str, org: str | None = None) -> None:
    """The warehouse's live rows equal the simulator's dump: ids, data and updated_at; every
    row marked deleted is really gone at the source. ``org``: that org's rows and dataset."""
    source = {r["id"]: r for r in world.dump(resource, org)}
    org = org or world.settings.credential_name
    rows = warehouse_rows(world.engine, resource, org)
    live = {k: v for k, v in rows.items() if v["deleted_at"] is None}
    missing = sorted(set(source) - set(live))
    extra = sorted(set(live) - set(source))
    assert not missing and not extra, (
        f"{resource}: {len(missing)} missing, {len(extra)} extra "
        f"(source {len(source)}, warehouse {len(live)} live of {len(rows)})"
    )
    for record_id, record in source.items():
        row = live[record_id]
        assert row["data"] == record, f"{resource} {record_id}: data differs"
        assert row["updated_at"] == parse_timestamp(record["updated_at"])
    resurrected = [k for k, v in rows.items() if v["deleted_at"] is not None and k in source]
    assert not resurrected, f"{resource}: rows marked deleted that exist: {resurrected[:3]}"
    assert_children_match(world.engine, resource, org, rows)


def _expected_value(column: Column, element: Any) -> Any:
    """What a child table's typed column holds for ``element``: the parent's rules
    (worker/warehouse/rows.py), restated here in plain Python to check the loader's."""
    value: Any = element
    for key in column.path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    kind = type(value)
    if column.type == "text":
        return value if kind is str else json.dumps(value) if kind in (int, float, bool) else None
    if column.type == "boolean":
        return value if kind is bool else None
    if column.type == "integer":
        try:
            number = int(value) if kind in (int, str) else None
        except ValueError:
            return None
        return number if number is not None and -(2**63) <= number < 2**63 else None
    if column.type == "numeric":
        if kind not in (int, float, str):
            return None
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            return None
        if not amount.is_finite() or abs(amount) >= 10**14:
            return None
        return float(amount.quantize(Decimal("0.0001"), ROUND_HALF_UP))
    try:
        return parse_timestamp(value) if kind is str else None
    except ValueError:  # February 30th, "yesterday"
        return None


def _expected_children(child: Child, rows: dict[str, dict[str, Any]]) -> dict[Any, Any]:
    expected: dict[Any, Any] = {}
    for record_id, row in rows.items():
        items: Any = row["data"]
        for key in child.path.split("."):
            items = items.get(key) if isinstance(items, dict) else None
        for position, element in enumerate(items if isinstance(items, list) else []):
            typed = tuple(_expected_value(column, element) for column in child.columns)
            expected[(record_id, position)] = (typed, element)
    return expected


def assert_children_match(
    engine: Engine, resource: str, org: str, rows: dict[str, dict[str, Any]] | None = None
) -> None:
    """Every child table of ``resource`` holds exactly the elements of the org's stored
    parents' lists (live and soft-deleted parents alike): no element missing, doubled, stale or
    orphaned, and typed columns as the parent's JSON says (issue 14)."""
    rows = warehouse_rows(engine, resource, org) if rows is None else rows
    for child, table in child_tables[resource]:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(table).where(table.c.parent_org == org))
            stored = stored.mappings().all()
        actual: dict[Any, Any] = {}
        for item in stored:
            typed = tuple(
                float(item[c.name])
                if c.type == "numeric" and item[c.name] is not None
                else item[c.name]
                for c in child.columns
            )
            actual[(item["parent_id"], item["position"])] = (typed, item["data"])
        expected = _expected_children(child, rows)
        name = REGISTRY[resource].child_table(child)
        assert len(actual) == len(stored), f"{name}: a (parent, position) twice"
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        assert not missing and not extra, (
            f"{name}: {len(missing)} missing (first {missing[:1]}), {len(extra)} extra "
            f"(first {extra[:1]}) of {len(expected)}"
        )
        wrong = [key for key, value in expected.items() if actual[key] != value]
        assert not wrong, f"{name} {wrong[0]}: {actual[wrong[0]]} != {expected[wrong[0]]}"


class Webhook:
    """A loopback HTTP endpoint that records every JSON POST: where alerts are sent in tests
    (apprise's ``json://`` target posts ``{"title", "message", "type", ...}``)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with hook._lock:
                    hook.received.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The apprise URL that posts here."""
        return f"json://127.0.0.1:{self._server.server_address[1]}/alerts"

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def inserts_run(engine: Engine, table: str) -> list[tuple[int, int]]:
    """From now on, the INSERTs into ``table`` that reach the driver through SQLAlchemy: (rows
    the statement holds, rows it runs for) each, one row run for many being ``executemany``."""
    seen: list[tuple[int, int]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if statement.startswith(f"INSERT INTO {table} "):
            holds = statement.count("(?")
            seen.append((holds, len(parameters) if many else holds))

    return seen
