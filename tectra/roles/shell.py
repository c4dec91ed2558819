"""The process shell a role runs in: affinity, signals, lifecycle, endpoints, systemd notify.

A role's component code stays a state machine; this shell owns the process-level edges:
CPU pinning from config, SIGTERM/SIGINT → orderly stop, the lifecycle with its journal
(STATE_DIR/journal/lifecycle-<role>: checksummed segments, fsync per transition), the
/metrics + /health endpoint, the RoleControl gRPC socket, and sd_notify READY/WATCHDOG when
started by systemd (Type=notify).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from tectra.core.clock import MonotonicClock
from tectra.core.config import TectraConfig
from tectra.core.http import MetricsServer
from tectra.core.lifecycle import Lifecycle
from tectra.core.log import get_logger
from tectra.core.metrics import MetricsRegistry
from tectra.journal.lifecycle import JournalTransitionJournal, lifecycle_journal_directory
from tectra.mgmt.role_control import RoleControlServer, ServiceAdder, control_socket_path
from tectra.mgmt.v1 import role_pb2
from tectra.schema import LifecycleState


class AffinityError(RuntimeError):
    """The configured CPUs cannot be used by this process."""


def pin_to_cpus(cpus: tuple[int, ...]) -> tuple[int, ...]:
    """Pin the calling process to CPUS (empty: leave as is); return the affinity in force."""
    if cpus:
        allowed = os.sched_getaffinity(0)
        missing = sorted(set(cpus) - allowed)
        if missing:
            raise AffinityError(f"cpus {missing} not available (allowed: {sorted(allowed)})")
        os.sched_setaffinity(0, cpus)
    return tuple(sorted(os.sched_getaffinity(0)))


class SystemdNotifier:
    """sd_notify through systemd-python, only when systemd gave us a NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        # Ping at half the deadline systemd enforces, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = usec / 2e6 if usec else 0.0

    def notify(self, message: str) -> None:
        if self.enabled:
            from systemd import daemon  # imported lazily: only meaningful under systemd

            daemon.notify(message)


class RoleShell:
    """Context manager wrapping one role process. Use `stopping` in the role's loop and call
    `heartbeat()` from that loop (not from a side thread, so a hung loop trips the watchdog)."""

    def __init__(
        self,
        role: str,
        config: TectraConfig,
        io_path: str = "none",
        *,
        services: Sequence[ServiceAdder] = (),
    ) -> None:
        self.role = role
        self._services = tuple(services)
        self.config = config
        self.role_config = config.role(role)
        self.io_path = io_path
        self.log = get_logger(role)
        self.metrics = MetricsRegistry()
        self.state_dir = Path(config.appliance.state_dir)
        # Opening runs recovery: a transition torn by a crash is truncated and reported.
        self.lifecycle_journal = JournalTransitionJournal(
            lifecycle_journal_directory(self.state_dir, role), role
        )
        if not self.lifecycle_journal.recovery.clean:
            self.log.warning(
                "lifecycle journal recovered after a crash",
                report=str(self.lifecycle_journal.recovery),
            )
        self.lifecycle = Lifecycle(role, self.lifecycle_journal, MonotonicClock())
        self.details: dict[str, Callable[[], str]] = {}
        self.cpus: tuple[int, ...] = ()
        self.metrics_port = 0
        self._stop = threading.Event()
        self._started_s = time.monotonic()
        self._notifier = SystemdNotifier()
        self._watchdog_interval_s = self._notifier.watchdog_interval_s or (
            self.role_config.watchdog_s / 2 if self.role_config.watchdog_s else 0.0
        )
        self._last_ping_s = 0.0
        self._metrics: MetricsServer | None = None
        self._control: RoleControlServer | None = None
        self._previous_handlers: dict[int, object] = {}

    # -- process edges -------------------------------------------------------------------------
    def __enter__(self) -> RoleShell:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        self.cpus = pin_to_cpus(tuple(self.role_config.cpus))
        self._metrics = MetricsServer(
            self.metrics, self.lifecycle, self.config.metrics.host, self.role_config.metrics_port
        )
        self.metrics_port = self._metrics.start()
        self._control = RoleControlServer(
            control_socket_path(self.state_dir, self.role), self.status, self._services
        )
        self._control.start()
        self.metrics.gauge_from(
            "tectra_lifecycle_state",
            "Lifecycle state of this role (0 INIT, 1 WARMUP, 2 READY, 3 DEGRADED, 4 HALTED).",
            lambda: {(self.role,): int(self.lifecycle.state)},
            labels=["role"],
        )
        recovered = self.lifecycle_journal.recovery.truncated_bytes
        self.metrics.counter_from(
            "tectra_lifecycle_journal_recovered_bytes_dropped",
            "Bytes of torn lifecycle records truncated when this role's journal was opened.",
            lambda: recovered,
        )
        self.log.info(
            "role started",
            cpus=list(self.cpus),
            metrics_port=self.metrics_port,
            io_path=self.io_path,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._notifier.notify("STOPPING=1")
        if exc is not None:
            self.log.error("role failed", error=repr(exc))
        if self._control is not None:
            self._control.stop()
        if self._metrics is not None:
            self._metrics.stop()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self.log.info("role stopped", state=self.lifecycle.state.name)
        self.lifecycle_journal.close()  # seals the segment: later transitions raise

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.log.info("stop requested", signal=signal.Signals(signum).name)
        self._stop.set()

    # -- what the role's loop uses --------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to TIMEOUT_S unless a stop is requested; True if stopping."""
        return self._stop.wait(timeout_s)

    def ready(self, reason: str = "warm-up complete") -> None:
        """WARMUP → READY, then tell systemd we are up."""
        if self.lifecycle.state is LifecycleState.INIT:
            self.lifecycle.transition(LifecycleState.WARMUP, "starting warm-up")
        self.lifecycle.transition(LifecycleState.READY, reason)
        self._notifier.notify("READY=1")
        self._notifier.notify(f"STATUS={self.role} READY on {self.io_path}")

    def heartbeat(self) -> None:
        """Ping the systemd watchdog when due; cheap enough to call every loop iteration."""
        if not self._watchdog_interval_s:
            return
        now = time.monotonic()
        if now - self._last_ping_s >= self._watchdog_interval_s:
            self._last_ping_s = now
            self._notifier.notify("WATCHDOG=1")

    # -- status -----------------------------------------------------------------------------------
    def status(self) -> role_pb2.RoleStatus:
        return role_pb2.RoleStatus(
            role=self.role,
            appliance=self.config.appliance.name,
            pid=os.getpid(),
            lifecycle=self.lifecycle.state.name,
            lifecycle_reason=self.lifecycle.reason,
            io_path=self.io_path,
            cpus=list(self.cpus),
            metrics_port=self.metrics_port,
            uptime_s=time.monotonic() - self._started_s,
            details={key: fn() for key, fn in self.details.items()},
        )
