"""The warehouse: the only layer that speaks SQL.

One database holds the ``rr_<resource>`` tables and the worker's own tables, so a page of rows
and the cursor that follows it commit in one transaction.
"""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from worker.warehouse.db import engine_for
from worker.warehouse.migrate import upgrade

_ready: set[str] = set()
_ready_lock = threading.Lock()


def connect(database_url: str) -> Engine:
    """This process's engine, with the schema brought up to date on first use.

    Upgrading on first use (under the migration lock, a no-op when current) means a fresh
    laptop, a new worker image and a newly registered resource all just work; `rosesync db
    upgrade` does the same on purpose, for operators who migrate as a deploy step.
    """
    engine = engine_for(database_url)
    with _ready_lock:
        if database_url not in _ready:
            upgrade(engine)
            _ready.add(database_url)
    return engine
