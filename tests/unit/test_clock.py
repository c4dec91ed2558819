"""tectra.core.clock: ns clocks and the virtual clock used by replay and tests."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tectra.core.clock import (
    Clock,
    MonotonicClock,
    RealtimeClock,
    VirtualClock,
    monotonic_ns,
    realtime_ns,
)


def test_monotonic_never_goes_backwards() -> None:
    readings = [monotonic_ns() for _ in range(1000)]
    assert readings == sorted(readings)
    assert all(isinstance(r, int) for r in readings)


def test_realtime_is_epoch_nanoseconds() -> None:
    assert abs(realtime_ns() - time.time_ns()) < 1_000_000_000


def test_clock_classes_read_their_clocks() -> None:
    mono, real = MonotonicClock(), RealtimeClock()
    before = monotonic_ns()
    assert before <= mono.now_ns() <= monotonic_ns()
    assert abs(real.now_ns() - time.time_ns()) < 1_000_000_000


@pytest.mark.parametrize("clock", [MonotonicClock(), RealtimeClock(), VirtualClock()])
def test_all_clocks_satisfy_the_protocol(clock: Clock) -> None:
    assert isinstance(clock, Clock)
    assert isinstance(clock.now_ns(), int)


def test_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(1_000)
    assert clock.now_ns() == clock.now_ns() == 1_000
    assert clock.advance(500) == 1_500
    clock.set(2_000)
    assert clock.now_ns() == 2_000
    clock.set(2_000)  # same time is fine
    assert clock.now_ns() == 2_000


def test_virtual_clock_refuses_to_go_backwards() -> None:
    clock = VirtualClock(100)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(99)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        VirtualClock(-5)
    assert clock.now_ns() == 100


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), max_size=50))
def test_virtual_clock_advances_accumulate(start: int, steps: list[int]) -> None:
    clock = VirtualClock(start)
    for step in steps:
        clock.advance(step)
    assert clock.now_ns() == start + sum(steps)
