"""Venue simulator, feed side: the order-flow generator (determinism, referential validity,
day structure, uncrossed books) and the MoldUDP64 publisher end to end over loopback UDP into
a MoldUdp64Session, clean and with drop / duplicate / reorder / corrupt / pause faults, the
retransmission server, the ITCH file copy, the send log and the command line."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from adapters import itch
from adapters.itch_file import read_all
from adapters.moldudp64 import (
    MoldUdp64Session,
    PacketBatch,
    SessionConfig,
    encode_request,
)
from tectra.sim.itch_flow import FlowConfig, ItchFlow
from tectra.sim.mold_publisher import (
    FaultPlan,
    MoldPublisher,
    PublisherConfig,
    RetransStore,
    SendLog,
    main,
)

LOOPBACK = "127.0.0.1"
MS = 1_000_000


def raw_messages(events: np.ndarray) -> list[bytes]:
    """The wire bytes of each record (numpy's S56 items would drop trailing NULs)."""
    raw = np.ascontiguousarray(events["raw"]).view(np.uint8).reshape(events.size, -1)
    return [row[:n].tobytes() for row, n in zip(raw, events["raw_len"].tolist(), strict=True)]


# --- generator ------------------------------------------------------------------------------


def test_generator_is_deterministic_whatever_the_batching() -> None:
    a = ItchFlow(11, 12)
    one = a.next_batch(30_000)
    b = ItchFlow(11, 12)
    parts = [b.next_batch(n) for n in (1, 7, 4096, 10_000, 15_896)]
    two = np.concatenate(parts)
    assert one.size == two.size == 30_000
    assert one.tobytes() == two.tobytes()
    assert np.array_equal(a.symbols, b.symbols)
    c = ItchFlow(12, 12).next_batch(30_000)
    assert c.tobytes() != one.tobytes()


def replay_book(events: np.ndarray) -> dict[int, list[int]]:
    """A model of the venue's book rebuilt from the stream, asserting every reference."""
    live: dict[int, list[int]] = {}  # ref -> [shares, locate, side, price]
    cols = events[["msg_type", "order_ref", "ref2", "shares", "price", "side", "stock_locate"]]
    for t, ref, ref2, shares, price, side, loc in cols.tolist():
        code = chr(t)
        if code in "AF":
            assert ref not in live and shares > 0 and price > 0
            live[ref] = [shares, loc, side, price]
        elif code in "EC":
            order = live[ref]
            assert order[1] == loc
            assert 0 < shares <= order[0], "executed more than remains"
            order[0] -= shares
            if order[0] == 0:
                del live[ref]
        elif code == "X":
            order = live[ref]
            assert 0 < shares < order[0], "cancelled all (that is a D) or more than remains"
            order[0] -= shares
        elif code == "D":
            assert live.pop(ref)[1] == loc
        elif code == "U":
            old = live.pop(ref)
            assert ref2 not in live and shares > 0 and old[1] == loc
            live[ref2] = [shares, loc, old[2], price]
    return live


def test_generator_references_only_live_orders_and_books_never_cross() -> None:
    flow = ItchFlow(3, 24, config=FlowConfig(messages=120_000, halt_p=0.01))
    events = np.concatenate([flow.next_batch(50_000) for _ in range(4)])
    assert flow.done
    live = replay_book(events)
    model = flow.live_orders()
    assert sorted(live) == sorted(model["order_ref"].tolist())
    for ref, shares in zip(model["order_ref"].tolist(), model["shares"].tolist(), strict=True):
        assert live[ref][0] == shares
    best_bid: dict[int, int] = {}
    best_ask: dict[int, int] = {}
    for _, loc, side, price in live.values():
        if side == ord("B"):
            best_bid[loc] = max(best_bid.get(loc, 0), price)
        else:
            best_ask[loc] = min(best_ask.get(loc, 1 << 62), price)
    assert all(best_bid[loc] < best_ask[loc] for loc in best_bid.keys() & best_ask.keys())


def test_generator_day_structure_and_wire_round_trip() -> None:
    n = 16
    flow = ItchFlow(5, n, config=FlowConfig(messages=40_000, halt_p=0.02))
    events = flow.next_batch(10**6)
    assert flow.done and flow.next_batch(10).size == 0
    types = "".join(chr(t) for t in events["msg_type"])
    aux = events["aux"]
    assert types[:2] == "SS" and bytes(aux[:2]) == b"OS"
    assert types[2 : 2 + n] == "R" * n and types[2 + n : 2 + 2 * n] == "H" * n
    assert set(aux[2 + n : 2 + 2 * n].tolist()) == {ord("T")}
    assert types[2 + 2 * n] == "S" and chr(aux[2 + 2 * n]) == "Q"
    assert types[-3:] == "SSS" and bytes(aux[-3:]) == b"MEC"
    for code in "AFDXUECPQIH":
        assert code in types, code
    halts = events[(events["msg_type"] == ord("H")) & (events["aux"] == ord("H"))]
    assert halts.size > 0  # some symbols halted during the day (and were reopened)
    closing = events[(events["msg_type"] == ord("Q")) & (events["aux"] == ord("C"))]
    assert closing.size > 0 and int((events["msg_type"] == ord("I")).sum()) > 0
    assert np.array_equal(events["seq"], np.arange(1, events.size + 1, dtype=np.uint64))
    assert bool((np.diff(events["exch_ts_ns"]) >= 0).all())
    decoded = itch.decode_reference(itch.frame(events), 1, 0)
    assert decoded.tobytes() == events.tobytes()  # the records are exactly what goes on the wire
    assert flow.symbols[0] == b"" and flow.symbols.size == n + 1


def test_halted_symbols_get_no_adds_or_trades() -> None:
    """Also the chunk with no F record at all (it once made pack_events fail on an empty MPID
    array)."""
    flow = ItchFlow(1, ["AAPL", "MSFT"], config=FlowConfig(messages=6_000, chunk=50, halt_p=0.5))
    events = flow.next_batch(10**6)
    assert flow.done
    replay_book(events)
    state = {1: "T", 2: "T"}
    for t, aux, loc in events[["msg_type", "aux", "stock_locate"]].tolist():
        code = chr(t)
        if code == "H":
            state[loc] = chr(aux)
        elif code in "AFECUP":
            assert state[loc] == "T", (code, loc)
    assert "H" in {chr(a) for t, a in events[["msg_type", "aux"]].tolist() if t == ord("H")}


def test_generator_is_fast_enough() -> None:
    flow = ItchFlow(1, 64)
    t0 = time.perf_counter()
    flow.next_batch(300_000)
    assert time.perf_counter() - t0 < 5.0  # ~1 M messages in a few seconds (perf/ measures)


# --- publisher -> loopback -> session ---------------------------------------------------------


@dataclass
class Receiver:
    """A loopback UDP socket feeding a MoldUdp64Session; requests go to the retransmission
    server from the same socket, so answers arrive on the feed port."""

    config: SessionConfig = field(
        default_factory=lambda: SessionConfig(
            gap_grace_ns=2 * MS, request_timeout_ns=30 * MS, max_retries=20
        )
    )
    sock: socket.socket = field(init=False)
    session: MoldUdp64Session = field(init=False)
    seqs: list[int] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    decoded: list[np.ndarray] = field(default_factory=list)
    decoder: itch.ReferenceDecoder = field(default_factory=itch.ReferenceDecoder)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.session = MoldUdp64Session(self.config)

    @property
    def address(self) -> tuple[str, int]:
        addr: tuple[str, int] = self.sock.getsockname()
        return addr

    def pump(self, retrans: tuple[str, int] | None, timeout: float = 8.0) -> None:
        """Receive until the session is complete (end of session, nothing missing)."""
        deadline = time.monotonic() + timeout
        while not self.session.complete and time.monotonic() < deadline:
            select.select([self.sock], [], [], 0.002)
            packets: list[bytes] = []
            while len(packets) < 256:
                try:
                    packets.append(self.sock.recv(65536))
                except BlockingIOError:
                    break
            now = time.monotonic_ns()
            out = self.session.step(PacketBatch.from_packets(packets, [now] * len(packets)), now)
            self.seqs += out.seqs.tolist()
            self.messages += out.messages()
            if out.count:  # the hand-off to the ITCH decoder: one block per run
                self.decoded.append(self.decoder.decode_blocks(out.data, *out.blocks()))
            for req in out.requests_bytes():
                assert retrans is not None
                self.sock.sendto(req, retrans)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def publish_in_thread(pub: MoldPublisher, flow: ItchFlow, n: int) -> threading.Thread:
    t = threading.Thread(target=pub.run, args=(flow,), kwargs={"messages": n}, daemon=True)
    t.start()
    return t


def expected(seed: int, symbols: int, n: int) -> list[bytes]:
    return raw_messages(ItchFlow(seed, symbols).next_batch(n))


def run_feed(
    receiver: Receiver, n: int, *, seed: int = 1, faults: FaultPlan | None = None, **kw: object
) -> MoldPublisher:
    flow = ItchFlow(seed, 8)
    cfg = PublisherConfig(
        dest=receiver.address,
        retrans_bind=(LOOPBACK, 0),
        faults=faults or FaultPlan(),
        **kw,  # type: ignore[arg-type]
    )
    pub = MoldPublisher(cfg, symbols=flow.symbols).start()
    thread = publish_in_thread(pub, flow, n)
    try:
        receiver.pump(pub.retrans_address)
    finally:
        thread.join(timeout=10)
        pub.close()
    return pub


def test_clean_feed_delivers_every_message_in_order(receiver: Receiver) -> None:
    n = 20_000
    pub = run_feed(receiver, n)
    s = receiver.session
    assert s.complete, s.missing
    assert receiver.seqs == list(range(1, n + 1))
    assert receiver.messages == expected(1, 8, n)
    assert s.counters.lost == 0 and s.counters.malformed == 0
    decoded = np.concatenate(receiver.decoded)
    assert bool((decoded["ts_ns"] > 0).all())  # stamped with the packets' receive times
    decoded["ts_ns"] = 0
    assert decoded.tobytes() == ItchFlow(1, 8).next_batch(n).tobytes()
    assert pub.stats["messages"] == n and pub.stats["end_of_session"] == 3
    log = pub.send_log.entries()
    assert len(log) == pub.stats["packets"] - 3  # every data packet, not the EOS
    assert int(log["count"].sum()) == n
    assert bool((np.diff(log["seq"].astype(np.int64)) > 0).all())


def test_drops_recovered_from_the_retransmission_server(receiver: Receiver) -> None:
    n = 20_000
    pub = run_feed(receiver, n, seed=2, faults=FaultPlan(seed=7, drop=0.08))
    c = receiver.session.counters
    assert receiver.session.complete, receiver.session.missing
    assert receiver.seqs == list(range(1, n + 1))
    assert receiver.messages == expected(2, 8, n)
    assert pub.stats["dropped"] > 10
    assert c.gaps > 0 and c.retrans_requests > 0 and c.retrans_filled > 0 and c.lost == 0
    assert pub.retrans is not None and pub.retrans.stats["answered_messages"] >= c.retrans_filled


def test_duplicates_and_reorders_absorbed(receiver: Receiver) -> None:
    n = 10_000
    faults = FaultPlan(seed=3, duplicate=0.1, reorder=0.1)
    pub = run_feed(receiver, n, seed=3, faults=faults)
    c = receiver.session.counters
    assert receiver.seqs == list(range(1, n + 1))
    assert receiver.messages == expected(3, 8, n)
    assert pub.stats["duplicated"] > 0 and pub.stats["reordered"] > 0
    assert c.duplicates > 0 and c.reorder_filled > 0 and c.lost == 0


@pytest.mark.parametrize("mode", ["truncate", "count", "length"])
def test_corrupt_packets_counted_malformed_and_recovered(receiver: Receiver, mode: str) -> None:
    n = 5_000
    schedule = dict.fromkeys((1, 5, 9), ("corrupt",))
    faults = FaultPlan(seed=4, corrupt_modes=(mode,), schedule=schedule)
    pub = run_feed(receiver, n, seed=4, faults=faults)
    c = receiver.session.counters
    assert pub.stats["corrupted"] == 3
    assert c.malformed == 3
    assert c.malformed_block_overrun + c.malformed_count_mismatch == 3
    assert receiver.seqs == list(range(1, n + 1))
    assert receiver.messages == expected(4, 8, n)


def test_pause_sends_heartbeats(receiver: Receiver) -> None:
    n = 3_000
    faults = FaultPlan(seed=5, schedule={3: ("pause",)}, pause_ms=250)
    pub = run_feed(receiver, n, seed=5, faults=faults, heartbeat_s=0.02)
    c = receiver.session.counters
    assert pub.stats["pauses"] == 1
    assert c.heartbeats >= 4 and pub.stats["heartbeats"] >= c.heartbeats
    assert receiver.seqs == list(range(1, n + 1))
    assert c.gaps == 0 and c.retrans_requests == 0


def test_paced_rate(receiver: Receiver) -> None:
    n = 4_000
    t0 = time.monotonic()
    run_feed(receiver, n, rate=20_000.0)
    elapsed = time.monotonic() - t0
    assert receiver.seqs == list(range(1, n + 1))
    assert 0.15 < elapsed < 3.0  # 4000 messages at 20k/s: ~0.2 s


def test_file_copy_and_shared_send_log(tmp_path: Path, receiver: Receiver) -> None:
    n = 6_000
    path = tmp_path / "day.itch"
    log_path = tmp_path / "send.log"
    pub = run_feed(receiver, n, seed=6, file=path, send_log_path=log_path)
    events = read_all(path)
    assert raw_messages(events) == expected(6, 8, n)
    log = SendLog.read(log_path)
    assert log.size == len(pub.send_log) and int(log["count"].sum()) == n
    recv = np.full(n, time.monotonic_ns(), dtype=np.int64)
    lat = SendLog.latencies(log, np.arange(1, n + 1), recv)
    assert bool((lat >= 0).all())


def test_retransmission_server_answers_and_refuses(receiver: Receiver) -> None:
    flow = ItchFlow(9, 4)
    cfg = PublisherConfig(dest=receiver.address, retrans_bind=(LOOPBACK, 0), retrans_max_count=10)
    with MoldPublisher(cfg, symbols=flow.symbols) as pub:
        pub.publish(flow.next_batch(500))
        assert pub.retrans is not None and pub.retrans_address is not None
        srv = pub.retrans
        asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        asker.bind((LOOPBACK, 0))
        asker.settimeout(2.0)
        try:
            asker.sendto(encode_request(cfg.session, 100, 50), pub.retrans_address)
            answer = asker.recv(65536)
            b = PacketBatch.from_packets([answer])
            out = MoldUdp64Session(SessionConfig(start_seq=None)).step(b, 0)
            assert out.seqs.tolist() == list(range(100, 110))  # capped at retrans_max_count
            asker.sendto(encode_request("OTHERSESS1", 1, 5), pub.retrans_address)
            asker.sendto(b"garbage", pub.retrans_address)
            asker.sendto(encode_request(cfg.session, 10_000, 5), pub.retrans_address)
            deadline = time.monotonic() + 2
            while srv.stats["requests"] < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            asker.close()
        assert srv.stats["wrong_session"] == 1 and srv.stats["bad_requests"] == 1
        assert srv.stats["unavailable"] == 1


def test_retrans_store_is_bounded() -> None:
    store = RetransStore(capacity=100)
    for first in range(1, 1001, 50):
        lengths = np.full(50, 3, dtype=np.int64)
        framed = np.tile(np.array([0, 3, 65, 66, 67], np.uint8), 50)
        store.add(first, framed, lengths)
    assert store.first_seq is not None and 851 <= store.first_seq <= 901
    first, framed, lengths = store.get(940, 20)
    assert first == 940 and lengths.size == 20 and framed.size == 100
    first, _, lengths = store.get(10, 5)
    assert lengths.size == 0


def test_multicast_socket_options() -> None:
    cfg = PublisherConfig(
        dest=("239.255.77.1", 26400),
        multicast_ttl=3,
        multicast_loop=False,
        multicast_interface=LOOPBACK,
    )
    pub = MoldPublisher(cfg)  # nothing is sent: only the options are checked
    try:
        assert pub.sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 3
        assert pub.sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
        iface = pub.sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
        assert socket.inet_ntoa(iface) == LOOPBACK
    finally:
        pub.close()


def test_command_line(capsys: pytest.CaptureFixture[str], receiver: Receiver) -> None:
    host, port = receiver.address
    pump = threading.Thread(target=receiver.pump, args=(None,), kwargs={"timeout": 5.0})
    pump.start()  # main() installs signal handlers, so it must run on this (main) thread
    rc = main(
        [
            "--dest", f"{host}:{port}",
            "--retrans-port", "0",
            "--rate", "50000",
            "--seconds", "0.3",
            "--seed", "1",
            "--symbols", "8",
            "--linger", "0",
        ]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["messages"] > 1000 and report["publisher"]["end_of_session"] == 3
    pump.join(timeout=6.0)
    assert receiver.session.complete
    assert receiver.seqs == list(range(1, report["messages"] + 1))
