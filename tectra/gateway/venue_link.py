"""The gateway's venue connection: a SoupBinTCP 4.1 client session on a plain TCP socket, driven
by one reader thread, with the session state machine (`adapters.soupbintcp.SoupClientSession`)
doing every protocol decision.

Threading: the reader thread owns the socket's read side and the timers; `send` is called from
the order path (FIX threads). Both take the owner's lock (`lock`, shared with the gateway core)
around every session step and socket write, so the session sees one event at a time and the
order in which messages are handed to the session is the order they reach the venue.
Delivered sequenced messages are handed to `on_messages(payloads, now_ns)` with the lock held,
in sequence, exactly once (the session de-duplicates replays after a reconnect).

The next expected sequence number is saved to `state_path` every second and on stop, so a
restarted gateway asks the venue for what it missed rather than the whole day.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters.soupbintcp import (
    ClientOutput,
    Close,
    Connect,
    Connected,
    Delivered,
    Disconnected,
    LoggedIn,
    LoginFailed,
    Logout,
    ProtocolError,
    Received,
    SendRefused,
    SequenceGap,
    SessionEnded,
    SoupClientConfig,
    SoupClientSession,
    Start,
    Tick,
)
from adapters.soupbintcp import (
    Send as SendBytes,
)
from adapters.soupbintcp import (
    SendUnsequenced as SendPayload,
)

__all__ = ["VenueLink", "VenueLinkCounters"]

log = logging.getLogger(__name__)

TICK_S = 0.05
SAVE_EVERY_NS = 1_000_000_000


@dataclass
class VenueLinkCounters:
    connects: int = 0
    disconnects: int = 0
    logins: int = 0
    login_failures: int = 0
    sequence_gaps: int = 0
    send_refused: int = 0
    protocol_errors: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    last_event: str = ""
    history: list[str] = field(default_factory=list)


class VenueLink:
    """One SoupBinTCP client connection to the venue (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        config: SoupClientConfig,
        lock: threading.Lock,
        on_messages: Callable[[Sequence[bytes], int], None],
        *,
        state_path: Path | None = None,
        exact_first_sequence: int | None = None,
        on_state: Callable[[bool], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.host = host
        self.port = port
        self.lock = lock
        self._on_messages = on_messages
        self._on_state = on_state
        self._clock = clock
        self._state_path = state_path
        first = (
            exact_first_sequence
            if exact_first_sequence is not None
            else self._load_sequence(config.first_sequence)
        )
        self.session = SoupClientSession(
            SoupClientConfig(
                username=config.username,
                password=config.password,
                session=config.session,
                first_sequence=first,
                heartbeat_interval_ns=config.heartbeat_interval_ns,
                server_timeout_ns=config.server_timeout_ns,
                reconnect_delay_ns=config.reconnect_delay_ns,
                max_packet_len=config.max_packet_len,
            )
        )
        self.counters = VenueLinkCounters()
        self.logged_in = False
        self._sock: socket.socket | None = None
        self._want_connect = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="venue-link", daemon=True)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._saved_seq = first
        self._saved_at = 0
        self._delivered: list[bytes] = []

    # ---- persistence ---------------------------------------------------------------------

    def _load_sequence(self, default: int) -> int:
        if self._state_path is None:
            return default
        try:
            text = self._state_path.read_text().strip()
            return max(default, int(text))
        except (OSError, ValueError):
            return default

    def _save_sequence(self, force: bool = False) -> None:
        if self._state_path is None:
            return
        seq = self.session.next_sequence
        now = self._clock()
        if seq == self._saved_seq or (not force and now - self._saved_at < SAVE_EVERY_NS):
            return
        tmp = self._state_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{seq}\n")
            os.replace(tmp, self._state_path)
            self._saved_seq, self._saved_at = seq, now

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self._apply(self.session.step(Start(), self._clock()))
        self._thread.start()

    def stop(self, logout_timeout_s: float = 1.0) -> None:
        """Log out (the venue closes the connection), wait a little, close."""
        with self.lock:
            if self._sock is not None:
                self._apply(self.session.step(Logout(), self._clock()))
        deadline = time.monotonic() + logout_timeout_s
        while self._sock is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        with self.lock:
            self._close_socket()
            self._save_sequence(force=True)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the order path ------------------------------------------------------------------

    def send(self, payload: bytes) -> bool:
        """Send one OUCH message (caller holds `lock`). False when not logged in: the message
        is not sent (SendRefused), and the caller must treat the order as not at the venue."""
        outputs = self.session.step(SendPayload(payload), self._clock())
        self._apply(outputs)
        refused = any(isinstance(o, SendRefused) for o in outputs)
        if not refused:
            self.counters.messages_out += 1
        return not refused

    def send_many(self, payloads: Sequence[bytes]) -> bool:
        """Send many OUCH messages in one socket write (caller holds `lock`): a mass cancel.
        False (nothing sent) when not logged in."""
        data = self.session.frame_unsequenced(payloads, self._clock())
        if data is None:
            self.counters.send_refused += len(payloads)
            return False
        self._write(data)
        self.counters.messages_out += len(payloads)
        return True

    # ---- session outputs (lock held) -----------------------------------------------------

    def _apply(self, outputs: list[ClientOutput]) -> None:
        for out in outputs:
            if isinstance(out, SendBytes):
                self._write(out.data)
            elif isinstance(out, Delivered):
                self._delivered.append(out.payload)
            elif isinstance(out, Connect):
                self._want_connect = True
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"c")
            elif isinstance(out, Close):
                self._event(f"close: {out.reason}")
                self._close_socket()
            elif isinstance(out, LoggedIn):
                self.counters.logins += 1
                self._set_logged_in(True)
                self._event(f"logged in to {out.session} at {out.sequence}")
            elif isinstance(out, LoginFailed):
                self.counters.login_failures += 1
                self._event(f"login failed: {out.code.name}")
            elif isinstance(out, SequenceGap):
                self.counters.sequence_gaps += 1
                self._event(f"sequence gap: expected {out.expected}, resumed {out.resumed}")
            elif isinstance(out, SessionEnded):
                self._set_logged_in(False)
                self._event("end of session")
            elif isinstance(out, SendRefused):
                self.counters.send_refused += 1
            elif isinstance(out, ProtocolError):
                self.counters.protocol_errors += 1
                self._event(f"protocol error: {out.error}")

    def _event(self, text: str) -> None:
        log.info("venue link: %s", text)
        self.counters.last_event = text
        self.counters.history = [*self.counters.history[-31:], text]

    def _set_logged_in(self, up: bool) -> None:
        if up != self.logged_in:
            self.logged_in = up
            if self._on_state is not None:
                self._on_state(up)

    def _write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendall(data)
            self.counters.bytes_out += len(data)
        except OSError as exc:
            self._lost(f"send failed: {exc}")

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()
            self.counters.disconnects += 1
            self._set_logged_in(False)

    def _lost(self, reason: str) -> None:
        self._close_socket()
        self._apply(self.session.step(Disconnected(reason), self._clock()))

    def _flush_delivered(self) -> None:
        if self._delivered:
            batch, self._delivered = self._delivered, []
            self.counters.messages_in += len(batch)
            self._on_messages(batch, self._clock())

    # ---- the reader thread ---------------------------------------------------------------

    def _connect(self) -> None:
        self._want_connect = False
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError as exc:
            with self.lock:
                self._event(f"connect failed: {exc}")
                self._apply(self.session.step(Disconnected(f"connect: {exc}"), self._clock()))
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self._sock = sock
            self.counters.connects += 1
            self._sel.register(sock, selectors.EVENT_READ, "sock")
            self._apply(self.session.step(Connected(), self._clock()))

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self._stop.is_set():
            if self._want_connect:
                self._connect()
            timeout = max(0.0, next_tick - time.monotonic())
            for key, _ in self._sel.select(timeout):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                sock = self._sock
                if sock is None or key.fileobj is not sock:
                    continue
                try:
                    data = sock.recv(262_144)
                except OSError as exc:
                    data = b""
                    reason = f"recv failed: {exc}"
                else:
                    reason = "venue closed the connection"
                with self.lock:
                    if self._sock is not sock:
                        continue
                    if not data:
                        self._lost(reason)
                    else:
                        self._apply(self.session.step(Received(data), self._clock()))
                    self._flush_delivered()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                with self.lock:
                    self._apply(self.session.step(Tick(), self._clock()))
                    self._flush_delivered()
                    self._save_sequence()
