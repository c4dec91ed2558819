"""Clocks in integer nanoseconds: the one place Tectra reads system time.

Two clocks, never mixed:

* **monotonic** (``CLOCK_MONOTONIC``) never jumps, so intervals, timeouts, staleness checks and
  latencies computed from it are sound. The hot path uses the monotonic clock only, and it is
  the one shared-memory records carry: every process on a host reads the same monotonic clock,
  so a producer's stamp and a consumer's reading are comparable.
* **realtime** (``CLOCK_REALTIME``) is wall-clock time for humans: log timestamps and journal
  records. NTP may step it, so nothing decides anything by it.

Components never call these functions directly; they take a :class:`Clock` (principle 3: time
is an input), so replay and tests drive the same code with a :class:`VirtualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "MonotonicClock",
    "RealtimeClock",
    "VirtualClock",
    "monotonic_ns",
    "realtime_ns",
]


def monotonic_ns() -> int:
    """Nanoseconds of ``CLOCK_MONOTONIC``: the hot path's clock (never jumps, host-wide)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def realtime_ns() -> int:
    """Nanoseconds since the Unix epoch (``CLOCK_REALTIME``): for humans, never for decisions."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time in integer nanoseconds."""

    def now_ns(self) -> int:
        """Current time in nanoseconds on this clock's timeline."""
        ...


class MonotonicClock:
    """The live hot-path clock: ``CLOCK_MONOTONIC`` in ns."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def __repr__(self) -> str:
        return "MonotonicClock()"


class RealtimeClock:
    """The live wall clock: ``CLOCK_REALTIME`` in ns since the epoch (logs, journals)."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_REALTIME)

    def __repr__(self) -> str:
        return "RealtimeClock()"


class VirtualClock:
    """A clock that moves only when told to: replay, backtests and tests.

    It keeps the monotonic contract: time never goes backwards, so code that is correct
    against :class:`MonotonicClock` is exercised under the same assumption.
    """

    __slots__ = ("_now",)

    def __init__(self, start_ns: int = 0) -> None:
        if start_ns < 0:
            raise ValueError(f"start_ns must be >= 0, got {start_ns}")
        self._now = int(start_ns)

    def now_ns(self) -> int:
        return self._now

    def set(self, ns: int) -> None:
        """Jump to ``ns``; moving backwards raises ``ValueError`` (and changes nothing)."""
        if ns < self._now:
            raise ValueError(f"virtual clock cannot go backwards: {self._now} -> {ns}")
        self._now = int(ns)

    def advance(self, delta_ns: int) -> int:
        """Move forward by ``delta_ns`` (>= 0) and return the new time."""
        if delta_ns < 0:
            raise ValueError(f"delta_ns must be >= 0, got {delta_ns}")
        self._now += int(delta_ns)
        return self._now

    def __repr__(self) -> str:
        return f"VirtualClock(now_ns={self._now})"
