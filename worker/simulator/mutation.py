"""Live mutation: the dataset keeps changing while a client pages through it.

That is the point of the simulator for a sync engine. On a busy TMS, records are edited, created
and deleted between two page requests, so offset paging drifts (an edited record jumps to the end
of the updated_at order, a deletion shifts every later record one slot back). Mutations come
either after each answered API read (deterministic for a sequential client) or from a background
thread at a steady rate.
"""

from __future__ import annotations

import threading
import time

from worker.simulator.counters import Counters
from worker.simulator.data import Dataset

# The background thread never sleeps less than this, however high the rate: at high rates it
# applies several mutations per wake-up instead.
MIN_TICK = 0.02


class LiveMutation:
    def __init__(
        self, dataset: Dataset, counters: Counters, per_request: int, per_second: float
    ) -> None:
        self._dataset = dataset
        self._counters = counters
        self._per_request = per_request
        self._per_second = per_second
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def mutate(self, count: int, resource: str | None = None) -> dict[str, int]:
        done = self._dataset.mutate(count, resource)
        self._counters.add_all("mutations", done)
        return done

    def after_read(self) -> None:
        """Called once per answered API list/get request, before the answer is sent."""
        if self._per_request:
            self.mutate(self._per_request)

    def set(self, per_request: int | None = None, per_second: float | None = None) -> None:
        """Change the rates; None leaves a rate as it is, 0 stops it.

        When this returns, no background batch at the old rate is still in flight.
        """
        if (per_request is not None and per_request < 0) or (
            per_second is not None and per_second < 0
        ):
            raise ValueError("mutation rates must be >= 0")
        with self._changed:
            if per_request is not None:
                self._per_request = per_request
            if per_second is not None:
                self._per_second = per_second
            self._changed.notify_all()

    def rates(self) -> dict[str, float]:
        return {"per_request": self._per_request, "per_second": self._per_second}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rr-simulator-mutation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        due = 0.0  # mutations owed but not yet applied (fractions carry over between ticks)
        last = time.monotonic()
        with self._changed:
            while True:
                while not self._stopping and self._per_second <= 0:
                    self._changed.wait()
                    due, last = 0.0, time.monotonic()
                if self._stopping:
                    return
                self._changed.wait(max(1.0 / self._per_second, MIN_TICK))
                now = time.monotonic()
                due += (now - last) * self._per_second
                last = now
                count = int(due)
                due -= count
                # Applied with the condition's lock held, so that set() and stop() wait for the
                # batch instead of racing it.
                if count and not self._stopping:
                    self.mutate(count)
