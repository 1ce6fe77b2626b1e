"""worker/source/concurrency.py: the decisions on how many requests are in flight (issue 16).

Pure logic, fed simulated time: each *round* sends ``limit`` requests together and they finish
together after the latency the modelled API gives at that load. Nothing sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from worker.source.concurrency import (
    HOLD_WINDOWS,
    MIN_WINDOW,
    ConcurrencyController,
    Decision,
)


def run(
    controller: ConcurrencyController,
    rounds: int,
    latency: Callable[[int], float],
    now: float = 0.0,
    rate_limited: Callable[[int], bool] = lambda _round: False,
) -> float:
    """``rounds`` rounds of ``controller.limit`` requests each; returns the time after them."""
    for number in range(rounds):
        limit = controller.limit
        took = latency(limit)
        for _ in range(limit):
            controller.observe(now, now + took, rate_limited=rate_limited(number))
        now += took
    return now


def distant(_in_flight: int) -> float:
    """An API 100 ms away with room to spare: latency does not depend on the load."""
    return 0.1


def saturated(in_flight: int) -> float:
    """An API (or a client CPU) that does 20 requests a second whatever is in flight: each
    request waits for the ones before it, so latency grows with the load."""
    return in_flight / 20


def knee(at: int) -> Callable[[int], float]:
    """An API 100 ms away that serves ``at`` requests at once; past that they queue, so
    throughput stops growing at ``at`` in flight (``at`` / 0.1 s requests a second)."""
    return lambda in_flight: max(0.1, in_flight / (at * 10))


def windows(controller: ConcurrencyController) -> int:
    """Rounds that make one window at the current limit (see ``run``)."""
    return max(MIN_WINDOW, 2 * controller.limit) // controller.limit


def test_slow_start_doubles_to_the_maximum_while_latency_dominates() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    now = run(controller, windows(controller), distant)
    assert controller.decisions == [Decision(2, 4, "slow start")]
    run(controller, windows(controller), distant, now)
    # two windows, where one step at a time took six (issue 16)
    assert controller.decisions == [Decision(2, 4, "slow start"), Decision(4, 8, "slow start")]
    run(controller, 60, distant)
    assert controller.limit == controller.settled == 8
    assert len(controller.decisions) == 2


def test_slow_start_stops_at_the_maximum() -> None:
    controller = ConcurrencyController(start=2, maximum=6)
    run(controller, 60, distant)
    assert controller.decisions == [Decision(2, 4, "slow start"), Decision(4, 6, "slow start")]


def test_slow_start_survives_noisy_windows() -> None:
    """Latency 80-120 ms at random: a 10% test after each doubling would end slow start early
    now and then; the 1.5x test does not, and the limit still reaches the maximum at once."""
    for seed in range(20):
        jitter = random.Random(seed)
        controller = ConcurrencyController(start=2, maximum=8)
        run(controller, 6, lambda _n, j=jitter: j.uniform(0.08, 0.12))
        assert controller.decisions == [
            Decision(2, 4, "slow start"),
            Decision(4, 8, "slow start"),
        ], seed


def test_a_doubling_that_buys_nothing_is_undone_and_ends_slow_start() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    run(controller, 200, saturated)
    assert controller.decisions[:3] == [
        Decision(2, 4, "slow start"),
        Decision(4, 2, "no gain"),  # back where it was, not one step down
        Decision(2, 3, "probe"),  # after the hold: one step at a time from now on
    ]
    assert all(d.reason != "slow start" for d in controller.decisions[1:])
    assert max(d.after for d in controller.decisions[1:]) == 3
    assert controller.settled == 2


def test_a_doubling_that_pays_less_than_in_proportion_ends_slow_start() -> None:
    # 2 -> 4 doubles throughput; 4 -> 8 gives 55 requests a second instead of 40 (1.375x):
    # kept, but from 8 it probes one step at a time, and 9 buys nothing
    controller = ConcurrencyController(start=2, maximum=16)
    run(controller, 100, knee(5.5))  # type: ignore[arg-type]
    assert controller.decisions[:4] == [
        Decision(2, 4, "slow start"),
        Decision(4, 8, "slow start"),
        Decision(8, 9, "probe"),
        Decision(9, 8, "no gain"),
    ]
    assert all(d.reason != "slow start" for d in controller.decisions[2:])
    assert controller.settled == 8


@pytest.mark.parametrize("cut", ["rate limited", "latency rose"])
def test_a_cut_ends_slow_start(cut: str) -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    now = run(controller, windows(controller), distant)
    assert controller.decisions == [Decision(2, 4, "slow start")]
    if cut == "rate limited":
        now = run(controller, 1, distant, now, rate_limited=lambda _round: True)
    else:  # at 4 in flight, 160 ms: throughput up 25%, but latency 1.6x the best
        now = run(controller, windows(controller), lambda _n: 0.16, now)
    assert controller.decisions[-1].reason == cut
    after_cut = controller.limit
    run(controller, 400, distant, now)
    later = controller.decisions[2:]
    # back up one step at a time, never doubling again
    assert later == [Decision(n, n + 1, "probe") for n in range(after_cut, 8)]


def test_it_stays_put_when_more_in_flight_buys_nothing() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    run(controller, 200, saturated)
    assert controller.decisions[:2] == [Decision(2, 4, "slow start"), Decision(4, 2, "no gain")]
    assert controller.settled == 2


def test_after_no_gain_it_holds_before_probing_again() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    rounds = 200
    run(controller, rounds, saturated)
    steps = [d for d in controller.decisions if d.reason in ("slow start", "probe")]
    # A window at limit 2 is MIN_WINDOW requests, two rounds. Each undone step is followed by
    # HOLD_WINDOWS windows without one, so a step comes at most every HOLD_WINDOWS + 1 windows
    # (without the hold it would be every other window: about 50 probes here).
    rounds_per_window = MIN_WINDOW // 2
    assert 2 <= len(steps) <= 1 + rounds // (rounds_per_window * (HOLD_WINDOWS + 1))
    # each step undone: for no gain, or (at 3 in flight, latency 1.5x the best) latency rose
    for step, undo in zip(controller.decisions[::2], controller.decisions[1::2], strict=False):
        assert step.before == 2 and step.reason in ("slow start", "probe")
        assert undo.after == 2 and undo.reason in ("no gain", "latency rose")
    assert [d.after for d in steps[1:]] == [3] * (len(steps) - 1)


def test_a_429_halves_the_limit_once_per_window() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    now = run(controller, 60, distant)
    assert controller.limit == 8
    # every request of the next round answers 429: one cut, not eight
    run(controller, 1, distant, now, rate_limited=lambda _round: True)
    assert controller.limit == 4
    assert controller.decisions[-1] == Decision(8, 4, "rate limited")


def test_repeated_429s_take_it_down_to_one_and_no_lower() -> None:
    controller = ConcurrencyController(start=8, maximum=8)
    now = 0.0
    for _ in range(6):
        now = run(controller, 1, distant, now, rate_limited=lambda _round: True)
        now = run(controller, 4, distant, now)  # a window ends between the cuts
    assert controller.limit >= 1
    assert [d.after for d in controller.decisions if d.reason == "rate limited"][:3] == [4, 2, 1]


def test_rising_latency_steps_it_down() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    now = run(controller, 40, distant)
    assert controller.limit == 8
    # the API starts queueing: 3x the best latency, one step down per window while it lasts
    run(controller, 4, lambda _n: 0.3, now)
    assert controller.decisions[-2:] == [
        Decision(8, 7, "latency rose"),
        Decision(7, 6, "latency rose"),
    ]


def test_it_never_leaves_its_bounds() -> None:
    controller = ConcurrencyController(start=1, maximum=1)
    run(controller, 50, distant)
    assert controller.limit == 1
    assert controller.decisions == []
    with pytest.raises(ValueError, match=r"within 1\.\.maximum"):
        ConcurrencyController(start=3, maximum=2)
    with pytest.raises(ValueError, match=r"within 1\.\.maximum"):
        ConcurrencyController(start=0, maximum=2)
