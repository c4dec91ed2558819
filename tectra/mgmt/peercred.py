"""The local unix-socket front of tectra-mgmtd: the caller's uid from the kernel (SO_PEERCRED).

grpc-python gives a servicer neither the connection's file descriptor nor its peer
credentials (grpc/grpc#15511, #28755: the auth context of a unix connection is empty). So
mgmtd does not serve gRPC on the public socket itself. This front accepts each local
connection, reads SO_PEERCRED (pid, uid, gid as the kernel recorded them at connect(); the
client cannot forge them), then opens its own connection to mgmtd's internal gRPC socket,
*binding that outgoing socket to a unique abstract name* before connecting. gRPC reports
the peer of the internal connection as ``unix-abstract:<name>``, so the servicer side
looks the name up here to learn the uid. Bytes are copied both ways unchanged (HTTP/2 end to
end between the client and grpc; the front never parses it).

Why it is safe: the internal socket lives in a 0700 directory owned by mgmtd's user; an
abstract name is unique while bound, so nobody else can present a name of a live
connection; a peer name not in the table is no identity (UNAUTHENTICATED).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tectra.core.log import get_logger

_UCRED: Final = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_CHUNK: Final = 1 << 16
ABSTRACT_PREFIX: Final = "unix-abstract:"


@dataclass(frozen=True, slots=True)
class PeerCred:
    """What the kernel says about the process at the other end of a unix connection."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """SO_PEERCRED of a connected AF_UNIX socket (OSError if the kernel will not say)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid, uid, gid)


class PeerCredFront:
    """Accepts on PUBLIC_PATH, learns each caller's uid, relays to INTERNAL_PATH.

    `lookup(peer)` maps a gRPC peer string of the internal server to the caller's
    credentials while that connection is open.
    """

    def __init__(self, public_path: Path, internal_path: Path, *, mode: int = 0o666) -> None:
        self.public_path = public_path
        self.internal_path = internal_path
        self._mode = mode
        self._names: dict[str, PeerCred] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # The pid and a random tag keep names apart across restarts and other mgmtd instances.
        self._tag = f"tectra-mgmtd.{os.getpid()}.{os.urandom(4).hex()}"
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.accepted = 0
        self.refused = 0
        self._log = get_logger("mgmtd.peercred")

    def start(self) -> None:
        self.public_path.parent.mkdir(parents=True, exist_ok=True)
        self.public_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.public_path))
        # Anyone local may connect: who they are comes from the kernel, what they may do
        # from the RBAC table.
        self.public_path.chmod(self._mode)
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="mgmtd-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._listener is not None:
            self._listener.close()
        self.public_path.unlink(missing_ok=True)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def lookup(self, peer: str) -> PeerCred | None:
        """The credentials behind a gRPC peer string of the internal server, or None."""
        if not peer.startswith(ABSTRACT_PREFIX):
            return None
        with self._lock:
            return self._names.get(peer[len(ABSTRACT_PREFIX) :])

    def open_connections(self) -> int:
        with self._lock:
            return len(self._names)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                cred = peer_credentials(client)
                upstream, name = self._connect_upstream()
            except OSError as exc:
                # No credentials or no internal server: the caller gets a closed connection
                # (UNAVAILABLE), never an anonymous one.
                self.refused += 1
                self._log.warning("local connection refused", error=str(exc))
                client.close()
                continue
            with self._lock:
                self._names[name] = cred
            self.accepted += 1
            threading.Thread(
                target=self._relay, args=(client, upstream, name), name="mgmtd-relay", daemon=True
            ).start()

    def _connect_upstream(self) -> tuple[socket.socket, str]:
        name = f"{self._tag}.{next(self._ids)}"
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.bind("\0" + name)  # abstract: no file, unique while bound
            upstream.connect(str(self.internal_path))
        except OSError:
            upstream.close()
            raise
        return upstream, name

    def _relay(self, client: socket.socket, upstream: socket.socket, name: str) -> None:
        peers = {client: upstream, upstream: client}
        open_read: set[socket.socket] = {client, upstream}
        try:
            while open_read and not self._stop.is_set():
                ready, _, _ = select.select(list(open_read), [], [], 0.5)
                for src in ready:
                    try:
                        data = src.recv(_CHUNK)
                    except OSError:
                        data = b""
                    dst = peers[src]
                    if not data:
                        open_read.discard(src)
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                        continue
                    try:
                        dst.sendall(data)
                    except OSError:
                        open_read.clear()
                        break
        finally:
            with self._lock:
                self._names.pop(name, None)
            client.close()
            upstream.close()
