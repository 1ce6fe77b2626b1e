"""pyproject.toml and the Makefile as `make demo` meets them (issue 17, finding 13)."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_expression() -> None:
    """A table-form `license = { text = ... }` made setuptools print a deprecation warning three
    times on every install; PEP 639's SPDX string, which setuptools accepts from 77 on, does
    not."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "LicenseRef-Proprietary"
    assert "setuptools>=77" in data["build-system"]["requires"]
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))


def _dry_run(target: str) -> str:
    """What `make TARGET` would run. Under `make test` itself (CI) the parent's MAKEFLAGS and
    MAKELEVEL would make this nested make print "Entering directory" lines: drop them."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_make_demo_installs_only_what_rosesync_needs() -> None:
    """`make demo` installed ruff and mypy; the test extras belong to `make test`."""
    demo = _dry_run("demo")
    installs = [line for line in demo.splitlines() if "pip install" in line and "-e" in line]
    assert installs == [".venv/bin/python -m pip install --quiet -e ."]
    assert demo.splitlines()[-1] == ".venv/bin/rosesync demo"
    test = _dry_run("test")
    assert ".venv/bin/python -m pip install --quiet -e '.[test]'" in test


def test_ci_runs_the_readme_test_command() -> None:
    """CI runs `.ci/run` on a clean clone: it must be valid bash and end by running `make test`
    (a broken line there once turned every CI run red before a single test ran)."""
    script = ROOT / ".ci" / "run"
    subprocess.run(["bash", "-n", str(script)], check=True)
    commands = [
        line.strip()
        for line in script.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert "make test" in (ROOT / "README.md").read_text()


def test_make_test_runs_the_suite_in_four_processes() -> None:
    """About 1,200 s in one process on CI's 2 cores, 270 to 360 s in four (DEVELOPERS.md, "What
    make test runs")."""
    assert _dry_run("test").splitlines()[-1] == ".venv/bin/pytest -q -n 4"
    assert _dry_run("soak").splitlines()[-1] == ".venv/bin/pytest -q -n 4 -m soak --soak"
