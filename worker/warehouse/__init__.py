"""The warehouse: the only layer that speaks SQL.

One database holds the ``rr_<resource>`` tables and the worker's own tables, so a page of rows
and the cursor that follows it commit in one transaction.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.warehouse.db import connection_error, engine_for, require_existing
from worker.warehouse.migrate import upgrade

_ready: set[str] = set()
_ready_lock = threading.Lock()


def connect(database_url: str, create: bool = True) -> Engine:
    """This process's engine, with the schema brought up to date on first use.

    Upgrading on first use (under the migration lock, a no-op when current) means a fresh
    laptop, a new worker image and a newly registered resource all just work; `rosesync db
    upgrade` does the same on purpose, for operators who migrate as a deploy step. With
    ``create=False`` (commands that only read) a missing SQLite file is an error instead.

    A database that cannot be reached or used is one line naming DATABASE_URL (issue 17).
    """
    if not create:
        require_existing(database_url)
    engine = engine_for(database_url)
    with _ready_lock:
        if database_url not in _ready:
            upgrade_database(database_url)
            _ready.add(database_url)
    return engine


def upgrade_database(database_url: str) -> list[str]:
    """`rosesync db upgrade`: what changed; an unusable database is one line (issue 17)."""
    try:
        return upgrade(engine_for(database_url))
    except sa.exc.DBAPIError as exc:
        raise connection_error(database_url, exc) from None
