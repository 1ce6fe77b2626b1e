"""Housekeeping for the embedded broker (kombu's SQLAlchemy transport).

kombu marks a delivered message invisible and never deletes it, so ``kombu_message`` grows by
one row per task forever. This deletes the delivered ones once they are old enough to be of no
interest (beat runs it hourly when the broker is ``sqla+...``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import sqlalchemy as sa

from worker.warehouse.db import create_engine, database_file


def purge_delivered_messages(broker_url: str, older_than: timedelta) -> int:
    engine = create_engine(broker_url.removeprefix("sqla+"))
    # kombu stamps messages with naive local time (datetime.now), so compare likewise.
    cutoff = datetime.now() - older_than
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("kombu_message"):
                return 0
            result = conn.execute(
                sa.text("DELETE FROM kombu_message WHERE visible = :no AND timestamp < :cutoff"),
                {"no": False, "cutoff": cutoff},
            )
            return int(result.rowcount)
    finally:
        engine.dispose()


def check_reachable(broker_url: str) -> None:
    """Open and close one connection to the embedded broker's database (kombu's transport
    connects only when a message moves, and caches its engine for the life of the process,
    which a process about to fork must not do: worker/cli/services.py). A SQLite file that is
    missing is made as :func:`prepare` makes it; one that exists is opened as it is, never
    switched to WAL: under a polling worker the switch waited out the 60 s busy timeout, then
    failed ("database is locked"), for a file an older setup had made in rollback mode."""
    prepare(broker_url)
    _connect_once(broker_url, wal=False)


def _connect_once(broker_url: str, wal: bool) -> None:
    engine = create_engine(broker_url.removeprefix("sqla+"), pooled=False, wal=wal)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def prepare(broker_url: str) -> None:
    """Create the embedded broker's database file, in WAL mode, before kombu first opens it.

    rosesync's SQLite connections put a file in WAL mode (db.py), a switch that needs the file
    to itself: made from outside while kombu was polling a file it had created in its own
    default mode, it waited out the busy timeout and failed ("database is locked"; seen when a
    worker started with plain `celery -A config.celery worker` created the file and `rosesync
    sync --enqueue` came to it second). Every worker and beat comes here as it starts
    (config/celery.py), and `rosesync sync --enqueue` checks the broker before it sends, so the
    file is WAL from its creation and no switch is ever made under kombu. An existing file is
    left as it is.
    """
    path = database_file(broker_url.removeprefix("sqla+"))
    if path is None or path.exists():
        return
    try:
        _connect_once(broker_url, wal=True)
    except sa.exc.OperationalError as exc:
        # SQLite refuses the switch at once while another connection makes the same file (a
        # worker and its beat starting together): that process comes here too and switches it.
        if getattr(exc.orig, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
            raise
