"""A small synchronous NATS client for the kill switch: one reader thread, blocking socket.

The kill role and `KillSubscriber` are threaded, and the kill path is latency-bound (trigger →
remote ack, target p99 < 2 ms). nats-py put two asyncio event-loop hops on each side of every
message (publish → flusher task; read task → subscription task → callback) plus a
``call_soon_threadsafe`` from the caller's thread. This client speaks the NATS text protocol
(`tectra.kill.nats_proto`) itself:

* `publish` builds ``PUB`` and writes it with one ``sendall`` under a lock from the caller's
  thread (TCP_NODELAY, so it leaves at once);
* one reader thread (``nats-<name>``) blocks in ``recv``, parses, and calls the subscription's
  handler directly — no loop, no futures. Handlers run on that thread and must not block; they
  may publish (the write lock is never held while a handler runs);
* the server matches wildcards, so the client keeps only sid → handler;
* the reader connects, and reconnects with backoff (``reconnect_wait_s`` doubling to 2 s) for as
  long as the link is open, re-sending every ``SUB``. The thread is created by `start`, so it
  lives in the network namespace of the thread that called `start` (setns is per thread).

`connected` says whether the server is reachable now (CONNECT answered, subscriptions in
place); publishes while disconnected return False and are counted, never raised. A malformed
frame from the server is a `NatsProtocolError`: counted in `protocol_errors`, the connection is
dropped and made again; ``-ERR`` is counted in `server_errors`.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from tectra.core.log import get_logger
from tectra.kill.nats_proto import (
    PING,
    PONG,
    Err,
    Frame,
    Info,
    Msg,
    NatsParser,
    NatsProtocolError,
    Ping,
    Pong,
    connect_frame,
    pub_frame,
    sub_frame,
    valid_subject,
)

__all__ = ["MessageHandler", "NatsLink", "NatsProtocolError", "NatsUnavailableError"]

MessageHandler = Callable[[str, bytes], None]

_RECV: Final = 65536
_CONNECT_TIMEOUT_S: Final = 1.0
_HANDSHAKE_TIMEOUT_S: Final = 2.0
_SEND_TIMEOUT_S: Final = 1.0
_MAX_BACKOFF_S: Final = 2.0
_PING_INTERVAL_S: Final = 5.0
_MAX_PINGS_OUT: Final = 2
_DEFAULT_PORT: Final = 4222


class NatsUnavailableError(RuntimeError):
    """The server could not be reached, or refused the connection."""


def _servers(url: str) -> list[tuple[str, int, dict[str, str]]]:
    """nats://[user:pass@]host[:port][,...] → (host, port, auth options) per server."""
    out: list[tuple[str, int, dict[str, str]]] = []
    for raw in url.split(","):
        part = raw.strip()
        if not part:
            continue
        u = urlsplit(part if "://" in part else f"nats://{part}")
        if u.scheme not in ("nats", "tcp"):
            raise ValueError(f"unsupported NATS url scheme {u.scheme!r} (plain nats:// only)")
        auth: dict[str, str] = {}
        if u.username and u.password is not None:
            auth = {"user": unquote(u.username), "pass": unquote(u.password)}
        elif u.username:
            auth = {"auth_token": unquote(u.username)}
        out.append((u.hostname or "127.0.0.1", u.port or _DEFAULT_PORT, auth))
    if not out:
        raise ValueError(f"no NATS server in {url!r}")
    return out


class NatsLink:
    def __init__(self, url: str, name: str, *, reconnect_wait_s: float = 0.25) -> None:
        self.url = url
        self.name = name
        self._servers = _servers(url)
        self._reconnect_wait_s = reconnect_wait_s
        self._thread = threading.Thread(target=self._run, name=f"nats-{name}", daemon=True)
        self._wlock = threading.Lock()  # every write to the socket, and _sock itself
        self._sock: socket.socket | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._subs: dict[int, tuple[str, MessageHandler]] = {}
        self._sids = itertools.count(1)
        self._pongs: deque[threading.Event] = deque()
        self._parser = NatsParser()
        self._early: list[Frame] = []
        self._max_payload = 1 << 20
        self.published = 0
        self.publish_failures = 0
        self.reconnects = 0
        self.protocol_errors = 0
        self.server_errors = 0
        self.handler_errors = 0
        self.last_error = ""
        self._ever_connected = False
        self._log = get_logger("kill.nats").bind(url=url, name=name)

    # -- lifetime --------------------------------------------------------------------------
    def start(self, wait_s: float = 2.0) -> bool:
        """Start the reader thread, which connects; True when connected within WAIT_S (else it
        keeps trying in the background and `connected` turns true later)."""
        self._thread.start()
        return self._connected.wait(wait_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._drop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    def _drop(self) -> None:
        """Mark disconnected and shut the socket down (wakes the reader's recv)."""
        self._connected.clear()
        with self._wlock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        while self._pongs:  # nobody waits for a PONG from a dead connection
            self._pongs.popleft().set()

    # -- reader thread ---------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self._reconnect_wait_s
        for attempt in itertools.count():
            if self._stopping.is_set():
                return
            host, port, auth = self._servers[attempt % len(self._servers)]
            try:
                sock = self._handshake(host, port, auth)
            except (OSError, NatsProtocolError, NatsUnavailableError) as exc:
                if isinstance(exc, NatsProtocolError):
                    self.protocol_errors += 1
                self.last_error = repr(exc)
                self._stopping.wait(backoff * (1.0 + 0.2 * random.random()))
                backoff = min(backoff * 2.0, _MAX_BACKOFF_S)
                continue
            backoff = self._reconnect_wait_s
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self._log.info("nats connected", server=f"{host}:{port}")
            try:
                self._read(sock)
            except NatsProtocolError as exc:
                self.protocol_errors += 1
                self.last_error = repr(exc)
                self._log.warning("nats protocol error; reconnecting", error=str(exc))
            except OSError as exc:
                self.last_error = repr(exc)
            finally:
                self._drop()
            if not self._stopping.is_set():
                self._log.warning("nats disconnected; reconnecting", error=self.last_error)
                self._stopping.wait(self._reconnect_wait_s * random.random())

    def _handshake(self, host: str, port: int, auth: dict[str, str]) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(_HANDSHAKE_TIMEOUT_S)
            parser = self._parser
            parser.reset()
            info, _ = self._expect(sock, parser, Info)
            assert isinstance(info, Info)
            if info.data.get("tls_required"):
                raise NatsUnavailableError(f"{host}:{port} requires TLS (not supported)")
            self._max_payload = int(info.data.get("max_payload", 1 << 20))
            parser.max_payload = self._max_payload
            options: dict[str, Any] = {
                "verbose": False,
                "pedantic": False,
                "tls_required": False,
                "name": self.name,
                "lang": "python-tectra",
                "version": "1",
                "protocol": 1,
                "echo": True,
                "headers": False,
                **auth,
            }
            with self._wlock:
                subs = [sub_frame(subject, sid) for sid, (subject, _) in self._subs.items()]
                sock.sendall(b"".join([connect_frame(options), *subs, PING]))
                _, self._early = self._expect(sock, parser, Pong)
                # blocking from here on; a stalled server cannot hold a publisher forever
                sock.settimeout(None)
                tv = struct.pack("ll", int(_SEND_TIMEOUT_S), 0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
                self._sock = sock
            self._connected.set()
            return sock
        except BaseException:
            sock.close()
            raise

    def _expect(
        self, sock: socket.socket, parser: NatsParser, kind: type[Info] | type[Pong]
    ) -> tuple[Info | Pong, list[Frame]]:
        """Read until a frame of KIND arrives during the handshake, answering PINGs; returns it
        and any frames to deliver once connected (messages that raced the PONG)."""
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT_S
        pending: deque[Frame] = deque()
        keep: list[Frame] = []
        while time.monotonic() < deadline:
            if not pending:
                data = sock.recv(_RECV)
                if not data:
                    raise NatsUnavailableError("connection closed during the handshake")
                pending.extend(parser.feed(data))
                continue
            frame = pending.popleft()
            if isinstance(frame, kind):
                keep.extend(pending)
                return frame, keep
            if isinstance(frame, Err):
                self.server_errors += 1
                raise NatsUnavailableError(f"server refused: {frame.message}")
            if isinstance(frame, Ping):
                sock.sendall(PONG)
            elif isinstance(frame, Msg):
                keep.append(frame)
        raise NatsUnavailableError(f"no {kind.__name__} within {_HANDSHAKE_TIMEOUT_S} s")

    def _read(self, sock: socket.socket) -> None:
        parser = self._parser
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        pings_out = 0
        interval_ms = int(_PING_INTERVAL_S * 1000)
        frames, self._early = self._early, []
        while not self._stopping.is_set():
            for frame in frames:
                self._handle(frame)
            if not poller.poll(interval_ms):  # idle: make sure the server is still there
                if pings_out >= _MAX_PINGS_OUT:
                    raise OSError("nats server stopped answering PING")
                pings_out += 1
                self._ping(threading.Event())
                frames = []
                continue
            data = sock.recv(_RECV)
            if not data:
                raise OSError("nats server closed the connection")
            pings_out = 0
            frames = parser.feed(data)

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, Msg):
            self._dispatch(frame)
        elif isinstance(frame, Ping):
            self._write(PONG)
        elif isinstance(frame, Pong):
            if self._pongs:
                self._pongs.popleft().set()
        elif isinstance(frame, Err):
            self.server_errors += 1
            self.last_error = f"-ERR {frame.message}"
            self._log.warning("nats server error", error=frame.message)
        elif isinstance(frame, Info):
            self._max_payload = int(frame.data.get("max_payload", self._max_payload))
            self._parser.max_payload = self._max_payload

    def _dispatch(self, msg: Msg) -> None:
        sub = self._subs.get(msg.sid)
        if sub is None:
            return  # unsubscribed meanwhile
        try:
            sub[1](msg.subject, msg.payload)
        except Exception as exc:  # a handler's bug must not stop the reader
            self.handler_errors += 1
            self._log.error("nats handler failed", subject=msg.subject, error=repr(exc))

    def _write(self, data: bytes, pong: threading.Event | None = None) -> bool:
        with self._wlock:
            sock = self._sock
            if sock is None:
                return False
            if pong is not None:  # queued with the PING under the lock: PONGs come in order
                self._pongs.append(pong)
            try:
                sock.sendall(data)
            except OSError as exc:
                self.last_error = repr(exc)
                # a partial write leaves the stream corrupt: force a reconnect
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return False
        return True

    def _ping(self, pong: threading.Event) -> bool:
        return self._write(PING, pong)

    # -- messaging -------------------------------------------------------------------------
    def subscribe(self, subject: str, handler: MessageHandler) -> None:
        """HANDLER(subject, data) for every message on SUBJECT (wildcards allowed), on the
        reader thread; kept across reconnects and applied when a later connect succeeds."""
        if not valid_subject(subject):
            raise ValueError(f"invalid NATS subject {subject!r}")
        with self._wlock:
            sid = next(self._sids)
            self._subs[sid] = (subject, handler)
            sock = self._sock
        if sock is not None and self.connected:
            self._write(sub_frame(subject, sid))
            self.flush(timeout=2.0)

    def flush(self, timeout: float = 2.0) -> bool:
        """PING and wait for the PONG: everything written before has been processed by the
        server. False on timeout or when disconnected (never waits on the reader thread)."""
        done = threading.Event()
        if not self._ping(done):
            return False
        if threading.current_thread() is self._thread:
            return True
        return done.wait(timeout) and self.connected

    def publish(self, subject: str, data: bytes) -> bool:
        """Write DATA on SUBJECT now, from any thread (handlers included); False when not
        connected, the subject is invalid, DATA is over the server's max_payload, or the write
        failed."""
        if not self.connected or len(data) > self._max_payload or not valid_subject(subject):
            self.publish_failures += 1
            return False
        if not self._write(pub_frame(subject, data)):
            self.publish_failures += 1
            return False
        self.published += 1
        return True

    def publish_in_loop(self, subject: str, data: bytes) -> bool:
        """Same as `publish` (kept for callers written for the asyncio link)."""
        return self.publish(subject, data)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run FN on a timer thread after DELAY_S."""
        timer = threading.Timer(delay_s, fn)
        timer.daemon = True
        timer.start()
