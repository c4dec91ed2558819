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
* `GatewayActivity`: the gateway role's control socket (`GatewayControl.OrdersSummary`): per
  poll, the requests accepted and rejected since the last poll (`reject_rate`, firm-wide;
  HALTED rejects are the kill switch's own doing and are not counted), the decision latencies
  since the last poll (`latency`), open + executed notional per account (`exposure`), realised
  + unrealised P&L less fees per account (`max_loss`, `max_drawdown`) and the venue session
  (`venue_down`). An unreachable gateway is counted (`errors`) and observes nothing: the
  gateway's own fail-closed rules cover it, and a stopped gateway sends no orders.
* `Observations`: a thread-safe queue other code pushes observations into (tests inject
  conditions through it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tectra.io.killblock import Scope
from tectra.kill.triggers import TriggerError, TriggerSet

__all__ = ["EStopFile", "GatewayActivity", "MarketDataActivity", "Observations", "TriggerInput"]


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


class GatewayActivity:
    """Trigger inputs from the gateway role's control socket (see the module docstring)."""

    def __init__(
        self, socket_path: Path, timeout_s: float = 0.5, min_interval_s: float = 0.25
    ) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        # The summary walks the gateway's order table under its lock: not on every 50 ms tick.
        self.min_interval_ns = int(min_interval_s * 1e9)
        self._polled_ns: int | None = None
        self._channel: object | None = None
        self._stub: object | None = None
        self._last: tuple[int, int] | None = None  # (requests, rejects) at the last poll
        self.errors = 0
        self.error = ""
        self.polls = 0

    def _connect(self) -> object | None:
        if self._stub is None and self.socket_path.exists():
            import grpc

            from tectra.mgmt.v1 import gateway_pb2_grpc

            self._channel = grpc.insecure_channel(f"unix:{self.socket_path}")
            self._stub = gateway_pb2_grpc.GatewayControlStub(self._channel)
        return self._stub

    def poll(self, triggers: TriggerSet, now_ns: int) -> None:
        import grpc

        from tectra.mgmt.v1 import gateway_pb2

        if self._polled_ns is not None and now_ns - self._polled_ns < self.min_interval_ns:
            return
        self._polled_ns = now_ns
        stub = self._connect()
        if stub is None:
            self.error = f"no gateway control socket at {self.socket_path}"
            return
        try:
            reply = stub.OrdersSummary(  # type: ignore[attr-defined]
                gateway_pb2.OrdersSummaryRequest(take_latencies=True), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            self.errors += 1
            self.error = f"gateway: {exc.code().name}"
            self._last = None  # a restarted gateway's counters start again
            return
        self.polls += 1
        self.error = ""
        requests = int(reply.counters.get("requests", 0))
        rejects = sum(int(v) for k, v in reply.rejects_by_reason.items() if k != "HALTED")
        if self._last is not None and requests >= self._last[0]:
            d_req, d_rej = requests - self._last[0], max(0, rejects - self._last[1])
            triggers.reject_rate.observe(max(0, d_req - d_rej), d_rej, now_ns)
        self._last = (requests, rejects)
        if reply.recent_step_ns:
            triggers.latency.observe(list(reply.recent_step_ns), now_ns)
        for account, notional in reply.exposure_by_account.items():
            triggers.exposure.observe(int(notional), now_ns, Scope.ACCOUNT, int(account))
        for account, pnl in reply.pnl_by_account.items():
            triggers.max_loss.observe(int(pnl), now_ns, Scope.ACCOUNT, int(account))
            triggers.max_drawdown.observe(int(pnl), now_ns, Scope.ACCOUNT, int(account))
        if reply.venue_id:
            triggers.venue_down.observe(int(reply.venue_id), bool(reply.venue_up), now_ns)

    def close(self) -> None:
        close = getattr(self._channel, "close", None)
        if close is not None:
            close()
        self._channel = self._stub = None
