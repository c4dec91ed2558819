"""The gateway's end of the kill switch: receive kill commands, act, acknowledge.

`KillSubscriber` is embedded in every gateway process (and, with a `BlockApplier`, in a remote
host's kill role as its mirror). It owns one thread and, when NATS is configured, one NATS
connection (`NatsLink`: our own synchronous client with one reader thread). The gateway
implements `KillActions`:

```python
class KillActions(Protocol):
    def cancel_scope(self, scope: Scope, scope_id: int, kill_id: int) -> int: ...
        # start cancelling every open order in scope; return how many cancels were sent.
        # Thread-safe and non-blocking (queue the cancels; the venue sessions send them).
    def cancel_progress(self, kill_id: int) -> CancelProgress: ...
        # (confirmed, failed) so far for the cancels KILL_ID caused.
    def open_orders(self, scope: Scope, scope_id: int) -> int: ...
        # open orders in scope now (what a dry run reports it would cancel).
    def orders_blocked(self, scope: Scope, scope_id: int) -> int: ...
        # new orders the control block rejected in scope so far (0 if not counted).
```

`scope` is the control block's `Scope` (FIRM, VENUE, ACCOUNT, STRATEGY, SYMBOL) and
`scope_id` the id `GatewayView.check` takes for it; `kill_id` is the u64 the control block
carries (`tectra.kill.wire.kill_id_u64` of the operator's string id).

What the subscriber does per command (`tectra.kill.wire.KillCommand`):

* BLOCK / SLOW: nothing in the gateway — the shared-memory control block already rejects or
  throttles the gateway's very next order; the ack confirms the gateway saw the command and
  reports ``orders_blocked``. With a `BlockApplier` (a remote host's kill role mirroring this
  one), the applier writes the command into that host's control block first.
* CANCEL_ALL / ISOLATE_VENUE: ``cancel_scope`` once, ack at once with ``cancels_sent``, then
  poll ``cancel_progress`` every ``poll_interval_s`` and send an updated ack (higher header seq)
  whenever the confirmed/failed counts move, until every cancel is confirmed or failed or
  ``confirm_timeout_s`` passes. The kill role times trigger-to-all-cancels-sent and
  trigger-to-all-cancels-confirmed from these acks (`kill_cancel` bench uses the same path).
* CLEAR: applier (if any) clears; the ack says APPLIED.
* dry run: nothing is done; the ack (status DRY_RUN) reports ``open_orders`` as the cancels it
  would send.

Idempotent: a command seen before (same kill id, same kind, same dry-run flag) is not acted on
again; the subscriber re-sends its current ack (the kill role retries commands that were not
acked, so a lost datagram costs one retry, not a second mass cancel). An exception from the
gateway's actions gives a FAILED ack and is counted; a malformed datagram is counted and dropped.

Transports (see docs/kill-switch.md): on the kill role's own host the command arrives on a unix
datagram socket ``<state_dir>/run/kill-subscribers/<name>.sock`` and the ack goes back to
``<state_dir>/run/kill-acks.sock`` — no broker on the single-host path. With ``nats_url`` the
subscriber also subscribes to every appliance's commands (``<prefix>.*.cmd.>``) and acks on
``<prefix>.<origin>.ack``; when it also listens locally it ignores NATS commands from its own
appliance (those came by the socket).
"""

from __future__ import annotations

import errno
import select
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, NamedTuple, Protocol

from tectra.core.clock import monotonic_ns
from tectra.core.log import get_logger
from tectra.io.killblock import Scope
from tectra.kill.nats_link import NatsLink
from tectra.kill.wire import (
    KillAck,
    KillCommand,
    WireError,
    ack_subject,
    cmd_wildcard,
    engine_socket_path,
    origin_of,
    subscriber_socket_path,
)
from tectra.schema import KillAckStatus, KillAction

__all__ = [
    "BlockApplier",
    "CancelProgress",
    "KillActions",
    "KillSubscriber",
    "Route",
    "SubscriberCore",
]

_CANCELLING: Final = frozenset({KillAction.CANCEL_ALL, KillAction.ISOLATE_VENUE})
_REMEMBERED: Final = 4096
_DATAGRAM: Final = 4096


class CancelProgress(NamedTuple):
    confirmed: int
    failed: int


class KillActions(Protocol):
    """What the gateway does for the kill switch (see the module docstring)."""

    def cancel_scope(self, scope: Scope, scope_id: int, kill_id: int) -> int: ...

    def cancel_progress(self, kill_id: int) -> CancelProgress: ...

    def open_orders(self, scope: Scope, scope_id: int) -> int: ...

    def orders_blocked(self, scope: Scope, scope_id: int) -> int: ...


class BlockApplier(Protocol):
    """A remote host's kill role: apply a command from ORIGIN to the local control block."""

    def apply_command(self, command: KillCommand, origin: str) -> bool: ...


class Route(NamedTuple):
    """Where an ack goes: ("unix", "") to the local kill role, ("nats", origin) over NATS."""

    kind: str
    origin: str


LOCAL: Final = Route("unix", "")


@dataclass(slots=True)
class _Tracked:
    command: KillCommand
    route: Route
    ack: KillAck
    deadline_ns: int
    polling: bool


@dataclass(slots=True)
class SubscriberStats:
    commands: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    ack_failures: int = 0
    malformed: int = 0
    action_failures: int = 0
    ignored_own: int = 0
    cancels_sent: int = 0


class SubscriberCore:
    """Transport-free logic: command in, ack out; pending confirmations polled. Thread-safe."""

    def __init__(
        self,
        name: str,
        actions: KillActions,
        *,
        subscriber_id: int = 0,
        confirm_timeout_s: float = 5.0,
        applier: BlockApplier | None = None,
    ) -> None:
        KillAck(0, name, KillAckStatus.NONE, KillAction.NONE, Scope.FIRM).encode()  # validates
        self.name = name
        self.actions = actions
        self.subscriber_id = subscriber_id
        self.confirm_timeout_ns = int(confirm_timeout_s * 1e9)
        self.applier = applier
        self.stats = SubscriberStats()
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[int, bool, bool], _Tracked] = OrderedDict()
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def handle(self, command: KillCommand, route: Route, now_ns: int) -> KillAck:
        """Act on COMMAND (once per kill) and return the ack to send back on ROUTE."""
        key = (command.kill_id, command.action is KillAction.CLEAR, command.dry_run)
        with self._lock:
            self.stats.commands += 1
            tracked = self._seen.get(key)
            if tracked is not None:
                self.stats.duplicates += 1
                tracked.route = route
                tracked.ack = self._refresh(tracked, now_ns)
                return tracked.ack
            ack, polling = self._act(command, route, now_ns)
            tracked = _Tracked(command, route, ack, now_ns + self.confirm_timeout_ns, polling)
            self._seen[key] = tracked
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
            return ack

    def _base(self, command: KillCommand, status: KillAckStatus, now_ns: int) -> KillAck:
        return KillAck(
            kill_id=command.kill_id,
            subscriber=self.name,
            status=status,
            action=command.action,
            scope=command.scope,
            epoch=command.epoch,
            applied_ns=now_ns,
            subscriber_id=self.subscriber_id,
            seq=self._next_seq(),
            sent_ns=now_ns,
        )

    def _act(self, command: KillCommand, route: Route, now_ns: int) -> tuple[KillAck, bool]:
        scope, sid = command.scope, command.scope_id
        try:
            if command.dry_run:
                would = self.actions.open_orders(scope, sid)
                ack = self._base(command, KillAckStatus.DRY_RUN, now_ns)
                return replace(ack, cancels_sent=int(would)), False
            if self.applier is not None:
                self.applier.apply_command(command, route.origin)
            if command.action in _CANCELLING:
                sent = int(self.actions.cancel_scope(scope, sid, command.kill_id))
                self.stats.cancels_sent += sent
                progress = self.actions.cancel_progress(command.kill_id)
                ack = replace(
                    self._base(command, KillAckStatus.APPLIED, now_ns),
                    cancels_sent=sent,
                    cancels_confirmed=int(progress.confirmed),
                    cancels_failed=int(progress.failed),
                    orders_blocked=int(self.actions.orders_blocked(scope, sid)),
                )
                ack = replace(ack, status=_status(ack))
                return ack, not ack.complete
            blocked = 0
            if command.action is not KillAction.CLEAR:
                blocked = int(self.actions.orders_blocked(scope, sid))
            ack = self._base(command, KillAckStatus.APPLIED, now_ns)
            return replace(ack, orders_blocked=blocked), False
        except Exception as exc:  # the gateway's code must never take the subscriber down
            self.stats.action_failures += 1
            get_logger("kill.subscriber").error(
                "kill action failed", subscriber=self.name, kill_id=command.kill_id, error=repr(exc)
            )
            return self._base(command, KillAckStatus.FAILED, now_ns), False

    def _refresh(self, tracked: _Tracked, now_ns: int) -> KillAck:
        ack = tracked.ack
        if tracked.command.action in _CANCELLING and not tracked.command.dry_run:
            try:
                p = self.actions.cancel_progress(tracked.command.kill_id)
            except Exception:
                self.stats.action_failures += 1
                return replace(ack, seq=self._next_seq(), sent_ns=now_ns)
            ack = replace(ack, cancels_confirmed=int(p.confirmed), cancels_failed=int(p.failed))
            ack = replace(ack, status=_status(ack))
        return replace(ack, seq=self._next_seq(), sent_ns=now_ns)

    def due(self, now_ns: int) -> list[tuple[Route, KillAck]]:
        """Updated acks for kills whose cancel confirmations moved since the last ack."""
        out: list[tuple[Route, KillAck]] = []
        with self._lock:
            for t in self._seen.values():
                if not t.polling:
                    continue
                try:
                    p = self.actions.cancel_progress(t.command.kill_id)
                except Exception:
                    self.stats.action_failures += 1
                    continue
                if (p.confirmed, p.failed) != (t.ack.cancels_confirmed, t.ack.cancels_failed):
                    ack = replace(
                        t.ack,
                        cancels_confirmed=int(p.confirmed),
                        cancels_failed=int(p.failed),
                        seq=self._next_seq(),
                        sent_ns=now_ns,
                    )
                    t.ack = replace(ack, status=_status(ack))
                    out.append((t.route, t.ack))
                if t.ack.complete or now_ns >= t.deadline_ns:
                    t.polling = False
        return out

    @property
    def polling(self) -> bool:
        with self._lock:
            return any(t.polling for t in self._seen.values())


def _status(ack: KillAck) -> KillAckStatus:
    if ack.complete and ack.cancels_failed == 0:
        return KillAckStatus.APPLIED
    return KillAckStatus.PARTIAL


class KillSubscriber:
    """A gateway's kill-command receiver: `start()` it with the gateway, `stop()` at exit."""

    def __init__(
        self,
        name: str,
        actions: KillActions,
        *,
        run_dir: Path | None = None,
        appliance: str = "tectra",
        nats_url: str = "",
        subject_prefix: str = "tectra.kill",
        subscriber_id: int = 0,
        confirm_timeout_s: float = 5.0,
        poll_interval_s: float = 0.001,
        applier: BlockApplier | None = None,
        accept_own_appliance: bool | None = None,
    ) -> None:
        if run_dir is None and not nats_url:
            raise ValueError(
                "a subscriber needs run_dir (this host), nats_url (other hosts), or both"
            )
        self.core = SubscriberCore(
            name,
            actions,
            subscriber_id=subscriber_id,
            confirm_timeout_s=confirm_timeout_s,
            applier=applier,
        )
        self.name = name
        self.run_dir = run_dir
        self.appliance = appliance
        self.nats_url = nats_url
        self.prefix = subject_prefix
        self.poll_interval_s = poll_interval_s
        self.accept_own = run_dir is None if accept_own_appliance is None else accept_own_appliance
        self._sock: socket.socket | None = None
        self._link: NatsLink | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"kill-sub-{name}", daemon=True)
        self._log = get_logger("kill.subscriber").bind(subscriber=name)
        self.on_command: Callable[[KillCommand, KillAck], None] | None = None

    @property
    def stats(self) -> SubscriberStats:
        return self.core.stats

    @property
    def paths(self) -> str:
        """Which transports are active: "unix", "nats", "unix+nats"."""
        kinds = (["unix"] if self._sock is not None else []) + (["nats"] if self._link else [])
        return "+".join(kinds) or "none"

    @property
    def nats_connected(self) -> bool:
        return self._link is not None and self._link.connected

    def start(self, nats_wait_s: float = 2.0) -> None:
        if self.run_dir is not None:
            path = subscriber_socket_path(self.run_dir, self.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.bind(str(path))
            sock.setblocking(False)
            self._sock = sock
        if self.nats_url:
            self._link = NatsLink(self.nats_url, f"kill-sub-{self.name}")
            self._link.subscribe(cmd_wildcard(self.prefix), self._on_nats)
            if not self._link.start(nats_wait_s):
                self._log.warning("nats not reachable yet; retrying in the background")
        self._thread.start()
        self._log.info("kill subscriber started", paths=self.paths)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self._link is not None:
            self._link.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.run_dir is not None:
                subscriber_socket_path(self.run_dir, self.name).unlink(missing_ok=True)

    def __enter__(self) -> KillSubscriber:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- receiving -------------------------------------------------------------------------
    def _decode(self, data: bytes) -> KillCommand | None:
        try:
            return KillCommand.decode(data)
        except WireError as exc:
            self.core.stats.malformed += 1
            self._log.warning("malformed kill command dropped", error=str(exc))
            return None

    def _on_nats(self, subject: str, data: bytes) -> None:
        try:
            origin = origin_of(subject, self.prefix)
        except WireError:
            self.core.stats.malformed += 1
            return
        if origin == self.appliance and not self.accept_own:
            self.core.stats.ignored_own += 1
            return
        command = self._decode(data)
        if command is None:
            return
        ack = self.core.handle(command, Route("nats", origin), monotonic_ns())
        self._send(Route("nats", origin), ack, in_loop=True)
        if self.on_command is not None:
            self.on_command(command, ack)

    def _loop(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            timeout = self.poll_interval_s if self.core.polling else 0.05
            if sock is not None:
                try:
                    ready, _, _ = select.select([sock], [], [], timeout)
                except (OSError, ValueError):
                    return
                if ready:
                    self._drain(sock)
            else:
                self._stop.wait(timeout)
            for route, ack in self.core.due(monotonic_ns()):
                self._send(route, ack)

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                return
            command = self._decode(data)
            if command is None:
                continue
            ack = self.core.handle(command, LOCAL, monotonic_ns())
            self._send(LOCAL, ack)
            if self.on_command is not None:
                self.on_command(command, ack)

    def _send(self, route: Route, ack: KillAck, *, in_loop: bool = False) -> None:
        try:
            data = ack.encode()
        except WireError:
            self.core.stats.ack_failures += 1
            return
        ok = False
        if route.kind == "unix" and self._sock is not None and self.run_dir is not None:
            try:
                self._sock.sendto(data, str(engine_socket_path(self.run_dir)))
                ok = True
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                    self._log.warning("ack send failed", error=str(exc))
        elif route.kind == "nats" and self._link is not None:
            subject = ack_subject(self.prefix, route.origin)
            ok = (
                self._link.publish_in_loop(subject, data)
                if in_loop
                else self._link.publish(subject, data)
            )
        if ok:
            self.core.stats.acks_sent += 1
        else:
            self.core.stats.ack_failures += 1
