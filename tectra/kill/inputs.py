"""Where the kill role's triggers get their observations: pluggable input sources.

A `TriggerInput` is polled by the kill role before every trigger evaluation and feeds
observations into the `TriggerSet` (stamped with the poll's monotonic time). The triggers stay
pure; everything that reads a file or shared memory is here.

Sources available now:

* `EStopFile`: the manual E-stop is a file (a panel button's script touches it); ``estop``
  fires while it exists.
* `MarketDataActivity`: the feed's top-of-book reference table (shm); the time its
  ``rows_written`` counter last moved is the last market-data update, observed as the firm-wide
  ``stale_md`` key, and a feed that stopped touching its heartbeat counts as stale too. A missing
  table is retried every poll and counts as no update (stale, fail closed).
* `Observations`: a thread-safe queue other code pushes observations into (the gateway's
  reject counts, decision latencies, exposure, P&L and venue link states once it publishes
  them; tests inject conditions through it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tectra.io.killblock import Scope
from tectra.kill.triggers import TriggerError, TriggerSet

__all__ = ["EStopFile", "MarketDataActivity", "Observations", "TriggerInput"]


class TriggerInput(Protocol):
    def poll(self, triggers: TriggerSet, now_ns: int) -> None: ...


class EStopFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def poll(self, triggers: TriggerSet, now_ns: int) -> None:
        triggers.estop.observe(self.path.exists(), now_ns)


class MarketDataActivity:
    """Market-data freshness from the feed's reference table (`tectra.feed.refs.RefTable`)."""

    def __init__(self, name: str, root: str | os.PathLike[str], heartbeat_stale_s: float = 1.0):
        self.name = name
        self.root = root
        self.heartbeat_stale_ns = int(heartbeat_stale_s * 1e9)
        self._table: object | None = None
        self._rows = -1
        self._last_change_ns: int | None = None
        self.error = ""

    def _attach(self) -> object | None:
        if self._table is None:
            from tectra.feed.refs import RefTable, RefTableError

            try:
                self._table = RefTable.attach(self.name, root=self.root)
                self.error = ""
            except RefTableError as exc:
                self.error = str(exc)
        return self._table

    def poll(self, triggers: TriggerSet, now_ns: int) -> None:
        table = self._attach()
        if self._last_change_ns is None:
            self._last_change_ns = now_ns  # the age counts from the role's start
        if table is not None:
            rows = int(table.rows_written)  # type: ignore[attr-defined]
            heartbeat = int(table.heartbeat_ns)  # type: ignore[attr-defined]
            alive = now_ns - heartbeat <= self.heartbeat_stale_ns
            if rows != self._rows and alive:
                self._rows = rows
                self._last_change_ns = now_ns
        triggers.stale_md.observe(self._last_change_ns, Scope.FIRM, 0)

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._table, "close", None)
        if close is not None:
            close()
        self._table = None


class Observations:
    """Observations pushed from other threads, applied at the next poll (in order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Callable[[TriggerSet, int], None]] = []
        self.errors = 0
        self.last_error = ""

    def push(self, apply: Callable[[TriggerSet, int], None]) -> None:
        """APPLY(triggers, now_ns) runs at the next poll, e.g.
        ``obs.push(lambda t, now: t.reject_rate.observe(90, 10, now, Scope.VENUE, 1))``."""
        with self._lock:
            self._pending.append(apply)

    def poll(self, triggers: TriggerSet, now_ns: int) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for apply in pending:
            try:
                apply(triggers, now_ns)
            except TriggerError as exc:  # a bad observation is counted, never fatal
                self.errors += 1
                self.last_error = str(exc)
