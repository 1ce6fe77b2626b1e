"""Hostile and broken input: always a 4xx answer or a clean close; never a 5xx, never a hang."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
import requests

from worker.simulator import Simulator

from .conftest import MakeSim
from .helpers import CLIENT_ID, CLIENT_SECRET, OAuthClient, raw_exchange, status_of

BIG = "x" * 100_000
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CREDENTIALS = f"client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"


@pytest.fixture
def sim(make_sim: MakeSim) -> Simulator:
    # A short idle timeout so that "the server closes a silent connection" takes half a second.
    return make_sim(idle_timeout=0.5)


@pytest.fixture
def token(client: OAuthClient) -> str:
    access: str = client.login()["access_token"]
    return access


def assert_no_server_errors(sim: Simulator) -> None:
    statuses = [key.rsplit(" ", 1)[1] for key in sim.counters()["requests"]]
    assert not [status for status in statuses if status.startswith("5")]
    # ...and the server still answers.
    assert requests.get(f"{sim.url}/.well-known/openid-configuration", timeout=10).ok


# (method, path, query, body, extra headers, expected status)
HTTP_CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    # /authorize: problems before the client is trusted are error pages, never redirects
    ("GET", "/authorize", "", None, {}, 400),
    ("GET", "/authorize", f"client_id={CLIENT_ID}&client_id=x&state=1", None, {}, 400),
    ("GET", "/authorize", f"client_id={BIG}", None, {}, 414),
    ("GET", "/authorize", "client_id=%ff%fe", None, {}, 400),
    ("GET", "/authorize", "client_id=" + "&a=1" * 150, None, {}, 400),
    ("GET", "/authorize", f"client_id={CLIENT_ID}&redirect_uri=%00%0d%0a", None, {}, 400),
    # consent decision
    ("POST", "/authorize/decision", "", b"", {}, 400),
    ("POST", "/authorize/decision", "", b'{"decision": "approve"}',
     {"Content-Type": "application/json"}, 400),
    ("POST", "/authorize/decision", "", BIG.encode() * 2, FORM, 413),
    ("POST", "/authorize/decision", "", b"decision=approve&decision=deny&transaction=x",
     FORM, 400),
    # token endpoint
    ("POST", "/oauth/token", "", b"", {}, 400),
    ("POST", "/oauth/token", "", b"", FORM, 401),
    ("POST", "/oauth/token", "", f"{CREDENTIALS}&grant_type=a&grant_type=b".encode(), FORM, 400),
    ("POST", "/oauth/token", "", f"{CREDENTIALS}&grant_type[]=refresh_token".encode(), FORM,
     400),
    ("POST", "/oauth/token", "", f"{CREDENTIALS}&grant_type=refresh_token&refresh_token="
     .encode() + BIG.encode()[:50_000], FORM, 403),
    ("POST", "/oauth/token", "", f"grant_type=authorization_code&{CREDENTIALS}&code={BIG}"
     .encode(), FORM, 413),
    ("POST", "/oauth/token", "", b"grant_type=\xff\xfe&" + CREDENTIALS.encode(), FORM, 400),
    ("POST", "/oauth/token", "", b"grant_type=%ff", FORM, 400),
    ("POST", "/oauth/token", "", ("a=1&" * 500).encode(), FORM, 400),
    ("POST", "/oauth/token", "", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1",
     {"Content-Type": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/oauth/token", "", f"{CREDENTIALS}&grant_type=authorization_code&code=1&"
     f"redirect_uri=1&code_verifier={'v' * 5000}".encode(), FORM, 403),
    ("POST", "/oauth/token", "", b"grant_type=refresh_token&refresh_token=x",
     {**FORM, "Authorization": "Basic !!!not-base64"}, 401),
    ("POST", "/oauth/token", "", b"grant_type=refresh_token&refresh_token=x",
     {**FORM, "Authorization": "Basic //79"}, 401),
    # revocation
    ("POST", "/oauth/revoke", "", b"", FORM, 401),
    ("POST", "/oauth/revoke", "", f"{CREDENTIALS}&token=a&token=b".encode(), FORM, 400),
    ("POST", "/oauth/revoke", "", BIG.encode(), FORM, 413),
    # userinfo and discovery
    ("GET", "/userinfo", BIG, None, {}, 414),
    ("GET", "/userinfo", "", None, {"Authorization": "Bearer " + "x" * 8000}, 401),
    ("POST", "/.well-known/openid-configuration", "", b"x", {}, 405),
    # the data API, without a token
    ("GET", "/api/v1/orders", "limit=abc", None, {}, 401),
    ("GET", "/api/v1/orders", BIG, None, {}, 414),
    # admin
    ("POST", "/_admin/faults", "", BIG.encode(), {"Content-Type": "application/json"}, 413),
    ("POST", "/_admin/mutate", "", b'{"count": 1e400}', {}, 400),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "headers", "status"), HTTP_CASES)
def test_bad_http_input(sim: Simulator, method: str, path: str, query: str, body: bytes | None,
                        headers: dict[str, str], status: int) -> None:
    url = f"{sim.url}{path}" + (f"?{query}" if query else "")
    response = requests.request(method, url, data=body, headers=headers, timeout=10,
                                allow_redirects=False)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].split(";")[0] in ("application/json", "text/html")
    assert_no_server_errors(sim)


API_QUERIES = [
    "limit=5&limit=5", "offset=1e3", "limit=0x10", "limit=%EF%BC%95",
    "updated_start_at=" + "9" * 500, "updated_end_at=2024-02-30T00:00:00Z",
    "updated_start_at[]=2024-01-01", "limit=" + "-" * 10, "limit=12%00",
    "updated_start_at=2024-01-01T25:00:00Z",
]


@pytest.mark.parametrize("query", API_QUERIES)
def test_bad_api_queries(sim: Simulator, token: str, query: str) -> None:
    response = requests.get(f"{sim.url}/api/v1/orders?{query}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 400)  # 200 only where the bad name is simply unknown
    if response.status_code == 400:
        assert isinstance(response.json()["message"], list)
    assert_no_server_errors(sim)


@pytest.mark.parametrize("record_id", ["x" * 10_000, "%00", "..%2F..%2Fetc", "'; DROP TABLE",
                                       "%F0%9F%9A%9A"])
def test_bad_record_ids(sim: Simulator, token: str, record_id: str) -> None:
    response = requests.get(f"{sim.url}/api/v1/orders/{record_id}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404
    assert_no_server_errors(sim)


CLOSE = b"Connection: close\r\n"
# (raw request, expected status; None = the server closes without answering)
RAW_CASES: list[tuple[bytes, int | None]] = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"A B C D E\r\n\r\n", 400),
    (b"GET / HTTP/1.x\r\n\r\n", 400),
    (b"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 70_000 + b"\r\n\r\n",
     431),
    (b"GET /api/v1/orders HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
     + b"\r\n", 431),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"POST /oauth/token HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /oauth/token HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /oauth/token HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /oauth/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     411),
    (b"POST /oauth/token HTTP/1.1\r\nContent-Length: 999999999\r\n\r\nabc", 413),
    (b"BREW /api/v1/orders HTTP/1.1\r\n" + CLOSE + b"\r\n", 405),
    (b"GET /\r\n\r\n", 404),  # HTTP/0.9
    (b"GET /api/v1/\x00orders HTTP/1.1\r\n" + CLOSE + b"\r\n", 404),
    (b"GET http://example.com/x HTTP/1.1\r\n" + CLOSE + b"\r\n", 404),
    (b"GET /api/v1/orders HTTP/1.1\r\nHost x\r\n" + CLOSE + b"\r\n", 401),
    (b"GET /api/v1/orders HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n"
     + CLOSE + b"\r\n", 401),
    # partial requests, then silence: the server closes after its idle timeout
    (b"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\n", None),
    (b"GET /api/v1/ord", None),
    (b"POST /oauth/token HTTP/1.1\r\nContent-Length: 100\r\n\r\ngrant_type=", None),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)), 400),  # TLS hello
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", None),  # no line end: silence
    (b"", None),
]


@pytest.mark.parametrize(("data", "status"), RAW_CASES)
def test_raw_socket_garbage(sim: Simulator, data: bytes, status: int | None) -> None:
    reply = raw_exchange(sim.port, data, timeout=10)
    assert status_of(reply) == status, reply[:300]
    assert_no_server_errors(sim)


def test_a_silent_connection_does_not_block_others(sim: Simulator, token: str) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as silent:
        silent.sendall(b"GET /api/v1/orders HTTP/1.1\r\n")
        response = requests.get(f"{sim.url}/api/v1/orders", timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        # ...and the half-sent request is eventually dropped: a clean close, no answer.
        assert silent.recv(1024) == b""


def test_keep_alive_requests_reuse_one_connection(sim: Simulator, token: str) -> None:
    request = (b"GET /api/v1/orders?limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + token.encode() + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as connection:
        connection.sendall(request * 3 + request.replace(b"Host: x", b"Host: x\r\n" + CLOSE[:-2]))
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    assert reply.count(b"HTTP/1.1 200 OK") == 4
    assert reply.count(b"Connection: close") == 1


def test_client_vanishing_mid_response_is_harmless(make_sim: MakeSim, make_client: Any) -> None:
    simulator = make_sim(records_by_resource={"orders": 2000})
    token = make_client(simulator).login()["access_token"]
    for _ in range(5):
        connection = socket.create_connection(("127.0.0.1", simulator.port), timeout=10)
        connection.sendall(b"GET /api/v1/orders?limit=200 HTTP/1.1\r\nAuthorization: Bearer "
                           + token.encode() + b"\r\n\r\n")
        connection.recv(100)
        # SO_LINGER with a zero timeout: close() resets the connection, response unread.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    assert_no_server_errors(simulator)
