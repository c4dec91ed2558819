"""The feed-steering XDP program: compile, attach, read back, count, detach (the controller).

This module owns `xdp/feed_steer.c` on one interface: it compiles it with bcc for the feed's
UDP ports (and multicast groups), attaches it natively or generically, reads back from netlink
which mode the kernel really gave it, owns its XSKMAP (workers' AF_XDP socket fds go in there,
one per rx queue) and its per-CPU counters, and detaches it again: on ``detach()``/``close()``,
at interpreter exit, and on SIGTERM when asked to. A program of ours left behind by a
predecessor that died (kill -9 leaves a netlink-attached program in place) is recognised by its
name at startup and replaced, with a warning in the log.

Attach, detach and the read-back go through netlink (pyroute2, `tectra.io.netns`) in the
interface's namespace, so no thread has to enter that namespace for them.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import ipaddress
import os
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal, Self

from tectra.core.log import get_logger
from tectra.io import netns as nl

__all__ = [
    "PROGRAM_NAME",
    "FeedSteering",
    "SteeringCounters",
    "XdpAttachError",
    "XdpBusyError",
    "XdpCompileError",
    "XdpError",
    "XdpMode",
    "default_source",
]

XdpMode = Literal["auto", "native", "generic"]

#: The program's function name; the kernel keeps it (<= 15 chars) and we find ours by it.
PROGRAM_NAME: Final = "tectra_steer"
# Order of the counters in the BPF_PERCPU_ARRAY (CNT_* in xdp/feed_steer.c).
_COUNTER_NAMES: Final = ("steered", "passed", "malformed", "no_socket")
_MODE_FLAGS: Final = {"native": nl.XDP_FLAGS_DRV_MODE, "generic": nl.XDP_FLAGS_SKB_MODE}

_log = get_logger("io.xdp")


class XdpError(Exception):
    """Base of the XDP controller's errors; ``errno`` is the kernel's code when there is one."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.errno = code


class XdpCompileError(XdpError):
    """bcc could not compile the program, or the verifier refused it."""


class XdpAttachError(XdpError):
    """The kernel refused the attach (driver, mode, namespace or permission)."""


class XdpBusyError(XdpAttachError):
    """Another (not Tectra's) XDP program holds the interface and replacing it was not allowed."""


@dataclass(frozen=True)
class SteeringCounters:
    """Frames seen by the program, summed over CPUs; each frame is in exactly one field."""

    steered: int
    passed: int
    malformed: int
    no_socket: int

    @property
    def total(self) -> int:
        return self.steered + self.passed + self.malformed + self.no_socket


def default_source() -> Path:
    """xdp/feed_steer.c of this checkout (override with TECTRA_XDP_DIR for installed trees)."""
    base = os.environ.get("TECTRA_XDP_DIR")
    if base:
        return Path(base) / "feed_steer.c"
    return Path(__file__).resolve().parents[2] / "xdp" / "feed_steer.c"


def _prog_identity(fd: int) -> tuple[int, str]:
    from tectra._xsk import ffi, lib

    prog_id = ffi.new("uint32_t *")
    name = ffi.new("char[32]")
    rc = lib.tx_bpf_prog_info(fd, prog_id, name, 32)
    if rc < 0:
        raise XdpError(f"BPF program info: {os.strerror(-rc)}", -rc)
    return int(prog_id[0]), ffi.string(name).decode("ascii", "replace")


def _prog_fd_by_id(prog_id: int) -> int:
    from tectra._xsk import lib

    fd = int(lib.tx_bpf_prog_fd_by_id(prog_id))
    if fd < 0:
        raise XdpError(f"BPF program {prog_id}: {os.strerror(-fd)}", -fd)
    return fd


class FeedSteering:
    """The feed-steering program attached to INTERFACE (in NAMESPACE), steering UDP to PORTS.

    ``mode`` "auto" tries native (driver) XDP and falls back to generic (skb) XDP, logging why;
    "native"/"generic" insist. ``attached_mode`` is what netlink reports after the attach, never
    the mode asked for. With ``groups`` only datagrams to those multicast groups are steered.

    ``replace_foreign`` allows replacing an XDP program that is not ours (off by default: the
    controller refuses with :class:`XdpBusyError` rather than break someone else's tool). A
    program of ours found at startup is a crashed predecessor's and is always replaced.
    """

    def __init__(
        self,
        interface: str,
        ports: Iterable[int],
        groups: Iterable[str] = (),
        mode: XdpMode = "auto",
        *,
        namespace: str | None = None,
        max_queues: int | None = None,
        source: Path | None = None,
        replace_foreign: bool = False,
        detach_on_sigterm: bool = False,
    ) -> None:
        if mode not in ("auto", "native", "generic"):
            raise ValueError(f"mode must be auto, native or generic, not {mode!r}")
        self.interface = interface
        self.namespace = namespace
        self.ports: tuple[int, ...] = tuple(int(p) for p in ports)
        if not self.ports or any(not 0 < p < 65536 for p in self.ports):
            raise ValueError(f"ports must be 1..65535 and at least one, got {self.ports}")
        self.groups: tuple[str, ...] = tuple(str(g) for g in groups)
        for group in self.groups:
            if not ipaddress.IPv4Address(group).is_multicast:
                raise ValueError(f"{group} is not an IPv4 multicast group")
        self.requested_mode: XdpMode = mode
        self.source = source or default_source()
        self.attached_mode: str | None = None
        self.prog_id: int | None = None
        #: The predecessor's program this controller replaced at startup, if any.
        self.replaced: nl.XdpAttachment | None = None
        #: Why native mode was not used under "auto" (None when it was, or not tried).
        self.native_refused: str | None = None
        # Re-entrant: SIGTERM may land while the owner thread is inside detach().
        self._lock = threading.RLock()
        self._owner_pid = os.getpid()
        self._bpf: Any = None
        self._fn_fd = -1
        self._xsks_fd = -1
        self._counters: Any = None
        self._previous_sigterm: Any = None
        self._log = _log.bind(interface=interface, namespace=namespace or "")

        info = self._link()
        self.max_queues = max_queues or max(info.rx_queues, 1)
        self._compile()
        try:
            self._take_over(info.xdp, replace_foreign)
            self._attach()
        except BaseException:
            self._release_bpf()
            raise
        atexit.register(self.detach)
        if detach_on_sigterm:
            self._install_sigterm()

    # ---- setup ------------------------------------------------------------------------------

    def _link(self) -> nl.LinkInfo:
        try:
            return nl.link_info(self.interface, self.namespace)
        except nl.NetnsError as exc:
            raise XdpAttachError(str(exc), exc.errno) from exc

    def _cflags(self) -> list[str]:
        flags = [
            f"-DFEED_PORTS={','.join(str(p) for p in self.ports)}",
            f"-DXSKS_MAX={self.max_queues}",
        ]
        if self.groups:
            words = (f"{int(ipaddress.IPv4Address(g)):#010x}u" for g in self.groups)
            flags.append(f"-DFEED_GROUPS={','.join(words)}")
        return flags

    def _compile(self) -> None:
        try:
            from bcc import BPF
        except ImportError as exc:
            raise XdpCompileError(f"bcc is not importable: {exc}") from exc
        try:
            text = self.source.read_text(encoding="utf-8")
        except OSError as exc:
            raise XdpCompileError(f"cannot read {self.source}: {exc}", exc.errno or 0) from exc
        try:
            # bcc wants bytes (str is deprecated there).
            self._bpf = BPF(text=text.encode(), cflags=self._cflags())
            fn = self._bpf.load_func(PROGRAM_NAME.encode(), BPF.XDP)
        except Exception as exc:  # bcc raises bare Exception for compile and verifier errors
            self._release_bpf()
            raise XdpCompileError(f"{self.source.name}: {exc}") from exc
        self._fn_fd = int(fn.fd)
        self._xsks_fd = int(self._bpf[b"xsks"].map_fd)
        self._counters = self._bpf[b"counters"]

    def _take_over(self, current: nl.XdpAttachment, replace_foreign: bool) -> None:
        """Remove a program found on the interface: ours (a dead predecessor's) or, if
        allowed, a foreign one. Detaching with its fd as the expected one never removes a
        program that changed under us."""
        if current.mode is None or current.prog_id is None:
            return
        try:
            old_fd = _prog_fd_by_id(current.prog_id)
        except XdpError as exc:
            if exc.errno == errno.ENOENT:
                return  # went away meanwhile
            raise XdpAttachError(f"inspect attached program: {exc}", exc.errno) from exc
        try:
            _, name = _prog_identity(old_fd)
            ours = name == PROGRAM_NAME
            if not ours and not replace_foreign:
                raise XdpBusyError(
                    f"{self.interface} already runs XDP program {name!r} "
                    f"(id {current.prog_id}, {current.mode}); not replacing a foreign program",
                    errno.EBUSY,
                )
            flags = _MODE_FLAGS.get(current.mode, 0)
            try:
                nl.set_link_xdp(self.interface, -1, flags, self.namespace, expected_fd=old_fd)
            except nl.NetnsError as exc:
                raise XdpAttachError(f"remove stale program: {exc}", exc.errno) from exc
            self.replaced = current
            self._log.warning(
                "replaced a stale XDP program" if ours else "replaced a foreign XDP program",
                prog_id=current.prog_id,
                prog_name=name,
                mode=current.mode,
            )
        finally:
            os.close(old_fd)

    def _attach(self) -> None:
        modes: list[str] = (
            ["native", "generic"] if self.requested_mode == "auto" else [self.requested_mode]
        )
        last: nl.NetnsError | None = None
        for mode in modes:
            flags = _MODE_FLAGS[mode] | nl.XDP_FLAGS_UPDATE_IF_NOEXIST
            try:
                nl.set_link_xdp(self.interface, self._fn_fd, flags, self.namespace)
            except nl.NetnsError as exc:
                last = exc
                if mode == "native" and self.requested_mode == "auto":
                    self.native_refused = str(exc)
                    self._log.warning("native XDP refused, trying generic", reason=str(exc))
                continue
            break
        else:
            assert last is not None
            raise XdpAttachError(
                f"attach {PROGRAM_NAME} to {self.interface} ({'/'.join(modes)}): {last}",
                last.errno,
            )
        # Read back what the kernel actually did: mode and program, from netlink.
        got = self._link().xdp
        our_id, _ = _prog_identity(self._fn_fd)
        if got.prog_id != our_id:
            raise XdpAttachError(
                f"after attach {self.interface} runs program {got.prog_id} in mode {got.mode}, "
                f"not ours ({our_id})",
                errno.EIO,
            )
        self.attached_mode = got.mode
        self.prog_id = our_id
        self._log.info(
            "feed steering attached",
            attached_mode=got.mode,
            requested_mode=self.requested_mode,
            prog_id=our_id,
            ports=list(self.ports),
            groups=list(self.groups),
            queues=self.max_queues,
        )

    # ---- the XSKMAP --------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self.attached_mode is not None

    @property
    def xsks_map_fd(self) -> int:
        """The XSKMAP's fd (owned here; valid until detach)."""
        self._check_attached()
        return self._xsks_fd

    def insert_socket(self, queue: int, sock_fd: int) -> None:
        """Steer frames arriving on rx QUEUE to the AF_XDP socket SOCK_FD (bound to QUEUE)."""
        from tectra._xsk import lib

        self._check_attached()
        if not 0 <= queue < self.max_queues:
            raise XdpError(
                f"queue {queue} outside the XSKMAP (0..{self.max_queues - 1})", errno.ERANGE
            )
        rc = lib.tx_xskmap_set(self._xsks_fd, queue, sock_fd)
        if rc < 0:
            raise XdpError(f"XSKMAP[{queue}] = fd {sock_fd}: {os.strerror(-rc)}", -rc)

    def remove_socket(self, queue: int) -> None:
        """Stop steering QUEUE (its frames go to the kernel again); idempotent."""
        from tectra._xsk import lib

        if not self.attached or not 0 <= queue < self.max_queues:
            return
        rc = lib.tx_xskmap_clear(self._xsks_fd, queue)
        if rc < 0:
            raise XdpError(f"clear XSKMAP[{queue}]: {os.strerror(-rc)}", -rc)

    # ---- counters ----------------------------------------------------------------------------

    def counters(self) -> SteeringCounters:
        """The per-CPU counters summed now (read at scrape time; never kept in Python)."""
        self._check_attached()
        table = self._counters
        values = [int(table.sum(ctypes.c_int(i)).value) for i in range(len(_COUNTER_NAMES))]
        return SteeringCounters(*values)

    # ---- teardown ----------------------------------------------------------------------------

    def detach(self) -> None:
        """Remove our program from the interface; idempotent, safe from a signal handler.

        Only our own program is removed (expected-fd detach): if something replaced it
        meanwhile, that one stays. A namespace or link that is already gone counts as done.
        """
        if os.getpid() != self._owner_pid:
            return  # a forked child (pyroute2 forks helpers) must never detach its parent's
        with self._lock:
            if self.attached_mode is not None:
                mode = self.attached_mode
                self.attached_mode = None
                try:
                    nl.set_link_xdp(
                        self.interface,
                        -1,
                        _MODE_FLAGS.get(mode, 0),
                        self.namespace,
                        expected_fd=self._fn_fd,
                    )
                    self._log.info("feed steering detached", prog_id=self.prog_id, mode=mode)
                except nl.NetnsError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.EEXIST):
                        self._release_bpf()
                        raise XdpError(f"detach: {exc}", exc.errno) from exc
                    self._log.info("feed steering already gone", reason=str(exc))
            self._release_bpf()
        atexit.unregister(self.detach)
        self._restore_sigterm()

    close = detach

    def _release_bpf(self) -> None:
        bpf, self._bpf = self._bpf, None
        self._counters = None
        self._fn_fd = self._xsks_fd = -1
        if bpf is not None:
            bpf.cleanup()

    def _check_attached(self) -> None:
        if self.attached_mode is None:
            raise XdpError("feed steering is detached", errno.ENODEV)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise XdpError("detach_on_sigterm needs the main thread (signal handlers)")
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_sigterm(self) -> None:
        previous, self._previous_sigterm = self._previous_sigterm, None
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous_sigterm
        if os.getpid() != self._owner_pid:
            # A child forked after the handler was installed (e.g. pyroute2's netns helper,
            # which is stopped with SIGTERM): just die as SIGTERM would have it.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.detach()
        # Then whatever SIGTERM meant before us: the previous handler, or dying by the signal.
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def __repr__(self) -> str:
        return (
            f"FeedSteering({self.interface!r}, ports={self.ports}, groups={self.groups}, "
            f"attached_mode={self.attached_mode!r}, prog_id={self.prog_id})"
        )
