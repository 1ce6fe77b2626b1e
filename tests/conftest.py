"""Shared fixtures: real services (PostgreSQL, Redis, RabbitMQ), databases on both dialects,
and settings pointed at them.

A test that needs a service which is down fails under CI (``CI=true``: `.ci/run` starts them,
so "down" is a real failure) and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from config.settings import Settings, get_settings, load_settings
from tests.support import Webhook
from worker.logs import registered_secrets

PG_ADMIN_URL = os.environ.get("ROSESYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the soak/fault tests over every seed")


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis: a modest, repeatable set of examples for `make test`; many more, new ones each
    time, under --soak (`make soak`). No example database: nothing is written to the tree."""
    from hypothesis import HealthCheck, settings

    common: dict[str, Any] = {
        "deadline": None,  # a noisy shared machine: time is never the property
        "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    settings.register_profile("rosesync", max_examples=25, derandomize=True, **common)
    settings.register_profile("rosesync-soak", max_examples=400, **common)
    settings.load_profile("rosesync-soak" if config.getoption("--soak") else "rosesync")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``soak_seed``: a short slice of seeds for `make test`, many more under --soak."""
    if "soak_seed" in metafunc.fixturenames:
        count = 25 if metafunc.config.getoption("--soak") else 2
        metafunc.parametrize("soak_seed", range(1, count + 1))


# `make test`'s slice of a seeded test on more than one warehouse: each warehouse runs one of the
# two seeds, so both seeds and every warehouse (and profile) still meet the faults in it, at half
# the cost of every seed on every warehouse (`make soak` runs them all).
SLICE_SEED = {"sqlite": 1, "postgresql": 2, "duckdb": 1}


def _in_soak_only(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    warehouse = params.get("warehouse_url", params.get("database_url"))
    seed = SLICE_SEED.get(warehouse) if "soak_seed" in params else None
    if seed is not None and params["soak_seed"] != seed:
        return True
    return any(
        all(params.get(name) == value for name, value in mark.kwargs.items())
        for mark in item.iter_markers("soak_only")
    )


@pytest.hookimpl(tryfirst=True)  # before -m selects: `make soak` (-m soak) must see the mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.soak_only(**params)``: the cases of a test whose parameters are all these
    (``soak_only(warehouse_url="duckdb", api_profile="documented")``; no parameters: every
    case) are marked ``soak`` and left out of `make test`, which reports them as deselected;
    so are the seeds of :data:`SLICE_SEED`'s split. A case goes here when other cases of
    `make test` cover what it does (DEVELOPERS.md, "What make test runs")."""
    moved = [item for item in items if _in_soak_only(item)]
    for item in moved:
        item.add_marker(pytest.mark.soak)
    if moved and not config.getoption("--soak"):
        config.hook.pytest_deselected(items=moved)
        items[:] = [item for item in items if item not in moved]


def require_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI"):
        pytest.fail(message + "; .ci/run should have started it")
    pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh pair of schemas in the `test` database, dropped afterwards: the connection's
    default one for the rr_* tables, and ``<it>_own`` for rosesync's own tables (the URL's
    ``rrsync_own``, which ROSESYNC_SCHEMA would otherwise set: issue 14, item 3)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}&rrsync_own={schema}_own"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema}_own CASCADE")
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "duckdb": "duckdb_url"}


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(_URL_FIXTURES[request.param]))


@pytest.fixture(params=["sqlite", "postgresql", "duckdb"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """Runs the test on each of the three warehouses (issue 14, item 5: DuckDB is held to the
    same exactness as the other two). Tests of how the warehouse is loaded and kept exact use
    it; tests of the rest of rosesync, which DuckDB does not change, keep ``database_url``."""
    return str(request.getfixturevalue(_URL_FIXTURES[request.param]))


@pytest.fixture(params=["extended", "documented"])
def api_profile(request: pytest.FixtureRequest) -> str:
    """Runs the test against both simulator profiles: the API rosesync was first built on, and
    the API as Rose Rocket documents it (worker/simulator/config.py, PROFILES)."""
    return str(request.param)


def _acquire(attempt: Callable[[], Any], seconds: float, what: str) -> Any:
    """``attempt()`` every 0.2 s until it returns something other than None; a failure naming
    ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (got := attempt()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{what} for {seconds:g} s")
        time.sleep(0.2)
    return got


# Redis has 16 numbered databases and no way to make more. A test claims one of 1..15 with a
# key in database 0 set only if absent, so that no other test flushes it while it runs: not one
# on another xdist worker, nor one of another suite running at the same time against the same
# Redis (worktrees share the services). The claim expires on its own if the process dies; it
# outlives any test, which pytest-timeout stops after 300 s.
REDIS_DATABASES = range(1, 16)
REDIS_CLAIM = "rosesync-test:redis-db:{}"  # the key, by index
REDIS_CLAIM_SECONDS = 900


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database index of its own for the test, flushed before and after."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    claims = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    owner = f"{os.environ.get('PYTEST_XDIST_WORKER', 'pytest')} pid {os.getpid()}"  # for a human

    def claim() -> int | None:
        for index in REDIS_DATABASES:
            if claims.set(REDIS_CLAIM.format(index), owner, nx=True, ex=REDIS_CLAIM_SECONDS):
                return index
        return None

    index = _acquire(claim, 60, "every Redis database 1..15 stayed claimed")
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{index}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        claims.delete(REDIS_CLAIM.format(index))
        claims.close()


# RabbitMQ's default vhost is shared (a vhost per test would take an administrator: rabbitmqctl
# or the management plugin), and with it Celery's default queue and its broadcast exchanges: two
# tests on it at once would run each other's tasks. So a test on RabbitMQ holds this lock, which
# every xdist worker and every suite on this machine (worktrees share the services) takes too.
AMQP_LOCK = Path(tempfile.gettempdir()) / "rosesync-test-rabbitmq.lock"


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """RabbitMQ's default vhost, for this test alone while it runs."""
    require_service("RabbitMQ", AMQP_HOST, AMQP_PORT)

    with AMQP_LOCK.open("w") as lock:

        def take() -> bool | None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            return True

        # the tests on RabbitMQ take seconds each; pytest-timeout stops a test at 300 s
        _acquire(take, 180, f"another test on RabbitMQ held {AMQP_LOCK}")
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}//"
    # closing the file released the lock (so does the process's death)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A loopback endpoint recording the alerts apprise posts to it (``webhook.url``)."""
    with Webhook() as running:
        yield running


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """``make_settings(**env)``: Settings from exactly these variables (no .env, no os.environ),
    with the key file and SQLite files under the test's tmp_path."""

    def build(**env: str) -> Settings:
        base = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
            "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
            "TOKEN_KEY_FILE": str(tmp_path / "rrsync.key"),
        }
        base.update(env)
        return load_settings(environ=base, dotenv_path=None)

    return build


@pytest.fixture
def use_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., Settings]]:
    """``use_environment(**env)``: make these the process's settings (what get_settings() and
    child processes see), starting from a clean slate of rosesync variables."""
    from config.settings import ENVIRONMENT_VARIABLES

    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def apply(**env: str) -> Settings:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test, at DEBUG: no log record (message or traceback, before any redaction) may
    carry a value rosesync registered as secret (tokens, codes, verifiers, client secrets)."""
    caplog.set_level(logging.DEBUG)
    yield
    plain = logging.Formatter("%(name)s %(message)s")
    records = caplog.get_records("setup") + caplog.get_records("call")
    text = "\n".join(plain.format(record) for record in records)
    leaked = [f"{s[:4]}...({len(s)} chars)" for s in registered_secrets() if s in text]
    assert leaked == [], "secrets reached the logs"
