"""The tree keeps the data flow's shape (issue 11): a module imports only from its own stage or a
lower one, so settings -> source -> warehouse -> credentials -> sync -> ops -> entry points
cannot rot into a tangle one convenient import at a time.

The imports are read from the source (every ``import``, top-level or inside a function, since a
lazy upward import is still an upward dependency), not by importing anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the first stage whose prefix matches its dotted name.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("worker.errors", "worker.logs", "worker.clock")),
    ("settings", ("config.settings", "config.schedule")),
    ("source", ("worker.source",)),
    ("warehouse", ("worker.warehouse",)),
    ("credentials", ("worker.credentials",)),
    ("sync", ("worker.sync",)),
    ("ops", ("worker.ops", "config.celery")),
    ("entry", ("worker.cli", "worker.demo", "worker.__main__")),
)
RANK = {name: rank for rank, (name, _) in enumerate(STAGES)}

# Upward imports that are deliberate, with the reason.
ALLOWED = {
    # SYNC_RESOURCES is validated against the registry when settings load, so a typo fails at
    # start-up; the registry is pure data and imports nothing but ground.
    ("config.settings", "worker.source.resources"),
}

# Imports of these third-party packages are confined to the stages listed (DEVELOPERS.md).
CONFINED = {
    "click": {"entry"},
    "requests": {"source", "credentials"},
}


# The top-level packages' own __init__ modules hold nothing but a version and a docstring.
PACKAGES = {"worker": "ground", "config": "settings"}


def stage_of(module: str) -> str | None:
    """The stage of a module of ours (None: the simulator, or not ours)."""
    if module in PACKAGES:
        return PACKAGES[module]
    for name, prefixes in STAGES:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(source: str, module: str) -> Iterator[str]:
    """Every module ``source`` imports (absolute names; relative ones resolved)."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                # `from worker.source import resources` imports worker.source.resources
                submodule = f"{base}.{alias.name}"
                yield submodule if is_module(submodule) else base


def violations(module: str, source: str) -> list[str]:
    """What is wrong with ``module``'s imports, one line each."""
    found: list[str] = []
    mine = stage_of(module)
    in_simulator = module.startswith("worker.simulator")
    for target in imports(source, module):
        top = target.split(".")[0]
        if in_simulator:
            if top in ("worker", "config") and not target.startswith("worker.simulator"):
                found.append(f"{module} imports {target}: the simulator imports nothing of ours")
            continue
        if target.startswith("worker.simulator") and mine != "entry":
            found.append(f"{module} imports {target}: only entry points run the simulator")
        for package, stages in CONFINED.items():
            if top == package and mine not in stages:
                found.append(f"{module} imports {package}: only {sorted(stages)} may")
        theirs = stage_of(target)
        if mine is None or theirs is None or (module, target) in ALLOWED:
            continue
        if RANK[theirs] > RANK[mine]:
            found.append(f"{module} ({mine}) imports {target} ({theirs}): an upward import")
    return found


def our_modules() -> Iterator[tuple[str, str]]:
    for folder in ("worker", "config"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield module_name(path), path.read_text()


def test_every_module_is_in_a_stage() -> None:
    unplaced = [m for m, _ in our_modules() if stage_of(m) is None and "simulator" not in m]
    assert unplaced == [], "add these to a stage in STAGES (and to the README's layout)"


def test_no_module_imports_upward() -> None:
    found = [line for module, source in our_modules() for line in violations(module, source)]
    assert found == []


def test_an_upward_import_is_caught() -> None:
    """The check itself: each kind of violation it exists for is reported."""
    assert violations("worker.source.api", "from worker.sync.run import sync_resource")
    assert violations("worker.sync.run", "import worker.ops.tasks")
    assert violations("worker.warehouse.load", "from worker.credentials import store")
    assert violations("worker.ops.status", "from worker.simulator import Simulator")
    assert violations("worker.simulator.api", "from worker.source.records import Decoder")
    assert violations("worker.sync.run", "import click")
    assert violations("worker.warehouse.db", "import requests")
    assert violations("worker.source.keyset", "from . import api") == []
    assert violations("worker.sync.reconcile", "from ..ops import tasks")


def test_only_settings_read_the_environment() -> None:
    readers = [
        module
        for module, source in our_modules()
        if module != "config.settings" and ("os.environ" in source or "getenv(" in source)
    ]
    assert readers == []


# What opens the warehouse: each must be given Settings.warehouse_url, which carries where
# rosesync's own tables live (ROSESYNC_SCHEMA, issue 14); DATABASE_URL alone opens the layout
# from before, and on PostgreSQL would create a second, empty set of rosesync's tables.
_OPENERS = {"connect", "create_engine", "engine_for", "health", "upgrade_database"}


def bare_database_url(source: str) -> list[int]:
    """Lines where a warehouse opener is given ``<settings>.database_url``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name in _OPENERS and any(
            isinstance(arg, ast.Attribute) and arg.attr == "database_url" for arg in node.args
        ):
            lines.append(node.lineno)
    return lines


def test_the_warehouse_is_opened_through_the_warehouse_url() -> None:
    found = [
        f"{module}:{line}" for module, source in our_modules() for line in bare_database_url(source)
    ]
    assert found == [], "open the warehouse with settings.warehouse_url"
    assert bare_database_url("connect(settings().database_url)") == [1]
    assert bare_database_url("connect(settings.warehouse_url)") == []
