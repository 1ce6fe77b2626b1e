"""`rosesync bootstrap` against the simulator, over real HTTP: the whole flow (the CLI in a
subprocess, and in process), every way it can fail (one clear line, nothing stored), --paste."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from config.settings import ENVIRONMENT_VARIABLES
from tests.worker.credentials.conftest import Browser, World, bootstrap_now
from tests.worker.credentials.helpers import CLIENT_SECRET, leaked, redirect_target, visit
from worker.credentials.bootstrap import bootstrap
from worker.credentials.callback import CallbackError
from worker.errors import OAuthError
from worker.warehouse import credentials as rows
from worker.warehouse.schema import credentials as table

Worlds = Callable[..., World]


def child_env(made: World) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return {**clean, **made.env}


def start_cli(made: World, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "bootstrap", "--no-browser", *args],
        env=child_env(made),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(
    made: World, process: subprocess.Popen[str], printed: str = "", stdin: str | None = None
) -> tuple[str, str]:
    """Wait for the CLI; its output goes to the world's end-of-test secret check."""
    out, err = process.communicate(stdin, timeout=120)
    made.outputs.extend([printed, out, err])
    return out, err


def code_of(callback_url: str) -> str:
    return parse_qs(urlsplit(callback_url).query)["code"][0]


def api_accepts(made: World, access_token: str) -> bool:
    request = urllib.request.Request(  # noqa: S310 - the simulator's http:// URL
        f"{made.sim.url}/api/v1/customers", headers={"Authorization": f"Bearer {access_token}"}
    )
    status, _, _ = visit_request(request)
    return status == 200


def visit_request(request: urllib.request.Request) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.geturl(), exc.read().decode()


def assert_one_line_error(stderr: str, starts: str) -> None:
    assert "Traceback" not in stderr
    last = stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"rosesync: error: {starts}"), stderr


def nothing_stored(made: World, org: str | None = None) -> bool:
    if org is not None:
        return rows.read(made.engine, org) is None
    return rows.read_all(made.engine) == []


def test_cli_bootstrap_end_to_end(world: Worlds, tmp_path: Path) -> None:
    made = world()
    process = start_cli(made, "--timeout", "120", cwd=tmp_path)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith(f"{made.sim.url}/authorize?"), url
    status, landed, page = visit(url)  # auto-consent redirects to rosesync's listener
    assert status == 200 and "rosesync stored the credential" in page
    made.extra_secrets.append(code_of(landed))
    out, err = finish(made, process, url)
    assert process.returncode == 0, err
    assert out.splitlines()[-1].startswith("credential for org default stored;")

    key_file = Path(made.env["TOKEN_KEY_FILE"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"generated a token encryption key in {key_file}" in err

    access, refresh = made.stored_tokens()
    assert api_accepts(made, access)  # what is stored is what the simulator issued
    with made.engine.connect() as conn:
        raw = conn.execute(sa.select(table)).one()
    for column in (raw.access_token, raw.refresh_token):
        assert access not in column and refresh not in column
    assert made.grants() == {"authorization_code": 1, "refresh_token": 0}
    secrets = [access, refresh, code_of(landed), CLIENT_SECRET, key_file.read_text().strip()]
    assert leaked(url + out + err, secrets) == []


def test_in_process_bootstrap(world: Worlds) -> None:
    made = world()
    browser = Browser()
    status = bootstrap_now(made, browser)
    assert (status.org, status.state, status.scope) == (
        "default",
        "ok",
        "offline_access email profile",
    )
    assert 3500 < status.seconds_left <= 3570
    assert browser.results[-1][0] == 200
    access, _refresh = made.stored_tokens()
    assert made.store().access_token() == access
    assert api_accepts(made, access)
    assert code_of(browser.landed) in made.secrets()  # registered for redaction


def test_org_option_names_the_credential(world: Worlds) -> None:
    made = world()
    status = bootstrap_now(made, org="acme")
    assert status.org == "acme"
    assert [row.org for row in rows.read_all(made.engine)] == ["acme"]


def test_wrong_state_is_refused_and_the_right_one_still_succeeds(world: Worlds) -> None:
    made = world()
    forged = f"{made.redirect_uri}?code=forged-code-0123456789&state=forged-state"
    browser = Browser(forged)
    status = bootstrap_now(made, browser)
    assert status.state == "ok"
    assert browser.results[0][0] == 400 and "still waiting" in browser.results[0][2]
    assert browser.results[1][0] == 200
    assert made.grants()["authorization_code"] == 1


def test_a_replayed_callback_is_refused(world: Worlds) -> None:
    made = world()
    first = Browser()
    bootstrap_now(made, first)
    old = first.landed
    # The same callback URL in a later bootstrap: not that run's state.
    with pytest.raises(CallbackError, match="state does not match"):
        bootstrap(made.settings, made.engine, org="replay", announce=str, paste=lambda: old)
    # Even with the new state, the code is spent: the server refuses it (and, per RFC 6749
    # section 4.1.2, revokes what it issued for it).
    announced: list[str] = []

    def replayed() -> str:
        state = parse_qs(urlsplit(announced[0]).query)["state"][0]
        return f"{made.redirect_uri}?code={code_of(old)}&state={state}"

    with pytest.raises(OAuthError) as caught:
        bootstrap(
            made.settings, made.engine, org="replay", announce=announced.append, paste=replayed
        )
    message = str(caught.value)
    assert caught.value.error == "invalid_grant" and "\n" not in message
    assert message.startswith("the code exchange failed: invalid_grant")
    assert "run `rosesync bootstrap` again" in message
    assert nothing_stored(made, "replay")


def test_access_denied(world: Worlds) -> None:
    made = world(consent="deny")
    with pytest.raises(OAuthError) as caught:
        bootstrap_now(made, timeout=60)
    message = str(caught.value)
    assert caught.value.error == "access_denied" and "\n" not in message
    assert "access_denied (The user denied access)" in message
    assert "approve the access" in message
    assert nothing_stored(made) and made.token_posts() == 0


def test_bad_client_secret(world: Worlds) -> None:
    made = world(env={"ROSEROCKET_CLIENT_SECRET": "not-the-right-secret"})
    with pytest.raises(OAuthError) as caught:
        bootstrap_now(made, timeout=60)
    message = str(caught.value)
    assert caught.value.error == "invalid_client" and "\n" not in message
    assert "check ROSEROCKET_CLIENT_ID and ROSEROCKET_CLIENT_SECRET" in message
    assert "not-the-right-secret" not in message
    assert nothing_stored(made)


def test_redirect_uri_not_registered(world: Worlds) -> None:
    made = world(redirect_uri="http://127.0.0.1:9/registered-elsewhere")
    browser = Browser()
    with pytest.raises(CallbackError) as caught:
        bootstrap_now(made, browser, timeout=1)
    status, _, page = browser.results[-1]
    assert status == 400 and "not registered" in page  # the server says so to the person...
    message = str(caught.value)  # ...and rosesync's line says what to check
    assert "ROSEROCKET_REDIRECT_URI is exactly the callback registered" in message
    assert nothing_stored(made) and made.token_posts() == 0


def test_expired_code(world: Worlds) -> None:
    made = world(code_ttl=1e-6)
    with pytest.raises(OAuthError) as caught:
        bootstrap_now(made, timeout=60)
    assert caught.value.error == "invalid_grant"
    assert "the authorization code was refused" in str(caught.value)
    assert made.sim.counters()["token_errors"] == {"invalid_grant": 1}
    assert nothing_stored(made)


def test_timeout(world: Worlds) -> None:
    made = world()
    with pytest.raises(CallbackError, match=r"no sign-in response reached .* within 0.5 s"):
        bootstrap(made.settings, made.engine, announce=str, timeout=0.5)
    assert nothing_stored(made)


def test_paste_in_process(world: Worlds) -> None:
    made = world()
    announced: list[str] = []
    status = bootstrap(
        made.settings,
        made.engine,
        announce=announced.append,
        paste=lambda: redirect_target(announced[0]),
    )
    assert status.state == "ok" and made.grants()["authorization_code"] == 1


def test_cli_paste_good_url(world: Worlds, tmp_path: Path) -> None:
    made = world()
    process = start_cli(made, "--paste", cwd=tmp_path)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    callback = redirect_target(url)
    made.extra_secrets.append(code_of(callback))
    out, err = finish(made, process, url, callback + "\n")
    assert process.returncode == 0, err
    assert "paste the full address" in err
    assert "credential for org default stored" in out
    assert made.grants()["authorization_code"] == 1


def test_cli_paste_bad_url(world: Worlds, tmp_path: Path) -> None:
    made = world()
    process = start_cli(made, "--paste", cwd=tmp_path)
    _out, err = finish(made, process, stdin="https://example.com/callback?code=x&state=y\n")
    assert process.returncode == 1
    assert_one_line_error(err, "the pasted text is not a redirect to ROSEROCKET_REDIRECT_URI")
    assert nothing_stored(made) and made.token_posts() == 0
