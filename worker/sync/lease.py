"""Leases: "only one at a time" across processes and machines (one sync per resource, one beat).

A lease is a row in the warehouse database (``warehouse/leases.py``) with an owner and an
expiry. The holder keeps it alive from a heartbeat thread, so the expiry can stay short (a
crashed holder frees it within ``ttl`` seconds) while a sync of any length keeps it. One database
lease serves every broker (SQLite, Redis, RabbitMQ) and, unlike a Redis lock, fences the writes
it protects: the sync renews it in the transaction of every page it commits.

A holder that died on this very machine (same host and PID namespace, PID gone) is recognised
at once, so ``kill -9`` followed by a rerun does not wait out the expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from worker.errors import LeaseLost
from worker.warehouse import leases as rows

log = logging.getLogger(__name__)


def _machine() -> str:
    """Host name plus PID namespace: PIDs are only comparable inside one namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}/{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it runs no code.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def holder_is_gone(owner: str) -> bool:
    """True only when ``owner`` certainly died: same machine and namespace, PID not running."""
    try:
        machine, pid, _token = owner.rsplit(":", 2)
        return machine == _machine() and not _pid_alive(int(pid))
    except ValueError:
        return False


class Lease:
    """One named lease held by this process. Not reentrant across threads; one per run."""

    def __init__(self, engine: Engine, name: str, ttl: float, detail: str | None = None) -> None:
        self.engine = engine
        self.name = name
        self.ttl = ttl
        self.detail = detail  # published with the lease (leases.acquire)
        self.owner = f"{_machine()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.lost = threading.Event()

    def acquire(self) -> bool:
        return rows.acquire(
            self.engine, self.name, self.owner, self.ttl, holder_is_gone, self.detail
        )

    def renew(self, conn: sa.Connection) -> None:
        """Inside a write transaction: extend, or raise :class:`LeaseLost` (rolling it back)."""
        if self.lost.is_set() or not rows.renew(conn, self.name, self.owner, self.ttl):
            self.lost.set()
            raise LeaseLost(
                f"lease {self.name!r} was taken over by another process; this run stops without "
                "writing (the other run carries on)"
            )

    def release(self) -> None:
        rows.release(self.engine, self.name, self.owner)

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew every ``ttl / 3`` seconds from a daemon thread until the block ends."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.ttl / 3):
                try:
                    if not self.acquire():
                        log.error("lease %s lost to another process", self.name)
                        self.lost.set()
                        return
                except sa.exc.SQLAlchemyError as exc:  # a blip; the next beat tries again
                    log.warning("could not renew lease %s: %s", self.name, exc.__class__.__name__)

        thread = threading.Thread(target=beat, name=f"lease:{self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
