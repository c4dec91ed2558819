"""The NATS client protocol (text, core NATS only): an incremental parser and frame builders.

Server → client: ``INFO {json}``, ``MSG <subject> <sid> [reply-to] <#bytes>\\r\\n<payload>\\r\\n``,
``PING``, ``PONG``, ``+OK``, ``-ERR '<message>'``. Client → server: ``CONNECT {json}``,
``SUB <subject> <sid>``, ``UNSUB <sid>``, ``PUB <subject> <#bytes>\\r\\n<payload>\\r\\n``, ``PING``,
``PONG``. Headers (HMSG) are never requested, so never parsed.

`NatsParser.feed` takes whatever bytes the socket returned (a frame may be split anywhere, and
one read may hold many frames) and returns the complete frames. Anything malformed (unknown
operation, a MSG with a bad byte count, a payload not followed by CRLF, a control line longer
than `MAX_CONTROL_LINE`) raises `NatsProtocolError`: the stream cannot be trusted past that
point, so the caller drops the connection and reconnects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_CONTROL_LINE",
    "PING",
    "PONG",
    "Err",
    "Frame",
    "Info",
    "Msg",
    "NatsParser",
    "NatsProtocolError",
    "Ok",
    "Ping",
    "Pong",
    "connect_frame",
    "pub_frame",
    "sub_frame",
    "valid_subject",
]

MAX_CONTROL_LINE: Final = 4096
CRLF: Final = b"\r\n"
PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"
_DEFAULT_MAX_PAYLOAD: Final = 1 << 20


class NatsProtocolError(ValueError):
    """The server sent something that is not valid NATS protocol."""


@dataclass(frozen=True, slots=True)
class Info:
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Msg:
    subject: str
    sid: int
    reply: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Ok:
    pass


@dataclass(frozen=True, slots=True)
class Err:
    message: str


Frame = Info | Msg | Ping | Pong | Ok | Err

_PING: Final = Ping()
_PONG: Final = Pong()
_OK: Final = Ok()


class NatsParser:
    """Incremental parser of the server's side of the protocol (not thread-safe: one reader)."""

    def __init__(self, max_payload: int = _DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        # a MSG control line already parsed, waiting for its payload
        self._pending: tuple[str, int, str, int] | None = None

    def reset(self) -> None:
        self._buf.clear()
        self._pending = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos = 0
        n = len(buf)
        try:
            while True:
                if self._pending is not None:
                    subject, sid, reply, size = self._pending
                    end = pos + size
                    if n < end + 2:
                        break
                    if buf[end : end + 2] != CRLF:
                        raise NatsProtocolError(f"MSG payload of {size} bytes not followed by CRLF")
                    out.append(Msg(subject, sid, reply, bytes(buf[pos:end])))
                    pos = end + 2
                    self._pending = None
                    continue
                eol = buf.find(CRLF, pos)
                if eol < 0:
                    if n - pos > MAX_CONTROL_LINE:
                        raise NatsProtocolError(f"control line longer than {MAX_CONTROL_LINE}")
                    break
                if eol - pos > MAX_CONTROL_LINE:
                    raise NatsProtocolError(f"control line longer than {MAX_CONTROL_LINE}")
                line = bytes(buf[pos:eol])
                pos = eol + 2
                frame = self._control(line)
                if frame is not None:
                    out.append(frame)
        except NatsProtocolError:
            self.reset()
            raise
        del buf[:pos]
        return out

    def _control(self, line: bytes) -> Frame | None:
        op, _, rest = line.partition(b" ")
        op = op.upper()
        if op == b"MSG":
            self._pending = self._msg_args(rest)
            return None
        if op == b"PING":
            return _PING
        if op == b"PONG":
            return _PONG
        if op == b"+OK":
            return _OK
        if op == b"-ERR":
            return Err(rest.strip().strip(b"'").decode("utf-8", "replace"))
        if op == b"INFO":
            try:
                data = json.loads(rest)
            except ValueError as exc:
                raise NatsProtocolError(f"INFO is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise NatsProtocolError("INFO is not a JSON object")
            return Info(data)
        raise NatsProtocolError(f"unknown operation {line[:32]!r}")

    def _msg_args(self, rest: bytes) -> tuple[str, int, str, int]:
        args = rest.split()
        if len(args) == 3:
            subject, sid_b, size_b = args
            reply = b""
        elif len(args) == 4:
            subject, sid_b, reply, size_b = args
        else:
            raise NatsProtocolError(f"MSG with {len(args)} arguments")
        if not size_b.isdigit() or len(size_b) > 10:
            raise NatsProtocolError(f"MSG byte count {size_b[:16]!r} is not a number")
        size = int(size_b)
        if size > self.max_payload:
            raise NatsProtocolError(f"MSG of {size} bytes exceeds max_payload {self.max_payload}")
        if not sid_b.isdigit() or len(sid_b) > 18:
            raise NatsProtocolError(f"MSG sid {sid_b[:16]!r} is not a number")
        try:
            return subject.decode("ascii"), int(sid_b), reply.decode("ascii"), size
        except UnicodeDecodeError:
            raise NatsProtocolError("MSG subject is not ASCII") from None


def valid_subject(subject: str) -> bool:
    """Non-empty, printable ASCII without whitespace (what fits on a control line)."""
    return (
        0 < len(subject) <= 256
        and subject.isascii()
        and subject.isprintable()
        and not any(c.isspace() for c in subject)
    )


def connect_frame(options: dict[str, Any]) -> bytes:
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + CRLF


def sub_frame(subject: str, sid: int) -> bytes:
    return f"SUB {subject} {sid}\r\n".encode("ascii")


def pub_frame(subject: str, payload: bytes) -> bytes:
    return b"".join((f"PUB {subject} {len(payload)}\r\n".encode("ascii"), payload, CRLF))
