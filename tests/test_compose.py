"""docker-compose.yml, Dockerfile and .env.example, checked against the contract (no Docker
engine runs here, so the files are parsed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import ENVIRONMENT_VARIABLES

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


def test_environment_names_are_the_contracts(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = worker["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert env["CELERY_BROKER_URL"].startswith("redis://")
    extra = {"FLOWER_BASIC_AUTH"}
    for service in compose["services"].values():
        for name in service.get("environment", {}) or {}:
            if service.get("image", "").startswith(("postgres", "redis")):
                continue
            assert name in ENVIRONMENT_VARIABLES or name in extra, name
    # secrets are required from the operator, never baked in
    assert "${TOKEN_ENCRYPTION_KEY:?" in (ROOT / "docker-compose.yml").read_text()


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
    unknown = set(names) - set(ENVIRONMENT_VARIABLES) - {"FLOWER_BASIC_AUTH"}
    assert not unknown
