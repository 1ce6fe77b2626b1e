"""The shared session reads the environment once per origin, and operators keep every variable
requests honours (issue 16: requests read it on every request)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests.sessions

from worker.errors import ServerError
from worker.source import http

ENVIRONMENT = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class Recorder:
    """A loopback HTTP/1.1 server that records each GET's request target (a path when asked
    directly, the absolute URL when asked as a proxy) and the client port it came from. It
    answers ``{}``; a path ending in ``/404`` a 404 with a 30 KB body (more than one of
    requests' 10 KB reads), ``/cut`` a body shorter than its Content-Length."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.ports: list[int] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so that reuse of a connection shows

            def do_GET(self) -> None:  # the name http.server calls
                recorder.targets.append(self.path)
                recorder.ports.append(self.client_address[1])
                status, body, length = 200, b"{}", 2
                if self.path.endswith("/404"):
                    status, body = 404, b'{"message": "' + b"x" * 30_000 + b'"}'
                    length = len(body)
                elif self.path.endswith("/cut"):
                    body, length = b'{"orders": [', 1000
                    self.close_connection = True
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fresh_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """No session made yet in this process, and none of the variables set."""
    monkeypatch.setattr(http, "_sessions", {})
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """(the API, a proxy)."""
    api, proxy = Recorder(), Recorder()
    try:
        yield api, proxy
    finally:
        api.close()
        proxy.close()


def get(url: str) -> None:
    response = http.send("GET", url, "test", (5.0, 5.0))
    assert response.status_code == 200


@pytest.mark.usefixtures("fresh_session")
def test_a_proxy_in_the_environment_is_used(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    get(f"{api.url}/api/v1/orders?limit=50")
    assert proxy.targets == [f"{api.url}/api/v1/orders?limit=50"]
    assert api.targets == []
    # as read when the session was made: a change under a running process is not seen
    monkeypatch.delenv("HTTP_PROXY")
    get(f"{api.url}/api/v1/orders?limit=50&offset=50")
    assert len(proxy.targets) == 2
    assert api.targets == []


@pytest.mark.usefixtures("fresh_session")
def test_no_proxy_still_bypasses_the_proxy(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    get(f"{api.url}/api/v1/orders")
    get(f"{api.url}/api/v1/orders")
    assert api.targets == ["/api/v1/orders", "/api/v1/orders"]
    assert proxy.targets == []


@pytest.mark.usefixtures("fresh_session")
def test_the_environment_is_read_once_per_origin(
    servers: tuple[Recorder, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    looked_up: list[str] = []
    original = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: Any = None) -> dict[str, str]:
        looked_up.append(url)
        return original(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    for offset in range(5):
        get(f"{api.url}/api/v1/orders?offset={offset}")
        http.fetch("GET", f"{api.url}/api/v1/orders?offset={offset}", "test", (5.0, 5.0))
    get(f"{proxy.url}/oauth/token")  # another origin: its own lookup
    assert looked_up == [f"{api.url}/", f"{proxy.url}/"]


@pytest.mark.usefixtures("fresh_session")
@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_in_the_environment_is_used(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the adapter is handed as ``verify`` for an https origin (this test has no TLS
    server; requests verifies against whatever file this names)."""
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv(variable, str(bundle))
    settings = http.session().merge_environment_settings(
        "https://api.example.test/api/v1/orders", {}, None, None, None
    )
    assert settings["verify"] == str(bundle)


@pytest.mark.usefixtures("fresh_session")
def test_fetch_reads_whole_bodies_and_reuses_the_connection(
    servers: tuple[Recorder, Recorder],
) -> None:
    """The body of every answer, an error's too, is read to its end: that is what hands the
    connection back to the pool (an unread one would leave it busy, and the next request
    would open another)."""
    api, _ = servers
    bodies = [
        http.fetch("GET", f"{api.url}/api/v1/{path}", "test", (5.0, 5.0))
        for path in ("orders", "orders/404", "orders", "orders/404", "orders")
    ]
    assert [(r.status_code, len(body)) for r, body in bodies] == [
        (200, 2), (404, 30_015), (200, 2), (404, 30_015), (200, 2)
    ]  # fmt: skip
    assert len(set(api.ports)) == 1


@pytest.mark.usefixtures("fresh_session")
def test_a_body_cut_short_is_a_server_error(servers: tuple[Recorder, Recorder]) -> None:
    api, _ = servers
    with pytest.raises(ServerError, match="connection failed"):
        http.fetch("GET", f"{api.url}/api/v1/orders/cut", "test", (5.0, 5.0))
