"""Fixtures for the credentials tests: a scriptable stub authorization server (the protocol's
edge cases), and a "world": the Rose Rocket simulator with rosesync pointed at it, on SQLite and
on PostgreSQL, whose logs are checked for secrets after every test."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest
import tenacity
from sqlalchemy.engine import Engine

import worker.logs
from config.settings import Settings, load_settings
from tests.support import free_port
from tests.worker.credentials.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    Stub,
    leaked,
    visit,
)
from worker.credentials import oauth
from worker.credentials.bootstrap import bootstrap
from worker.credentials.cipher import load_cipher
from worker.credentials.store import CredentialStatus, CredentialStore
from worker.errors import ConfigError
from worker.simulator import Simulator, SimulatorConfig
from worker.warehouse import credentials as rows


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(body).items()}
            state.received.append((self.command, path, form))
            queue = state.answers.get(path) or [(404, "not found", {})]
            status, payload, headers = queue.pop(0) if len(queue) > 1 else queue[0]
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _forget_discovery() -> Iterator[None]:
    """Each test's server lives on a new port, but be sure no test sees another's endpoints."""
    oauth._discovered.clear()
    yield
    oauth._discovered.clear()


@pytest.fixture
def client_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with the demo client, pointed at ``url`` for both auth and API."""

    def build(url: str, **env: str) -> Settings:
        base = {
            "ROSEROCKET_CLIENT_ID": CLIENT_ID,
            "ROSEROCKET_CLIENT_SECRET": CLIENT_SECRET,
            "ROSEROCKET_AUTH_URL": url,
            "ROSEROCKET_API_URL": url,
            "HTTP_MAX_ATTEMPTS": "3",
            "HTTP_TIMEOUT_SECONDS": "30",
        }
        base.update(env)
        return make_settings(**base)

    return build


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The process's engine for a fresh database (SQLite and PostgreSQL), schema in place."""
    from worker.warehouse import connect

    current = connect(database_url)
    yield current
    current.dispose()


@dataclass
class World:
    """A running simulator, the environment that points rosesync at it, and rosesync's pieces."""

    sim: Simulator
    env: dict[str, str]  # exactly what a child process or the CLI gets
    settings: Settings
    engine: Engine
    # Checked for secrets at the end, like the logs: what the CLI printed, and secrets the test
    # process never registered (a code that only a child process saw, say).
    outputs: list[str] = field(default_factory=list)
    extra_secrets: list[str] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        return self.env["ROSEROCKET_REDIRECT_URI"]

    def with_env(self, **env: str) -> World:
        merged = {**self.env, **env}
        settings = load_settings(environ=merged, dotenv_path=None)
        return World(self.sim, merged, settings, self.engine, self.outputs, self.extra_secrets)

    def store(self, org: str | None = None) -> CredentialStore:
        return CredentialStore(self.settings, self.engine, org=org)

    def grants(self) -> dict[str, int]:
        return dict(self.sim.counters()["grants"])

    def token_posts(self) -> int:
        """POSTs to /oauth/token, whatever their answer (faults included)."""
        return sum(
            n
            for key, n in self.sim.counters()["requests"].items()
            if key.startswith("POST /oauth/")
        )

    def stored_tokens(self, org: str = "default") -> tuple[str, str]:
        """(access, refresh) as stored, decrypted with the deployment's key."""
        row = rows.read(self.engine, org)
        assert row is not None
        cipher = load_cipher(self.settings)
        return cipher.decrypt(row.access_token, org), cipher.decrypt(row.refresh_token, org)

    def secrets(self) -> list[str]:
        """Every secret this world knows of: the client secret, the key, the stored tokens,
        and everything rosesync registered for redaction (codes, verifiers, older tokens)."""
        known = [CLIENT_SECRET, *self.extra_secrets, *worker.logs.registered_secrets()]
        if self.settings.token_key_file.exists():
            known.append(self.settings.token_key_file.read_text().strip())
        for row in rows.read_all(self.engine):
            with contextlib.suppress(ConfigError):  # a test that changed keys: registered anyway
                known.extend(self.stored_tokens(row.org))
        return [value for value in known if len(value) >= 6]


class Browser:
    """Stands in for the person's browser: visits what rosesync announces, in the background."""

    def __init__(self, *before: str) -> None:
        self.before = before  # URLs visited first (a forged callback, say)
        self.results: list[tuple[int, str, str]] = []
        self._threads: list[threading.Thread] = []

    def __call__(self, url: str) -> None:
        thread = threading.Thread(target=self._visit, args=(url,))
        thread.start()
        self._threads.append(thread)

    def _visit(self, url: str) -> None:
        for first in self.before:
            self.results.append(visit(first))
        self.results.append(visit(url))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=120)

    @property
    def landed(self) -> str:
        """The URL the last visit ended on (the callback, code included)."""
        return self.results[-1][1]


@pytest.fixture
def world(
    database_url: str, tmp_path: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[..., World]]:
    """``world(env={...}, **simulator_config)``: start a simulator (auto-consent, its client's
    redirect URI on a free loopback port) and point rosesync at it. Afterwards, every captured log
    record (DEBUG and up) is checked for every secret the world knows of."""
    caplog.set_level(logging.DEBUG)
    started: list[World] = []

    def start(env: dict[str, str] | None = None, **config: Any) -> World:
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        config.setdefault("redirect_uri", redirect_uri)
        config.setdefault("consent", "approve")
        config.setdefault("records", 3)
        sim = Simulator(SimulatorConfig(**config)).start()
        values = {
            "ROSEROCKET_CLIENT_ID": CLIENT_ID,
            "ROSEROCKET_CLIENT_SECRET": CLIENT_SECRET,
            "ROSEROCKET_AUTH_URL": sim.url,
            "ROSEROCKET_API_URL": sim.url,
            "ROSEROCKET_REDIRECT_URI": redirect_uri,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
            "TOKEN_KEY_FILE": str(tmp_path / "var" / "rrsync.key"),
            "HTTP_MAX_ATTEMPTS": "4",
            "LOG_LEVEL": "DEBUG",
            **(env or {}),
        }
        made = World(sim, values, load_settings(environ=values, dotenv_path=None), engine)
        started.append(made)
        return made

    yield start
    for made in started:
        made.sim.stop()
    if started:
        secrets = started[0].secrets()
        assert secrets
        plain = logging.Formatter("%(name)s %(levelname)s %(message)s")  # NOT redacting
        records = caplog.get_records("setup") + caplog.get_records("call")
        assert leaked("\n".join(plain.format(r) for r in records), secrets) == []
        assert leaked("\n".join(o for made in started for o in made.outputs), secrets) == []


def bootstrap_now(made: World, browser: Browser | None = None, **kwargs: Any) -> CredentialStatus:
    """An in-process `rosesync bootstrap` whose browser consents at once."""
    browser = browser or Browser()
    try:
        return bootstrap(made.settings, made.engine, announce=browser, **kwargs)
    finally:
        browser.join()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """tenacity's back-off sleeps, recorded instead of slept (fast, and Retry-After checkable)."""
    recorded: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=recorded.append))
    return recorded
