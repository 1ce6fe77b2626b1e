"""docker-compose.yml, Dockerfile and .env.example, checked against the contract (no Docker
engine runs here, so the files are parsed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from config.settings import DEPLOYMENT_VARIABLES, ENVIRONMENT_VARIABLES
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "worker", "beat", "flower"} <= set(services)
    for name in ("postgres", "redis", "worker", "beat", "flower"):
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no health check"


def test_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["worker"]["command"][:2] == ["rosesync", "worker"]
    assert services["beat"]["command"][:2] == ["rosesync", "beat"]
    assert services["migrate"]["command"] == ["rosesync", "db", "upgrade"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "config.celery", "flower"]
    # embedded beat would make two schedulers: the worker must not run one
    assert "-B" not in services["worker"]["command"]


def test_exactly_one_beat(compose: dict[str, Any]) -> None:
    beats = [
        name
        for name, service in compose["services"].items()
        if service.get("command", [None, None])[:2] == ["rosesync", "beat"]
    ]
    assert beats == ["beat"]
    assert compose["services"]["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_named_volumes(compose: dict[str, Any]) -> None:
    assert {"pgdata", "redisdata"} <= set(compose["volumes"])
    postgres_volumes = compose["services"]["postgres"]["volumes"]
    assert any(v.startswith("pgdata:") for v in postgres_volumes)


def _setting(name: str) -> str:
    return name.removesuffix("_FILE")


def test_environment_names_are_the_contracts(compose: dict[str, Any]) -> None:
    extra = {"FLOWER_BASIC_AUTH"}
    for service in compose["services"].values():
        if service.get("image", "").startswith(("postgres", "redis")):
            continue
        for name in service.get("environment", {}) or {}:
            assert _setting(name) in ENVIRONMENT_VARIABLES or name in extra, name


def test_settings_come_from_dotenv_with_overridable_defaults(compose: dict[str, Any]) -> None:
    """Issue 17, finding 14: DATABASE_URL was hard-coded under `environment:` and silently
    overrode .env. Every plain setting is ${NAME:-default}: .env (or the shell) wins."""
    env = compose["services"]["worker"]["environment"]
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert value.startswith("/run/secrets/"), name
        else:
            assert value.startswith(f"${{{name}:-"), f"{name}: {value}"
    assert env["DATABASE_URL"] == "${DATABASE_URL:-postgresql://rosesync@postgres:5432/rosesync}"
    assert compose["services"]["worker"]["env_file"][0]["path"] == ".env"


def test_secrets_are_docker_secrets_and_no_password_is_written_down(
    compose: dict[str, Any],
) -> None:
    """Secrets were plain environment variables (visible to `docker inspect`) and the
    warehouse password was hard-coded."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:" not in text
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), "a password in a URL"
    files = {name: spec["file"] for name, spec in compose["secrets"].items()}
    assert files == {
        "postgres_password": "./secrets/postgres_password",
        "roserocket_client_secret": "./secrets/roserocket_client_secret",
        "token_encryption_key": "./secrets/token_encryption_key",
    }
    worker = compose["services"]["worker"]
    assert set(worker["secrets"]) == set(files)
    for variable in ("ROSEROCKET_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEY", "DATABASE_PASSWORD"):
        assert variable not in worker["environment"]
        assert worker["environment"][f"{variable}_FILE"].startswith("/run/secrets/")
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_warehouse_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    """Analysts could not reach PostgreSQL from the host; it must not reach the network."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert compose["services"]["postgres"]["ports"] == ["127.0.0.1:${POSTGRES_PORT:-5432}:5432"]


def test_the_readme_section_the_key_errors_name_exists() -> None:
    """The TOKEN_ENCRYPTION_KEY error pointed to a README section that did not exist."""
    from worker.credentials import cipher

    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^### Encryption key$", readme, re.M)
    source = Path(cipher.__file__).read_text()
    assert source.count("(README, Encryption key)") >= 2


def test_workers_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    for name in ("worker", "beat"):
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_installs_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    assert "pip install '.[flower]'" in dockerfile
    assert re.search(r"^USER rosesync", dockerfile, re.M), "the image does not run as root"


def test_env_example_names_real_settings() -> None:
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    assert names
    unknown = set(names) - set(ENVIRONMENT_VARIABLES) - DEPLOYMENT_VARIABLES
    assert not unknown


def _wait(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0]
            raise AssertionError(f"{what} never happened:\n{output[-3000:]}")
        time.sleep(0.3)


def test_each_service_command_runs_for_real(
    compose: dict[str, Any], postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Issue 17, finding 14: no image can be pulled here, so each service's command runs
    outside a container, with the compose file's environment (secrets as files)."""
    from config.settings import load_settings
    from worker.ops.presence import running_beat, workers
    from worker.warehouse import connect

    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "postgres_password").write_text("unused-with-trust-auth\n")
    (secrets / "roserocket_client_secret").write_text("client-secret-from-a-file\n")
    (secrets / "token_encryption_key").write_text(Fernet.generate_key().decode() + "\n")
    resolved = {
        "DATABASE_URL": postgres_url.replace("postgresql+psycopg://", "postgresql://"),
        "CELERY_BROKER_URL": redis_url,
        "LOG_FORMAT": "json",
        "ROSEROCKET_CLIENT_ID": "compose-client",
        "FLOWER_BASIC_AUTH": "admin:compose-test",
    }
    environment = compose["services"]["worker"]["environment"]
    for name, value in environment.items():
        if name.endswith("_FILE"):
            resolved[name] = str(secrets / value.removeprefix("/run/secrets/"))
        else:
            assert name in resolved, f"the test does not know how to resolve {name}"
    # the image has rosesync and celery on PATH; here they are in this interpreter's bin
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **resolved, "PATH": path}
    settings = load_settings(environ=resolved, dotenv_path=None)

    def start(command: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    services = compose["services"]
    migrate = subprocess.run(
        services["migrate"]["command"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    engine = connect(settings.database_url, create=False)
    worker = start(services["worker"]["command"])
    beat = start(services["beat"]["command"])
    port = free_port()
    flower = start([*services["flower"]["command"][:-1], f"--port={port}"])
    try:
        _wait(lambda: bool(workers(settings, engine)), "the worker publishing itself", worker)
        _wait(lambda: running_beat(engine) is not None, "the beat taking the lease", beat)

        def flower_answers() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthcheck", timeout=5
                ) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        _wait(flower_answers, "flower answering its health check", flower)
    finally:
        for process in (worker, beat, flower):
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[0] for process in (worker, beat, flower)]
        engine.dispose()
    for output in outputs:
        assert "client-secret-from-a-file" not in output
        assert "Traceback" not in output, output[-4000:]
