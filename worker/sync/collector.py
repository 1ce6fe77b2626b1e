"""CPython's cyclic garbage collector, held back while a sync runs (issue 16).

A sync makes hundreds of thousands of small containers (a row per record, a tuple per child
row, the lists holding them) that reference counting frees as each batch commits: none of
them form cycles. With CPython's default thresholds the cyclic collector still makes a pass
every 700 container allocations, and a full one, walking every object the process holds (the
imported modules', SQLAlchemy's and the batches in flight), every hundred passes. Each pass
holds the GIL, which the batch writer then waits for between its statements.

So while a run executes, the objects that exist at its start (the modules, the engine: they
outlive the run) are frozen out of the collector's walks (``gc.freeze``), and a pass comes
every :data:`RUN_THRESHOLD` allocations instead. Cycles are still collected, only less often;
when the last run in the process ends, the frozen objects are handed back and the defaults
restored. Measured on a full sync of 70,000 records with child tables on SQLite: 0.46 s less
wall time (5.55 -> 5.09 s, medians of six alternating runs), peak RSS unchanged.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RUN_THRESHOLD = 20_000  # container allocations between the collector's passes during a run

_lock = threading.Lock()
_runs = 0  # runs of this process inside held_back(): a Celery thread pool runs several
_saved = gc.get_threshold()


@contextmanager
def held_back() -> Iterator[None]:
    """The collector held back for the duration, however many runs of the process overlap:
    the first to enter holds it back, the last to leave restores it."""
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(RUN_THRESHOLD, *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.unfreeze()
                gc.set_threshold(*_saved)
