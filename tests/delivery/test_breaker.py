"""The per-endpoint circuit breaker (pmops.delivery.breaker) on a clock the test moves."""

from __future__ import annotations

from pmops.delivery.breaker import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_timeouts_in_a_row_then_probes_one_at_a_time() -> None:
    clock = Clock()
    breakers = Breakers(threshold=3, seconds=30, max_seconds=100, clock=clock)
    assert not breakers.record("hook", timed_out=True)
    assert not breakers.record("hook", timed_out=True)
    assert breakers.limits() == {}  # two timeouts: still closed
    assert breakers.record("hook", timed_out=True)  # the third opens it
    assert breakers.limits() == {"hook": 0} and breakers.is_open("hook")
    # attempts already in flight when it opened time out too: not counted again
    assert not breakers.record("hook", timed_out=True)
    clock.now += 30
    assert breakers.limits() == {"hook": 1} and not breakers.is_open("hook")  # half-open


def test_a_probe_that_times_out_doubles_the_wait_up_to_the_cap() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, seconds=30, max_seconds=100, clock=clock)
    assert breakers.record("hook", timed_out=True)
    waits = []
    for _ in range(4):
        opened = clock.now
        while breakers.is_open("hook"):
            clock.now += 1
        waits.append(clock.now - opened)
        assert breakers.record("hook", timed_out=True)  # the probe timed out
    assert waits == [30, 60, 100, 100]


def test_any_answer_closes_it_and_other_endpoints_are_unaffected() -> None:
    clock = Clock()
    breakers = Breakers(threshold=2, seconds=30, clock=clock)
    breakers.record("dead", timed_out=True)
    breakers.record("dead", timed_out=True)
    breakers.record("fine", timed_out=True)
    breakers.record("fine", timed_out=False)  # an answer (or a quick failure) resets the count
    breakers.record("fine", timed_out=True)
    assert breakers.limits() == {"dead": 0}
    clock.now += 30
    breakers.record("dead", timed_out=False)  # the probe got an answer
    assert breakers.limits() == {}
    assert not breakers.record("dead", timed_out=True)  # counting starts again


def test_threshold_zero_turns_it_off() -> None:
    breakers = Breakers(threshold=0, seconds=30, clock=Clock())
    for _ in range(10):
        assert not breakers.record("hook", timed_out=True)
    assert breakers.limits() == {}
