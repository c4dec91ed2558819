"""SoupBinTCP packet codec and streaming frame parser: round trips, strict validation, any
chunking of a stream parses to the same packets, arbitrary bytes never crash the parser."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.soupbintcp import (
    ClientHeartbeat,
    Debug,
    EndOfSession,
    FrameParser,
    LoginAccepted,
    LoginRejectCode,
    LoginRejected,
    LoginRequest,
    LogoutRequest,
    Malformed,
    Packet,
    SequencedData,
    ServerHeartbeat,
    SoupError,
    SoupErrorReason,
    UnsequencedData,
    decode_packet,
    encode_packet,
)

CORPUS = Path(__file__).parent / "corpus"

EVERY_PACKET: list[Packet] = [
    LoginRequest("alice", "secret", "", 1),
    LoginRequest("bob123", "0123456789", "SESSION001", 12345678901234567890),
    LoginAccepted("TECTRA1", 1),
    LoginAccepted("S", 99),
    LoginRejected(LoginRejectCode.NOT_AUTHORIZED),
    LoginRejected(LoginRejectCode.SESSION_NOT_AVAILABLE),
    SequencedData(b"hello"),
    SequencedData(b""),
    UnsequencedData(b"\x00\xff" * 10),
    ClientHeartbeat(),
    ServerHeartbeat(),
    EndOfSession(),
    LogoutRequest(),
    Debug(b"text"),
]


@pytest.mark.parametrize("packet", EVERY_PACKET, ids=lambda p: type(p).__name__)
def test_round_trip_every_packet(packet: Packet) -> None:
    wire = encode_packet(packet)
    (length,) = struct.unpack(">H", wire[:2])
    assert length == len(wire) - 2
    assert decode_packet(wire[2:]) == packet
    parser = FrameParser()
    assert parser.feed(wire) == [packet]
    assert parser.buffered == 0


def test_login_request_layout_is_exact() -> None:
    wire = encode_packet(LoginRequest("user", "pw", "SESS", 42))
    assert wire[:3] == b"\x00\x2fL"  # 46 payload bytes + type
    body = wire[3:]
    assert body[:6] == b"user  "  # username: left-justified, space-padded
    assert body[6:16] == b"pw        "
    assert body[16:26] == b"      SESS"  # session: right-justified
    assert body[26:] == b"42".rjust(20)  # numeric: right-justified, space-padded


def test_login_accepted_layout_is_exact() -> None:
    wire = encode_packet(LoginAccepted("ABC", 7))
    assert wire == b"\x00\x1fA" + b"       ABC" + b"7".rjust(20)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", SoupErrorReason.TRUNCATED),
        (b"Q", SoupErrorReason.UNKNOWN_TYPE),
        (b"\x00", SoupErrorReason.UNKNOWN_TYPE),
        (b"Hx", SoupErrorReason.BAD_LENGTH),
        (b"Z\x00", SoupErrorReason.BAD_LENGTH),
        (b"L" + b" " * 45, SoupErrorReason.BAD_LENGTH),
        (b"L" + b"user  pw        " + b" " * 10 + b"x".rjust(20), SoupErrorReason.BAD_FIELD),
        (b"L" + b"user  pw        " + b" " * 10 + b" " * 20, SoupErrorReason.BAD_FIELD),
        (b"L" + b"us er pw        " + b" " * 10 + b"1".rjust(20), SoupErrorReason.BAD_FIELD),
        (b"L" + b"user\x01 pw        " + b" " * 10 + b"1".rjust(20), SoupErrorReason.BAD_FIELD),
        (b"A" + b" " * 10 + b"-1".rjust(20), SoupErrorReason.BAD_FIELD),
        (b"A" + b" " * 10 + b"1 2".rjust(20), SoupErrorReason.BAD_FIELD),
        (b"JX", SoupErrorReason.BAD_FIELD),
        (b"J", SoupErrorReason.BAD_LENGTH),
    ],
)
def test_strict_decode_rejects(frame: bytes, reason: SoupErrorReason) -> None:
    with pytest.raises(SoupError) as info:
        decode_packet(frame)
    assert info.value.reason is reason


@pytest.mark.parametrize(
    "packet",
    [
        LoginRequest("toolong", "pw"),
        LoginRequest("user", "pass word"),
        LoginRequest("user", "pw", "S" * 11),
        LoginRequest("user", "pw", "", -1),
        LoginRequest("user", "pw", "", 10**20),
        LoginAccepted("é", 1),
    ],
)
def test_encode_refuses_invalid_fields(packet: Packet) -> None:
    with pytest.raises(SoupError) as info:
        encode_packet(packet)
    assert info.value.reason is SoupErrorReason.BAD_FIELD


def test_parser_counts_malformed_and_keeps_going() -> None:
    parser = FrameParser()
    good = encode_packet(SequencedData(b"x"))
    bad = b"\x00\x01Q"  # unknown type, framing intact
    out = parser.feed(good + bad + good)
    assert out[0] == SequencedData(b"x") and out[2] == SequencedData(b"x")
    assert isinstance(out[1], Malformed) and out[1].error.reason is SoupErrorReason.UNKNOWN_TYPE
    assert not out[1].error.fatal
    assert parser.counters.malformed == {SoupErrorReason.UNKNOWN_TYPE: 1}
    assert parser.counters.packets_in == 3


@pytest.mark.parametrize(
    ("header", "reason"),
    [(b"\x00\x00", SoupErrorReason.ZERO_LENGTH), (b"\xff\xff", SoupErrorReason.OVERSIZE)],
)
def test_parser_fatal_framing_stops_the_stream(header: bytes, reason: SoupErrorReason) -> None:
    parser = FrameParser(max_packet_len=100)
    good = encode_packet(ServerHeartbeat())
    out = parser.feed(good + header + good)
    assert out[0] == ServerHeartbeat()
    assert isinstance(out[1], Malformed) and out[1].error.reason is reason and out[1].error.fatal
    assert len(out) == 2
    assert parser.broken and parser.feed(good) == []
    assert parser.buffered == 0


def test_parser_bounds_its_buffer() -> None:
    parser = FrameParser(max_packet_len=64)
    # A partial packet of the largest legal size is buffered; nothing larger ever is.
    parser.feed(struct.pack(">H", 64) + b"S" + b"x" * 40)
    assert parser.buffered == 43
    assert parser.feed(b"x" * 23) == [SequencedData(b"x" * 63)]
    assert parser.buffered == 0


packets_st = st.one_of(
    st.builds(SequencedData, st.binary(max_size=60)),
    st.builds(UnsequencedData, st.binary(max_size=60)),
    st.builds(Debug, st.binary(max_size=20)),
    st.just(ClientHeartbeat()),
    st.just(ServerHeartbeat()),
    st.just(EndOfSession()),
    st.just(LogoutRequest()),
    st.builds(LoginRejected, st.sampled_from(list(LoginRejectCode))),
    st.builds(
        LoginAccepted,
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10),
        st.integers(0, 10**20 - 1),
    ),
    st.builds(
        LoginRequest,
        st.text("abcdefghijklmnopqrstuvwxyz0123456789", max_size=6),
        st.text("!#$%&*+-./0123456789ABCDEFxyz", max_size=10),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=10),
        st.integers(0, 10**20 - 1),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(packets_st, max_size=12), st.data())
def test_any_chunking_parses_to_the_same_packets(
    packets: list[Packet], data: st.DataObject
) -> None:
    stream = b"".join(encode_packet(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = FrameParser()
    out: list[Packet | Malformed] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[prev:cut])
        prev = cut
    assert out == packets
    assert parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_never_crash_and_split_does_not_matter(
    blob: bytes, data: st.DataObject
) -> None:
    whole = FrameParser(max_packet_len=128)
    expected = whole.feed(blob)
    split = FrameParser(max_packet_len=128)
    cut = data.draw(st.integers(0, len(blob)))
    got = split.feed(blob[:cut]) + split.feed(blob[cut:])
    assert got == expected
    assert whole.counters.malformed_total == sum(isinstance(x, Malformed) for x in expected)
    assert whole.buffered <= 128 + 2


def test_corpus_streams_parse_without_crashing() -> None:
    files = sorted(CORPUS.glob("soup-*.bin"))
    assert files, "corpus missing"
    for path in files:
        parser = FrameParser()
        for item in parser.feed(path.read_bytes()):
            assert isinstance(item, Malformed) or type(item) in {type(p) for p in EVERY_PACKET}
