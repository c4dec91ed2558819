"""Every record layout in Tectra (numpy structured dtypes), versioned. (stub: being written)"""

from __future__ import annotations

import enum


class LifecycleState(enum.IntEnum):
    """Process lifecycle; only READY trades."""

    INIT = 0
    WARMUP = 1
    READY = 2
    DEGRADED = 3
    HALTED = 4
