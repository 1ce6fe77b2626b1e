"""Start-up imports what a command needs, when it needs it (issue 16, target 2).

Every `rosesync` command pays its imports before it does anything: `rosesync --help` paid for
SQLAlchemy and Celery, `status` for Alembic, requests and Celery, a sync for Alembic, Celery and
psycopg on SQLite. Each case imports modules in a fresh interpreter (this process has imported
everything already) and lists which heavy third-party packages got loaded. The timings are in
benchmarks/ (`make bench`, the startup scenario); this test only keeps the imports from coming
back one convenient top-level import at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "alembic",
    "apprise",
    "celery",
    "cryptography",
    "dotenv",
    # the standard library's, but 50 ms: worker/__init__ looked its version up on every command
    "importlib.metadata",
    "kombu",
    "msgspec",
    "psycopg",
    "redis",
    "requests",
    "sqlalchemy",
    "tenacity",
)
ROOT = Path(__file__).resolve().parent.parent


def loaded_after(statement: str, cwd: Path, watched: tuple[str, ...] = HEAVY) -> set[str]:
    """The ``watched`` modules in sys.modules after ``statement`` runs in a new interpreter."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    return {name for name in watched if name in modules}


def test_the_cli_imports_no_heavy_package(tmp_path: Path) -> None:
    """`rosesync --help` (and every command before it starts) loads click and our own code."""
    assert loaded_after("import worker.cli", tmp_path) == set()


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        # status reads the database (SQLAlchemy) and the stored credential (decrypted, so that
        # its tokens are redacted): no HTTP, no Celery, no Alembic on a migrated database
        # (SQLAlchemy imports importlib.metadata itself)
        ("worker.ops.status", {"sqlalchemy", "importlib.metadata", "cryptography", "msgspec"}),
        # an inline sync on SQLite: HTTP and decoding, but neither Celery nor Alembic nor psycopg
        (
            "worker.ops.doctor, worker.credentials.store, worker.sync.run",
            {"sqlalchemy", "importlib.metadata", "cryptography", "msgspec", "requests", "tenacity"},
        ),
    ],
)
def test_a_command_imports_only_what_it_uses(
    command: str, allowed: set[str], tmp_path: Path
) -> None:
    assert loaded_after(f"import worker.cli, {command}", tmp_path) <= allowed


def test_first_use_of_a_current_database_does_not_import_alembic(tmp_path: Path) -> None:
    """Every process migrates on its first connection; when there is nothing to apply, that
    must not cost Alembic's import and the loading of its scripts."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    create = f"from worker.warehouse import connect\nconnect({url!r})"
    assert "alembic" in loaded_after(create, tmp_path)  # the first time there is work to do
    assert "alembic" not in loaded_after(create, tmp_path)


# SQLAlchemy's PostgreSQL dialect imports its asyncpg driver module and asyncio: about 20 ms
# that a command on SQLite has no use for (worker/warehouse/schema.py, Json).
POSTGRES_DIALECT = ("sqlalchemy.dialects.postgresql", "alembic")


def test_commands_on_sqlite_do_not_load_the_postgresql_dialect(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"DATABASE_URL=sqlite:///{tmp_path / 'warehouse.db'}\n"
        f"TOKEN_KEY_FILE={tmp_path / 'rrsync.key'}\n"
    )
    cli = "from worker.cli import main\ntry:\n    main({})\nexcept SystemExit:\n    pass"
    assert loaded_after(cli.format(["db", "upgrade"]), tmp_path, POSTGRES_DIALECT)  # Alembic's
    assert loaded_after(cli.format(["status"]), tmp_path, POSTGRES_DIALECT) == set()
    # a sync's modules, its first connection, and the loader's statements for SQLite
    sync = (
        "import worker.sync.run\n"
        "from config.settings import load_settings\n"
        "from worker.warehouse import connect\n"
        "from worker.warehouse.db import upsert\n"
        "from worker.warehouse.schema import resource_tables\n"
        "engine = connect(load_settings().warehouse_url)\n"
        "upsert(engine)(resource_tables['orders']).compile(dialect=engine.dialect)"
    )
    assert loaded_after(sync, tmp_path, POSTGRES_DIALECT) == set()
