"""SoupBinTCP 4.1: packet codec, streaming frame parser, client and server session state machines,
and thin asyncio socket shells around them.

This module owns the SoupBinTCP wire format and session behaviour, nothing above it (the payload
of sequenced and unsequenced packets is opaque here; OUCH lives in `adapters.ouch42`):

* the packet codec: every packet is a 2-byte big-endian length (type byte + payload), a type
  byte and a payload. `encode_packet` / `decode_packet` map packets to frozen dataclasses and
  back with strict validation; anything malformed is a `SoupError` with a `SoupErrorReason`;
* `FrameParser`: bytes from a socket in any chunking -> packets, with a bounded packet size and
  a bounded buffer; malformed packets come back in-band as `Malformed` (so a bad packet never
  raises out of a read loop) and are counted in `SoupCounters`;
* `SoupClientSession` and `SoupServerConnection`: state machines, `step(event, now_ns) ->
  outputs`, with no sockets and no clock inside (time is an input, principle 3). The client
  logs in with a requested sequence number (1, or last seen + 1 on reconnect so the server
  replays), tracks the next expected sequence, heartbeats after 1 s of send silence, detects a
  silent server (15 s default) and reconnects. The server validates logins, numbers outbound
  sequenced messages through a bounded `SoupSessionStore` it replays from, and heartbeats;
* `SoupClient` / `SoupServer`: asyncio shells that move bytes between sockets and the state
  machines and read the clock (I/O at the edge).

Adapters import `tectra.schema` only; this module needs nothing from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_NS",
    "DEFAULT_MAX_PACKET_LEN",
    "DEFAULT_TIMEOUT_NS",
    "ClientEvent",
    "ClientHeartbeat",
    "ClientOutput",
    "ClientState",
    "Close",
    "Connect",
    "Connected",
    "Debug",
    "Delivered",
    "Disconnected",
    "EndOfSession",
    "FrameParser",
    "LoggedIn",
    "LoggedOut",
    "LoginAccepted",
    "LoginFailed",
    "LoginRejectCode",
    "LoginRejected",
    "LoginRequest",
    "Logout",
    "LogoutRequest",
    "Malformed",
    "Packet",
    "PacketType",
    "ProtocolError",
    "Received",
    "Send",
    "SendRefused",
    "SendUnsequenced",
    "SequenceGap",
    "SequencedData",
    "ServerEvent",
    "ServerHeartbeat",
    "ServerOutput",
    "ServerState",
    "SessionEnded",
    "SoupClient",
    "SoupClientConfig",
    "SoupClientSession",
    "SoupCounters",
    "SoupError",
    "SoupErrorReason",
    "SoupServer",
    "SoupServerConfig",
    "SoupServerConnection",
    "SoupSessionStore",
    "Start",
    "Tick",
    "UnsequencedData",
    "UnsequencedReceived",
    "decode_packet",
    "encode_packet",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

DEFAULT_HEARTBEAT_INTERVAL_NS: Final[int] = 1_000_000_000
"""Each side sends a heartbeat after this much send silence (SoupBinTCP: one second)."""
DEFAULT_TIMEOUT_NS: Final[int] = 15_000_000_000
"""Each side gives up on the other after this much receive silence (SoupBinTCP: 15 s)."""
DEFAULT_MAX_PACKET_LEN: Final[int] = 2048
"""Largest accepted value of the length field (type byte + payload). OUCH 4.2's largest message
is 80 bytes; the bound keeps a corrupt length from making the parser buffer 64 KiB."""

USERNAME_WIDTH: Final[int] = 6
PASSWORD_WIDTH: Final[int] = 10
SESSION_WIDTH: Final[int] = 10
SEQUENCE_WIDTH: Final[int] = 20
_MAX_SEQUENCE: Final[int] = 10**SEQUENCE_WIDTH - 1
_LEN: Final[struct.Struct] = struct.Struct(">H")


class PacketType(enum.IntEnum):
    """SoupBinTCP packet type byte (ASCII)."""

    DEBUG = ord("+")
    LOGIN_ACCEPTED = ord("A")
    LOGIN_REJECTED = ord("J")
    SEQUENCED_DATA = ord("S")
    SERVER_HEARTBEAT = ord("H")
    END_OF_SESSION = ord("Z")
    LOGIN_REQUEST = ord("L")
    UNSEQUENCED_DATA = ord("U")
    CLIENT_HEARTBEAT = ord("R")
    LOGOUT_REQUEST = ord("O")


class LoginRejectCode(enum.Enum):
    """Login Rejected reason codes."""

    NOT_AUTHORIZED = "A"  # bad username/password
    SESSION_NOT_AVAILABLE = "S"  # requested session unknown or not (or no longer) replayable


# --------------------------------------------------------------------------------------------
# Errors and counters
# --------------------------------------------------------------------------------------------


class SoupErrorReason(enum.Enum):
    """Why a packet or a byte stream was refused."""

    ZERO_LENGTH = "zero_length"  # length field 0: no type byte (fatal: stream is lost)
    OVERSIZE = "oversize"  # length field above the configured bound (fatal)
    TRUNCATED = "truncated"  # decode_packet() given fewer bytes than a packet
    UNKNOWN_TYPE = "unknown_type"
    BAD_LENGTH = "bad_length"  # payload size wrong for a fixed-size packet type
    BAD_FIELD = "bad_field"  # a field's content is invalid (non-ASCII, non-numeric, ...)
    UNEXPECTED = "unexpected"  # a valid packet in the wrong direction or session state


_FATAL: Final[frozenset[SoupErrorReason]] = frozenset(
    {SoupErrorReason.ZERO_LENGTH, SoupErrorReason.OVERSIZE}
)


class SoupError(ValueError):
    """A malformed or unexpected SoupBinTCP packet. Compares by (reason, detail)."""

    def __init__(self, reason: SoupErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def fatal(self) -> bool:
        """True when the byte stream can no longer be framed and the connection must close."""
        return self.reason in _FATAL

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SoupError):
            return NotImplemented
        return (self.reason, self.detail) == (other.reason, other.detail)

    def __hash__(self) -> int:
        return hash((self.reason, self.detail))


@dataclass
class SoupCounters:
    """Plain counters, read at scrape time (never pushed per message)."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    malformed: dict[SoupErrorReason, int] = field(default_factory=dict)
    heartbeats_out: int = 0
    duplicates_skipped: int = 0
    gaps: int = 0
    reconnects: int = 0
    timeouts: int = 0
    refused_sends: int = 0

    def count_error(self, error: SoupError) -> None:
        self.malformed[error.reason] = self.malformed.get(error.reason, 0) + 1

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


# --------------------------------------------------------------------------------------------
# Packets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginRequest:
    """Client -> server. `requested_session` "" logs into the current session;
    `requested_sequence` is the next sequence number wanted (0: only new messages)."""

    username: str
    password: str
    requested_session: str = ""
    requested_sequence: int = 1


@dataclass(frozen=True)
class LoginAccepted:
    """Server -> client: `sequence` is the number of the next sequenced message it will send."""

    session: str
    sequence: int


@dataclass(frozen=True)
class LoginRejected:
    code: LoginRejectCode


@dataclass(frozen=True)
class SequencedData:
    payload: bytes


@dataclass(frozen=True)
class UnsequencedData:
    payload: bytes


@dataclass(frozen=True)
class ClientHeartbeat:
    pass


@dataclass(frozen=True)
class ServerHeartbeat:
    pass


@dataclass(frozen=True)
class EndOfSession:
    pass


@dataclass(frozen=True)
class LogoutRequest:
    pass


@dataclass(frozen=True)
class Debug:
    text: bytes


@dataclass(frozen=True)
class Malformed:
    """A packet that could not be decoded, returned in-band by FrameParser.feed."""

    error: SoupError
    raw: bytes


Packet = (
    LoginRequest
    | LoginAccepted
    | LoginRejected
    | SequencedData
    | UnsequencedData
    | ClientHeartbeat
    | ServerHeartbeat
    | EndOfSession
    | LogoutRequest
    | Debug
)

_CLIENT_TO_SERVER: Final = (LoginRequest, UnsequencedData, ClientHeartbeat, LogoutRequest, Debug)
_SERVER_TO_CLIENT: Final = (
    LoginAccepted,
    LoginRejected,
    SequencedData,
    ServerHeartbeat,
    EndOfSession,
    Debug,
)

_EMPTY_PACKETS: Final[dict[int, Packet]] = {
    PacketType.CLIENT_HEARTBEAT: ClientHeartbeat(),
    PacketType.SERVER_HEARTBEAT: ServerHeartbeat(),
    PacketType.END_OF_SESSION: EndOfSession(),
    PacketType.LOGOUT_REQUEST: LogoutRequest(),
}
_LOGIN_REQUEST_LEN: Final[int] = USERNAME_WIDTH + PASSWORD_WIDTH + SESSION_WIDTH + SEQUENCE_WIDTH
_LOGIN_ACCEPTED_LEN: Final[int] = SESSION_WIDTH + SEQUENCE_WIDTH


def _printable(text: str, what: str, width: int) -> bytes:
    # Alpha fields carry printable ASCII without spaces: padding is the only space allowed, or
    # decoding could not tell a trailing space from padding.
    if len(text) > width or not all("!" <= ch <= "~" for ch in text):
        raise SoupError(
            SoupErrorReason.BAD_FIELD, f"{what} {text!r}: up to {width} printable ASCII"
        )
    return text.encode("ascii")


def _numeric(value: int, what: str) -> bytes:
    if not 0 <= value <= _MAX_SEQUENCE:
        raise SoupError(SoupErrorReason.BAD_FIELD, f"{what} {value} outside 0..{_MAX_SEQUENCE}")
    return str(value).rjust(SEQUENCE_WIDTH).encode("ascii")


def encode_packet(packet: Packet) -> bytes:
    """The packet with its 2-byte length prefix. Fields are validated (SoupError BAD_FIELD)."""
    if isinstance(packet, LoginRequest):
        body = (
            bytes((PacketType.LOGIN_REQUEST,))
            + _printable(packet.username, "username", USERNAME_WIDTH).ljust(USERNAME_WIDTH)
            + _printable(packet.password, "password", PASSWORD_WIDTH).ljust(PASSWORD_WIDTH)
            + _printable(packet.requested_session, "session", SESSION_WIDTH).rjust(SESSION_WIDTH)
            + _numeric(packet.requested_sequence, "requested sequence")
        )
    elif isinstance(packet, LoginAccepted):
        body = (
            bytes((PacketType.LOGIN_ACCEPTED,))
            + _printable(packet.session, "session", SESSION_WIDTH).rjust(SESSION_WIDTH)
            + _numeric(packet.sequence, "sequence")
        )
    elif isinstance(packet, LoginRejected):
        body = bytes((PacketType.LOGIN_REJECTED,)) + packet.code.value.encode("ascii")
    elif isinstance(packet, SequencedData):
        body = bytes((PacketType.SEQUENCED_DATA,)) + bytes(packet.payload)
    elif isinstance(packet, UnsequencedData):
        body = bytes((PacketType.UNSEQUENCED_DATA,)) + bytes(packet.payload)
    elif isinstance(packet, Debug):
        body = bytes((PacketType.DEBUG,)) + bytes(packet.text)
    elif isinstance(packet, ClientHeartbeat):
        body = bytes((PacketType.CLIENT_HEARTBEAT,))
    elif isinstance(packet, ServerHeartbeat):
        body = bytes((PacketType.SERVER_HEARTBEAT,))
    elif isinstance(packet, EndOfSession):
        body = bytes((PacketType.END_OF_SESSION,))
    elif isinstance(packet, LogoutRequest):
        body = bytes((PacketType.LOGOUT_REQUEST,))
    else:  # pragma: no cover - exhaustive over Packet
        raise SoupError(SoupErrorReason.UNKNOWN_TYPE, f"not a packet: {packet!r}")
    if len(body) > 0xFFFF:
        raise SoupError(SoupErrorReason.OVERSIZE, f"packet of {len(body)} bytes exceeds 65535")
    return _LEN.pack(len(body)) + body


def _alpha_field(raw: bytes, what: str) -> str:
    if not all(0x20 <= b <= 0x7E for b in raw):
        raise SoupError(SoupErrorReason.BAD_FIELD, f"{what} {raw!r} is not printable ASCII")
    text = raw.decode("ascii").strip(" ")
    if " " in text:
        raise SoupError(SoupErrorReason.BAD_FIELD, f"{what} {raw!r} has an inner space")
    return text


def _numeric_field(raw: bytes, what: str) -> int:
    text = raw.strip(b" ")
    # Left-padded with spaces, ASCII digits only: "0012" is fine, "1 2" or "-1" is not.
    if not text or not text.isdigit() or b" " in raw.lstrip(b" "):
        raise SoupError(SoupErrorReason.BAD_FIELD, f"{what} {raw!r} is not a padded number")
    return int(text)


def decode_packet(frame: bytes | bytearray | memoryview) -> Packet:
    """One packet from its bytes *after* the length prefix (type byte + payload).

    Raises SoupError: UNKNOWN_TYPE, BAD_LENGTH, BAD_FIELD, TRUNCATED (empty frame)."""
    data = bytes(frame)
    if not data:
        raise SoupError(SoupErrorReason.TRUNCATED, "empty packet")
    kind, payload = data[0], data[1:]
    if kind == PacketType.SEQUENCED_DATA:
        return SequencedData(payload)
    if kind == PacketType.UNSEQUENCED_DATA:
        return UnsequencedData(payload)
    if kind == PacketType.DEBUG:
        return Debug(payload)
    empty = _EMPTY_PACKETS.get(kind)
    if empty is not None:
        if payload:
            raise SoupError(
                SoupErrorReason.BAD_LENGTH,
                f"{PacketType(kind).name} carries {len(payload)} payload bytes, expected 0",
            )
        return empty
    if kind == PacketType.LOGIN_REQUEST:
        if len(payload) != _LOGIN_REQUEST_LEN:
            raise SoupError(
                SoupErrorReason.BAD_LENGTH,
                f"LOGIN_REQUEST payload {len(payload)} bytes, expected {_LOGIN_REQUEST_LEN}",
            )
        u_end = USERNAME_WIDTH
        p_end = u_end + PASSWORD_WIDTH
        s_end = p_end + SESSION_WIDTH
        return LoginRequest(
            username=_alpha_field(payload[:u_end], "username"),
            password=_alpha_field(payload[u_end:p_end], "password"),
            requested_session=_alpha_field(payload[p_end:s_end], "requested session"),
            requested_sequence=_numeric_field(payload[s_end:], "requested sequence"),
        )
    if kind == PacketType.LOGIN_ACCEPTED:
        if len(payload) != _LOGIN_ACCEPTED_LEN:
            raise SoupError(
                SoupErrorReason.BAD_LENGTH,
                f"LOGIN_ACCEPTED payload {len(payload)} bytes, expected {_LOGIN_ACCEPTED_LEN}",
            )
        return LoginAccepted(
            session=_alpha_field(payload[:SESSION_WIDTH], "session"),
            sequence=_numeric_field(payload[SESSION_WIDTH:], "sequence"),
        )
    if kind == PacketType.LOGIN_REJECTED:
        if len(payload) != 1:
            raise SoupError(
                SoupErrorReason.BAD_LENGTH,
                f"LOGIN_REJECTED payload {len(payload)} bytes, expected 1",
            )
        try:
            return LoginRejected(LoginRejectCode(chr(payload[0])))
        except ValueError:
            raise SoupError(
                SoupErrorReason.BAD_FIELD, f"login reject code {payload!r} is not A or S"
            ) from None
    raise SoupError(SoupErrorReason.UNKNOWN_TYPE, f"packet type 0x{kind:02x}")


class FrameParser:
    """Byte stream -> packets, for any chunking of the stream.

    `feed` returns every complete packet in the data so far, malformed ones as `Malformed`
    (counted, never raised). A length of 0 or above `max_packet_len` means framing is lost: the
    parser returns one fatal `Malformed`, then ignores all further input (`broken` is True) and
    the session must close the connection. The buffer never holds more than one partial packet
    (at most `max_packet_len + 1` bytes) beyond the current chunk.
    """

    def __init__(
        self, max_packet_len: int = DEFAULT_MAX_PACKET_LEN, counters: SoupCounters | None = None
    ) -> None:
        if not 1 <= max_packet_len <= 0xFFFF:
            raise ValueError(f"max_packet_len {max_packet_len} outside 1..65535")
        self.max_packet_len = max_packet_len
        self.counters = counters if counters is not None else SoupCounters()
        self._buf = bytearray()
        self.broken = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet | Malformed]:
        if self.broken:
            return []
        self.counters.bytes_in += len(data)
        self._buf += data
        out: list[Packet | Malformed] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 2:
            (length,) = _LEN.unpack_from(buf, pos)
            if length == 0 or length > self.max_packet_len:
                reason = SoupErrorReason.ZERO_LENGTH if length == 0 else SoupErrorReason.OVERSIZE
                error = SoupError(
                    reason, f"length field {length} (allowed 1..{self.max_packet_len})"
                )
                self.counters.count_error(error)
                out.append(Malformed(error, bytes(buf[pos : pos + 2])))
                self.broken = True
                self._buf = bytearray()
                return out
            end = pos + 2 + length
            if end > len(buf):
                break
            frame = bytes(buf[pos + 2 : end])
            pos = end
            self.counters.packets_in += 1
            try:
                out.append(decode_packet(frame))
            except SoupError as error:
                self.counters.count_error(error)
                out.append(Malformed(error, frame))
        del buf[:pos]
        return out


# --------------------------------------------------------------------------------------------
# Session state machines: events in, outputs out
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Client: begin (first connect)."""


@dataclass(frozen=True)
class Connected:
    """The shell's TCP connection is up."""


@dataclass(frozen=True)
class Received:
    """Bytes read from the socket."""

    data: bytes


@dataclass(frozen=True)
class Tick:
    """Time passed; timers are checked against `now_ns`."""


@dataclass(frozen=True)
class SendUnsequenced:
    """Client: send an application message as Unsequenced Data."""

    payload: bytes


@dataclass(frozen=True)
class Logout:
    """Client: log out and do not reconnect."""


@dataclass(frozen=True)
class Disconnected:
    """The shell's TCP connection closed, failed or could not be opened."""

    reason: str = ""


@dataclass(frozen=True)
class Connect:
    """Client output: open a TCP connection to the server."""


@dataclass(frozen=True)
class Send:
    """Output: write these bytes (one or more encoded packets)."""

    data: bytes


@dataclass(frozen=True)
class Close:
    """Output: close the TCP connection."""

    reason: str


@dataclass(frozen=True)
class Delivered:
    """Client output: sequenced message `sequence`, delivered exactly once and in order."""

    sequence: int
    payload: bytes


@dataclass(frozen=True)
class LoggedIn:
    """Login accepted. Client: `sequence` is the next expected message; server: `requested` is
    the sequence number the client asked for."""

    session: str
    sequence: int
    username: str = ""
    requested: int = 0


@dataclass(frozen=True)
class LoginFailed:
    code: LoginRejectCode


@dataclass(frozen=True)
class SequenceGap:
    """Client output: the server could not replay from `expected`; it resumed at `resumed`."""

    expected: int
    resumed: int


@dataclass(frozen=True)
class SessionEnded:
    """End of Session received (client) or sent (server): no more sequenced messages."""


@dataclass(frozen=True)
class SendRefused:
    """Client output: an unsequenced message could not be sent (not logged in)."""

    payload: bytes
    reason: str


@dataclass(frozen=True)
class ProtocolError:
    """A malformed or unexpected packet (counted); fatal ones come with a Close."""

    error: SoupError


@dataclass(frozen=True)
class UnsequencedReceived:
    """Server output: an application message from the logged-in client."""

    username: str
    payload: bytes


@dataclass(frozen=True)
class LoggedOut:
    """Server output: the client logged out (or its connection ended after login)."""

    username: str
    reason: str


ClientEvent = Start | Connected | Received | Tick | SendUnsequenced | Logout | Disconnected
ClientOutput = (
    Connect
    | Send
    | Close
    | Delivered
    | LoggedIn
    | LoginFailed
    | SequenceGap
    | SessionEnded
    | SendRefused
    | ProtocolError
)
ServerEvent = Connected | Received | Tick | Disconnected
ServerOutput = Send | Close | LoggedIn | UnsequencedReceived | LoggedOut | ProtocolError


class ClientState(enum.Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # Connect issued, waiting for Connected
    LOGGING_IN = "logging_in"  # Login Request sent
    ACTIVE = "active"  # logged in
    WAIT_RECONNECT = "wait_reconnect"  # connection lost; reconnects at reconnect_at_ns
    LOGGING_OUT = "logging_out"  # Logout Request sent, waiting for the server to close
    CLOSED = "closed"  # logged out: final
    ENDED = "ended"  # End of Session received: final
    REJECTED = "rejected"  # Login Rejected: final


_READING: Final[frozenset[ClientState]] = frozenset(
    {ClientState.LOGGING_IN, ClientState.ACTIVE, ClientState.LOGGING_OUT}
)


@dataclass(frozen=True)
class SoupClientConfig:
    """Client session settings.

    username/password: credentials (up to 6 / 10 printable ASCII characters).
    session: session to log into; "" for the server's current one. After the first login the
      client always asks for the session it was accepted into, so replay is from that session.
    first_sequence: sequence number requested at the first login (1 = from the start).
    heartbeat_interval_ns: send a Client Heartbeat after this much send silence.
    server_timeout_ns: reconnect when nothing arrives for this long (also bounds connect+login).
    reconnect_delay_ns: wait this long after a lost connection before reconnecting.
    max_packet_len: largest length field accepted from the server.
    """

    username: str
    password: str
    session: str = ""
    first_sequence: int = 1
    heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS
    server_timeout_ns: int = DEFAULT_TIMEOUT_NS
    reconnect_delay_ns: int = 1_000_000_000
    max_packet_len: int = DEFAULT_MAX_PACKET_LEN

    def __post_init__(self) -> None:
        _printable(self.username, "username", USERNAME_WIDTH)
        _printable(self.password, "password", PASSWORD_WIDTH)
        _printable(self.session, "session", SESSION_WIDTH)
        if not 0 <= self.first_sequence <= _MAX_SEQUENCE:
            raise ValueError(f"first_sequence {self.first_sequence} out of range")
        for name in ("heartbeat_interval_ns", "server_timeout_ns"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.reconnect_delay_ns < 0:
            raise ValueError("reconnect_delay_ns must be >= 0")


_PACKET_LEN = struct.Struct(">H")  # a packet's length field (type byte + payload)


class SoupClientSession:
    """SoupBinTCP client session: `step(event, now_ns) -> outputs`, no I/O inside.

    `next_sequence` is the number of the next sequenced message the application has not seen;
    it survives reconnects, and each Login Request asks for it, so the server replays exactly
    what was missed. A replay that starts earlier is de-duplicated here; one that starts later
    (the server no longer has the messages) is reported as a SequenceGap.
    """

    def __init__(self, config: SoupClientConfig) -> None:
        self.config = config
        self.state = ClientState.IDLE
        self.counters = SoupCounters()
        self.session = config.session
        self.next_sequence = config.first_sequence
        self._stream_sequence = 0  # sequence number of the next Sequenced Data on this connection
        self._parser = FrameParser(config.max_packet_len, self.counters)
        self._last_sent_ns = 0
        self._last_recv_ns = 0
        self._reconnect_at_ns = 0

    def step(self, event: ClientEvent, now_ns: int) -> list[ClientOutput]:
        if isinstance(event, Received):
            return self._on_bytes(event.data, now_ns)
        if isinstance(event, Tick):
            return self._on_tick(now_ns)
        if isinstance(event, SendUnsequenced):
            return self._on_send(event.payload, now_ns)
        if isinstance(event, Connected):
            return self._on_connected(now_ns)
        if isinstance(event, Disconnected):
            return self._on_disconnected(event.reason, now_ns)
        if isinstance(event, Start):
            if self.state is not ClientState.IDLE:
                return []
            return self._connect(now_ns)
        if isinstance(event, Logout):
            return self._on_logout(now_ns)
        raise TypeError(f"not a client event: {event!r}")  # pragma: no cover

    # -- transitions ---------------------------------------------------------------------------

    def _connect(self, now_ns: int) -> list[ClientOutput]:
        self.state = ClientState.CONNECTING
        self._last_recv_ns = now_ns  # bounds connect + login by server_timeout_ns
        return [Connect()]

    def _lost(self, reason: str, now_ns: int, *, close: bool) -> list[ClientOutput]:
        out: list[ClientOutput] = [Close(reason)] if close else []
        self.state = ClientState.WAIT_RECONNECT
        self._reconnect_at_ns = now_ns + self.config.reconnect_delay_ns
        self.counters.reconnects += 1
        return out

    def _send(self, packet: Packet, now_ns: int) -> Send:
        self._last_sent_ns = now_ns
        self.counters.packets_out += 1
        return Send(encode_packet(packet))

    def _on_connected(self, now_ns: int) -> list[ClientOutput]:
        if self.state is not ClientState.CONNECTING:
            return [Close("unexpected connection")]
        self.state = ClientState.LOGGING_IN
        self._parser = FrameParser(self.config.max_packet_len, self.counters)
        self._last_recv_ns = now_ns
        login = LoginRequest(
            self.config.username, self.config.password, self.session, self.next_sequence
        )
        return [self._send(login, now_ns)]

    def _on_disconnected(self, reason: str, now_ns: int) -> list[ClientOutput]:
        if self.state is ClientState.LOGGING_OUT:
            self.state = ClientState.CLOSED
            return []
        if self.state in (ClientState.CONNECTING, ClientState.LOGGING_IN, ClientState.ACTIVE):
            return self._lost(reason or "disconnected", now_ns, close=False)
        return []

    def _on_logout(self, now_ns: int) -> list[ClientOutput]:
        if self.state is ClientState.ACTIVE:
            self.state = ClientState.LOGGING_OUT
            self._last_recv_ns = now_ns  # the server gets one timeout to close the connection
            return [self._send(LogoutRequest(), now_ns)]
        if self.state in (ClientState.CONNECTING, ClientState.LOGGING_IN):
            self.state = ClientState.CLOSED
            return [Close("logout")]
        if self.state in (ClientState.IDLE, ClientState.WAIT_RECONNECT):
            self.state = ClientState.CLOSED
        return []

    def frame_unsequenced(self, payloads: Sequence[bytes], now_ns: int) -> bytes | None:
        """Many application messages as one write: the Unsequenced Data packets back to back
        (what `SendUnsequenced` per payload would produce), or None (counted as refused) when
        the session is not active. For bulk sends such as a mass cancel."""
        if self.state is not ClientState.ACTIVE:
            self.counters.refused_sends += len(payloads)
            return None
        pack = _PACKET_LEN.pack
        parts = []
        for payload in payloads:
            parts.append(pack(len(payload) + 1))
            parts.append(b"U")
            parts.append(payload)
        self._last_sent_ns = now_ns
        self.counters.packets_out += len(payloads)
        return b"".join(parts)

    def _on_send(self, payload: bytes, now_ns: int) -> list[ClientOutput]:
        if self.state is not ClientState.ACTIVE:
            self.counters.refused_sends += 1
            return [SendRefused(payload, f"session {self.state.value}")]
        return [self._send(UnsequencedData(payload), now_ns)]

    def _on_tick(self, now_ns: int) -> list[ClientOutput]:
        state = self.state
        if state is ClientState.WAIT_RECONNECT:
            return self._connect(now_ns) if now_ns >= self._reconnect_at_ns else []
        if state in (
            ClientState.CONNECTING,
            ClientState.LOGGING_IN,
            ClientState.ACTIVE,
            ClientState.LOGGING_OUT,
        ):
            if now_ns - self._last_recv_ns >= self.config.server_timeout_ns:
                self.counters.timeouts += 1
                if state is ClientState.LOGGING_OUT:
                    self.state = ClientState.CLOSED
                    return [Close("logout: server did not close")]
                return self._lost("server timeout", now_ns, close=True)
            if (
                state is ClientState.ACTIVE
                and now_ns - self._last_sent_ns >= self.config.heartbeat_interval_ns
            ):
                self.counters.heartbeats_out += 1
                return [self._send(ClientHeartbeat(), now_ns)]
        return []

    def _on_bytes(self, data: bytes, now_ns: int) -> list[ClientOutput]:
        if self.state not in _READING:
            return []
        self._last_recv_ns = now_ns
        out: list[ClientOutput] = []
        for item in self._parser.feed(data):
            if isinstance(item, Malformed):
                out.append(ProtocolError(item.error))
                if item.error.fatal:
                    out += self._lost(f"framing lost: {item.error}", now_ns, close=True)
                    return out
                continue
            out += self._on_packet(item, now_ns)
            if self.state not in _READING:
                break  # closed, ended, rejected or reconnecting: ignore the rest
        return out

    def _unexpected(self, packet: Packet) -> list[ClientOutput]:
        error = SoupError(
            SoupErrorReason.UNEXPECTED,
            f"{type(packet).__name__} in state {self.state.value}",
        )
        self.counters.count_error(error)
        return [ProtocolError(error)]

    def _on_packet(self, packet: Packet, now_ns: int) -> list[ClientOutput]:
        if isinstance(packet, SequencedData):
            if self.state is ClientState.LOGGING_IN:
                return self._unexpected(packet)
            seq = self._stream_sequence
            self._stream_sequence += 1
            if seq < self.next_sequence:
                self.counters.duplicates_skipped += 1
                return []
            self.next_sequence = seq + 1
            return [Delivered(seq, packet.payload)]
        if isinstance(packet, ServerHeartbeat | Debug):
            return []
        if isinstance(packet, LoginAccepted):
            if self.state is not ClientState.LOGGING_IN:
                return self._unexpected(packet)
            self.state = ClientState.ACTIVE
            self.session = packet.session
            self._stream_sequence = packet.sequence
            out: list[ClientOutput] = []
            if packet.sequence > self.next_sequence:
                self.counters.gaps += 1
                out.append(SequenceGap(self.next_sequence, packet.sequence))
                self.next_sequence = packet.sequence
            out.append(LoggedIn(packet.session, self.next_sequence, self.config.username))
            return out
        if isinstance(packet, LoginRejected):
            if self.state is not ClientState.LOGGING_IN:
                return self._unexpected(packet)
            self.state = ClientState.REJECTED
            return [LoginFailed(packet.code), Close(f"login rejected ({packet.code.value})")]
        if isinstance(packet, EndOfSession):
            self.state = ClientState.ENDED
            return [SessionEnded(), Close("end of session")]
        return self._unexpected(packet)  # a client-to-server packet from the server


# --------------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------------


class SoupSessionStore:
    """One logical session's sequenced messages, numbered from 1, kept for replay.

    Bounded: the oldest messages beyond `max_retained` are dropped, and a login asking for a
    dropped one is refused (SESSION_NOT_AVAILABLE) rather than silently skipped.
    """

    def __init__(self, name: str, max_retained: int = 1_000_000) -> None:
        _printable(name, "session", SESSION_WIDTH)
        if not name:
            raise ValueError("session name must not be empty")
        if max_retained < 1:
            raise ValueError("max_retained must be >= 1")
        self.name = name
        self.max_retained = max_retained
        self._messages: deque[bytes] = deque()
        self.first_sequence = 1  # sequence number of _messages[0]
        self.ended = False

    @property
    def next_sequence(self) -> int:
        """Sequence number the next appended message will get."""
        return self.first_sequence + len(self._messages)

    def append(self, payload: bytes) -> int:
        """Store a sequenced message; returns its sequence number."""
        if self.ended:
            raise SoupError(SoupErrorReason.UNEXPECTED, f"session {self.name} has ended")
        self._messages.append(bytes(payload))
        if len(self._messages) > self.max_retained:
            self._messages.popleft()
            self.first_sequence += 1
        return self.next_sequence - 1

    def get(self, sequence: int) -> bytes | None:
        index = sequence - self.first_sequence
        if 0 <= index < len(self._messages):
            return self._messages[index]
        return None

    def end(self) -> None:
        """No more messages: connections send End of Session once caught up."""
        self.ended = True


class ServerState(enum.Enum):
    AWAIT_LOGIN = "await_login"
    ACTIVE = "active"
    CLOSED = "closed"


@dataclass(frozen=True)
class SoupServerConfig:
    """Server connection settings.

    heartbeat_interval_ns: send a Server Heartbeat after this much send silence.
    client_timeout_ns: close a connection that sends nothing for this long.
    login_timeout_ns: close a connection that has not logged in after this long.
    max_packet_len: largest length field accepted from a client.
    max_batch: most sequenced messages written per step (bounds one step's work; the rest
      follow on the next Tick).
    """

    heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS
    client_timeout_ns: int = DEFAULT_TIMEOUT_NS
    login_timeout_ns: int = DEFAULT_TIMEOUT_NS
    max_packet_len: int = DEFAULT_MAX_PACKET_LEN
    max_batch: int = 4096

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval_ns", "client_timeout_ns", "login_timeout_ns"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")


Authenticator = Callable[[str, str], bool]
StoreResolver = Callable[[str], SoupSessionStore]


class SoupServerConnection:
    """Server side of one SoupBinTCP connection: `step(event, now_ns) -> outputs`, no I/O.

    `authenticate(username, password)` validates logins; `store_for(username)` gives the
    session store whose messages this connection delivers (created by the application, so one
    user's stream survives its reconnects). Each Tick writes what the store gained since the
    last step, a heartbeat after send silence, and End of Session once an ended store is caught
    up.
    """

    def __init__(
        self,
        config: SoupServerConfig,
        authenticate: Authenticator,
        store_for: StoreResolver,
    ) -> None:
        self.config = config
        self._authenticate = authenticate
        self._store_for = store_for
        self.counters = SoupCounters()
        self.state = ServerState.AWAIT_LOGIN
        self.username = ""
        self.store: SoupSessionStore | None = None
        self.next_to_send = 0
        self._parser = FrameParser(config.max_packet_len, self.counters)
        self._connected_ns = 0
        self._last_sent_ns = 0
        self._last_recv_ns = 0

    def step(self, event: ServerEvent, now_ns: int) -> list[ServerOutput]:
        if self.state is ServerState.CLOSED:
            return []
        if isinstance(event, Received):
            return self._on_bytes(event.data, now_ns)
        if isinstance(event, Tick):
            return self._on_tick(now_ns)
        if isinstance(event, Connected):
            self._connected_ns = self._last_recv_ns = self._last_sent_ns = now_ns
            return []
        if isinstance(event, Disconnected):
            return self._close_silently(event.reason or "disconnected")
        raise TypeError(f"not a server event: {event!r}")  # pragma: no cover

    def _close_silently(self, reason: str) -> list[ServerOutput]:
        was_active = self.state is ServerState.ACTIVE
        self.state = ServerState.CLOSED
        return [LoggedOut(self.username, reason)] if was_active else []

    def _close(self, reason: str) -> list[ServerOutput]:
        out = self._close_silently(reason)
        out.append(Close(reason))
        return out

    def _packet(self, packet: Packet, now_ns: int) -> bytes:
        self._last_sent_ns = now_ns
        self.counters.packets_out += 1
        return encode_packet(packet)

    def _flush(self, now_ns: int) -> list[ServerOutput]:
        store = self.store
        if self.state is not ServerState.ACTIVE or store is None:
            return []
        end = min(store.next_sequence, self.next_to_send + self.config.max_batch)
        chunks: list[bytes] = []
        while self.next_to_send < end:
            payload = store.get(self.next_to_send)
            if payload is None:
                # Dropped from the bounded store while this client lagged: it cannot be served.
                return self._close(f"sequence {self.next_to_send} no longer retained")
            chunks.append(self._packet(SequencedData(payload), now_ns))
            self.next_to_send += 1
        out: list[ServerOutput] = [Send(b"".join(chunks))] if chunks else []
        if store.ended and self.next_to_send >= store.next_sequence:
            out.append(Send(self._packet(EndOfSession(), now_ns)))
            out += self._close("end of session")
        return out

    def _on_tick(self, now_ns: int) -> list[ServerOutput]:
        if self.state is ServerState.AWAIT_LOGIN:
            if now_ns - self._connected_ns >= self.config.login_timeout_ns:
                self.counters.timeouts += 1
                return self._close("login timeout")
            return []
        if now_ns - self._last_recv_ns >= self.config.client_timeout_ns:
            self.counters.timeouts += 1
            return self._close("client timeout")
        out = self._flush(now_ns)
        if (
            self.state is ServerState.ACTIVE
            and now_ns - self._last_sent_ns >= self.config.heartbeat_interval_ns
        ):
            self.counters.heartbeats_out += 1
            out.append(Send(self._packet(ServerHeartbeat(), now_ns)))
        return out

    def _protocol_error(self, error: SoupError) -> list[ServerOutput]:
        self.counters.count_error(error)
        return [ProtocolError(error)]

    def _on_bytes(self, data: bytes, now_ns: int) -> list[ServerOutput]:
        self._last_recv_ns = now_ns
        out: list[ServerOutput] = []
        for item in self._parser.feed(data):
            if isinstance(item, Malformed):
                out.append(ProtocolError(item.error))
                if item.error.fatal:
                    out += self._close(f"framing lost: {item.error}")
                    return out
                continue
            out += self._on_packet(item, now_ns)
            if self.state is ServerState.CLOSED:
                break
        return out

    def _on_packet(self, packet: Packet, now_ns: int) -> list[ServerOutput]:
        if self.state is ServerState.AWAIT_LOGIN:
            if not isinstance(packet, LoginRequest):
                out = self._protocol_error(
                    SoupError(SoupErrorReason.UNEXPECTED, f"{type(packet).__name__} before login")
                )
                return out + self._close("no login")
            return self._on_login(packet, now_ns)
        if isinstance(packet, UnsequencedData):
            return [UnsequencedReceived(self.username, packet.payload)]
        if isinstance(packet, ClientHeartbeat | Debug):
            return []
        if isinstance(packet, LogoutRequest):
            return self._close("logout")
        return self._protocol_error(
            SoupError(SoupErrorReason.UNEXPECTED, f"{type(packet).__name__} after login")
        )

    def _reject(self, code: LoginRejectCode, now_ns: int) -> list[ServerOutput]:
        out: list[ServerOutput] = [Send(self._packet(LoginRejected(code), now_ns))]
        return out + self._close(f"login rejected ({code.value})")

    def _on_login(self, login: LoginRequest, now_ns: int) -> list[ServerOutput]:
        if not self._authenticate(login.username, login.password):
            return self._reject(LoginRejectCode.NOT_AUTHORIZED, now_ns)
        store = self._store_for(login.username)
        if login.requested_session and login.requested_session != store.name:
            return self._reject(LoginRejectCode.SESSION_NOT_AVAILABLE, now_ns)
        wanted = login.requested_sequence
        # 0 asks for new messages only; beyond the end means "whatever comes next".
        start = store.next_sequence if wanted == 0 else min(wanted, store.next_sequence)
        if start < store.first_sequence:
            return self._reject(LoginRejectCode.SESSION_NOT_AVAILABLE, now_ns)
        self.state = ServerState.ACTIVE
        self.username = login.username
        self.store = store
        self.next_to_send = start
        out: list[ServerOutput] = [
            Send(self._packet(LoginAccepted(store.name, start), now_ns)),
            LoggedIn(store.name, start, login.username, wanted),
        ]
        return out + self._flush(now_ns)


# --------------------------------------------------------------------------------------------
# asyncio shells: sockets and the clock live here, nothing else
# --------------------------------------------------------------------------------------------

Clock = Callable[[], int]


class SoupClient:
    """asyncio shell around SoupClientSession.

    Non-wire outputs (Delivered, LoggedIn, SequenceGap, ...) go to `events` (an asyncio.Queue)
    and to `on_event` if given. `tick_s` is how often timers are checked.
    """

    def __init__(
        self,
        host: str,
        port: int,
        config: SoupClientConfig,
        *,
        on_event: Callable[[ClientOutput], None] | None = None,
        clock: Clock = time.monotonic_ns,
        tick_s: float = 0.05,
    ) -> None:
        self.host = host
        self.port = port
        self.session = SoupClientSession(config)
        self.events: asyncio.Queue[ClientOutput] = asyncio.Queue()
        self._on_event = on_event
        self._clock = clock
        self._tick_s = tick_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None

    @property
    def counters(self) -> SoupCounters:
        return self.session.counters

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop())
        self._apply(self.session.step(Start(), self._clock()))

    async def send(self, payload: bytes) -> bool:
        """Send one application message; False (and a SendRefused event) if not logged in."""
        outputs = self.session.step(SendUnsequenced(payload), self._clock())
        self._apply(outputs)
        if any(isinstance(o, Send) for o in outputs) and self._writer is not None:
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
        return not any(isinstance(o, SendRefused) for o in outputs)

    async def logout(self) -> None:
        self._apply(self.session.step(Logout(), self._clock()))

    async def close(self) -> None:
        """Stop everything (no logout)."""
        for task in (self._ticker, self._reader_task, self._connecting):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._drop_writer()

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _apply(self, outputs: list[ClientOutput]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                if self._writer is not None:
                    self._writer.write(out.data)
            elif isinstance(out, Connect):
                self._connecting = asyncio.create_task(self._connect())
            elif isinstance(out, Close):
                reader = self._reader_task
                if reader is not None and reader is not asyncio.current_task():
                    reader.cancel()
                self._drop_writer()
            else:
                self.events.put_nowait(out)
                if self._on_event is not None:
                    self._on_event(out)

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            self._apply(self.session.step(Disconnected(f"connect failed: {exc}"), self._clock()))
            return
        self._writer = writer
        self._apply(self.session.step(Connected(), self._clock()))
        self._reader_task = asyncio.create_task(self._read_loop(reader, writer))

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = "eof"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self._apply(self.session.step(Received(data), self._clock()))
                if self._writer is not writer:
                    return  # the session closed this connection
        except (ConnectionError, OSError) as exc:
            reason = str(exc)
        if self._writer is writer:
            self._drop_writer()
            self._apply(self.session.step(Disconnected(reason), self._clock()))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._apply(self.session.step(Tick(), self._clock()))


class SoupServer:
    """asyncio shell: accepts connections and runs one SoupServerConnection per socket.

    `on_event` gets LoggedIn / UnsequencedReceived / LoggedOut / ProtocolError with the
    connection they came from. After appending to a store, call `flush()` so connections write
    the new messages without waiting for the next tick. A new login for a user closes that
    user's older connection (the newest wins, so a client reconnecting after a timeout is not
    locked out by its own stale connection).
    """

    def __init__(
        self,
        config: SoupServerConfig,
        *,
        authenticate: Authenticator,
        store_for: StoreResolver,
        on_event: Callable[[SoupServerConnection, ServerOutput], None],
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic_ns,
        tick_s: float = 0.05,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self._authenticate = authenticate
        self._store_for = store_for
        self._on_event = on_event
        self._clock = clock
        self._tick_s = tick_s
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._writers: dict[SoupServerConnection, asyncio.StreamWriter] = {}
        self._by_user: dict[str, SoupServerConnection] = {}
        self._stalled: set[SoupServerConnection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flush_pending = False

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._tick_loop())
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers.values()):
            writer.close()
        self._writers.clear()
        handlers = [t for t in self._handlers if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def connections(self) -> list[SoupServerConnection]:
        return list(self._writers)

    def connection_for(self, username: str) -> SoupServerConnection | None:
        return self._by_user.get(username)

    def flush(self) -> None:
        """Write newly stored messages soon (coalesced into one pass per loop iteration)."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        now = self._clock()
        for conn in list(self._writers):
            self._apply(conn, conn.step(Tick(), now))

    def disconnect(self, username: str, reason: str = "forced disconnect") -> bool:
        """Fault injection: drop the user's connection without a goodbye."""
        conn = self._by_user.get(username)
        if conn is None or conn not in self._writers:
            return False
        self._apply(conn, [*conn.step(Disconnected(reason), self._clock()), Close(reason)])
        return True

    def stall(self, username: str) -> bool:
        """Fault injection: the user's current connection goes silent both ways (no reads
        processed, nothing written) until the client gives up on it."""
        conn = self._by_user.get(username)
        if conn is None:
            return False
        self._stalled.add(conn)
        return True

    def _apply(self, conn: SoupServerConnection, outputs: list[ServerOutput]) -> None:
        writer = self._writers.get(conn)
        for out in outputs:
            if isinstance(out, Send):
                if writer is not None and conn not in self._stalled:
                    writer.write(out.data)
            elif isinstance(out, Close):
                if writer is not None:
                    writer.close()
                self._forget(conn)
                writer = None
            else:
                if isinstance(out, LoggedIn):
                    old = self._by_user.get(out.username)
                    self._by_user[out.username] = conn
                    if old is not None and old is not conn and old in self._writers:
                        reason = "superseded by a new login"
                        self._apply(old, old.step(Disconnected(reason), self._clock()))
                        self._apply(old, [Close(reason)])
                self._on_event(conn, out)

    def _forget(self, conn: SoupServerConnection) -> None:
        self._writers.pop(conn, None)
        self._stalled.discard(conn)
        if self._by_user.get(conn.username) is conn:
            del self._by_user[conn.username]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = SoupServerConnection(self.config, self._authenticate, self._store_for)
        self._writers[conn] = writer
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._apply(conn, conn.step(Connected(), self._clock()))
        reason = "eof"
        try:
            while conn in self._writers:
                data = await reader.read(65536)
                if not data:
                    break
                if conn in self._stalled:
                    continue
                self._apply(conn, conn.step(Received(data), self._clock()))
        except (ConnectionError, OSError) as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = "server stopping"
        if conn in self._writers:
            self._apply(conn, conn.step(Disconnected(reason), self._clock()))
            self._forget(conn)
            writer.close()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            now = self._clock()
            for conn in list(self._writers):
                if conn in self._stalled:
                    continue
                self._apply(conn, conn.step(Tick(), now))
