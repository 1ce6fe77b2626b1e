"""Refreshing against the simulator (rotation and reuse detection on), over real HTTP: one
refresh for many concurrent workers, on 401, on schedule; retries; a revoked grant; the CLI."""

from __future__ import annotations

import base64
import json
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.worker.credentials.conftest import World, bootstrap_now
from tests.worker.credentials.helpers import access_token_in_child, collect
from tests.worker.credentials.test_bootstrap import api_accepts, assert_one_line_error, child_env
from worker.clock import utcnow
from worker.credentials.oauth import TokenGrant
from worker.credentials.store import (
    BLOCK_FIRST,
    REFRESH_ATTEMPTS,
    credential_statuses,
    refresh_due_credentials,
)
from worker.errors import ConfigError, ReauthRequired, RefreshBlocked
from worker.simulator import FaultRule
from worker.warehouse import credentials as rows
from worker.warehouse.schema import credentials

Worlds = Callable[..., World]


@pytest.fixture
def ready(world: Worlds) -> Worlds:
    """A world with a freshly bootstrapped credential."""

    def make(env: dict[str, str] | None = None, **config: object) -> World:
        made = world(env, **config)
        bootstrap_now(made)
        return made

    return make


def age(made: World, seconds: float, lifetime: float = 3600.0, org: str = "default") -> None:
    """Rewrite the stored credential as if obtained ``seconds`` ago with that lifetime (the
    tokens stay the simulator's own; only our bookkeeping of their age changes)."""
    access, refresh = made.stored_tokens(org)
    grant = TokenGrant(access, refresh, lifetime, None)
    made.store(org).replace(grant, utcnow() - timedelta(seconds=seconds))


def expire(made: World) -> None:
    age(made, 3600)


def rosesync(made: World, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own; its output goes to the world's secret check."""
    result = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=child_env(made),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    made.outputs.extend([result.stdout, result.stderr])
    return result


def assert_single_refresh(made: World, tokens: list[str]) -> None:
    assert made.grants()["refresh_token"] == 1
    assert made.sim.counters()["reuse_detections"] == 0
    assert len(set(tokens)) == 1
    assert tokens[0] == made.stored_tokens()[0]
    assert api_accepts(made, tokens[0])


def test_eight_processes_refresh_once(ready: Worlds) -> None:
    made = ready()
    old = made.stored_tokens()[0]
    expire(made)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    results = context.Queue()
    processes = [
        context.Process(target=access_token_in_child, args=(made.env, barrier, results))
        for _ in range(8)
    ]
    for process in processes:
        process.start()
    got = collect(results, 8)
    for process in processes:
        process.join(timeout=120)
    assert [kind for kind, _, _ in got] == ["ok"] * 8, got
    tokens = [token for _, token, _ in got]
    assert old not in tokens
    assert sum(refreshes for _, _, refreshes in got) == 1
    assert_single_refresh(made, tokens)


@pytest.mark.parametrize("shared", [True, False], ids=["one store", "a store each"])
def test_eight_threads_refresh_once(ready: Worlds, shared: bool) -> None:
    made = ready()
    expire(made)
    common = made.store()
    barrier = threading.Barrier(8)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        store = common if shared else made.store()
        try:
            barrier.wait(timeout=120)
            tokens.append(store.access_token())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(tokens) == 8
    assert_single_refresh(made, tokens)


def test_refresh_after_401_refreshes_once(ready: Worlds) -> None:
    made = ready()
    store = made.store()
    rejected = store.access_token()
    fresh = store.refresh_after_401(rejected)
    assert fresh != rejected and store.refreshes == 1
    assert store.refresh_after_401(rejected) == fresh  # a second thread with the same 401
    assert store.refreshes == 1
    # Another process that still held the rejected token finds it replaced: no refresh.
    other = made.store()
    assert other.refresh_after_401(rejected) == fresh and other.refreshes == 0
    assert_single_refresh(made, [fresh])


def test_short_lived_tokens_are_refreshed_on_schedule(ready: Worlds) -> None:
    made = ready(access_ttl=2.0)
    before = made.stored_tokens()[0]
    deadline = time.monotonic() + 60
    outcomes = refresh_due_credentials(made.settings, made.engine)
    while outcomes[0].action == "not_due" and time.monotonic() < deadline:
        time.sleep(0.05)
        outcomes = refresh_due_credentials(made.settings, made.engine)
    (outcome,) = outcomes
    assert outcome.action == "refreshed" and outcome.error is None
    assert made.grants()["refresh_token"] == 1
    assert made.stored_tokens()[0] != before


def test_not_due_makes_no_token_request(ready: Worlds) -> None:
    made = ready()
    posts = made.token_posts()
    (outcome,) = refresh_due_credentials(made.settings, made.engine)
    assert outcome.action == "not_due"
    assert made.token_posts() == posts


def test_refreshed_at_least_daily(ready: Worlds) -> None:
    made = ready()
    age(made, 25 * 3600, lifetime=48 * 3600)  # far from expiry, but idle for 25 hours
    (outcome,) = refresh_due_credentials(made.settings, made.engine)
    assert outcome.action == "refreshed"
    (again,) = refresh_due_credentials(made.settings, made.engine)
    assert again.action == "not_due"
    assert made.grants()["refresh_token"] == 1


def test_transient_token_errors_are_retried(ready: Worlds, sleeps: list[float]) -> None:
    made = ready()
    expire(made)
    posts = made.token_posts()
    made.sim.set_faults(
        FaultRule(kind="status", status=503, path_prefix="/oauth/token", count=1),
        FaultRule(kind="status", status=429, retry_after=7, path_prefix="/oauth/token", count=1),
    )
    token = made.store().access_token()
    assert made.token_posts() == posts + 3
    assert len(sleeps) == 2 and sleeps[1] == 7.0  # backoff, then the server's Retry-After
    assert_single_refresh(made, [token])
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "ok" and status.last_error is None


def test_persistent_server_errors_give_up_and_back_off_for_every_process(
    ready: Worlds, sleeps: list[float]
) -> None:
    """Issue 13, item 3: a failed refresh cycle (at most 3 requests, even with more
    HTTP_MAX_ATTEMPTS) holds every process's token requests back, in the credential row, until
    its back-off ends; then a successful refresh clears it, and so does a new bootstrap."""
    made = ready(env={"HTTP_MAX_ATTEMPTS": "8"})
    expire(made)
    posts = made.token_posts()
    made.sim.set_faults(FaultRule(kind="status", status=503, path_prefix="/oauth/token"))
    (outcome,) = refresh_due_credentials(made.settings, made.engine)
    assert outcome.action == "failed" and outcome.error is not None
    assert outcome.error.startswith(
        "the token refresh for org 'default' failed (the token refresh: server error (HTTP 503)); "
        "no rosesync process asks for a token before "
    )
    assert made.token_posts() == posts + REFRESH_ATTEMPTS and len(sleeps) == REFRESH_ATTEMPTS - 1
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "expiring" and status.last_error is not None
    assert status.refresh_blocked_until is not None
    assert status.as_dict()["refresh_blocked_until"] == status.refresh_blocked_until.isoformat()
    row = rows.read(made.engine, "default")
    assert row is not None and row.refresh_failures == 1
    first_block = row.refresh_blocked_until
    assert first_block is not None

    # Every other way in asks nothing while the back-off lasts: a new process's store, a 401,
    # the scheduled refresh, even a forced one.
    made.sim.set_faults()
    with pytest.raises(RefreshBlocked, match="no rosesync process asks for a token"):
        made.store().access_token()
    with pytest.raises(RefreshBlocked):
        made.store().refresh_after_401(made.stored_tokens()[0])
    (again,) = refresh_due_credentials(made.settings, made.engine, force=True)
    assert again.action == "failed"
    assert made.token_posts() == posts + REFRESH_ATTEMPTS

    # A second failed cycle after the back-off doubles it.
    made.sim.set_faults(FaultRule(kind="status", status=503, path_prefix="/oauth/token"))
    unblock(made)
    with pytest.raises(RefreshBlocked):
        made.store().access_token()
    row = rows.read(made.engine, "default")
    assert row is not None and row.refresh_failures == 2 and row.refresh_blocked_until
    assert row.refresh_blocked_until - utcnow() > BLOCK_FIRST * 1.5

    made.sim.set_faults()
    unblock(made)
    (outcome,) = refresh_due_credentials(made.settings, made.engine)
    assert outcome.action == "refreshed"
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "ok" and status.last_error is None
    row = rows.read(made.engine, "default")
    assert row is not None and row.refresh_failures == 0 and row.refresh_blocked_until is None

    # A new bootstrap clears a back-off too.
    made.sim.set_faults(FaultRule(kind="status", status=503, path_prefix="/oauth/token"))
    expire(made)
    with pytest.raises(RefreshBlocked):
        made.store().access_token()
    made.sim.set_faults()
    bootstrap_now(made)
    row = rows.read(made.engine, "default")
    assert row is not None and row.refresh_failures == 0 and row.refresh_blocked_until is None


def test_a_token_still_valid_is_used_while_refreshes_are_held_back(ready: Worlds) -> None:
    made = ready()
    age(made, 3400)  # near expiry (less than REFRESH_MARGIN_SECONDS left), not expired
    with made.engine.begin() as conn:
        until = utcnow() + timedelta(minutes=5)
        rows.block_refresh(conn, "default", "the token refresh: server error (HTTP 500)", until)
    posts = made.token_posts()
    token = made.store().access_token()
    assert token == made.stored_tokens()[0] and made.token_posts() == posts
    with pytest.raises(RefreshBlocked):  # but a token the API refused is not reused
        made.store().refresh_after_401(token)


def unblock(made: World) -> None:
    """As if the back-off had run out."""
    with made.engine.begin() as conn:
        conn.execute(credentials.update().values(refresh_blocked_until=utcnow()))


def test_a_revoked_grant_needs_bootstrap_and_stops_token_calls(
    ready: Worlds, tmp_path: Path
) -> None:
    made = ready()
    syncing = made.store()
    in_use = syncing.access_token()
    made.sim.revoke_all()
    expire(made)

    (outcome,) = refresh_due_credentials(made.settings, made.engine)
    assert outcome.action == "failed" and outcome.error is not None
    assert "needs re-authorization: run `rosesync bootstrap` again" in outcome.error
    assert "invalid_grant" in outcome.error
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "reauth_required"
    assert status.last_error is not None and "invalid_grant" in status.last_error

    posts = made.token_posts()
    (again,) = refresh_due_credentials(made.settings, made.engine, force=True)
    assert again.action == "skipped_reauth_required"
    with pytest.raises(ReauthRequired, match="run `rosesync bootstrap` again"):
        made.store().access_token()
    with pytest.raises(ReauthRequired, match="run `rosesync bootstrap` again"):
        syncing.refresh_after_401(in_use)  # a running sync's next 401 stops it
    cli = rosesync(made, "token", "refresh", cwd=tmp_path)
    assert cli.returncode == 1
    assert_one_line_error(cli.stderr, "the credential for org 'default' needs re-authorization")
    shown = rosesync(made, "token", "status", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert [s["state"] for s in json.loads(shown.stdout)] == ["reauth_required"]
    assert made.token_posts() == posts  # none of that asked the server
    assert made.sim.counters()["reuse_detections"] == 0

    bootstrap_now(made)  # the fix: bootstrap again
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "ok" and status.last_error is None
    assert api_accepts(made, made.store().access_token())


def test_cli_token_refresh_and_status(ready: Worlds, tmp_path: Path) -> None:
    made = ready()
    refreshed = rosesync(made, "token", "refresh", cwd=tmp_path)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("default: refreshed, valid until ")
    assert made.grants()["refresh_token"] == 1
    shown = rosesync(made, "token", "status", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    header, _rule, line = shown.stdout.splitlines()
    assert header.split()[:2] == ["org", "state"] and line.split()[:2] == ["default", "ok"]
    access, refresh = made.stored_tokens()
    for result in (refreshed, shown):
        assert access not in result.stdout + result.stderr
        assert refresh not in result.stdout + result.stderr


def test_key_rotation_and_wrong_keys(world: Worlds, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    made = world(env={"TOKEN_ENCRYPTION_KEY": old})
    bootstrap_now(made)
    assert not Path(made.env["TOKEN_KEY_FILE"]).exists()  # the variable wins: no key file
    rotated = made.with_env(TOKEN_ENCRYPTION_KEY=f"{new},{old}")
    token = rotated.store().access_token()  # old rows still read
    (outcome,) = refresh_due_credentials(rotated.settings, rotated.engine, force=True)
    assert outcome.action == "refreshed"  # ...and are rewritten with the new key
    assert made.with_env(TOKEN_ENCRYPTION_KEY=new).store().access_token() != token
    with pytest.raises(ConfigError) as caught:
        made.with_env(TOKEN_ENCRYPTION_KEY=old).store().access_token()
    assert str(caught.value).startswith("TOKEN_ENCRYPTION_KEY cannot decrypt")
    without_key = made.with_env(TOKEN_ENCRYPTION_KEY="")
    cli = rosesync(without_key, "token", "refresh", cwd=tmp_path)
    assert cli.returncode == 2
    assert_one_line_error(cli.stderr, "no encryption key: set TOKEN_ENCRYPTION_KEY")


def test_an_org_credential_sends_its_org_id(world: Worlds) -> None:
    made = world(env={"ROSEROCKET_ORG_ID": "org-42"})
    status = bootstrap_now(made)
    assert status.org == "org-42"
    (outcome,) = refresh_due_credentials(made.settings, made.engine, force=True)
    assert outcome.action == "refreshed"
    payload = made.stored_tokens("org-42")[0].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["org_id"] == "org-42"  # the simulator binds the org_id a refresh sends


def test_a_wrong_client_secret_is_a_setting_not_a_lost_grant(
    ready: Worlds, tmp_path: Path
) -> None:
    """Issue 17, finding 5: invalid_client marked the credential reauth_required, and fixing
    ROSEROCKET_CLIENT_SECRET was not enough. It is a configuration error of ours (exit 2)."""
    made = ready()
    wrong = made.with_env(ROSEROCKET_CLIENT_SECRET="not-the-registered-secret")
    cli = rosesync(wrong, "token", "refresh", cwd=tmp_path)
    assert cli.returncode == 2
    assert_one_line_error(cli.stderr, "the token refresh failed: invalid_client")
    assert "check ROSEROCKET_CLIENT_ID and ROSEROCKET_CLIENT_SECRET" in cli.stderr
    with pytest.raises(ConfigError, match="invalid_client"):
        refresh_due_credentials(wrong.settings, wrong.engine, force=True)
    (status,) = credential_statuses(made.settings, made.engine)
    assert status.state == "ok"
    assert status.last_error is not None and "invalid_client" in status.last_error
    fixed = rosesync(made, "token", "refresh", cwd=tmp_path)  # the secret fixed: nothing else
    assert fixed.returncode == 0, fixed.stderr
    (status,) = credential_statuses(made.settings, made.engine)
    assert (status.state, status.last_error) == ("ok", None)


def test_a_changed_key_shows_in_token_status(world: Worlds, tmp_path: Path) -> None:
    """Issue 17, finding 12: a changed TOKEN_ENCRYPTION_KEY showed `ok` and failed only in
    the next sync."""
    made = world(env={"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()})
    bootstrap_now(made)
    changed = made.with_env(TOKEN_ENCRYPTION_KEY=Fernet.generate_key().decode())
    shown = rosesync(changed, "token", "status", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    (status,) = json.loads(shown.stdout)
    assert status["state"] == "key_error"
    assert status["last_error"].startswith("TOKEN_ENCRYPTION_KEY cannot decrypt")
    table = rosesync(changed, "token", "status", cwd=tmp_path)
    assert table.stdout.splitlines()[2].split()[:2] == ["default", "key_error"]
    same = rosesync(made, "token", "status", "--json", cwd=tmp_path)
    assert [s["state"] for s in json.loads(same.stdout)] == ["ok"]
