"""Feed receive paths behind one interface: AF_XDP, io_uring and plain sockets, and the choice.

This module owns the common receiver contract (:class:`Receiver` returning
:class:`PacketBatch`), the three implementations over the C shims (`tectra._xsk`,
`tectra._uring`, `tectra._udp`) and :func:`open_receiver`, which picks a path for
``feed.io = auto|xdp|uring|socket``. Under ``auto`` it tries xdp, then uring, then socket and
logs why each one it skipped was unavailable; the receiver it returns reports the path it is
really on (``io_path``), and ``stats()`` says how (attach mode, copy/zero-copy, uring mode).

Batches: every path fills the same form, one C call per batch: a uint8 payload buffer holding
the UDP payloads (for AF_XDP the C loop strips Ethernet/VLAN/IPv4/UDP), per-packet offsets and
lengths into it, and per-packet receive stamps. A batch is a view of the receiver's own buffers
and is valid until the next ``receive()`` on that receiver (``PacketBatch.copy()`` keeps one).

Stamps are CLOCK_MONOTONIC nanoseconds, read in C as soon as the batch is seen in userspace
(after the rx-ring peek, the completion-queue look or recvmmsg's return), so they are
comparable with a sender's CLOCK_MONOTONIC stamp on the same host. The socket path can use the
kernel's per-skb SO_TIMESTAMPNS instead (``kernel_timestamps=True``), mapped onto the
monotonic clock. See docs/kernel-bypass.md.

A receiver belongs to one thread: ``receive()`` and ``close()`` from its owner, ``stats()``
from anywhere (a metrics scrape reads the C counters).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import ipaddress
import mmap
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from tectra.core.log import get_logger
from tectra.io import netns as nl

if TYPE_CHECKING:
    from tectra.core.metrics import MetricsRegistry
    from tectra.io.xdp import FeedSteering, XdpMode

__all__ = [
    "IO_CHOICES",
    "IO_PATHS",
    "IoChoice",
    "IoPath",
    "PacketBatch",
    "ReceiveError",
    "ReceivePathUnavailableError",
    "Receiver",
    "ReceiverClosedError",
    "SocketReceiver",
    "UringReceiver",
    "XdpReceiver",
    "open_receiver",
    "register_receive_metrics",
]

IoPath = Literal["xdp", "uring", "socket"]
IoChoice = Literal["auto", "xdp", "uring", "socket"]
IO_PATHS: Final[tuple[IoPath, ...]] = ("xdp", "uring", "socket")
IO_CHOICES: Final[tuple[IoChoice, ...]] = ("auto", "xdp", "uring", "socket")

DEFAULT_BATCH: Final = 64
DEFAULT_MAX_DATAGRAM: Final = 2048  # an Ethernet-MTU datagram with room to spare
IP_MULTICAST_ALL: Final = 49  # linux/in.h; not exported by the socket module
SO_RCVBUFFORCE: Final = 33  # asm-generic/socket.h; likewise
DEFAULT_RCVBUF: Final = 8 << 20  # socket paths: room for a burst while the consumer is busy

# linux/capability.h bit numbers, for saying precisely why AF_XDP is out of reach.
_CAP_NET_ADMIN, _CAP_NET_RAW, _CAP_SYS_ADMIN, _CAP_BPF = 12, 13, 21, 39

_log = get_logger("io.receive")


class ReceiveError(Exception):
    """A receive path failed; ``errno`` is the kernel's code when there is one."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


class ReceivePathUnavailableError(ReceiveError):
    """The requested path cannot run here; ``reason`` says why (logged by open_receiver)."""

    def __init__(self, path: str, reason: str, code: int = 0) -> None:
        super().__init__(f"{path} receive path unavailable: {reason}", code)
        self.path = path
        self.reason = reason


class ReceiverClosedError(ReceiveError):
    """The receiver was closed."""


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise ReceiveError(f"{what}: {os.strerror(-rc)}", -rc)
    return rc


# ---- the batch ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """UDP payloads of one receive: payload ``i`` is ``payload[offsets[i]:offsets[i]+lengths[i]]``
    seen at ``recv_ns[i]`` (CLOCK_MONOTONIC ns). Views of the receiver's buffers: valid until
    its next ``receive()``; ``copy()`` to keep."""

    payload: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint32]
    lengths: npt.NDArray[np.uint32]
    recv_ns: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def count(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.lengths.sum())

    def packet(self, i: int) -> bytes:
        """Payload I as bytes (control plane and tests; the hot path works on the arrays)."""
        start = int(self.offsets[i])
        return self.payload[start : start + int(self.lengths[i])].tobytes()

    def packets(self) -> list[bytes]:
        return [self.packet(i) for i in range(len(self))]

    def copy(self) -> PacketBatch:
        """A compact, independent copy (payloads back to back)."""
        n = len(self)
        lengths = self.lengths.copy()
        offsets = np.zeros(n, dtype=np.uint32)
        if n:
            np.cumsum(lengths[:-1], out=offsets[1:])
        payload = np.empty(int(lengths.sum()), dtype=np.uint8)
        for i in range(n):
            src = int(self.offsets[i])
            dst = int(offsets[i])
            payload[dst : dst + int(lengths[i])] = self.payload[src : src + int(lengths[i])]
        return PacketBatch(payload, offsets, lengths, self.recv_ns.copy())


@runtime_checkable
class Receiver(Protocol):
    """What every receive path offers the feed."""

    @property
    def io_path(self) -> str: ...

    def receive(self, max_packets: int | None = None, timeout_ns: int = 0) -> PacketBatch:
        """Up to MAX_PACKETS payloads; TIMEOUT_NS 0 polls, < 0 waits forever, > 0 waits up to
        that long. An empty batch means nothing arrived (or a signal came in)."""
        ...

    def stats(self) -> dict[str, int | str]: ...

    def close(self) -> None: ...


class _BatchReceiver(abc.ABC):
    """Buffers and plumbing shared by the three paths: one C call per ``receive()``."""

    io_path: str = ""

    def __init__(self, batch_size: int, payload_bytes: int, ffi: Any) -> None:
        if not 0 < batch_size <= 1024:
            raise ValueError(f"batch_size must be 1..1024, got {batch_size}")
        self.batch_size = batch_size
        self._payload = np.zeros(payload_bytes, dtype=np.uint8)
        self._offsets = np.zeros(batch_size, dtype=np.uint32)
        self._lengths = np.zeros(batch_size, dtype=np.uint32)
        self._recv_ns = np.zeros(batch_size, dtype=np.int64)
        # cdata views made once: no per-batch conversion cost.
        self._c_payload = ffi.from_buffer("uint8_t[]", self._payload)
        self._c_offsets = ffi.from_buffer("uint32_t[]", self._offsets)
        self._c_lengths = ffi.from_buffer("uint32_t[]", self._lengths)
        self._c_recv_ns = ffi.from_buffer("int64_t[]", self._recv_ns)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @abc.abstractmethod
    def _rx(self, max_packets: int, timeout_ns: int) -> int:
        """Receive up to MAX_PACKETS into the shared buffers; the count, or raise."""

    def _rx_into_buffers(
        self, what: str, fn: Any, *handle: Any, max_packets: int, timeout_ns: int
    ) -> int:
        """One C batch receive into the shared buffers: every path's call ends with the same
        (max, payload, payload bytes, offsets, lengths, recv_ns, timeout) arguments."""
        rc = fn(
            *handle,
            max_packets,
            self._c_payload,
            self._payload.nbytes,
            self._c_offsets,
            self._c_lengths,
            self._c_recv_ns,
            timeout_ns,
        )
        return _check(int(rc), what)

    def receive(self, max_packets: int | None = None, timeout_ns: int = 0) -> PacketBatch:
        if self._closed:
            raise ReceiverClosedError(f"{self.io_path} receiver is closed", errno.EBADF)
        want = self.batch_size if max_packets is None else min(int(max_packets), self.batch_size)
        n = self._rx(max(want, 0), int(timeout_ns)) if want > 0 else 0
        return PacketBatch(self._payload, self._offsets[:n], self._lengths[:n], self._recv_ns[:n])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the path's kernel resources (idempotent)."""


# ---- UDP sockets (socket and uring paths) ------------------------------------------------------


def _open_udp_socket(
    bind_address: str | None,
    port: int,
    *,
    multicast_group: str | None,
    interface: str | None,
    namespace: str | None,
    rcvbuf: int | None,
    blocking: bool = False,
) -> socket.socket:
    """A UDP socket bound for the feed in NAMESPACE, joined to the group if any.

    Non-blocking for recvmmsg (we wait in ppoll); blocking for io_uring, which does the waiting
    itself and completes a recvmsg on an O_NONBLOCK socket with -EAGAIN instead of arming it.
    """
    with nl.in_namespace(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if rcvbuf:
                # A burst must fit while the consumer is busy. SO_RCVBUFFORCE (root) is not
                # capped by net.core.rmem_max; otherwise take what rmem_max allows.
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if multicast_group:
                if not ipaddress.IPv4Address(multicast_group).is_multicast:
                    raise ReceiveError(f"{multicast_group} is not a multicast group", errno.EINVAL)
                ifindex = nl.link_index(interface) if interface else 0
                # Bound to the group: only its datagrams, not every group on this port.
                sock.bind((multicast_group, port))
                local = socket.inet_aton(bind_address or "0.0.0.0")
                mreqn = struct.pack("=4s4si", socket.inet_aton(multicast_group), local, ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            else:
                sock.bind((bind_address or "0.0.0.0", port))
            sock.setblocking(blocking)
        except (OSError, nl.NetnsError) as exc:
            sock.close()
            if isinstance(exc, ReceiveError):
                raise
            raise ReceiveError(
                f"UDP socket {bind_address or '0.0.0.0'}:{port}"
                f"{' group ' + multicast_group if multicast_group else ''}: {exc}",
                int(getattr(exc, "errno", 0) or 0),
            ) from exc
    return sock


class SocketReceiver(_BatchReceiver):
    """The plain-socket path: recvmmsg batches (csrc/udp_rx.c). Works everywhere, no privilege."""

    io_path = "socket"

    def __init__(
        self,
        bind_address: str | None,
        port: int,
        *,
        multicast_group: str | None = None,
        interface: str | None = None,
        namespace: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        kernel_timestamps: bool = False,
        rcvbuf: int | None = DEFAULT_RCVBUF,
    ) -> None:
        try:
            from tectra._udp import ffi, lib
        except ImportError as exc:
            raise ReceivePathUnavailableError(
                "socket", f"tectra._udp is not built ({exc})"
            ) from exc
        super().__init__(batch_size, batch_size * max_datagram, ffi)
        self._lib = lib
        self._ffi = ffi
        self.max_datagram = max_datagram
        self.kernel_timestamps = kernel_timestamps
        self._sock = _open_udp_socket(
            bind_address,
            port,
            multicast_group=multicast_group,
            interface=interface,
            namespace=namespace,
            rcvbuf=rcvbuf,
        )
        self.port = int(self._sock.getsockname()[1])
        out = ffi.new("tx_udp_t **")
        stamp = lib.TX_UDP_STAMP_KERNEL if kernel_timestamps else lib.TX_UDP_STAMP_MONOTONIC
        rc = lib.tx_udp_open(out, self._sock.fileno(), batch_size, max_datagram, stamp)
        if rc < 0:
            self._sock.close()
            raise ReceiveError(f"socket receive setup: {os.strerror(-rc)}", -rc)
        self._u = out[0]
        self._stats = ffi.new("tx_udp_stats_t *")

    def fileno(self) -> int:
        return self._sock.fileno()

    def _rx(self, max_packets: int, timeout_ns: int) -> int:
        return self._rx_into_buffers(
            "recvmmsg",
            self._lib.tx_udp_rx_batch,
            self._u,
            max_packets=max_packets,
            timeout_ns=timeout_ns,
        )

    def stats(self) -> dict[str, int | str]:
        if self._closed:
            return {"io_path": self.io_path, "closed": 1}
        st = self._ffi.new("tx_udp_stats_t *")
        self._lib.tx_udp_stats(self._u, st)
        return {
            "io_path": self.io_path,
            "stamps": "kernel" if self.kernel_timestamps else "monotonic",
            "rx_packets": st.rx_packets,
            "rx_bytes": st.rx_bytes,
            "rx_batches": st.rx_batches,
            "empty_polls": st.empty_polls,
            "truncated": st.truncated,
            "no_stamp": st.no_stamp,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lib.tx_udp_close(self._u)
        self._u = self._ffi.NULL
        self._sock.close()


_URING_MODES: Final = {"auto": 0, "multishot": 1, "single": 2}


class UringReceiver(_BatchReceiver):
    """The io_uring path (csrc/uring_rx.c): multishot recvmsg over provided buffers when the
    kernel has it, else N outstanding recvmsg; ``uring_mode`` reports which one is in use."""

    io_path = "uring"

    def __init__(
        self,
        bind_address: str | None,
        port: int,
        *,
        multicast_group: str | None = None,
        interface: str | None = None,
        namespace: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        buffers: int = 512,
        mode: Literal["auto", "multishot", "single"] = "auto",
        rcvbuf: int | None = DEFAULT_RCVBUF,
    ) -> None:
        try:
            from tectra._uring import ffi, lib
        except ImportError as exc:
            raise ReceivePathUnavailableError(
                "uring", f"tectra._uring is not built ({exc})"
            ) from exc
        if mode not in _URING_MODES:
            raise ValueError(f"uring mode must be auto, multishot or single, not {mode!r}")
        # A provided buffer also holds the 16-byte io_uring_recvmsg_out header.
        self.buf_size = max_datagram + 64
        # reap() stops while a whole buffer still fits, so batch_size full datagrams always do.
        super().__init__(batch_size, (batch_size + 1) * self.buf_size, ffi)
        self._lib = lib
        self._ffi = ffi
        self._sock = _open_udp_socket(
            bind_address,
            port,
            multicast_group=multicast_group,
            interface=interface,
            namespace=namespace,
            rcvbuf=rcvbuf,
            blocking=True,
        )
        self.port = int(self._sock.getsockname()[1])
        out = ffi.new("tx_uring_t **")
        rc = lib.tx_uring_open(out, self._sock.fileno(), buffers, self.buf_size, _URING_MODES[mode])
        if rc < 0:
            self._sock.close()
            raise ReceivePathUnavailableError("uring", f"io_uring setup: {os.strerror(-rc)}", -rc)
        self._u = out[0]
        info = ffi.new("tx_uring_info_t *")
        lib.tx_uring_info(self._u, info)
        self.uring_mode = "multishot" if info.mode == lib.TX_URING_MULTISHOT else "single"
        self.buffers = int(info.nbufs)

    def fileno(self) -> int:
        return self._sock.fileno()

    def _rx(self, max_packets: int, timeout_ns: int) -> int:
        return self._rx_into_buffers(
            "io_uring receive",
            self._lib.tx_uring_rx_batch,
            self._u,
            max_packets=max_packets,
            timeout_ns=timeout_ns,
        )

    def stats(self) -> dict[str, int | str]:
        if self._closed:
            return {"io_path": self.io_path, "closed": 1}
        st = self._ffi.new("tx_uring_stats_t *")
        self._lib.tx_uring_stats(self._u, st)
        # The mode can change under AUTO if the kernel refuses multishot at the first receive.
        info = self._ffi.new("tx_uring_info_t *")
        self._lib.tx_uring_info(self._u, info)
        self.uring_mode = "multishot" if info.mode == self._lib.TX_URING_MULTISHOT else "single"
        return {
            "io_path": self.io_path,
            "uring_mode": self.uring_mode,
            "rx_packets": st.rx_packets,
            "rx_bytes": st.rx_bytes,
            "rx_batches": st.rx_batches,
            "empty_polls": st.empty_polls,
            "truncated": st.truncated,
            "no_buffers": st.no_buffers,
            "rearms": st.rearms,
            "errors": st.errors,
            "fallbacks": st.fallbacks,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lib.tx_uring_close(self._u)
        self._u = self._ffi.NULL
        self._sock.close()


# ---- AF_XDP ------------------------------------------------------------------------------------

_BIND_MODES: Final = {"auto": 0, "copy": 1, "zerocopy": 2}


class XdpReceiver(_BatchReceiver):
    """The AF_XDP path: one socket per rx queue (csrc/xsk.c) fed by the steering program.

    The program and its XSKMAP belong to a :class:`~tectra.io.xdp.FeedSteering` controller: the
    one passed as ``steering`` (not closed here), or one this receiver creates and owns. Frames
    are copied out of the UMEM as UDP payloads and returned to the fill ring in the same C call.
    """

    io_path = "xdp"

    def __init__(
        self,
        interface: str,
        port: int,
        *,
        namespace: str | None = None,
        multicast_group: str | None = None,
        steering: FeedSteering | None = None,
        xdp_mode: XdpMode = "auto",
        bind_mode: Literal["auto", "copy", "zerocopy"] = "auto",
        queues: Sequence[int] | None = None,
        batch_size: int = DEFAULT_BATCH,
        frame_size: int = 2048,
        ring_size: int = 4096,
        need_wakeup: bool = True,
        busy_poll_usecs: int = 0,
        busy_poll_budget: int = 0,
        umem_from_python: bool = False,
        replace_foreign: bool = False,
    ) -> None:
        try:
            from tectra._xsk import ffi, lib
        except ImportError as exc:
            raise ReceivePathUnavailableError("xdp", f"tectra._xsk is not built ({exc})") from exc
        from tectra.io.xdp import FeedSteering

        if bind_mode not in _BIND_MODES:
            raise ValueError(f"bind_mode must be auto, copy or zerocopy, not {bind_mode!r}")
        super().__init__(batch_size, batch_size * frame_size, ffi)
        self._lib = lib
        self._ffi = ffi
        self.interface = interface
        self.namespace = namespace
        self.port = port
        self._socks: list[Any] = []
        self._umems: list[mmap.mmap] = []
        self._umem_views: list[Any] = []  # cdata over _umems; released before they close
        self._membership: nl.MulticastMembership | None = None
        self._owns_steering = steering is None
        self._steering: FeedSteering | None = None
        try:
            self._steering = steering or FeedSteering(
                interface,
                [port],
                [multicast_group] if multicast_group else [],
                xdp_mode,
                namespace=namespace,
                replace_foreign=replace_foreign,
            )
            self.queues = (
                tuple(queues)
                if queues is not None
                else tuple(range(nl.rx_queue_count(interface, namespace)))
            )
            if not 0 < len(self.queues) <= lib.TX_XSK_MAX_SOCKS:
                raise ReceiveError(f"bad queue list {self.queues}", errno.EINVAL)
            cfg = ffi.new(
                "tx_xsk_config_t *",
                {
                    "frame_size": frame_size,
                    "num_frames": 2 * ring_size,  # fill ring + rx ring: the kernel never waits
                    "fill_size": ring_size,
                    "comp_size": ring_size,
                    "rx_size": ring_size,
                    "bind_mode": _BIND_MODES[bind_mode],
                    "need_wakeup": int(need_wakeup),
                    "busy_poll_usecs": busy_poll_usecs,
                    "busy_poll_budget": busy_poll_budget,
                },
            )
            umem_len = 2 * ring_size * frame_size
            with nl.in_namespace(namespace):
                for queue in self.queues:
                    area: Any = ffi.NULL
                    if umem_from_python:
                        # Anonymous mmap: page-aligned, as the kernel requires of a UMEM.
                        self._umems.append(mmap.mmap(-1, umem_len))
                        area = ffi.from_buffer(self._umems[-1])
                        self._umem_views.append(area)
                    out = ffi.new("tx_xsk_t **")
                    rc = lib.tx_xsk_open(out, interface.encode(), queue, area, umem_len, cfg)
                    if rc < 0:
                        raise ReceiveError(
                            f"AF_XDP socket on {interface} queue {queue}: {os.strerror(-rc)}", -rc
                        )
                    self._socks.append(out[0])
            self._c_socks = ffi.new("tx_xsk_t *[]", self._socks)
            infos = [self._info(s) for s in self._socks]
            for queue, info in zip(self.queues, infos, strict=True):
                self._steering.insert_socket(queue, int(info.fd))
            zc = {bool(info.zerocopy) for info in infos}
            self.bind_mode = "zerocopy" if zc == {True} else "copy" if zc == {False} else "mixed"
            busy = {int(info.busy_poll) for info in infos}
            self.busy_poll = (
                "off"
                if busy == {int(lib.TX_XSK_BUSY_POLL_OFF)}
                else "on"
                if busy == {0}
                else "unsupported: " + ", ".join(os.strerror(-b) for b in busy if b < 0)
            )
            if busy_poll_usecs > 0 and self.busy_poll != "on":
                _log.warning("AF_XDP busy polling unavailable", reason=self.busy_poll)
            if multicast_group:
                # XDP sees only what the NIC accepted: join so its filter (and IGMP) allow it.
                self._membership = nl.join_multicast(multicast_group, interface, namespace)
        except BaseException:
            self.close()
            raise

    @property
    def steering(self) -> FeedSteering:
        assert self._steering is not None
        return self._steering

    @property
    def attach_mode(self) -> str | None:
        return self._steering.attached_mode if self._steering else None

    def _info(self, sock: Any) -> Any:
        info = self._ffi.new("tx_xsk_info_t *")
        _check(int(self._lib.tx_xsk_info(sock, info)), "AF_XDP socket info")
        return info

    def fileno(self) -> int:
        """The first queue's socket (poll all of ``filenos()`` with several queues)."""
        return int(self._info(self._socks[0]).fd)

    def filenos(self) -> list[int]:
        return [int(self._info(s).fd) for s in self._socks]

    def _rx(self, max_packets: int, timeout_ns: int) -> int:
        return self._rx_into_buffers(
            "AF_XDP receive",
            self._lib.tx_xsk_rx_batch,
            self._c_socks,
            len(self._socks),
            max_packets=max_packets,
            timeout_ns=timeout_ns,
        )

    def stats(self) -> dict[str, int | str]:
        if self._closed:
            return {"io_path": self.io_path, "closed": 1}
        totals: dict[str, int] = {}
        st = self._ffi.new("tx_xsk_stats_t *")
        for sock in self._socks:
            _check(int(self._lib.tx_xsk_stats(sock, st)), "AF_XDP statistics")
            for field, _ in self._ffi.typeof("tx_xsk_stats_t").fields:
                totals[field] = totals.get(field, 0) + int(getattr(st, field))
        out: dict[str, int | str] = {
            "io_path": self.io_path,
            "attach_mode": self.attach_mode or "detached",
            "bind_mode": self.bind_mode,
            "busy_poll": self.busy_poll,
            "queues": len(self._socks),
        }
        out.update(totals)
        if self._steering is not None and self._steering.attached:
            for field, value in vars(self._steering.counters()).items():
                out[f"xdp_{field}"] = value
        return out

    def close(self) -> None:
        """Sockets out of the XSKMAP and closed, program detached (if ours), group left."""
        if self._closed:
            return
        self._closed = True
        try:
            steering = self._steering
            if steering is not None and steering.attached:
                for queue in getattr(self, "queues", ())[: len(self._socks)]:
                    with contextlib.suppress(Exception):
                        steering.remove_socket(queue)
            for sock in self._socks:
                self._lib.tx_xsk_close(sock)
            self._socks = []
            for view in self._umem_views:
                self._ffi.release(view)
            self._umem_views = []
            for area in self._umems:
                area.close()
            self._umems = []
        finally:
            if self._membership is not None:
                self._membership.close()
            if self._owns_steering and self._steering is not None:
                self._steering.detach()


# ---- choosing a path ---------------------------------------------------------------------------


def _capabilities() -> int:
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii") as fh,
    ):
        for line in fh:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def xdp_unavailable(interface: str | None) -> str | None:
    """Why AF_XDP cannot be tried here (None: try it; the attach may still fail)."""
    if interface is None:
        return "no interface configured (AF_XDP binds to an interface's rx queues)"
    caps = _capabilities()
    missing = [
        name
        for name, bits in (
            ("CAP_NET_ADMIN", (_CAP_NET_ADMIN,)),
            ("CAP_NET_RAW", (_CAP_NET_RAW,)),
            ("CAP_BPF or CAP_SYS_ADMIN", (_CAP_BPF, _CAP_SYS_ADMIN)),
        )
        if not any(caps >> bit & 1 for bit in bits)
    ]
    if missing:
        return f"not privileged: missing {', '.join(missing)} (run as root)"
    try:
        import tectra._xsk  # noqa: F401
    except ImportError as exc:
        return f"tectra._xsk is not built ({exc})"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc is not importable ({exc})"
    return None


def uring_unavailable() -> str | None:
    """Why io_uring cannot be tried here (None: try it; setup may still fail)."""
    try:
        import tectra._uring  # noqa: F401
    except ImportError as exc:
        return f"tectra._uring is not built ({exc})"
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/sys/kernel/io_uring_disabled", encoding="ascii") as fh,
    ):
        disabled = int(fh.read().strip() or 0)
        if disabled == 2:
            return "io_uring is disabled (kernel.io_uring_disabled=2)"
        if disabled == 1 and os.geteuid() != 0:
            return "io_uring is restricted (kernel.io_uring_disabled=1) and we are not root"
    return None


def open_receiver(
    io: IoChoice = "auto",
    *,
    interface: str | None = None,
    netns: str | None = None,
    bind_address: str | None = None,
    port: int,
    multicast_group: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
    xdp_mode: XdpMode = "auto",
    bind_mode: Literal["auto", "copy", "zerocopy"] = "auto",
    busy_poll_usecs: int = 0,
    xdp_ring_size: int = 4096,
    uring_mode: Literal["auto", "multishot", "single"] = "auto",
    kernel_timestamps: bool = False,
    rcvbuf: int | None = DEFAULT_RCVBUF,
) -> Receiver:
    """A receiver for the feed on PORT (and MULTICAST_GROUP) on the path IO asks for.

    ``io="auto"`` tries xdp, uring, socket in that order, logging each skipped path with its
    reason; an explicit path raises :class:`ReceivePathUnavailableError` instead of falling back.
    The receiver's ``io_path`` is always the path actually in use.
    """
    if io not in IO_CHOICES:
        raise ValueError(f"io must be one of {IO_CHOICES}, not {io!r}")
    candidates: tuple[IoPath, ...] = IO_PATHS if io == "auto" else (io,)
    failures: list[str] = []
    for i, path in enumerate(candidates):
        try:
            receiver = _open_path(
                path,
                interface=interface,
                netns=netns,
                bind_address=bind_address,
                port=port,
                multicast_group=multicast_group,
                batch_size=batch_size,
                max_datagram=max_datagram,
                xdp_mode=xdp_mode,
                bind_mode=bind_mode,
                busy_poll_usecs=busy_poll_usecs,
                xdp_ring_size=xdp_ring_size,
                uring_mode=uring_mode,
                kernel_timestamps=kernel_timestamps,
                rcvbuf=rcvbuf,
            )
        except ReceivePathUnavailableError as exc:
            if io != "auto":
                raise
            failures.append(f"{path}: {exc.reason}")
            nxt = candidates[i + 1] if i + 1 < len(candidates) else None
            _log.warning(
                "receive path unavailable",
                io_path=path,
                reason=exc.reason,
                falling_back_to=nxt or "nothing",
            )
            continue
        details = {k: v for k, v in receiver.stats().items() if isinstance(v, str)}
        _log.bind(**details).info(
            "receive path in use",
            requested=io,
            interface=interface or "",
            namespace=netns or "",
            port=port,
            group=multicast_group or "",
        )
        return receiver
    raise ReceivePathUnavailableError(io, "; ".join(failures) or "no path available")


def _open_path(path: IoPath, **kw: Any) -> Receiver:
    """Open one path, turning every way it can fail into ReceivePathUnavailableError."""
    from tectra.io.xdp import XdpError

    sock_kw = {
        "multicast_group": kw["multicast_group"],
        "interface": kw["interface"],
        "namespace": kw["netns"],
        "batch_size": kw["batch_size"],
        "max_datagram": kw["max_datagram"],
        "rcvbuf": kw["rcvbuf"],
    }
    try:
        if path == "xdp":
            reason = xdp_unavailable(kw["interface"])
            if reason:
                raise ReceivePathUnavailableError("xdp", reason)
            return XdpReceiver(
                kw["interface"],
                kw["port"],
                namespace=kw["netns"],
                multicast_group=kw["multicast_group"],
                xdp_mode=kw["xdp_mode"],
                bind_mode=kw["bind_mode"],
                batch_size=kw["batch_size"],
                busy_poll_usecs=kw["busy_poll_usecs"],
                ring_size=kw["xdp_ring_size"],
            )
        if path == "uring":
            reason = uring_unavailable()
            if reason:
                raise ReceivePathUnavailableError("uring", reason)
            return UringReceiver(kw["bind_address"], kw["port"], mode=kw["uring_mode"], **sock_kw)
        return SocketReceiver(
            kw["bind_address"], kw["port"], kernel_timestamps=kw["kernel_timestamps"], **sock_kw
        )
    except ReceivePathUnavailableError:
        raise
    except (XdpError, ReceiveError, nl.NetnsError) as exc:
        raise ReceivePathUnavailableError(path, str(exc), getattr(exc, "errno", 0)) from exc


# ---- metrics -----------------------------------------------------------------------------------

_DROP_FIELDS: Final = {
    "truncated": "truncated",
    "no_buffers": "no_buffers",
    "malformed": "malformed",
    "rx_dropped": "xsk_rx_dropped",
    "rx_ring_full": "xsk_rx_ring_full",
    "rx_fill_ring_empty_descs": "xsk_fill_ring_empty",
    "rx_invalid_descs": "xsk_invalid_descs",
}


def register_receive_metrics(
    metrics: MetricsRegistry, receivers: Callable[[], Sequence[Receiver]]
) -> None:
    """Export the receivers' C counters, read at scrape time, and which path each one is on.

    ``tectra_feed_io_path{io_path,attach_mode,bind_mode,uring_mode} 1`` names the path in
    use; packets/bytes/batches/empty polls are counters per path; drops carry a reason; the
    XDP program's own per-CPU counters are ``tectra_feed_xdp_frames{result}``.
    """

    def snapshot() -> list[dict[str, int | str]]:
        return [r.stats() for r in receivers() if not getattr(r, "closed", False)]

    def per_path(field: str) -> Callable[[], dict[tuple[str, ...], float]]:
        def read() -> dict[tuple[str, ...], float]:
            out: dict[tuple[str, ...], float] = {}
            for s in snapshot():
                key = (str(s["io_path"]),)
                out[key] = out.get(key, 0.0) + float(s.get(field, 0))
            return out

        return read

    def io_path() -> dict[tuple[str, ...], float]:
        return {
            (
                str(s["io_path"]),
                str(s.get("attach_mode", "")),
                str(s.get("bind_mode", "")),
                str(s.get("uring_mode", "")),
            ): 1.0
            for s in snapshot()
        }

    def drops() -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for s in snapshot():
            for field, reason in _DROP_FIELDS.items():
                if field in s:
                    key = (str(s["io_path"]), reason)
                    out[key] = out.get(key, 0.0) + float(s[field])
        return out

    def xdp_frames() -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for s in snapshot():
            for result in ("steered", "passed", "malformed", "no_socket"):
                if f"xdp_{result}" in s:
                    out[(result,)] = out.get((result,), 0.0) + float(s[f"xdp_{result}"])
        return out

    metrics.gauge_from(
        "tectra_feed_io_path",
        "Feed receive path in use (1 per receiver).",
        io_path,
        labels=["io_path", "attach_mode", "bind_mode", "uring_mode"],
    )
    for field, help_text in (
        ("rx_packets", "UDP payloads delivered to the feed."),
        ("rx_bytes", "UDP payload bytes delivered to the feed."),
        ("rx_batches", "Non-empty receive batches."),
        ("empty_polls", "Receive attempts that found nothing."),
    ):
        metrics.counter_from(f"tectra_feed_{field}", help_text, per_path(field), labels=["io_path"])
    metrics.counter_from(
        "tectra_feed_rx_drops",
        "Datagrams or frames lost before the feed.",
        drops,
        labels=["io_path", "reason"],
    )
    metrics.counter_from(
        "tectra_feed_xdp_frames",
        "Frames seen by the steering program.",
        xdp_frames,
        labels=["result"],
    )
