"""worker/warehouse/broker.py: the embedded broker's file, made in WAL mode before kombu opens
it, so that a check from another process never has to switch it under a polling worker."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from config.celery import make_app
from config.settings import Settings
from worker.warehouse.broker import check_reachable, prepare


def journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


@contextmanager
def polling(path: Path) -> Iterator[None]:
    """What a kombu worker does between two messages: a read transaction on the queue table."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kombu_message (id INTEGER PRIMARY KEY)")
        conn.execute("BEGIN")
        conn.execute("SELECT * FROM kombu_message").fetchall()
        yield
        conn.execute("COMMIT")


def test_the_celery_app_creates_the_broker_file_in_wal_mode(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The path of every process that uses the broker, `celery -A config.celery worker`
    included: the file kombu will open is WAL from its creation."""
    settings = make_settings(CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'queue.db'}")
    make_app(settings)
    assert journal_mode(tmp_path / "queue.db") == "wal"


def test_a_broker_check_does_not_wait_for_a_polling_worker(tmp_path: Path) -> None:
    """Before, the check switched a kombu-made file to WAL and waited out the 60 s busy
    timeout behind a worker's read ("database is locked"); on a prepared file there is no
    switch to make."""
    url = f"sqla+sqlite:///{tmp_path / 'queue.db'}"
    prepare(url)
    with polling(tmp_path / "queue.db"):
        check_reachable(url)  # before the change: OperationalError after 60 s


def test_an_existing_broker_file_is_left_as_it_is(tmp_path: Path) -> None:
    """Not switched under a worker that may be polling it: another process made it."""
    path = tmp_path / "queue.db"
    with polling(path):
        prepare(f"sqla+sqlite:///{path}")
    assert journal_mode(path) == "delete"
