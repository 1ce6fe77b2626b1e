"""worker/source/concurrency.py: the decisions on how many requests are in flight (issue 16).

Pure logic, fed simulated time: each *round* sends ``limit`` requests together and they finish
together after the latency the modelled API gives at that load. Nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.source.concurrency import HOLD_WINDOWS, MIN_WINDOW, ConcurrencyController, Decision


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


def test_it_rises_to_the_maximum_while_latency_dominates() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    run(controller, 60, distant)
    assert controller.limit == 8
    assert controller.decisions[:6] == [Decision(n, n + 1, "probe") for n in range(2, 8)]
    assert all(d.reason == "probe" for d in controller.decisions)
    assert controller.settled == 8


def test_it_stays_put_when_more_in_flight_buys_nothing() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    run(controller, 200, saturated)
    assert max(d.after for d in controller.decisions) == 3  # one probe at a time, undone
    assert controller.decisions[:2] == [Decision(2, 3, "probe"), Decision(3, 2, "no gain")]
    assert controller.settled == 2


def test_after_no_gain_it_holds_before_probing_again() -> None:
    controller = ConcurrencyController(start=2, maximum=8)
    rounds = 200
    run(controller, rounds, saturated)
    probes = [d for d in controller.decisions if d.reason == "probe"]
    # A window at limit 2 is MIN_WINDOW requests, two rounds. Each undone probe is followed by
    # HOLD_WINDOWS windows without one, so a probe comes at most every HOLD_WINDOWS + 1 windows
    # (without the hold it would be every other window: about 50 probes here).
    rounds_per_window = MIN_WINDOW // 2
    assert 2 <= len(probes) <= 1 + rounds // (rounds_per_window * (HOLD_WINDOWS + 1))
    # each probe undone: for no gain, or (at 3 in flight, latency 1.5x the best) latency rose
    for probe, undo in zip(controller.decisions[::2], controller.decisions[1::2], strict=False):
        assert probe == Decision(2, 3, "probe")
        assert undo.after == 2 and undo.reason in ("no gain", "latency rose")


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
