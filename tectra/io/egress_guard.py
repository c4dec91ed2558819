"""The kill switch's kernel isolation: `xdp/egress_guard.c` on one interface's TC egress hook.

This module owns the egress guard program on one interface: it compiles it with bcc
(SCHED_CLS), attaches it with pyroute2 to a ``clsact`` qdisc's egress hook as a ``bpf`` filter
in direct-action mode, maintains its map of blocked destinations (IPv4 address, optional port),
reads its per-CPU counters, and detaches it (idempotent: a second detach, or a namespace or
link that is already gone, is not an error). The ``clsact`` qdisc is removed on detach only if
this guard created it.

ISOLATE_VENUE uses it: once the venue's cancels have gone out, `EgressGuard.block` puts the
venue's addresses in the map, and from then on no packet for the venue leaves the interface —
even if a gateway ignores the control block. Without root or BPF, construction raises
`EgressGuardError` and the kill role reports kernel isolation as unavailable; it never
pretends.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from tectra.core.log import get_logger
from tectra.io import netns as nl

__all__ = ["PROGRAM_NAME", "EgressGuard", "EgressGuardError", "GuardCounters", "default_source"]

PROGRAM_NAME: Final = "tectra_egress"
_EGRESS_PARENT: Final = 0xFFFFFFF3  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
_HANDLE: Final = 0x7E57  # our filter's handle (prio 1) on the egress hook
_PRIO: Final = 1
_COUNTERS: Final = ("passed", "dropped", "non_ip")

_log = get_logger("io.egress_guard")


class EgressGuardError(Exception):
    """Compile, attach, map or detach failure; ``errno`` is the kernel's code when known."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True, slots=True)
class GuardCounters:
    passed: int
    dropped: int
    non_ip: int


def default_source() -> Path:
    base = os.environ.get("TECTRA_XDP_DIR")
    if base:
        return Path(base) / "egress_guard.c"
    return Path(__file__).resolve().parents[2] / "xdp" / "egress_guard.c"


def _dest(address: str, port: int) -> tuple[int, int]:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise EgressGuardError(f"{address!r} is not an IPv4 address", errno.EINVAL) from exc
    if not 0 <= port <= 65535:
        raise EgressGuardError(f"port {port} out of range 0..65535", errno.EINVAL)
    # daddr as the kernel sees it (network order) read as a host u32, like the C struct.
    return struct.unpack("=I", socket.inet_aton(str(ip)))[0], port


class EgressGuard:
    """The egress guard attached to INTERFACE (in NAMESPACE)."""

    def __init__(
        self,
        interface: str,
        *,
        namespace: str | None = None,
        source: Path | None = None,
        max_entries: int = 1024,
    ) -> None:
        self.interface = interface
        self.namespace = namespace
        self.source = source or default_source()
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._bpf: Any = None
        self._fn: Any = None
        self._ifindex = 0
        self._created_qdisc = False
        self.attached = False
        self._compile(max_entries)
        try:
            self._attach()
        except BaseException:
            self._release()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _compile(self, max_entries: int) -> None:
        try:
            from bcc import BPF
        except ImportError as exc:
            raise EgressGuardError(f"bcc is not importable: {exc}") from exc
        try:
            text = self.source.read_text(encoding="utf-8")
        except OSError as exc:
            raise EgressGuardError(f"cannot read {self.source}: {exc}", exc.errno or 0) from exc
        try:
            self._bpf = BPF(text=text.encode(), cflags=[f"-DGUARD_MAX={max_entries}"])
            self._fn = self._bpf.load_func(PROGRAM_NAME.encode(), BPF.SCHED_CLS)
        except Exception as exc:  # bcc raises bare Exception for compile and verifier errors
            self._release()
            raise EgressGuardError(f"{self.source.name}: {exc}") from exc

    def _attach(self) -> None:
        try:
            with nl._iproute(self.namespace) as ipr:
                links = ipr.link_lookup(ifname=self.interface)
                if not links:
                    raise EgressGuardError(
                        f"no interface {self.interface!r} in {self.namespace or 'this'} namespace",
                        errno.ENODEV,
                    )
                self._ifindex = int(links[0])
                try:
                    nl._netlink_call("add clsact", ipr.tc, "add", "clsact", self._ifindex)
                    self._created_qdisc = True
                except nl.NetnsError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                nl._netlink_call(
                    "add egress bpf filter",
                    ipr.tc,
                    "replace-filter",
                    "bpf",
                    self._ifindex,
                    _HANDLE,
                    fd=int(self._fn.fd),
                    name=PROGRAM_NAME,
                    parent=_EGRESS_PARENT,
                    prio=_PRIO,
                    classid=1,
                    direct_action=True,
                )
        except nl.NetnsError as exc:
            raise EgressGuardError(f"attach to {self.interface}: {exc}", exc.errno) from exc
        self.attached = True
        _log.info(
            "egress guard attached",
            interface=self.interface,
            namespace=self.namespace or "",
            created_qdisc=self._created_qdisc,
        )

    # -- destinations ----------------------------------------------------------------------
    def _table(self) -> Any:
        if not self.attached or self._bpf is None:
            raise EgressGuardError("egress guard is detached", errno.ENODEV)
        return self._bpf[b"blocked"]

    def block(self, address: str, port: int = 0) -> bool:
        """Drop egress to ADDRESS (port 0: every port); True when newly added."""
        daddr, dport = _dest(address, port)
        with self._lock:
            table = self._table()
            key = table.Key(daddr=daddr, dport=dport, pad=0)
            if key in table:
                return False
            try:
                table[key] = table.Leaf(0)
            except Exception as exc:  # bcc: map full or kernel refusal
                raise EgressGuardError(f"block {address}:{port}: {exc}") from exc
            return True

    def unblock(self, address: str, port: int = 0) -> bool:
        """Let traffic to ADDRESS[:PORT] pass again; True when it was blocked."""
        daddr, dport = _dest(address, port)
        with self._lock:
            table = self._table()
            key = table.Key(daddr=daddr, dport=dport, pad=0)
            try:
                del table[key]
            except KeyError:
                return False
            return True

    def blocked(self) -> dict[tuple[str, int], int]:
        """Blocked destinations and the packets dropped for each."""
        with self._lock:
            table = self._table()
            return {
                (socket.inet_ntoa(struct.pack("=I", k.daddr)), int(k.dport)): int(v.value)
                for k, v in table.items()
            }

    def counters(self) -> GuardCounters:
        """Per-CPU counters summed now (read at scrape time)."""
        with self._lock:
            if not self.attached or self._bpf is None:
                raise EgressGuardError("egress guard is detached", errno.ENODEV)
            table = self._bpf[b"counters"]
            vals = [int(table.sum(ctypes.c_int(i)).value) for i in range(len(_COUNTERS))]
        return GuardCounters(*vals)

    # -- teardown --------------------------------------------------------------------------
    def detach(self) -> None:
        """Remove our filter (and the clsact qdisc if we made it); idempotent."""
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self.attached:
                self.attached = False
                try:
                    with nl._iproute(self.namespace) as ipr:
                        nl._netlink_call(
                            "delete egress bpf filter",
                            ipr.tc,
                            "del-filter",
                            "bpf",
                            self._ifindex,
                            _HANDLE,
                            parent=_EGRESS_PARENT,
                            prio=_PRIO,
                        )
                        if self._created_qdisc:
                            nl._netlink_call(
                                "delete clsact", ipr.tc, "del", "clsact", self._ifindex
                            )
                except nl.NetnsError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                        self._release()
                        raise EgressGuardError(f"detach: {exc}", exc.errno) from exc
                _log.info("egress guard detached", interface=self.interface)
            self._release()

    close = detach

    def _release(self) -> None:
        bpf, self._bpf = self._bpf, None
        self._fn = None
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()
