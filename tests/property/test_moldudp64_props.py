"""Property tests for MoldUDP64: any delivery schedule of a packet stream (drops, duplicates,
reorders, arbitrary batching and timing) with a retransmission source yields exactly messages
1..N in order; without retransmission, what is not delivered is exactly what is counted lost;
and no byte string, however mangled, crashes the parser or the session or unbalances its
counters."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.moldudp64 import (
    END_OF_SESSION,
    MoldUdp64Session,
    PacketBatch,
    SessionConfig,
    SessionCounters,
    SessionOutput,
    encode_end_of_session,
    encode_heartbeat,
    frame_messages,
    message_blocks,
    pack_packets,
    parse_headers,
    parse_request,
)

S = b"PROPSESS01"
MS = 1_000_000
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def msg(seq: int, size: int) -> bytes:
    return seq.to_bytes(4, "big")[: min(size, 4)] + bytes([seq % 256]) * max(size - 4, 0)


@dataclass
class Stream:
    """N messages (sizes drawn), packetised for the live feed."""

    sizes: list[int]
    max_packet: int
    messages: list[bytes] = field(init=False)
    packets: list[tuple[int, int, bytes]] = field(init=False)  # (seq, count, bytes)

    def __post_init__(self) -> None:
        self.messages = [msg(i + 1, n) for i, n in enumerate(self.sizes)]
        self.packets = self.packetise(1, len(self.messages), self.max_packet)

    def packetise(self, first: int, count: int, max_packet: int) -> list[tuple[int, int, bytes]]:
        framed, lengths = frame_messages(self.messages[first - 1 : first - 1 + count])
        pb = pack_packets(S, first, framed, lengths, max_packet=max_packet)
        hdr = parse_headers(pb.buf, pb.offsets, pb.lengths)
        return [
            (int(q), int(c), p) for q, c, p in zip(hdr.seq, hdr.count, pb.packets(), strict=True)
        ]


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    n = draw(st.integers(1, 250))
    sizes = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    return Stream(sizes, draw(st.integers(64, 400)))


@st.composite
def schedules(draw: st.DrawFn, stream: Stream) -> list[bytes]:
    """The live packets after drops, duplicates and local reordering."""
    out: list[bytes] = []
    holdback: list[tuple[int, bytes]] = []
    for _, _, raw in stream.packets:
        fate = draw(st.sampled_from(["ok", "ok", "ok", "drop", "dup", "late"]))
        if fate == "ok":
            out.append(raw)
        elif fate == "dup":
            out += [raw, raw]
        elif fate == "late":  # overtaken by up to 4 packets sent after it
            later = draw(st.integers(1, 4))
            holdback.append((later + 1, raw))
        holdback = [(k - 1, p) for k, p in holdback]
        out += [p for k, p in holdback if k <= 0]
        holdback = [(k, p) for k, p in holdback if k > 0]
    out += [p for _, p in holdback]
    return out


@st.composite
def batches(draw: st.DrawFn, packets: list[bytes]) -> list[list[bytes]]:
    sizes = draw(st.lists(st.integers(1, 8), min_size=len(packets), max_size=len(packets)))
    out: list[list[bytes]] = []
    i = 0
    for n in sizes:
        if i >= len(packets):
            break
        out.append(packets[i : i + n])
        i += n
    return out


def message_total(packets: list[bytes]) -> int:
    b = PacketBatch.from_packets(packets)
    hdr = parse_headers(b.buf, b.offsets, b.lengths)
    message_blocks(b.buf, b.offsets, b.lengths, hdr)
    ok = (hdr.status == 0) & (hdr.count != END_OF_SESSION)
    return int(hdr.count[ok].sum())


def check_packet_identity(c: SessionCounters) -> None:
    assert c.packets == (
        c.data_packets + c.heartbeats + c.end_of_session + c.stale_session + c.malformed
    )


class RetransServer:
    """Answers requests from the stream, after a delay of some steps, with its own packet size
    and a cap on messages per answer; it ignores the first `ignore` requests for a given
    start so the session has to retry (always fewer than its max_retries)."""

    def __init__(self, stream: Stream, max_packet: int, max_count: int, ignore: int, delay: int):
        self.stream, self.max_packet, self.max_count = stream, max_packet, max_count
        self.ignore, self.delay = ignore, delay
        self.seen: dict[int, int] = {}
        self.pending: list[tuple[int, list[bytes]]] = []  # (due step, packets)
        self.sent: list[bytes] = []

    def request(self, raw: bytes, step: int) -> None:
        req = parse_request(raw)
        assert req is not None and req.session == S
        n = self.seen[req.seq] = self.seen.get(req.seq, 0) + 1
        if n <= self.ignore:
            return
        last = min(req.seq + min(req.count, self.max_count), len(self.stream.messages) + 1)
        if last <= req.seq:
            return
        pkts = [p for _, _, p in self.stream.packetise(req.seq, last - req.seq, self.max_packet)]
        self.pending.append((step + self.delay, pkts))

    def due(self, step: int) -> list[bytes]:
        ready = [p for s, pk in self.pending if s <= step for p in pk]
        self.pending = [(s, pk) for s, pk in self.pending if s > step]
        self.sent += ready
        return ready


def run(
    session: MoldUdp64Session,
    live: list[list[bytes]],
    gaps_ns: list[int],
    server: RetransServer | None,
    tail_ns: int,
) -> tuple[list[int], list[bytes], list[tuple[int, int]], list[bytes]]:
    seqs: list[int] = []
    data: list[bytes] = []
    lost: list[tuple[int, int]] = []
    fed: list[bytes] = []
    now = 0
    step = 0

    def feed(packets: list[bytes]) -> None:
        nonlocal step
        if server is not None:
            packets = packets + server.due(step)
        fed.extend(packets)
        out = session.step(PacketBatch.from_packets(packets), now)
        seqs.extend(int(s) for s in out.seqs)
        data.extend(out.messages())
        lost.extend(out.lost)
        if server is not None:
            for raw in out.requests_bytes():
                server.request(raw, step)
        step += 1

    for i, b in enumerate(live):
        feed(b)
        now += gaps_ns[i % len(gaps_ns)]
    feed([encode_end_of_session(S, session_end(live))])
    for _ in range(20_000):
        if session.complete and (server is None or not server.pending):
            break
        now += tail_ns
        feed([])
    return seqs, data, lost, fed


def session_end(live: list[list[bytes]]) -> int:
    b = PacketBatch.from_packets([p for batch in live for p in batch] or [b""])
    hdr = parse_headers(b.buf, b.offsets, b.lengths)
    return int((hdr.seq + hdr.count.astype(np.uint64)).max()) if (hdr.status == 0).any() else 1


@PROPS
@given(data=st.data())
def test_with_retransmission_every_message_once_in_order(data: st.DataObject) -> None:
    stream = data.draw(streams())
    packets = data.draw(schedules(stream))
    packets.append(encode_heartbeat(S, len(stream.messages) + 1))  # the tail's existence
    live = data.draw(batches(packets))
    cfg = SessionConfig(
        gap_grace_ns=data.draw(st.sampled_from([0, MS, 5 * MS])),
        request_timeout_ns=10 * MS,
        max_retries=4,
        max_request_count=data.draw(st.sampled_from([1, 7, 1024])),
        max_requests_per_step=data.draw(st.sampled_from([1, 4, 64])),
        reorder_capacity=data.draw(st.sampled_from([0, 5, 65_536])),
    )
    server = RetransServer(
        stream,
        max_packet=data.draw(st.integers(64, 400)),
        max_count=data.draw(st.integers(1, 50)),
        ignore=data.draw(st.integers(0, 2)),
        delay=data.draw(st.integers(0, 3)),
    )
    # The server answers up to `delay` (3) steps late; with steps of at most 3 ms an answer
    # always beats the 10 ms request timeout. Longer steps would let the session rightly give up
    # after max_retries (ignored requests included) and declare a loss this test forbids.
    gaps_ns = data.draw(st.lists(st.integers(0, 3 * MS), min_size=1, max_size=5))
    s = MoldUdp64Session(cfg)
    seqs, msgs, lost, fed = run(s, live, gaps_ns, server, tail_ns=3 * MS)
    n = len(stream.messages)
    assert seqs == list(range(1, n + 1))
    assert msgs == stream.messages
    assert lost == [] and s.counters.lost == 0
    assert s.complete and s.held_messages == 0
    c = s.counters
    check_packet_identity(c)
    assert message_total(fed) == c.messages + c.duplicates + c.reorder_overflow
    if c.reorder_overflow == 0:
        assert c.gap_messages == c.reorder_filled + c.retrans_filled


@PROPS
@given(data=st.data())
def test_without_retransmission_lost_is_exactly_what_never_arrived(data: st.DataObject) -> None:
    stream = data.draw(streams())
    packets = data.draw(schedules(stream))
    live = data.draw(batches(packets))
    cfg = SessionConfig(gap_grace_ns=MS, request_timeout_ns=2 * MS, max_retries=2)
    s = MoldUdp64Session(cfg)
    # live phase well inside the grace, so every live packet is in before anything is lost
    seqs, msgs, lost, _ = run(s, live, [1], None, tail_ns=MS)
    n = len(stream.messages)
    hdr_b = PacketBatch.from_packets(packets or [b""])
    hdr = parse_headers(hdr_b.buf, hdr_b.offsets, hdr_b.lengths)
    received: set[int] = set()
    for q, c in zip(hdr.seq.tolist(), hdr.count.tolist(), strict=True):
        if 0 < c < END_OF_SESSION:
            received.update(range(q, q + c))
    end = session_end(live)  # messages past the last packet seen are not known to exist
    assert seqs == sorted(received)
    assert msgs == [stream.messages[q - 1] for q in seqs]
    assert s.counters.lost == (end - 1) - len(received) == sum(k for _, k in lost)
    assert n >= end - 1
    covered = sorted([*((q, 1) for q in seqs), *lost])
    pos = 1
    for first, k in covered:  # delivered and lost tile 1..end-1 exactly
        assert first == pos
        pos += k
    assert pos == end
    check_packet_identity(s.counters)


@PROPS
@given(st.lists(st.binary(max_size=80), max_size=12), st.integers(0, 10**12))
def test_arbitrary_bytes_never_crash(packets: list[bytes], now: int) -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0, max_requests_per_step=4))
    b = PacketBatch.from_packets(packets)
    out = s.step(b, now)
    out2 = s.step(PacketBatch.empty(), now + 10**9)
    c = s.counters
    assert c.packets == len(packets)
    check_packet_identity(c)
    assert out.malformed <= len(packets)
    assert out.requests.size <= 4 and out2.requests.size <= 4
    seq_list = [int(q) for q in out.seqs]
    assert all(b > a for a, b in itertools.pairwise(seq_list)) or out.session_starts


@st.composite
def mangled(draw: st.DrawFn) -> list[bytes]:
    """A valid stream, then byte flips, truncations, extensions and header rewrites."""
    stream = draw(streams())
    out = []
    for _, _, raw in stream.packets:
        b = bytearray(raw)
        op = draw(st.sampled_from(["keep", "flip", "cut", "grow", "count", "seq"]))
        if op == "flip" and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del b[draw(st.integers(0, len(b))) :]
        elif op == "grow":
            b += draw(st.binary(min_size=1, max_size=8))
        elif op == "count":
            b[18:20] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif op == "seq":
            b[10:18] = draw(st.integers(0, (1 << 64) - 1)).to_bytes(8, "big")
        out.append(bytes(b))
    return out


@PROPS
@given(mangled(), st.integers(1, 6))
def test_mangled_stream_never_crashes_and_counts_add_up(packets: list[bytes], per: int) -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0, max_retries=1, request_timeout_ns=1))
    now = 0
    last = 0
    for i in range(0, len(packets), per):
        out = s.step(PacketBatch.from_packets(packets[i : i + per]), now)
        starts = {row for row, _ in out.session_starts}
        for row, q in enumerate(out.seqs.tolist()):
            assert q > last or row in starts  # strictly increasing within a session
            last = q
        if any(row >= out.count for row in starts):  # a session began after the last row
            last = 0
        now += 5
    check_packet_identity(s.counters)
    assert s.counters.packets == len(packets)


# ---- the in-order fast path (csrc/mold.c mold_fast_batch) against the general path ----------


def assert_same_step(fast: SessionOutput, slow: SessionOutput) -> None:
    for name in ("data", "offsets", "lengths", "seqs", "recv_ns", "requests"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype, name
        assert a.tolist() == b.tolist(), name
    for name in (
        "lost",
        "gaps",
        "session_starts",
        "duplicates",
        "malformed",
        "heartbeats",
        "end_of_session",
        "next_deadline_ns",
    ):
        assert getattr(fast, name) == getattr(slow, name), name
    for a, b in zip(fast.blocks(), slow.blocks(), strict=True):
        assert a.dtype == b.dtype
        assert a.tolist() == b.tolist()


def assert_same_state(fast: MoldUdp64Session, slow: MoldUdp64Session) -> None:
    assert fast.counters == slow.counters
    assert (fast.next_seq, fast.high_seq, fast.session) == (
        slow.next_seq,
        slow.high_seq,
        slow.session,
    )
    assert (fast.missing, fast.held_messages, fast.ended) == (
        slow.missing,
        slow.held_messages,
        slow.ended,
    )
    assert fast.last_packet_ns == slow.last_packet_ns


@st.composite
def in_order_batches(draw: st.DrawFn, stream: Stream) -> list[list[bytes]]:
    """The stream's packets in order, heartbeats (carrying the next sequence number) mixed in,
    cut into batches of 1..8 packets."""
    packets: list[bytes] = []
    for seq, count, raw in stream.packets:
        if draw(st.integers(0, 5)) == 0:
            packets.append(encode_heartbeat(S, seq))
        packets.append(raw)
        if draw(st.integers(0, 7)) == 0:
            packets.append(encode_heartbeat(S, seq + count))
    return draw(batches(packets))


def twin_step(
    fast: MoldUdp64Session,
    slow: MoldUdp64Session,
    packets: list[bytes],
    now: int,
    recv: bool,
) -> bool:
    """Step both sessions on the same batch, check they agree; True if the fast path took it."""
    times = [now - 7 * (i // 2) for i in range(len(packets))] if recv else None
    before = fast.fast_steps
    a = fast.step(PacketBatch.from_packets(packets, times), now)
    b = slow.step(PacketBatch.from_packets(packets, times), now)
    assert slow.fast_steps == 0
    assert_same_step(a, b)
    assert_same_state(fast, slow)
    return fast.fast_steps == before + 1


@PROPS
@given(data=st.data())
def test_fast_path_equals_general_path_for_in_order_streams(data: st.DataObject) -> None:
    stream = data.draw(streams())
    live = data.draw(in_order_batches(stream))
    recv = data.draw(st.booleans())
    fast, slow = MoldUdp64Session(), MoldUdp64Session()
    slow.fast_path = False
    now = 1_000
    for i, batch in enumerate(live):
        took = twin_step(fast, slow, batch, now, recv)
        assert took == (i > 0)  # the first batch establishes the session (general path)
        now += data.draw(st.integers(0, 2 * MS))
    assert fast.counters.messages == len(stream.messages)
    assert (
        twin_step(fast, slow, [encode_end_of_session(S, len(stream.messages) + 1)], now, recv)
        is False
    )
    assert fast.complete and slow.complete


def _corrupt(raw: bytes, how: str) -> bytes:
    if how == "truncate":
        return raw[: len(raw) - 1]
    if how == "short":
        return raw[:15]
    if how == "session_byte":
        return b"\x01" + raw[1:]
    if how == "other_session":
        return b"OTHERSES01" + raw[10:]
    if how == "count_up":
        count = int.from_bytes(raw[18:20], "big")
        return raw[:18] + (count + 1).to_bytes(2, "big") + raw[20:]
    if how == "trailing":
        return raw + b"\x00"
    assert how == "seq_zero"
    return raw[:10] + bytes(8) + raw[18:]


@PROPS
@given(data=st.data())
def test_fast_path_falls_back_on_anything_not_in_order(data: st.DataObject) -> None:
    stream = data.draw(streams().filter(lambda s: len(s.packets) >= 3))
    pkts = [raw for _, _, raw in stream.packets]
    seqs = [(seq, count) for seq, count, _ in stream.packets]
    cut = data.draw(st.integers(1, len(pkts) - 2))  # delivered in order before the bad batch
    fast, slow = MoldUdp64Session(), MoldUdp64Session()
    slow.fast_path = False
    now = 1_000
    twin_step(fast, slow, pkts[:cut], now, False)
    good = pkts[cut : cut + data.draw(st.integers(1, 6))]
    kind = data.draw(
        st.sampled_from(
            [
                "duplicate",
                "skip",
                "swap",
                "stale_heartbeat",
                "ahead_heartbeat",
                "end_of_session",
                "truncate",
                "short",
                "session_byte",
                "other_session",
                "count_up",
                "trailing",
                "seq_zero",
            ]
        )
    )
    at = data.draw(st.integers(0, len(good)))
    nxt = seqs[cut][0]
    if kind == "duplicate":
        bad = [*good[:at], pkts[data.draw(st.integers(0, cut - 1))], *good[at:]]
    elif kind == "skip":
        bad = pkts[cut + 1 : cut + 3]
    elif kind == "swap":
        bad = [pkts[cut + 1], pkts[cut]]
    elif kind in ("stale_heartbeat", "ahead_heartbeat"):
        hb = encode_heartbeat(S, nxt - 1 if kind == "stale_heartbeat" else nxt + 1)
        bad = [hb, *good]
    elif kind == "end_of_session":
        bad = [
            *good,
            encode_end_of_session(S, seqs[cut + len(good) - 1][0] + seqs[cut + len(good) - 1][1]),
        ]
    else:
        i = data.draw(st.integers(0, len(good) - 1))
        bad = [*good[:i], _corrupt(good[i], kind), *good[i + 1 :]]
    now += MS
    assert twin_step(fast, slow, bad, now, data.draw(st.booleans())) is False
    for raw in pkts[cut:]:  # whatever state the bad batch left, both paths keep agreeing
        now += data.draw(st.integers(0, 20 * MS))
        twin_step(fast, slow, [raw], now, False)
    for _ in range(10):
        now += 20 * MS
        twin_step(fast, slow, [], now, False)
