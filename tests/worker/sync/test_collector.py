"""worker/sync/collector.py: the collector is held back while any run of the process executes,
and given back as it was once the last one ends."""

from __future__ import annotations

import gc
import threading

from worker.sync import collector


def test_held_back_freezes_and_raises_the_threshold_then_restores_both() -> None:
    before = gc.get_threshold()
    with collector.held_back():
        assert gc.get_threshold() == (collector.RUN_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_last_of_overlapping_runs_restores_it() -> None:
    before = gc.get_threshold()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with collector.held_back():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(5)
    with collector.held_back():
        second_in.set()
        assert first_out.wait(5)
        seen.append(gc.get_threshold())  # the first run has ended, this one has not
    thread.join()
    assert seen == [(collector.RUN_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failing_run_restores_it() -> None:
    before = gc.get_threshold()
    try:
        with collector.held_back():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
