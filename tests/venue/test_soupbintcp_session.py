"""SoupBinTCP session state machines driven with virtual time (no sockets): login, sequenced
delivery, heartbeats, timeouts, reconnect and replay without gaps or duplicates, logout, end of
session, server login validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.soupbintcp import (
    ClientOutput,
    ClientState,
    Close,
    Connect,
    Connected,
    Delivered,
    Disconnected,
    LoggedIn,
    LoggedOut,
    LoginAccepted,
    LoginFailed,
    LoginRejectCode,
    LoginRequest,
    Logout,
    ProtocolError,
    Received,
    Send,
    SendRefused,
    SendUnsequenced,
    SequencedData,
    SequenceGap,
    ServerHeartbeat,
    ServerOutput,
    ServerState,
    SessionEnded,
    SoupClientConfig,
    SoupClientSession,
    SoupServerConfig,
    SoupServerConnection,
    SoupSessionStore,
    Start,
    Tick,
    UnsequencedReceived,
    encode_packet,
)

MS = 1_000_000
S = 1_000 * MS


@dataclass
class Link:
    """A client session and server connections joined by an in-memory 'socket'."""

    client: SoupClientSession
    store: SoupSessionStore
    server_config: SoupServerConfig = field(default_factory=SoupServerConfig)
    users: dict[str, str] = field(default_factory=lambda: {"alice": "pw"})
    conn: SoupServerConnection | None = None
    up: bool = False
    blackhole: bool = False  # the network silently drops everything
    client_events: list[ClientOutput] = field(default_factory=list)
    server_events: list[ServerOutput] = field(default_factory=list)
    connects: int = 0

    def _auth(self, user: str, password: str) -> bool:
        return self.users.get(user) == password

    def client_step(self, event: object, now: int) -> None:
        self._client_out(self.client.step(event, now), now)  # type: ignore[arg-type]

    def server_step(self, event: object, now: int) -> None:
        if self.conn is not None:
            self._server_out(self.conn.step(event, now), now)  # type: ignore[arg-type]

    def tick(self, now: int) -> None:
        self.client_step(Tick(), now)
        self.server_step(Tick(), now)

    def _client_out(self, outputs: list[ClientOutput], now: int) -> None:
        for out in outputs:
            if isinstance(out, Connect):
                self.connects += 1
                self.conn = SoupServerConnection(
                    self.server_config, self._auth, lambda _user: self.store
                )
                self.up = True
                self.blackhole = False
                self.server_step(Connected(), now)
                self.client_step(Connected(), now)
            elif isinstance(out, Send):
                if self.up and not self.blackhole:
                    self.server_step(Received(out.data), now)
            elif isinstance(out, Close):
                self._drop(now, from_client=True)
            else:
                self.client_events.append(out)

    def _server_out(self, outputs: list[ServerOutput], now: int) -> None:
        for out in outputs:
            if isinstance(out, Send):
                if self.up and not self.blackhole:
                    self.client_step(Received(out.data), now)
            elif isinstance(out, Close):
                self._drop(now, from_client=False)
            else:
                self.server_events.append(out)

    def _drop(self, now: int, *, from_client: bool) -> None:
        if not self.up:
            return
        self.up = False
        if from_client:
            self.server_step(Disconnected("peer closed"), now)
        else:
            self.client_step(Disconnected("peer closed"), now)

    def delivered(self) -> list[tuple[int, bytes]]:
        return [(e.sequence, e.payload) for e in self.client_events if isinstance(e, Delivered)]


def make_link(**cfg: object) -> Link:
    config = SoupClientConfig("alice", "pw", **cfg)  # type: ignore[arg-type]
    return Link(SoupClientSession(config), SoupSessionStore("SESS1"))


def test_login_and_sequenced_delivery_in_order() -> None:
    link = make_link()
    for i in range(3):
        link.store.append(f"m{i + 1}".encode())
    link.client_step(Start(), 0)
    assert link.client.state is ClientState.ACTIVE
    assert LoggedIn("SESS1", 1, "alice") in link.client_events
    link.tick(1)
    assert link.delivered() == [(1, b"m1"), (2, b"m2"), (3, b"m3")]
    link.store.append(b"m4")
    link.tick(2)
    assert link.delivered()[-1] == (4, b"m4")
    assert link.client.next_sequence == 5
    assert link.client.session == "SESS1"


def test_unsequenced_reaches_the_server_and_refused_when_not_logged_in() -> None:
    link = make_link()
    link.client_step(SendUnsequenced(b"early"), 0)
    assert SendRefused(b"early", "session idle") in link.client_events
    link.client_step(Start(), 0)
    link.client_step(SendUnsequenced(b"order"), 1)
    assert UnsequencedReceived("alice", b"order") in link.server_events


def test_client_heartbeats_after_a_second_of_send_silence() -> None:
    link = make_link()
    link.client_step(Start(), 0)
    sent = link.client.counters.heartbeats_out
    link.client_step(Tick(), S - 1)
    assert link.client.counters.heartbeats_out == sent
    link.client_step(Tick(), S)
    assert link.client.counters.heartbeats_out == sent + 1
    # Sending an application message resets the send-silence timer.
    link.client_step(SendUnsequenced(b"x"), S + 500 * MS)
    link.client_step(Tick(), 2 * S + 100 * MS)
    assert link.client.counters.heartbeats_out == sent + 1


def test_server_heartbeats_keep_the_client_alive() -> None:
    link = make_link()
    link.client_step(Start(), 0)
    for t in range(1, 40):
        link.tick(t * S)
    assert link.client.state is ClientState.ACTIVE
    assert link.client.counters.timeouts == 0
    assert link.conn is not None and link.conn.counters.heartbeats_out >= 30


def test_timeout_reconnect_replays_from_last_seen_without_gaps_or_duplicates() -> None:
    link = make_link(server_timeout_ns=3 * S, reconnect_delay_ns=S)
    link.client_step(Start(), 0)
    for i in range(1, 6):
        link.store.append(b"m%d" % i)
    link.tick(S // 2)
    assert [s for s, _ in link.delivered()] == [1, 2, 3, 4, 5]
    # The network goes silent (both ways); the server keeps producing.
    link.blackhole = True
    for i in range(6, 11):
        link.store.append(b"m%d" % i)
    t = S // 2
    while link.client.state is ClientState.ACTIVE:
        t += 100 * MS
        link.tick(t)
    assert link.client.state is ClientState.WAIT_RECONNECT
    assert t - S // 2 >= 3 * S  # not before the configured timeout
    assert link.client.counters.timeouts == 1
    while link.client.state is not ClientState.ACTIVE:
        t += 100 * MS
        link.tick(t)
    logins = [e for e in link.server_events if isinstance(e, LoggedIn)]
    assert logins[-1].requested == 6  # last seen + 1
    link.tick(t + 1)
    seqs = [s for s, _ in link.delivered()]
    assert seqs == list(range(1, 11))
    assert [p for _, p in link.delivered()] == [b"m%d" % i for i in range(1, 11)]


def test_replay_overlap_is_deduplicated() -> None:
    # A server that replays from earlier than asked (or a client restarted with an old
    # sequence) must not produce duplicates.
    link = make_link()
    for i in range(1, 4):
        link.store.append(b"%d" % i)
    link.client.next_sequence = 3  # the application already has 1 and 2
    link.client.state = ClientState.IDLE
    client = link.client
    out = client.step(Start(), 0)
    assert out == [Connect()]
    client.step(Connected(), 0)
    stream = encode_packet(LoginAccepted("SESS1", 1))
    stream += b"".join(encode_packet(SequencedData(b"%d" % i)) for i in range(1, 5))
    events = client.step(Received(stream), 1)
    assert [(e.sequence, e.payload) for e in events if isinstance(e, Delivered)] == [
        (3, b"3"),
        (4, b"4"),
    ]
    assert client.counters.duplicates_skipped == 2


def test_gap_reported_when_server_cannot_replay() -> None:
    link = make_link(first_sequence=5)
    link.store = SoupSessionStore("SESS1", max_retained=2)
    for i in range(1, 11):
        link.store.append(b"%d" % i)
    link.client_step(Start(), 0)
    # The store only retains 9 and 10: login for 5 is refused, not silently skipped.
    assert LoginFailed(LoginRejectCode.SESSION_NOT_AVAILABLE) in link.client_events
    assert link.client.state is ClientState.REJECTED

    client = SoupClientSession(SoupClientConfig("alice", "pw", first_sequence=5))
    client.step(Start(), 0)
    client.step(Connected(), 0)
    events = client.step(Received(encode_packet(LoginAccepted("SESS1", 9))), 1)
    assert SequenceGap(5, 9) in events
    assert client.next_sequence == 9 and client.counters.gaps == 1


def test_bad_credentials_and_unknown_session_rejected() -> None:
    link = make_link()
    link.users = {"alice": "other"}
    link.client_step(Start(), 0)
    assert LoginFailed(LoginRejectCode.NOT_AUTHORIZED) in link.client_events
    assert link.client.state is ClientState.REJECTED
    link.client_step(Tick(), 100 * S)
    assert link.connects == 1  # a rejected login is final: no reconnect storm

    link2 = make_link(session="OTHER")
    link2.client_step(Start(), 0)
    assert LoginFailed(LoginRejectCode.SESSION_NOT_AVAILABLE) in link2.client_events


def test_logout_ends_without_reconnect() -> None:
    link = make_link()
    link.client_step(Start(), 0)
    link.client_step(Logout(), 1)
    assert link.client.state is ClientState.CLOSED
    assert any(isinstance(e, LoggedOut) and e.reason == "logout" for e in link.server_events)
    link.tick(100 * S)
    assert link.connects == 1


def test_end_of_session_is_final() -> None:
    link = make_link()
    link.store.append(b"last")
    link.store.end()
    link.client_step(Start(), 0)
    assert link.delivered() == [(1, b"last")]
    assert SessionEnded() in link.client_events
    assert link.client.state is ClientState.ENDED
    link.tick(100 * S)
    assert link.connects == 1


def test_server_login_timeout_and_client_timeout() -> None:
    cfg = SoupServerConfig(login_timeout_ns=2 * S, client_timeout_ns=3 * S)
    store = SoupSessionStore("SESS1")
    conn = SoupServerConnection(cfg, lambda u, p: True, lambda u: store)
    conn.step(Connected(), 0)
    assert conn.step(Tick(), S) == []
    assert Close("login timeout") in conn.step(Tick(), 2 * S)

    conn = SoupServerConnection(cfg, lambda u, p: True, lambda u: store)
    conn.step(Connected(), 0)
    conn.step(Received(encode_packet(LoginRequest("bob", "x"))), 0)
    assert conn.state is ServerState.ACTIVE
    out = conn.step(Tick(), 3 * S)
    assert Close("client timeout") in out and LoggedOut("bob", "client timeout") in out


def test_server_refuses_data_before_login_and_counts_garbage() -> None:
    store = SoupSessionStore("SESS1")
    conn = SoupServerConnection(SoupServerConfig(), lambda u, p: True, lambda u: store)
    conn.step(Connected(), 0)
    out = conn.step(Received(encode_packet(ServerHeartbeat())), 0)
    assert any(isinstance(o, ProtocolError) for o in out)
    assert any(isinstance(o, Close) for o in out)
    assert conn.state is ServerState.CLOSED


def test_client_survives_garbage_from_server() -> None:
    link = make_link()
    link.client_step(Start(), 0)
    events = link.client.step(Received(b"\x00\x02Qx" + encode_packet(ServerHeartbeat())), 1)
    assert any(isinstance(e, ProtocolError) for e in events)
    assert link.client.state is ClientState.ACTIVE
    # Lost framing: the client drops the connection and reconnects.
    events = link.client.step(Received(b"\x00\x00"), 2)
    assert any(isinstance(e, Close) for e in events)
    assert link.client.state is ClientState.WAIT_RECONNECT


def test_store_is_bounded() -> None:
    store = SoupSessionStore("S", max_retained=3)
    for i in range(10):
        assert store.append(b"%d" % i) == i + 1
    assert store.first_sequence == 8 and store.next_sequence == 11
    assert store.get(7) is None and store.get(8) == b"7"


def test_parser_is_shared_per_connection_only() -> None:
    # A partial packet left from a dead connection must not poison the next one.
    link = make_link(server_timeout_ns=S, reconnect_delay_ns=0)
    link.client_step(Start(), 0)
    link.client.step(Received(b"\x00\x10S"), 1)  # a partial packet, then the link dies
    link.blackhole = True
    t = 0
    while link.client.state is ClientState.ACTIVE:
        t += 100 * MS
        link.tick(t)
    while link.client.state is not ClientState.ACTIVE:
        t += 100 * MS
        link.tick(t)
    link.store.append(b"fresh")
    link.tick(t + 1)
    assert link.delivered() == [(1, b"fresh")]
