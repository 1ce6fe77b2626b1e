"""Receiving the authorization response (seed step 4): the loopback listener, or a pasted URL.

RFC 8252 section 7.3: a native app receives the redirect on a loopback interface. The listener
binds only loopback addresses (section 8.3: never a port reachable from the network), answers
only the redirect path, checks ``state`` in constant time (RFC 6749 section 10.12, CSRF), keeps
waiting after a response with a wrong or missing state (it may be a forgery or a stale tab; the
person's real response is still to come), and accepts exactly one valid response.

``--paste`` (a headless server: the browser runs elsewhere) applies the same checks to the URL
the operator copies from the address bar; with one attempt only, a wrong state ends the run.
"""

from __future__ import annotations

import errno
import hmac
import html
import ipaddress
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from worker.credentials.oauth import AUTHORIZATION, describe_error
from worker.errors import ConfigError, OAuthError, PermanentError
from worker.logs import redact, register_secret

log = logging.getLogger(__name__)

# A browser may open a speculative connection and send nothing on it: drop it after this long.
HANDLER_SOCKET_TIMEOUT_SECONDS = 10.0
# How long the browser's page waits for the code exchange to end before it is answered anyway
# (the exchange is one request bounded by HTTP_TIMEOUT_SECONDS; this is a backstop).
VERDICT_TIMEOUT_SECONDS = 120.0
STOPPED = "rosesync stopped before it finished; the terminal says why."


class CallbackError(PermanentError):
    """No usable authorization response: timed out, or the pasted URL is not one."""


class _WrongState(Exception):
    """A response that is not the answer to our request (not an error the operator sees)."""


def code_from(query: str, state: str) -> str:
    """The authorization code from a redirect's query string, after every check.

    State first: an ``error=`` response that does not carry our state is as untrusted as a code
    that does not, so a forged error cannot end the bootstrap either.
    """
    params = parse_qs(query, keep_blank_values=True)
    received = params.get("state", [])
    if len(received) != 1 or not hmac.compare_digest(received[0].encode(), state.encode()):
        raise _WrongState
    # RFC 6749 section 4.1.2.1: the error response.
    if "error" in params:
        error = params["error"][0]
        raise OAuthError(
            describe_error(error, params.get("error_description", [""])[0], AUTHORIZATION), error
        )
    codes = params.get("code", [])
    if len(codes) != 1 or not codes[0]:
        raise OAuthError(
            f"{AUTHORIZATION} failed: the redirect carried no code: check ROSEROCKET_AUTH_URL",
            "invalid_request",
        )
    register_secret(codes[0])
    return codes[0]


def _same_endpoint(url: str, redirect_uri: str) -> bool:
    got, want = urlsplit(url), urlsplit(redirect_uri)
    return (got.scheme.lower(), got.netloc.lower(), got.path or "/") == (
        want.scheme.lower(),
        want.netloc.lower(),
        want.path or "/",
    )


def code_from_pasted(text: str, redirect_uri: str, state: str) -> str:
    """``--paste``: the code from the full redirect URL the operator copied."""
    url = text.strip()
    if not _same_endpoint(url, redirect_uri):
        raise CallbackError(
            f"the pasted text is not a redirect to ROSEROCKET_REDIRECT_URI ({redirect_uri}): "
            "paste the whole address from the browser's address bar after signing in"
        )
    try:
        return code_from(urlsplit(url).query, state)
    except _WrongState:
        raise CallbackError(
            "the pasted URL's state does not match this run's: paste the address reached by "
            "signing in through the URL this command printed"
        ) from None


def _loopback_addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ConfigError(f"ROSEROCKET_REDIRECT_URI: cannot resolve host {host!r}") from None
    addresses: list[tuple[socket.AddressFamily, str]] = list(
        dict.fromkeys((family, str(address[0])) for family, *_, address in found)
    )
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for _, a in addresses):
        raise ConfigError(
            f"ROSEROCKET_REDIRECT_URI: host {host!r} is not a loopback address; the listener "
            "binds only 127.0.0.1, ::1 or localhost (RFC 8252), so use one of those or --paste"
        )
    return addresses


def _failed_page(error: str) -> bytes:
    return _page("Sign-in failed", redact(error), "You can close this tab.")


def _page(title: str, *paragraphs: str) -> bytes:
    body = "".join(f"<p>{html.escape(text)}</p>" for text in paragraphs)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>rosesync</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck browser connection must never delay the exit

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that is slow, resets or vanishes is its own problem: socketserver's default
        printed a traceback to stderr for each (issue 13, item 9: 59 BrokenPipe tracebacks)."""
        log.debug("callback connection from %s ended with an error", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class LoopbackListener:
    """``with LoopbackListener(uri, state) as listener: code = listener.wait(timeout)``.

    Listening starts on entering the block, before the URL is shown, so a fast browser never
    finds the port closed.
    """

    def __init__(self, redirect_uri: str, state: str) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http":
            raise ConfigError(
                "ROSEROCKET_REDIRECT_URI: the loopback listener needs an http:// URI (RFC 8252 "
                "section 7.3); with any other, use --paste"
            )
        self.redirect_uri = redirect_uri
        self._path = parts.path or "/"
        self._port = parts.port or 80
        self._addresses = _loopback_addresses(parts.hostname or "", self._port)
        self._state = state
        self._lock = threading.Lock()
        self._claimed = False
        self._outcome: str | OAuthError | None = None
        self._done = threading.Event()
        self._verdict = threading.Event()  # the code exchange is over (report())
        self._failure: str | None = None
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def _claim(self, query: str) -> tuple[int, bytes, bool]:
        """Judge one response: (HTTP status, page, whether it ends the wait)."""
        with self._lock:
            if self._claimed:
                return 400, _page("Already done", "rosesync has its answer already."), False
            try:
                self._outcome = code_from(query, self._state)
            except _WrongState:
                log.warning("ignored a callback without this bootstrap's state; still waiting")
                return (
                    400,
                    _page(
                        "Not the expected sign-in",
                        "This response does not belong to the sign-in rosesync is waiting for. "
                        "Use the URL rosesync printed; rosesync is still waiting.",
                    ),
                    False,
                )
            except OAuthError as exc:  # an error response: that is the verdict already
                self._outcome = exc
                self._claimed = True
                self._failure = str(exc)
                self._verdict.set()
                return 200, b"", True
            self._claimed = True
            return 200, b"", True  # the page waits for the exchange's outcome: see report()

    def report(self, failure: str | None) -> None:
        """What the person's browser is told once the code exchange is over: success only when
        the credential is stored (issue 17: the page said "Done" while the terminal reported
        invalid_client). ``failure`` is a one-line error, already free of secrets."""
        with self._lock:
            if not self._verdict.is_set():
                self._failure = failure
                self._verdict.set()

    def _final_page(self) -> tuple[int, bytes]:
        if not self._verdict.wait(VERDICT_TIMEOUT_SECONDS):
            return 200, _failed_page(STOPPED)
        if self._failure is not None:
            return 200, _failed_page(self._failure)
        return 200, _page("Done", "rosesync stored the credential.", "You can close this tab.")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            timeout = HANDLER_SOCKET_TIMEOUT_SECONDS

            def do_GET(self) -> None:  # the name http.server calls
                parts = urlsplit(self.path)
                final = False
                if parts.path != listener._path:
                    status, body = 404, _page("Not found", "Nothing here.")
                else:
                    status, body, final = listener._claim(parts.query)
                if final:
                    listener._done.set()  # the code goes to the exchange; the page waits for it
                    status, body = listener._final_page()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Referrer-Policy", "no-referrer")  # the URL holds the code
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the browser went away (closed tab, reset): nothing to tell
                    log.debug("the browser closed the connection before the page was sent")

            def log_message(self, format: str, *args: object) -> None:
                """Silenced: the default writes the request line, code included, to stderr."""

        return Handler

    def __enter__(self) -> LoopbackListener:
        handler = self._handler()
        problems: list[OSError] = []
        for family, address in self._addresses:
            server_class = _Server6 if family == socket.AF_INET6 else _Server
            try:
                server = server_class((address, self._port), handler)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    self.__exit__(None, None, None)
                    raise ConfigError(
                        f"cannot listen on {address} port {self._port} (ROSEROCKET_REDIRECT_URI):"
                        " the port is in use; stop what holds it or use --paste"
                    ) from None
                problems.append(exc)  # e.g. no IPv6 on this host: the other address will do
                continue
            self._servers.append(server)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if not self._servers:
            raise ConfigError(
                f"cannot listen on {self.redirect_uri} (ROSEROCKET_REDIRECT_URI): "
                f"{problems[0].strerror if problems else 'no address'}; use --paste"
            )
        return self

    def wait(self, timeout: float) -> str:
        """The code of the one valid response; raises on an error response or the timeout."""
        if not self._done.wait(timeout):
            raise CallbackError(
                f"no sign-in response reached {self.redirect_uri} within {timeout:g} s: finish "
                "signing in within --timeout, check that ROSEROCKET_REDIRECT_URI is exactly the "
                "callback registered for the application and that this machine's browser can "
                "reach it (otherwise use --paste)"
            )
        if isinstance(self._outcome, OAuthError):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.report(STOPPED)  # a page still waiting for a verdict gets one
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers.clear()
        self._threads.clear()
