"""worker/credentials/callback.py: the loopback listener and --paste (RFC 8252, RFC 6749 4.1.2)."""

from __future__ import annotations

import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support import free_port
from worker.credentials.callback import (
    CallbackError,
    LoopbackListener,
    _WrongState,
    code_from,
    code_from_pasted,
)
from worker.errors import ConfigError, OAuthError

STATE = "expected-state-0123456789abcdefghijklmnopqrstuv"
CODE = "the-one-time-code-0123456789"


def get(url: str) -> tuple[int, str]:
    """A browser visiting ``url`` (urllib: it logs nothing)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - test URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sign_in(
    listener: LoopbackListener, url: str, failure: str | None = None
) -> tuple[str, int, str]:
    """The person's browser lands on ``url``; its page waits until the bootstrap reports the
    code exchange's outcome (``failure``, or success). Returns (code, status, page)."""
    answer: list[tuple[int, str]] = []
    browser = threading.Thread(target=lambda: answer.append(get(url)))
    browser.start()
    code = listener.wait(30)
    listener.report(failure)
    browser.join(30)
    (status, page), = answer
    return code, status, page


@pytest.fixture
def redirect_uri() -> str:
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture
def listener(redirect_uri: str) -> Iterator[LoopbackListener]:
    with LoopbackListener(redirect_uri, STATE) as running:
        yield running


def test_code_from_a_valid_response() -> None:
    assert code_from(f"code={CODE}&state={STATE}", STATE) == CODE


@pytest.mark.parametrize(
    "query",
    [f"code={CODE}", f"code={CODE}&state=forged", f"code={CODE}&state={STATE}&state={STATE}"],
    ids=["missing state", "wrong state", "two states"],
)
def test_wrong_state_is_not_accepted(query: str) -> None:
    with pytest.raises(_WrongState):
        code_from(query, STATE)


def test_error_response_becomes_a_clear_oauth_error() -> None:
    with pytest.raises(OAuthError) as caught:
        code_from(f"error=access_denied&error_description=User+said+no&state={STATE}", STATE)
    assert caught.value.error == "access_denied"
    message = str(caught.value)
    assert "\n" not in message
    assert "access_denied (User said no)" in message and "rosesync bootstrap" in message


def test_a_forged_error_without_our_state_does_not_count() -> None:
    with pytest.raises(_WrongState):
        code_from("error=access_denied", STATE)


def test_response_without_code() -> None:
    with pytest.raises(OAuthError, match="no code"):
        code_from(f"state={STATE}", STATE)


def test_paste_good_url(redirect_uri: str) -> None:
    pasted = f"  {redirect_uri}?code={CODE}&state={STATE}\n"
    assert code_from_pasted(pasted, redirect_uri, STATE) == CODE


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("https://example.com/callback?code=x&state=y", "not a redirect to"),
        ("code=x&state=y", "not a redirect to"),
        ("{uri}?code=x&state=wrong", "state does not match"),
    ],
)
def test_paste_bad_url(redirect_uri: str, pasted: str, expected: str) -> None:
    with pytest.raises(CallbackError, match=expected):
        code_from_pasted(pasted.format(uri=redirect_uri), redirect_uri, STATE)


def test_paste_error_response(redirect_uri: str) -> None:
    with pytest.raises(OAuthError, match="access_denied"):
        code_from_pasted(f"{redirect_uri}?error=access_denied&state={STATE}", redirect_uri, STATE)


def test_listener_accepts_the_valid_callback(listener: LoopbackListener, redirect_uri: str) -> None:
    code, status, page = sign_in(listener, f"{redirect_uri}?code={CODE}&state={STATE}")
    assert (code, status) == (CODE, 200)
    assert "<p>rosesync stored the credential.</p><p>You can close this tab.</p>" in page


def test_the_page_tells_a_failed_exchange(listener: LoopbackListener, redirect_uri: str) -> None:
    """Issue 17, finding 6: the page said "Done" while the terminal reported invalid_client."""
    failure = "the code exchange failed: invalid_client: check ROSEROCKET_CLIENT_SECRET"
    code, _status, page = sign_in(listener, f"{redirect_uri}?code={CODE}&state={STATE}", failure)
    assert code == CODE
    assert "Sign-in failed" in page and failure in page and "stored the credential" not in page


def test_a_page_left_waiting_is_answered_on_exit(redirect_uri: str) -> None:
    answer: list[tuple[int, str]] = []
    with LoopbackListener(redirect_uri, STATE) as running:
        browser = threading.Thread(
            target=lambda: answer.append(get(f"{redirect_uri}?code={CODE}&state={STATE}"))
        )
        browser.start()
        running.wait(30)  # and then the bootstrap dies before reporting
    browser.join(30)
    (_status, page), = answer
    assert "rosesync stopped before it finished" in page


def test_listener_answers_only_the_redirect_path(
    listener: LoopbackListener, redirect_uri: str
) -> None:
    base = redirect_uri.rsplit("/", 1)[0]
    assert get(f"{base}/favicon.ico")[0] == 404
    assert get(f"{base}/other?code={CODE}&state={STATE}")[0] == 404
    assert sign_in(listener, f"{redirect_uri}?code={CODE}&state={STATE}")[0] == CODE


def test_listener_keeps_waiting_after_a_wrong_state(
    listener: LoopbackListener, redirect_uri: str
) -> None:
    status, page = get(f"{redirect_uri}?code=forged-code&state=forged-state")
    assert status == 400 and "still waiting" in page
    assert get(f"{redirect_uri}?code=forged-code")[0] == 400
    assert sign_in(listener, f"{redirect_uri}?code={CODE}&state={STATE}")[:2] == (CODE, 200)


def test_listener_accepts_exactly_one_callback(
    listener: LoopbackListener, redirect_uri: str
) -> None:
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(get(f"{redirect_uri}?code={CODE}&state={STATE}")[0])
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    assert listener.wait(30) == CODE
    listener.report(None)
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400, 400, 400]


def test_listener_error_response_ends_the_wait(
    listener: LoopbackListener, redirect_uri: str
) -> None:
    status, page = get(f"{redirect_uri}?error=access_denied&state={STATE}")
    assert status == 200 and "access_denied" in page
    with pytest.raises(OAuthError, match="access_denied"):
        listener.wait(30)


def test_listener_times_out_with_a_clear_message(listener: LoopbackListener) -> None:
    with pytest.raises(CallbackError) as caught:
        listener.wait(0.2)
    message = str(caught.value)
    assert "no sign-in response reached" in message and "ROSEROCKET_REDIRECT_URI" in message


def test_listener_writes_nothing_to_stderr(
    listener: LoopbackListener, redirect_uri: str, capfd: pytest.CaptureFixture[str]
) -> None:
    sign_in(listener, f"{redirect_uri}?code={CODE}&state={STATE}")
    captured = capfd.readouterr()
    assert CODE not in captured.err and CODE not in captured.out


@pytest.mark.parametrize("uri", ["http://10.1.2.3:8765/callback", "http://0.0.0.0:8765/callback"])
def test_listener_refuses_a_non_loopback_host(uri: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        LoopbackListener(uri, STATE)


def test_listener_needs_http() -> None:
    with pytest.raises(ConfigError, match="needs an http://"):
        LoopbackListener("https://127.0.0.1:8765/callback", STATE)


def test_listener_port_in_use_is_a_clear_error(redirect_uri: str) -> None:
    port = int(redirect_uri.split(":")[2].split("/")[0])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with (
            pytest.raises(ConfigError, match="the port is in use"),
            LoopbackListener(redirect_uri, STATE),
        ):
            pass


def test_listener_on_localhost() -> None:
    uri = f"http://localhost:{free_port()}/cb"
    with LoopbackListener(uri, STATE) as running:
        assert sign_in(running, f"{uri}?code={CODE}&state={STATE}")[:2] == (CODE, 200)


def test_slow_and_vanishing_clients_print_no_traceback(
    listener: LoopbackListener, redirect_uri: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 13, item 9: clients that reset or stall gave 59 BrokenPipe tracebacks on stderr."""
    port = int(redirect_uri.split(":")[2].split("/")[0])
    request = f"GET /callback?code=x&state=forged HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as reset:
            reset.sendall(request.encode())
            # RST instead of FIN: the server's answer hits a connection that is gone
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET /callback?co")  # and never the rest
    valid = f"{redirect_uri}?code={CODE}&state={STATE}"
    assert sign_in(listener, valid)[:2] == (CODE, 200)  # still serving the real one
    assert "Traceback" not in capfd.readouterr().err
