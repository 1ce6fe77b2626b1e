"""The simulator's HTTP/1.1 server, the `Simulator` Python API, and `serve()` for the CLI.

A threaded stdlib server (one thread per connection, keep-alive) is plenty: responses are
pre-serialized bytes, so the client under test, not the simulator, is the bottleneck. The
transport's other job is robustness against hostile input: socket timeouts so a half-sent request
cannot hold a thread forever, size limits with 4xx answers, and no 500 for junk.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import logging
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

from worker.simulator.app import App
from worker.simulator.config import RESOURCES, SimulatorConfig
from worker.simulator.faults import FaultRule
from worker.simulator.messages import Request, Response, api_error, reason

logger = logging.getLogger("worker.simulator")

# Request bodies here are small forms and admin JSON; beyond this the answer is 413.
MAX_BODY = 64 * 1024
# After refusing a request (413, 414, 431, ...) the server reads and discards what the client is
# still sending, up to these limits, before closing: closing a socket with unread data makes the
# kernel send a reset, and the client would see a connection error instead of our answer
# ("lingering close", RFC 9112 section 9.6).
LINGER_BYTES = 8 * 1024 * 1024
LINGER_SECONDS = 2.0
# Bodies smaller than this are not worth compressing.
GZIP_MIN_SIZE = 256


def _accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (q=0 means "not acceptable")."""
    for item in (header or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            name, _, value = params.partition("=")
            if name.strip().lower() != "q":
                return True
            try:
                return float(value) > 0
            except ValueError:
                return False
    return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    _linger = False
    protocol_version = "HTTP/1.1"
    server_version = "RoseRocketSimulator/1.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # A silent client (mid-request or idle on keep-alive) is disconnected after this.
        self.connection.settimeout(self.server.app.config.idle_timeout)
        # Responses go out in one write; without this, Nagle + delayed ACK can stall the tail.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __getattr__(self, name: str) -> Any:
        # http.server looks for do_<METHOD> and answers 501 when it is missing; every method,
        # even an invented one, goes to the router instead, which answers 405 or 404.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        request = Request(self.command, path, query, self.headers, body, self.client_address[0])
        try:
            response = self.server.app.handle(request)
        except Exception:  # a bug: answer (and log) it rather than hang the client
            logger.exception("simulator error on %s %s", self.command, path)
            response = api_error(500, "Internal Server Error")
            self.close_connection = True
        if response is None:  # a "drop" fault: close without a byte of response
            self.close_connection = True
            return
        self._send(
            response,
            compress=self.server.app.config.gzip
            and _accepts_gzip(self.headers.get("Accept-Encoding")),
        )

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a framing error."""
        if self.headers.get("Transfer-Encoding") is not None:
            # Chunked uploads are not supported: ask for a Content-Length instead.
            self._refuse(411, "a Content-Length is required")
            return None
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return b""
        text = lengths.pop()
        if lengths or not text.isascii() or not text.isdigit():
            self._refuse(400, "invalid Content-Length")
            return None
        length = int(text)
        if length > MAX_BODY:
            self._refuse(413, f"the request body must not exceed {MAX_BODY} bytes")
            return None
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request we will not read to the end, then close (lingering)."""
        self.close_connection = True
        self._linger = True
        self._send(api_error(status, message))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own rejections (bad request line, 414, 431, ...) in our JSON envelope.
        self._refuse(code, message or reason(code))

    def finish(self) -> None:
        super().finish()
        if self._linger:
            with contextlib.suppress(OSError):
                self._drain_and_close()

    def _drain_and_close(self) -> None:
        self.connection.shutdown(socket.SHUT_WR)  # the answer is complete: send FIN first
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.connection.settimeout(left)
            chunk = self.connection.recv(65536)
            if not chunk:
                break
            drained += len(chunk)

    def _send(self, response: Response, compress: bool = False) -> None:
        body = response.body
        lines = [
            f"HTTP/1.1 {response.status} {reason(response.status)}",
            f"Server: {self.server_version}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
        ]
        if compress and len(body) >= GZIP_MIN_SIZE:
            body = gzip.compress(body, compresslevel=5)
            lines += ["Content-Encoding: gzip", "Vary: Accept-Encoding"]
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(body)}")
        lines += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")  # HTTP/1.0 clients assume close otherwise
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own messages (timeouts) go to debug logging instead of stderr. Requests
        # themselves are never logged: noise at benchmark rates.
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for keep-alive connections on close; stop() shuts them down instead.
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-response are normal (and the drop fault causes it on purpose).
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class Simulator:
    """A running Rose Rocket stand-in: OAuth server and v1 API on one loopback port."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self._app = App(config or SimulatorConfig())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop(), for messages about this simulator

    @property
    def config(self) -> SimulatorConfig:
        """The configuration in effect (``change_api`` changes it)."""
        return self._app.config

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._port is not None:
            raise RuntimeError("a simulator starts once; create a new one to start again")
        server = _Server((self.config.host, self.config.port), self._app)
        self._server = server
        self._port = int(server.server_address[1])
        self._app.oauth.issuer = self.url + "/"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="rr-simulator",
            daemon=True,
        )
        self._thread.start()
        self._app.mutation.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._app.mutation.stop()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 (a wildcard bind is reachable on loopback)
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- control -------------------------------------------------------------------------------

    def set_faults(self, *rules: FaultRule) -> None:
        """Replace the active fault rules (no rules: no faults)."""
        self._app.faults.set(rules)

    def change_api(self, **changes: Any) -> None:
        """Change the data API's behaviour from now on: ``profile``, ``end_inclusive``,
        ``by_id``, ``max_limit``, ``oversize_limit``, ``include_total``, ``schema_drift_after`` (see
        SimulatorConfig)."""
        self._app.change_api(**changes)

    def set_mutation(self, per_request: int | None = None, per_second: float | None = None) -> None:
        """Change live mutation; None keeps a rate, 0 stops it."""
        self._app.mutation.set(per_request, per_second)

    def mutate(
        self, count: int, resource: str | None = None, org: str | None = None
    ) -> dict[str, int]:
        """Apply `count` random mutations now: {"updated": a, "created": b, "deleted": c}.

        All of them to `resource` if given, else spread over resources by size; to ``org``'s
        dataset if given (SimulatorConfig.orgs), else the default one.
        """
        if resource is not None:
            _check_resource(resource)
        if org is None:
            return self._app.mutation.mutate(count, resource)
        done = self._app.dataset_of(org).mutate(count, resource)
        self._app.counters.add_all("mutations", done)
        return done

    def delete(self, resource: str, record_ids: list[str]) -> int:
        """Delete these records now (tests that need a particular shift of the list)."""
        _check_resource(resource)
        deleted = self._app.dataset.delete(resource, record_ids)
        self._app.counters.add_all("mutations", {"deleted": deleted})
        return deleted

    def dump(self, resource: str, org: str | None = None) -> list[dict[str, Any]]:
        """The live records of `resource` exactly as the API serves them, in API order (those of
        ``org``'s dataset when given: SimulatorConfig.orgs)."""
        _check_resource(resource)
        return self._app.dataset_of(org).dump(resource)

    def poisoned(self, resource: str) -> list[str]:
        """Ids of the poison records planted in `resource` (SimulatorConfig.poison)."""
        _check_resource(resource)
        return self._app.dataset.poisoned(resource)

    def counters(self) -> dict[str, Any]:
        return self._app.counters.snapshot()

    def reset_counters(self) -> None:
        self._app.counters.reset()

    def revoke_all(self, org: str | None = None) -> None:
        """Revoke every access and refresh token issued so far (only ``org``'s, if given)."""
        self._app.oauth.revoke_all(org)


def _check_resource(resource: str) -> None:
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; expected one of {RESOURCES}")


def serve(config: SimulatorConfig) -> None:
    """Run a simulator in the foreground until SIGINT or SIGTERM (for `rosesync simulator`)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Simulator(config) as simulator:
            # Never the client secret: this line ends up in terminals and logs.
            print(
                f"Rose Rocket simulator on {simulator.url} (client_id {config.client_id}, "
                f"redirect_uri {config.redirect_uri})",
                flush=True,
            )
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
