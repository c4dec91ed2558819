"""The NATS protocol parser and the synchronous `NatsLink` against a scripted fake server.

No nats-server here: the parser is fed byte strings (split anywhere), and the link talks to a
listening socket in the test that plays the server's side line by line.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tectra.kill.nats_link import NatsLink
from tectra.kill.nats_proto import (
    MAX_CONTROL_LINE,
    Err,
    Info,
    Msg,
    NatsParser,
    NatsProtocolError,
    Ok,
    Ping,
    Pong,
    pub_frame,
    sub_frame,
    valid_subject,
)

STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576}\r\n'
    b"PING\r\n"
    b"MSG tectra.kill.a.cmd.firm 1 5\r\nhello\r\n"
    b"+OK\r\n"
    b"MSG a.b 7 reply.to 0\r\n\r\n"
    b"MSG bin 2 4\r\n\r\n\r\n\r\n"
    b"-ERR 'Unknown Protocol Operation'\r\n"
    b"PONG\r\n"
)
EXPECTED = [
    Info({"server_id": "x", "max_payload": 1048576}),
    Ping(),
    Msg("tectra.kill.a.cmd.firm", 1, "", b"hello"),
    Ok(),
    Msg("a.b", 7, "reply.to", b""),
    Msg("bin", 2, "", b"\r\n\r\n"),  # a payload may contain CRLF: the byte count rules
    Err("Unknown Protocol Operation"),
    Pong(),
]


# -- parser ---------------------------------------------------------------------------------
def test_whole_stream_parses_in_one_feed() -> None:
    assert NatsParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13, 64])
def test_frames_split_anywhere_parse_the_same(chunk: int) -> None:
    p = NatsParser()
    out = []
    for i in range(0, len(STREAM), chunk):
        out.extend(p.feed(STREAM[i : i + chunk]))
    assert out == EXPECTED
    assert p.buffered == 0


def test_every_split_point_of_a_msg() -> None:
    frame = b"MSG s.x 3 11\r\nhello world\r\nPING\r\n"
    for cut in range(len(frame) + 1):
        p = NatsParser()
        got = p.feed(frame[:cut]) + p.feed(frame[cut:])
        assert got == [Msg("s.x", 3, "", b"hello world"), Ping()], cut


def test_ops_are_case_insensitive() -> None:
    assert NatsParser().feed(b"ping\r\npong\r\nmsg a 1 1\r\nx\r\n") == [
        Ping(),
        Pong(),
        Msg("a", 1, "", b"x"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        b"MSG a 1 -5\r\n",  # negative
        b"MSG a 1 five\r\n",  # not a number
        b"MSG a 1 99999999999\r\n",  # absurd
        b"MSG a 1 2000000\r\n",  # over max_payload
        b"MSG a 1 3\r\nabcdef\r\n",  # payload longer than announced: no CRLF after 3 bytes
        b"MSG a x 1\r\nz\r\n",  # sid not a number
        b"MSG a\r\n",  # too few arguments
        b"MSG a 1 b c 4\r\n",  # too many
        b"HMSG a 1 4 8\r\n",  # headers were never asked for
        b"BOGUS\r\n",
        b"INFO not-json\r\n",
        b"INFO [1]\r\n",
    ],
)
def test_malformed_frames_raise_a_typed_error_and_reset(bad: bytes) -> None:
    p = NatsParser()
    with pytest.raises(NatsProtocolError):
        p.feed(bad)
    assert p.buffered == 0
    assert p.feed(b"PING\r\n") == [Ping()]  # usable again (the link reconnects anyway)


def test_overlong_control_line_without_crlf_is_refused() -> None:
    p = NatsParser()
    with pytest.raises(NatsProtocolError):
        p.feed(b"MSG " + b"a" * (MAX_CONTROL_LINE + 10))


def test_a_bad_frame_fails_the_whole_read() -> None:
    p = NatsParser()
    with pytest.raises(NatsProtocolError):
        p.feed(b"PING\r\nMSG a 1 zz\r\n")


def test_builders_and_subject_check() -> None:
    assert pub_frame("a.b", b"xy") == b"PUB a.b 2\r\nxy\r\n"
    assert sub_frame("tectra.kill.*.cmd.>", 4) == b"SUB tectra.kill.*.cmd.> 4\r\n"
    assert valid_subject("tectra.kill.a.ack")
    assert not valid_subject("")
    assert not valid_subject("a b")
    assert not valid_subject("a\r\nPUB x 1")
    assert not valid_subject("é")


# -- NatsLink against a fake server ---------------------------------------------------------
class FakeServer:
    """Accepts connections and lets the test read/write the protocol on the latest one."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(5.0)
        self.conn: socket.socket | None = None
        self._buf = b""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def accept(self, info: bytes = b'{"server_id":"fake","max_payload":1024}') -> None:
        if self.conn is not None:
            self.conn.close()
        conn, _ = self.listener.accept()
        conn.settimeout(5.0)
        self.conn, self._buf = conn, b""
        conn.sendall(b"INFO " + info + b"\r\n")

    def line(self) -> bytes:
        assert self.conn is not None
        while b"\r\n" not in self._buf:
            data = self.conn.recv(4096)
            if not data:
                raise EOFError
            self._buf += data
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def handshake(self) -> list[bytes]:
        """Answer CONNECT/SUB.../PING with PONG; return the lines up to the PING."""
        lines = []
        while (ln := self.line()) != b"PING":
            lines.append(ln)
        self.send(b"PONG\r\n")
        return lines

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def connect(server: FakeServer, got: list[tuple[str, bytes]]) -> tuple[NatsLink, list[bytes]]:
    link = NatsLink(server.url, "t", reconnect_wait_s=0.02)
    link.subscribe("tectra.kill.*.cmd.>", lambda s, d: got.append((s, d)))
    done: list[bool] = []
    starter = threading.Thread(target=lambda: done.append(link.start(3.0)))
    starter.start()
    server.accept()
    lines = server.handshake()
    starter.join()
    assert done == [True] and link.connected
    return link, lines


def test_handshake_subscribes_and_messages_reach_the_handler(server: FakeServer) -> None:
    got: list[tuple[str, bytes]] = []
    link, lines = connect(server, got)
    try:
        assert lines[0].startswith(b"CONNECT {") and b'"verbose":false' in lines[0]
        assert lines[1] == b"SUB tectra.kill.*.cmd.> 1"
        # split across writes, two in one write
        server.send(b"MSG tectra.kill.a.cmd.firm 1 3\r\nab")
        time.sleep(0.01)
        server.send(b"c\r\nMSG tectra.kill.b.cmd.venue 1 1\r\nz\r\n")
        assert wait_for(lambda: len(got) == 2)
        assert got == [("tectra.kill.a.cmd.firm", b"abc"), ("tectra.kill.b.cmd.venue", b"z")]
        assert link.publish("tectra.kill.a.ack", b"\x00\x01")
        assert server.line() == b"PUB tectra.kill.a.ack 2"
        assert server.line() == b"\x00\x01"
        assert link.published == 1
    finally:
        link.close()
    assert not link.connected
    assert not link.publish("x", b"y") and link.publish_failures == 1


def test_server_ping_is_answered_and_err_is_counted(server: FakeServer) -> None:
    link, _ = connect(server, [])
    try:
        server.send(b"PING\r\n")
        assert server.line() == b"PONG"
        server.send(b"-ERR 'Permissions Violation for Publish'\r\n")
        assert wait_for(lambda: link.server_errors == 1)
        assert "Permissions Violation" in link.last_error
        assert link.connected  # a non-fatal -ERR does not drop the link by itself
    finally:
        link.close()


def test_flush_waits_for_the_pong(server: FakeServer) -> None:
    link, _ = connect(server, [])
    try:
        result: list[bool] = []
        t = threading.Thread(target=lambda: result.append(link.flush(2.0)))
        t.start()
        assert server.line() == b"PING"
        time.sleep(0.02)
        assert result == []
        server.send(b"PONG\r\n")
        t.join()
        assert result == [True]
    finally:
        link.close()


def test_bad_length_is_counted_and_the_link_reconnects(server: FakeServer) -> None:
    got: list[tuple[str, bytes]] = []
    link, _ = connect(server, got)
    try:
        server.send(b"MSG tectra.kill.a.cmd.firm 1 nope\r\n")
        assert wait_for(lambda: link.protocol_errors == 1)
        assert "NatsProtocolError" in link.last_error
        server.accept()  # the reader thread survived and dials again
        lines = server.handshake()
        assert b"SUB tectra.kill.*.cmd.> 1" in lines  # subscriptions restored
        assert wait_for(lambda: link.connected)
        assert link.reconnects == 1
        server.send(b"MSG tectra.kill.a.cmd.firm 1 2\r\nok\r\n")
        assert wait_for(lambda: got == [("tectra.kill.a.cmd.firm", b"ok")])
    finally:
        link.close()


def test_handler_exception_does_not_stop_the_reader(server: FakeServer) -> None:
    got: list[bytes] = []

    def handler(subject: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("bug")
        got.append(data)

    link = NatsLink(server.url, "t", reconnect_wait_s=0.02)
    link.subscribe("a", handler)
    starter = threading.Thread(target=link.start, args=(3.0,))
    starter.start()
    server.accept()
    server.handshake()
    starter.join()
    try:
        server.send(b"MSG a 1 4\r\nboom\r\nMSG a 1 2\r\nok\r\n")
        assert wait_for(lambda: got == [b"ok"])
        assert link.handler_errors == 1
    finally:
        link.close()


def test_publish_refuses_bad_subjects_and_oversize_payloads(server: FakeServer) -> None:
    link, _ = connect(server, [])
    try:
        assert not link.publish("a b", b"x")
        assert not link.publish("ok", b"x" * 2048)  # the fake server's max_payload is 1024
        assert link.publish_failures == 2
        with pytest.raises(ValueError):
            link.subscribe("bad subject", lambda s, d: None)
    finally:
        link.close()


def test_unreachable_server_keeps_retrying_without_raising() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    link = NatsLink(f"nats://127.0.0.1:{port}", "t", reconnect_wait_s=0.01)
    try:
        assert not link.start(0.2)
        assert not link.connected
        assert "Connection refused" in link.last_error or "ConnectionRefused" in link.last_error
        assert not link.publish("a", b"b")
    finally:
        link.close()
