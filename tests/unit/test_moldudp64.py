"""MoldUDP64 codec and session scenarios: in order, duplicates, gap filled by retransmission,
retries then lost, reordering within the grace, heartbeats, end of session, session changes,
malformed packets by cause, buffer bounds, and the recorded corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adapters.moldudp64 import (
    END_OF_SESSION,
    HEADER_LEN,
    Malformed,
    MoldUdp64Session,
    PacketBatch,
    SessionConfig,
    SessionOutput,
    encode_end_of_session,
    encode_heartbeat,
    encode_packet,
    encode_request,
    encode_session,
    frame_messages,
    message_blocks,
    pack_packets,
    parse_headers,
    parse_request,
)

S = b"SESSION001"
MS = 1_000_000
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "moldudp64"


def msg(seq: int) -> bytes:
    """Message `seq` of the test stream: its length and bytes depend on seq."""
    return bytes([seq % 251]) * (1 + seq % 9)


def pkt(seq: int, count: int, session: bytes = S) -> bytes:
    return encode_packet(session, seq, [msg(s) for s in range(seq, seq + count)])


def batch(*packets: bytes, recv_ns: list[int] | None = None) -> PacketBatch:
    return PacketBatch.from_packets(list(packets), recv_ns)


def seqs(out: SessionOutput) -> list[int]:
    return [int(s) for s in out.seqs]


def check_messages(out: SessionOutput) -> None:
    assert out.messages() == [msg(int(s)) for s in out.seqs]


# --- codec ----------------------------------------------------------------------------------


def test_encode_and_parse_headers() -> None:
    packets = [pkt(1, 3), encode_heartbeat(S, 4), encode_end_of_session(S, 4)]
    b = batch(*packets)
    hdr = parse_headers(b.buf, b.offsets, b.lengths)
    assert hdr.session.tolist() == [S, S, S]
    assert hdr.seq.tolist() == [1, 4, 4]
    assert hdr.count.tolist() == [3, 0, END_OF_SESSION]
    blocks = message_blocks(b.buf, b.offsets, b.lengths, hdr)
    assert hdr.status.tolist() == [0, 0, 0]
    assert blocks.seqs.tolist() == [1, 2, 3]
    assert blocks.lengths.tolist() == [len(msg(s)) for s in (1, 2, 3)]
    assert blocks.n.tolist() == [3, 0, 0]
    first = int(blocks.offsets[0])
    assert b.buf[first + 2 : first + 2 + len(msg(1))].tobytes() == msg(1)


def test_request_round_trip_and_rejects() -> None:
    raw = encode_request("SESSION001", 17, 5)
    assert len(raw) == HEADER_LEN
    req = parse_request(raw)
    assert req is not None
    assert (req.session, req.seq, req.count) == (S, 17, 5)
    assert parse_request(raw[:-1]) is None
    assert parse_request(raw[:18] + b"\x00\x00") is None  # count 0
    assert parse_request(b"\x01" * 10 + raw[10:]) is None  # session not printable
    with pytest.raises(ValueError):
        encode_request(S, 1, 0)
    with pytest.raises(ValueError):
        encode_session("ELEVENCHARS")
    assert encode_session("AB") == b"AB        "


def test_pack_packets_respects_size_and_count() -> None:
    messages = [msg(s) for s in range(1, 501)]
    framed, lengths = frame_messages(messages)
    pb = pack_packets(S, 1, framed, lengths, max_packet=120, max_count=7)
    assert int(pb.lengths.max()) <= 120
    hdr = parse_headers(pb.buf, pb.offsets, pb.lengths)
    blocks = message_blocks(pb.buf, pb.offsets, pb.lengths, hdr)
    assert not hdr.status.any()
    assert int(hdr.count.max()) <= 7
    assert blocks.seqs.tolist() == list(range(1, 501))
    # greedy: no packet could have taken its successor's first message
    nxt = np.append(hdr.count[1:], 0)
    room = 120 - pb.lengths
    first_next = lengths[np.cumsum(hdr.count)[:-1]]
    assert bool(((room[:-1] < first_next + 2) | (hdr.count[:-1] == 7)).all())
    del nxt
    with pytest.raises(ValueError):
        pack_packets(S, 1, framed, lengths, max_packet=HEADER_LEN + 5)


# --- session scenarios ----------------------------------------------------------------------


def test_in_order_delivery_fast_path() -> None:
    s = MoldUdp64Session()
    out = s.step(batch(pkt(1, 3), pkt(4, 2), encode_heartbeat(S, 6), pkt(6, 4)), 10)
    assert seqs(out) == list(range(1, 10))
    check_messages(out)
    assert out.session_starts == [(0, S)]
    out = s.step(batch(pkt(10, 5), pkt(15, 1), recv_ns=[111, 222]), 20)
    assert seqs(out) == list(range(10, 16))
    assert out.recv_ns.tolist() == [111] * 5 + [222]
    check_messages(out)
    c = s.counters
    assert (c.packets, c.data_packets, c.heartbeats, c.messages) == (6, 5, 1, 15)
    assert c.duplicates == c.gaps == c.retrans_requests == c.malformed == 0
    assert out.requests.size == 0 and out.next_deadline_ns is None


def test_duplicates_dropped_and_counted() -> None:
    s = MoldUdp64Session()
    out = s.step(batch(pkt(1, 3), pkt(1, 3), pkt(4, 2)), 0)
    assert seqs(out) == [1, 2, 3, 4, 5]
    out = s.step(batch(pkt(3, 4)), 0)  # 3..5 seen, 6 new
    assert seqs(out) == [6]
    check_messages(out)
    assert out.duplicates == 3
    c = s.counters
    assert c.duplicates == 6 and c.duplicate_packets == 1 and c.messages == 6


def test_gap_then_retransmission_fills_it() -> None:
    cfg = SessionConfig(gap_grace_ns=1 * MS, request_timeout_ns=50 * MS)
    s = MoldUdp64Session(cfg)
    out = s.step(batch(pkt(1, 3), pkt(8, 2)), 0)  # 4..7 missing
    assert seqs(out) == [1, 2, 3]
    assert out.gaps == [(4, 4)] and out.requests.size == 0
    assert out.next_deadline_ns == 1 * MS
    assert s.held_messages == 2
    out = s.step(PacketBatch.empty(), 1 * MS)
    assert out.requests_bytes() == [encode_request(S, 4, 4)]
    assert out.next_deadline_ns == 51 * MS
    # the retransmission comes back packetised differently, overlapping delivered messages
    out = s.step(batch(pkt(2, 5), pkt(7, 1)), 2 * MS)
    assert seqs(out) == [4, 5, 6, 7, 8, 9]
    check_messages(out)
    c = s.counters
    assert c.retrans_requests == 1 and c.retrans_filled == 4 and c.reorder_filled == 0
    assert c.gap_messages == 4 and c.lost == 0 and c.duplicates == 2
    assert s.missing == [] and s.held_messages == 0 and out.next_deadline_ns is None


def test_retries_then_lost_and_delivery_resumes() -> None:
    cfg = SessionConfig(gap_grace_ns=0, request_timeout_ns=10 * MS, max_retries=3)
    s = MoldUdp64Session(cfg)
    out = s.step(batch(pkt(1, 2), pkt(5, 3)), 0)  # 3..4 missing, asked for at once
    requests = [(0, r) for r in out.requests_bytes()]
    lost_at = None
    for t in range(MS, 100 * MS, MS):
        out = s.step(PacketBatch.empty(), t)
        requests += [(t, r) for r in out.requests_bytes()]
        if out.lost:
            lost_at = t
            assert out.lost == [(3, 2)]
            assert seqs(out) == [5, 6, 7]  # held messages delivered past the lost range
            check_messages(out)
            break
    assert [t for t, _ in requests] == [0, 10 * MS, 20 * MS]
    assert all(r == encode_request(S, 3, 2) for _, r in requests)
    assert lost_at == 30 * MS
    c = s.counters
    assert c.lost == 2 and c.lost_gaps == 1 and c.retrans_requests == 3
    # a late retransmission of the lost range is a duplicate, never delivered out of order
    out = s.step(batch(pkt(3, 2), pkt(8, 1)), 31 * MS)
    assert seqs(out) == [8]
    assert c.duplicates == 2


def test_partial_retransmission_restarts_retry_budget() -> None:
    cfg = SessionConfig(gap_grace_ns=0, request_timeout_ns=10 * MS, max_retries=2)
    s = MoldUdp64Session(cfg)
    out = s.step(batch(pkt(1, 1), pkt(11, 1)), 0)  # 2..10 missing: first request
    assert out.requests_bytes() == [encode_request(S, 2, 9)]
    out = s.step(PacketBatch.empty(), 10 * MS)  # second (last) request
    assert out.requests_bytes() == [encode_request(S, 2, 9)]
    out = s.step(batch(pkt(2, 3)), 15 * MS)  # part of the answer
    assert seqs(out) == [2, 3, 4] and out.requests.size == 0
    assert s.missing == [(5, 6)]
    assert s.next_deadline_ns() == 25 * MS  # the rest may still be in flight
    out = s.step(PacketBatch.empty(), 25 * MS)  # it was not: asked again, budget restarted
    assert out.requests_bytes() == [encode_request(S, 5, 6)]
    out = s.step(PacketBatch.empty(), 35 * MS)
    assert out.lost == [(5, 6)]
    assert s.counters.retrans_requests == 3


def test_reorder_within_grace_needs_no_request() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=5 * MS))
    out = s.step(batch(pkt(1, 2), pkt(6, 2), pkt(4, 2)), 0)
    assert seqs(out) == [1, 2]
    out = s.step(batch(pkt(3, 1)), 2 * MS)
    assert seqs(out) == [3, 4, 5, 6, 7]
    check_messages(out)
    out = s.step(PacketBatch.empty(), 10 * MS)
    c = s.counters
    assert c.retrans_requests == 0 and c.reorder_filled == 3 and c.gap_messages == 3
    assert out.requests.size == 0


def test_heartbeat_ahead_reveals_gap() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    s.step(batch(pkt(1, 10)), 0)
    out = s.step(batch(encode_heartbeat(S, 11)), 1)
    assert out.heartbeats == 1 and out.gaps == [] and out.requests.size == 0
    out = s.step(batch(encode_heartbeat(S, 15)), 2)
    assert out.gaps == [(11, 4)]
    assert out.requests_bytes() == [encode_request(S, 11, 4)]
    assert s.last_packet_ns == 2
    out = s.step(batch(pkt(11, 4)), 3)
    assert seqs(out) == [11, 12, 13, 14]


def test_end_of_session() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    s.step(batch(pkt(1, 5)), 0)
    out = s.step(batch(encode_end_of_session(S, 8)), 1)  # 6, 7 still to come
    assert out.end_of_session and not s.complete
    assert out.requests_bytes() == [encode_request(S, 6, 2)]
    out = s.step(batch(pkt(6, 2), encode_end_of_session(S, 8)), 2)
    assert seqs(out) == [6, 7] and not out.end_of_session
    assert s.complete and s.counters.end_of_session == 2


def test_new_session_resets_and_old_session_is_stale() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    s.step(batch(pkt(1, 3)), 0)
    s.step(batch(pkt(6, 2)), 1)  # old session: 4..5 missing, 6..7 held
    t = b"SESSION002"
    out = s.step(batch(pkt(1, 2, t), pkt(8, 1), pkt(3, 1, t)), 2)
    # the old session's held messages come first, its gap is lost, then the new session
    assert seqs(out) == [6, 7, 1, 2, 3]
    assert out.lost == [(4, 2)]
    assert out.session_starts == [(2, t)]
    assert out.runs() == [(0, 2), (2, 5)]
    assert s.session == t and s.next_seq == 4
    c = s.counters
    assert c.sessions == 2 and c.lost == 2 and c.stale_session == 1
    assert out.messages()[2:] == [msg(1), msg(2), msg(3)]


def test_late_join_starts_at_first_packet() -> None:
    s = MoldUdp64Session(SessionConfig(start_seq=None, gap_grace_ns=0))
    out = s.step(batch(pkt(1000, 2), pkt(1002, 1)), 0)
    assert seqs(out) == [1000, 1001, 1002]
    assert s.counters.gaps == 0 and out.requests.size == 0


def test_warm_start_asks_from_start_seq() -> None:
    s = MoldUdp64Session(SessionConfig(start_seq=50, gap_grace_ns=0))
    out = s.step(batch(pkt(60, 1)), 0)
    assert out.gaps == [(50, 10)] and out.requests_bytes() == [encode_request(S, 50, 10)]


def test_large_gap_asked_for_in_bounded_requests() -> None:
    cfg = SessionConfig(gap_grace_ns=0, max_request_count=100, max_requests_per_step=3)
    s = MoldUdp64Session(cfg)
    s.step(batch(pkt(1, 1)), 0)
    out = s.step(batch(encode_heartbeat(S, 1002)), 0)  # 2..1001 missing
    assert out.gaps == [(2, 1000)]
    assert out.requests["seq"].tolist() == [2, 102, 202]
    assert set(out.requests["count"].tolist()) == {100}
    assert s.counters.retrans_requests == 3
    out = s.step(PacketBatch.empty(), 1)  # nothing new before the timeout
    assert out.requests.size == 0
    out = s.step(batch(*(pkt(q, 50) for q in range(2, 302, 50))), 2)  # the answers
    assert seqs(out) == list(range(2, 302))
    assert out.requests["seq"].tolist() == [302, 402, 502]  # progress: the next pieces


def test_bogus_far_sequence_stays_cheap() -> None:
    """A heartbeat claiming a sequence near 2**64 is one gap, not billions of pieces."""
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0, max_requests_per_step=2))
    s.step(batch(pkt(1, 1)), 0)
    out = s.step(batch(encode_heartbeat(S, (1 << 64) - 1)), 0)
    assert out.gaps == [(2, (1 << 64) - 3)]
    assert out.requests.size == 2


def test_reorder_buffer_is_bounded() -> None:
    cfg = SessionConfig(gap_grace_ns=0, reorder_capacity=4, request_timeout_ns=MS)
    s = MoldUdp64Session(cfg)
    s.step(batch(pkt(1, 1), pkt(3, 3), pkt(6, 3), pkt(9, 1)), 0)
    assert s.held_messages == 4  # 3..5 and 9 held; 6..8 dropped, to be asked for again
    assert s.counters.reorder_overflow == 3
    assert s.missing == [(2, 1), (6, 3)]
    out = s.step(batch(pkt(2, 1), pkt(6, 3)), 1)
    assert seqs(out) == list(range(2, 10))
    check_messages(out)


def test_answers_that_find_the_buffer_full_do_not_spend_retries() -> None:
    """Found by the property tests: with the buffer full, answers for gaps behind the head
    were dropped and those gaps declared lost although the server answered every time."""
    cfg = SessionConfig(gap_grace_ns=0, reorder_capacity=0, request_timeout_ns=MS, max_retries=1)
    s = MoldUdp64Session(cfg)
    out = s.step(batch(pkt(1, 1), pkt(3, 1), pkt(5, 1), encode_heartbeat(S, 6)), 0)
    assert s.missing == [(2, 1), (3, 1), (4, 1), (5, 1)]
    assert out.requests["seq"].tolist() == [2]  # only the head: nothing else can be held
    assert out.next_deadline_ns == MS
    out = s.step(batch(pkt(4, 1)), MS // 2)  # an answer we cannot hold yet
    assert out.count == 0 and s.counters.reorder_overflow >= 1
    out = s.step(batch(pkt(2, 1)), MS // 2)
    assert seqs(out) == [2]
    assert out.requests["seq"].tolist() == [3]
    for q in (3, 4, 5):
        out = s.step(batch(pkt(q, 1)), MS // 2)
        assert seqs(out) == [q]
    assert s.counters.lost == 0 and s.missing == []


def test_held_data_survives_caller_reusing_its_buffer() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    b = batch(pkt(1, 1), pkt(3, 2))
    s.step(b, 0)
    b.buf[:] = 0xEE  # the receive buffer is recycled
    out = s.step(batch(pkt(2, 1)), 1)
    assert seqs(out) == [2, 3, 4]
    check_messages(out)


@pytest.mark.parametrize(
    ("packet", "cause"),
    [
        (b"SESSION001\x00\x00", Malformed.TOO_SHORT),
        (b"", Malformed.TOO_SHORT),
        (b"SESS\x00ON001" + (1).to_bytes(8, "big") + b"\x00\x00", Malformed.BAD_SESSION),
        (pkt(1, 2)[:-1], Malformed.BLOCK_OVERRUN),  # last message cut short
        (encode_packet(S, 1, [b"abc"])[:-4], Malformed.BLOCK_OVERRUN),  # inside the prefix
        (pkt(1, 2) + b"\x00", Malformed.COUNT_MISMATCH),  # a stray byte after the blocks
        (pkt(1, 2) + b"\x00\x01Z", Malformed.COUNT_MISMATCH),  # one block more than counted
        (encode_heartbeat(S, 1) + b"x", Malformed.COUNT_MISMATCH),
        (encode_end_of_session(S, 1) + b"\x00\x00", Malformed.COUNT_MISMATCH),
        (encode_heartbeat(S, 0), Malformed.BAD_SEQUENCE),
        (
            pkt(1, 2)[:10] + ((1 << 64) - 2).to_bytes(8, "big") + pkt(1, 2)[18:],
            Malformed.BAD_SEQUENCE,
        ),
    ],
)
def test_malformed_packets_counted_by_cause(packet: bytes, cause: Malformed) -> None:
    s = MoldUdp64Session()
    out = s.step(batch(packet, pkt(1, 1)), 0)
    assert out.malformed == 1
    assert seqs(out) == [1]
    assert s.counters.as_dict()[f"malformed_{cause.name.lower()}"] == 1
    assert s.counters.malformed == 1


def test_counters_record_and_deadlines() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=2 * MS))
    s.step(batch(pkt(1, 1), pkt(3, 1)), 5)
    assert s.next_deadline_ns() == 2 * MS + 5
    rec = s.counters.as_record()
    assert int(rec["packets"][0]) == 2 and int(rec["gaps"][0]) == 1


def test_blocks_are_decoder_ready() -> None:
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    s.step(batch(pkt(1, 2), pkt(5, 2), recv_ns=[10, 30]), 0)
    out = s.step(batch(pkt(3, 2), recv_ns=[20]), 1)
    blocks = out.blocks()
    # rows 3,4 (recv 20) and 5,6 (recv 30): two runs split by receive time
    assert blocks.first_seqs.tolist() == [3, 5]
    assert blocks.recv_ns.tolist() == [20, 30]
    walked = []
    for off, ln, first in zip(blocks.offsets, blocks.lengths, blocks.first_seqs, strict=True):
        raw = out.data[off : off + ln].tobytes()
        pos, seq = 0, int(first)
        while pos < len(raw):
            n = int.from_bytes(raw[pos : pos + 2], "big")
            walked.append((seq, raw[pos + 2 : pos + 2 + n]))
            pos, seq = pos + 2 + n, seq + 1
    assert walked == [(q, msg(q)) for q in (3, 4, 5, 6)]


# --- corpus ---------------------------------------------------------------------------------


def corpus_cases() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


def test_corpus_present() -> None:
    assert len(corpus_cases()) >= 8
    assert (CORPUS / "expected.json").is_file()


@pytest.mark.parametrize("path", corpus_cases(), ids=lambda p: p.stem)
def test_corpus_replay(path: Path) -> None:
    """Each corpus file is one packet; expected.json names its status and, for valid data
    packets, what a fresh session expecting sequence 1 delivers."""
    expected = json.loads((CORPUS / "expected.json").read_text())[path.name]
    raw = path.read_bytes()
    b = batch(raw)
    hdr = parse_headers(b.buf, b.offsets, b.lengths)
    message_blocks(b.buf, b.offsets, b.lengths, hdr)
    assert Malformed(int(hdr.status[0])).name == expected["status"]
    s = MoldUdp64Session(SessionConfig(gap_grace_ns=0))
    out = s.step(b, 0)
    assert seqs(out) == expected.get("delivered", [])
    assert out.requests["seq"].tolist() == expected.get("requested", [])
    c = s.counters
    assert c.packets == 1
    assert c.data_packets + c.heartbeats + c.end_of_session + c.malformed == 1
