"""worker/warehouse/broker.py: the embedded broker's file, made in WAL mode before kombu opens
it, so that a check from another process never has to switch it under a polling worker."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from celery import Celery, signals
from celery.utils.dispatch import Signal

from config.celery import make_app
from config.settings import Settings
from worker.warehouse import broker
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


class Starting:
    """The sender of worker_init (the worker) or beat_init (the beat service): it has the app."""

    def __init__(self, app: Celery) -> None:
        self.app = app


@pytest.mark.parametrize("started", [signals.worker_init, signals.beat_init])
def test_a_starting_worker_or_beat_creates_the_broker_file_in_wal_mode(
    make_settings: Callable[..., Settings], tmp_path: Path, started: Signal
) -> None:
    """What `celery -A config.celery worker` (or beat) does before its kombu opens the file:
    the file is WAL from its creation."""
    settings = make_settings(CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'queue.db'}")
    app = make_app(settings)
    assert not (tmp_path / "queue.db").exists()  # importing the app creates nothing
    started.send(sender=Starting(app))
    assert journal_mode(tmp_path / "queue.db") == "wal"


def test_a_process_that_finds_another_making_the_file_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker and its beat start together (and `make test`'s pytest processes did, at
    collection, when importing the app made the file): one found no file, and by the time it
    switches it to WAL the other holds it in its first write. SQLite refuses the switch at once
    ("database is locked"); the process goes on, the other one switching it."""
    path = tmp_path / "queue.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as making:
        making.execute("BEGIN IMMEDIATE")  # the other process, making the file
        # this one looked a moment before: no file yet
        monkeypatch.setattr(broker, "database_file", lambda _url: tmp_path / "not-yet.db")
        prepare(f"sqla+sqlite:///{path}")  # before the change: OperationalError at once
        making.execute("COMMIT")


def test_a_broker_check_does_not_wait_for_a_polling_worker(tmp_path: Path) -> None:
    """Before, the check switched a kombu-made file to WAL and waited out the 60 s busy
    timeout behind a worker's read ("database is locked"); on a prepared file there is no
    switch to make."""
    url = f"sqla+sqlite:///{tmp_path / 'queue.db'}"
    prepare(url)
    with polling(tmp_path / "queue.db"):
        check_reachable(url)  # before the change: OperationalError after 60 s


def test_a_broker_check_leaves_a_rollback_mode_file_as_it_is_under_a_polling_worker(
    tmp_path: Path,
) -> None:
    """A file an older setup made in SQLite's rollback mode: the check switched it to WAL, and
    behind a polling worker waited out the 60 s busy timeout, then failed ("database is
    locked"). It now opens the file as it is."""
    path = tmp_path / "queue.db"
    with polling(path):
        check_reachable(f"sqla+sqlite:///{path}")  # before: OperationalError after 60 s
    assert journal_mode(path) == "delete"


def test_a_broker_check_makes_a_missing_file_in_wal_mode(tmp_path: Path) -> None:
    check_reachable(f"sqla+sqlite:///{tmp_path / 'queue.db'}")
    assert journal_mode(tmp_path / "queue.db") == "wal"


def test_an_existing_broker_file_is_left_as_it_is(tmp_path: Path) -> None:
    """Not switched under a worker that may be polling it: another process made it."""
    path = tmp_path / "queue.db"
    with polling(path):
        prepare(f"sqla+sqlite:///{path}")
    assert journal_mode(path) == "delete"
