"""The kill role's side of fan-out: send commands to every subscriber, receive their acks.

Two paths, both always carrying the same 128-byte KILL_COMMAND / KILL_ACK records:

* **local** (always on): unix datagram sockets under ``<state_dir>/run/``. Each local gateway's
  `KillSubscriber` binds ``kill-subscribers/<name>.sock``; a command is one ``sendto`` per
  socket found there, acks come back on ``kill-acks.sock``. No broker: the single-host path
  works with nats-server down. A socket nobody listens on (ECONNREFUSED, a crashed gateway)
  is counted and removed; the missing ack names that gateway anyway.
* **nats** (when ``kill.nats_url`` is set): the command is published on
  ``<prefix>.<appliance>.cmd.<scope>``; subscribers on other hosts ack on
  ``<prefix>.<appliance>.ack``.

Blocks do not depend on either path: the control block is written before anything is sent.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tectra.core.clock import monotonic_ns
from tectra.core.log import get_logger
from tectra.kill.nats_link import NatsLink
from tectra.kill.wire import (
    SUBSCRIBER_DIR,
    KillAck,
    KillCommand,
    WireError,
    ack_subject,
    cmd_subject,
    engine_socket_path,
)

__all__ = ["AckHandler", "Fanout", "FanoutStats", "PublishResult"]

AckHandler = Callable[[KillAck, int], None]
_DATAGRAM: Final = 4096


@dataclass(slots=True)
class FanoutStats:
    commands: int = 0
    local_sent: int = 0
    local_failures: int = 0
    stale_sockets_removed: int = 0
    nats_sent: int = 0
    nats_failures: int = 0
    acks: int = 0
    malformed_acks: int = 0


@dataclass(frozen=True, slots=True)
class PublishResult:
    local: tuple[str, ...]  # local subscriber names the command was delivered to
    nats: bool  # published on NATS (False: not configured or not connected)


class Fanout:
    """Command fan-out and ack collection for one kill role."""

    def __init__(
        self,
        run_dir: Path,
        on_ack: AckHandler | None = None,
        *,
        appliance: str = "tectra",
        nats_url: str = "",
        subject_prefix: str = "tectra.kill",
    ) -> None:
        self.run_dir = run_dir
        #: Where acks go; `KillEngine` sets itself here when given this fan-out.
        self.on_ack: AckHandler = on_ack or (lambda ack, recv_ns: None)
        self.appliance = appliance
        self.prefix = subject_prefix
        self.nats_url = nats_url
        self.stats = FanoutStats()
        self.link: NatsLink | None = None
        self._ack_sock: socket.socket | None = None
        self._send_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._send_sock.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ack_loop, name="kill-acks", daemon=True)
        self._log = get_logger("kill.fanout")

    @property
    def paths(self) -> str:
        """Active paths: "local" or "local+nats" (and whether NATS is connected now)."""
        if self.link is None:
            return "local"
        return "local+nats" if self.link.connected else "local+nats(disconnected)"

    def start(self, nats_wait_s: float = 2.0) -> None:
        path = engine_socket_path(self.run_dir)
        (self.run_dir / SUBSCRIBER_DIR).mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        sock.setblocking(False)
        self._ack_sock = sock
        self._thread.start()
        if self.nats_url:
            self.link = NatsLink(self.nats_url, f"kill-{self.appliance}")
            self.link.subscribe(ack_subject(self.prefix, self.appliance), self._on_nats_ack)
            if not self.link.start(nats_wait_s):
                self._log.warning("nats not reachable yet; local fan-out only until it is")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self.link is not None:
            self.link.close()
        if self._ack_sock is not None:
            self._ack_sock.close()
            self._ack_sock = None
            engine_socket_path(self.run_dir).unlink(missing_ok=True)
        self._send_sock.close()

    # -- commands --------------------------------------------------------------------------
    def local_subscribers(self) -> list[str]:
        try:
            names = os.listdir(self.run_dir / SUBSCRIBER_DIR)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".sock")] for n in names if n.endswith(".sock"))

    def send_local(self, name: str, data: bytes) -> bool:
        path = self.run_dir / SUBSCRIBER_DIR / f"{name}.sock"
        try:
            self._send_sock.sendto(data, str(path))
        except OSError as exc:
            self.stats.local_failures += 1
            if exc.errno == errno.ECONNREFUSED:  # bound by a process that is gone
                path.unlink(missing_ok=True)
                self.stats.stale_sockets_removed += 1
            elif exc.errno != errno.ENOENT:
                self._log.warning("local kill send failed", subscriber=name, error=str(exc))
            return False
        self.stats.local_sent += 1
        return True

    def publish(
        self, command: KillCommand, only_local: tuple[str, ...] | None = None
    ) -> PublishResult:
        """Send COMMAND to every local subscriber (or ONLY_LOCAL) and on NATS."""
        data = command.encode()
        self.stats.commands += 1
        names = self.local_subscribers() if only_local is None else list(only_local)
        sent = tuple(n for n in names if self.send_local(n, data))
        nats = False
        if self.link is not None:
            subject = cmd_subject(self.prefix, self.appliance, command.scope)
            nats = self.link.publish(subject, data)
            if nats:
                self.stats.nats_sent += 1
            else:
                self.stats.nats_failures += 1
        return PublishResult(sent, nats)

    # -- acks ------------------------------------------------------------------------------
    def _deliver(self, data: bytes, recv_ns: int) -> None:
        try:
            ack = KillAck.decode(data)
        except WireError as exc:
            self.stats.malformed_acks += 1
            self._log.warning("malformed kill ack dropped", error=str(exc))
            return
        self.stats.acks += 1
        try:
            self.on_ack(ack, recv_ns)
        except Exception as exc:  # the engine's bug must not stop ack collection
            self._log.error("ack handler failed", error=repr(exc))

    def _on_nats_ack(self, subject: str, data: bytes) -> None:
        self._deliver(data, monotonic_ns())

    def _ack_loop(self) -> None:
        sock = self._ack_sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            while True:
                try:
                    data = sock.recv(_DATAGRAM)
                except (BlockingIOError, OSError):
                    break
                self._deliver(data, monotonic_ns())
