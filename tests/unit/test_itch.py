"""ITCH 5.0 codec (adapters/itch.py, csrc/itch.c): wire layouts against an independent
transcription of the spec (struct formats), encoder and builders, framing, the C batch decoder
against the reference decoder, the normalised mapping, and every malformed-input cause."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from adapters import itch
from adapters.itch import (
    COUNTERS,
    MESSAGES,
    ItchArgumentError,
    ItchDecoder,
    ReferenceDecoder,
    build,
    decode_reference,
    frame,
    pack_events,
    wire_view,
)
from tectra.schema import ITCH_EVENT, RecordFlag, new_records

# ---------------------------------------------------------------------------------------------
# The spec, transcribed independently of adapters/itch.py: body struct format after the common
# 11-byte header (type c, locate H, tracking H, timestamp as H hi + I lo), body field values.
# ---------------------------------------------------------------------------------------------

SPEC_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
    "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}  # fmt: skip

SYM = b"AAPL    "
BODY: dict[str, tuple[str, dict[str, Any]]] = {
    "S": ("c", {"event_code": b"Q"}),
    "R": (
        "8sccIcc2scccccIc",
        {
            "stock": SYM,
            "market_category": b"Q",
            "financial_status": b"N",
            "round_lot_size": 100,
            "round_lots_only": b"N",
            "issue_classification": b"C",
            "issue_subtype": b"Z ",
            "authenticity": b"P",
            "short_sale_threshold": b"N",
            "ipo_flag": b" ",
            "luld_tier": b"1",
            "etp_flag": b"N",
            "etp_leverage": 3,
            "inverse": b"Y",
        },
    ),
    "H": ("8scc4s", {"stock": SYM, "trading_state": b"H", "reserved": b" ", "reason": b"T1  "}),
    "Y": ("8sc", {"stock": SYM, "reg_sho_action": b"1"}),
    "L": (
        "4s8sccc",
        {
            "mpid": b"GSCO",
            "stock": SYM,
            "primary_market_maker": b"Y",
            "market_maker_mode": b"N",
            "participant_state": b"A",
        },
    ),
    "V": ("QQQ", {"level1": 4_123_45678901, "level2": 3_900_00000001, "level3": 2**63 + 5}),
    "W": ("c", {"breached_level": b"2"}),
    "K": (
        "8sIcI",
        {"stock": SYM, "release_time": 36_000, "release_qualifier": b"A", "ipo_price": 250_000},
    ),
    "J": (
        "8sIIII",
        {
            "stock": SYM,
            "reference_price": 1_000_000,
            "upper_price": 1_100_000,
            "lower_price": 900_000,
            "extension": 2,
        },
    ),
    "h": ("8scc", {"stock": SYM, "market_code": b"Q", "halt_action": b"H"}),
    "A": (
        "QcI8sI",
        {"order_ref": 2**40 + 7, "side": b"B", "shares": 300, "stock": SYM, "price": 1_234_500},
    ),
    "F": (
        "QcI8sI4s",
        {
            "order_ref": 2**63 + 1,
            "side": b"S",
            "shares": 2**32 - 1,
            "stock": SYM,
            "price": 2**32 - 1,
            "attribution": b"GSCO",
        },
    ),
    "E": ("QIQ", {"order_ref": 11, "executed_shares": 50, "match_number": 9_000_001}),
    "C": (
        "QIQcI",
        {
            "order_ref": 12,
            "executed_shares": 60,
            "match_number": 9_000_002,
            "printable": b"N",
            "execution_price": 1_234_600,
        },
    ),
    "X": ("QI", {"order_ref": 13, "cancelled_shares": 70}),
    "D": ("Q", {"order_ref": 14}),
    "U": (
        "QQII",
        {"original_order_ref": 15, "new_order_ref": 16, "shares": 80, "price": 1_234_700},
    ),
    "P": (
        "QcI8sIQ",
        {
            "order_ref": 0,
            "side": b"B",
            "shares": 90,
            "stock": SYM,
            "price": 1_234_800,
            "match_number": 9_000_003,
        },
    ),
    "Q": (
        "Q8sIQc",
        {
            "shares": 2**33 + 9,
            "stock": SYM,
            "cross_price": 1_234_900,
            "match_number": 9_000_004,
            "cross_type": b"O",
        },
    ),
    "B": ("Q", {"match_number": 9_000_005}),
    "I": (
        "QQc8sIIIcc",
        {
            "paired_shares": 100_000,
            "imbalance_shares": 2_500,
            "imbalance_direction": b"B",
            "stock": SYM,
            "far_price": 1_230_000,
            "near_price": 1_231_000,
            "reference_price": 1_232_000,
            "cross_type": b"C",
            "price_variation": b"1",
        },
    ),
    "N": ("8sc", {"stock": SYM, "interest_flag": b"A"}),
    "O": (
        "8scIIIQII",
        {
            "stock": SYM,
            "open_eligibility": b"Y",
            "min_price": 100_000,
            "max_price": 300_000,
            "near_price": 200_000,
            "near_time": 34_500_000_000_000,
            "lower_collar": 180_000,
            "upper_collar": 220_000,
        },
    ),
}

# The normalised fields the schema documents per type (ITCH_EVENT field -> BODY field).
NORMALISED: dict[str, dict[str, str]] = {
    "S": {"aux": "event_code"},
    "H": {"aux": "trading_state"},
    "A": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "F": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "E": {"order_ref": "order_ref", "shares": "executed_shares", "ref2": "match_number"},
    "C": {
        "order_ref": "order_ref",
        "shares": "executed_shares",
        "ref2": "match_number",
        "aux": "printable",
        "price": "execution_price",
    },
    "X": {"order_ref": "order_ref", "shares": "cancelled_shares"},
    "D": {"order_ref": "order_ref"},
    "U": {
        "order_ref": "original_order_ref",
        "ref2": "new_order_ref",
        "shares": "shares",
        "price": "price",
    },
    "P": {
        "order_ref": "order_ref",
        "side": "side",
        "shares": "shares",
        "price": "price",
        "ref2": "match_number",
    },
    "Q": {"shares": "shares", "price": "cross_price", "ref2": "match_number", "aux": "cross_type"},
    "B": {"ref2": "match_number"},
}
CARRIED = ("side", "aux", "order_ref", "ref2", "shares", "price")

TS = 2**48 - 1  # the largest 6-byte timestamp: catches a lost top byte
LOCATE, TRACKING = 0xBEEF, 0x1234


def spec_bytes(code: str, ts: int = TS, locate: int = LOCATE, tracking: int = TRACKING) -> bytes:
    fmt, values = BODY[code]
    return struct.pack(
        ">cHHHI" + fmt,
        code.encode(),
        locate,
        tracking,
        ts >> 32,
        ts & 0xFFFFFFFF,
        *values.values(),
    )


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


def built(code: str) -> np.ndarray:
    return build(code, TS, stock_locate=LOCATE, tracking=TRACKING, **BODY[code][1])


def as_int(value: Any) -> int:
    return value[0] if isinstance(value, bytes) else int(value)


@pytest.fixture(scope="module")
def decoder() -> ItchDecoder:
    return ItchDecoder()


@pytest.fixture(scope="module")
def shim() -> Any:
    import importlib

    return importlib.import_module("tectra._itch")


def fields_equal(a: np.ndarray, b: np.ndarray, skip: tuple[str, ...] = ("seq", "ts_ns")) -> bool:
    names = [n for n in ITCH_EVENT.dtype.names or () if n not in skip]
    return bool(np.array_equal(a[names], b[names]))


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def test_every_itch50_type_is_declared_once_with_its_spec_length() -> None:
    assert set(MESSAGES) == set(SPEC_LENGTHS)
    for code, length in SPEC_LENGTHS.items():
        assert MESSAGES[code].length == length
        assert itch.WIRE_DTYPES[code].itemsize == length, code
        assert struct.calcsize(">cHHHI" + BODY[code][0]) == length, code
    assert itch.MAX_MESSAGE_LENGTH == 50
    assert itch.MIN_FRAMED_LENGTH == 14
    assert ITCH_EVENT.dtype["raw"].itemsize >= itch.MAX_MESSAGE_LENGTH


@pytest.mark.parametrize("code", sorted(SPEC_LENGTHS))
def test_wire_dtype_fields_match_the_spec_transcription(code: str) -> None:
    dt = itch.WIRE_DTYPES[code]
    names = list(dt.names or ())
    assert names[:5] == ["msg_type", "stock_locate", "tracking", "ts_hi", "ts_lo"]
    assert names[5:] == list(BODY[code][1]), code
    wire = np.frombuffer(spec_bytes(code), dtype=dt)[0]
    for name, value in BODY[code][1].items():
        assert wire[name] == value, (code, name)
    assert (int(wire["ts_hi"]) << 32 | int(wire["ts_lo"])) == TS


def test_c_length_table_matches_the_python_table(shim: Any) -> None:
    for byte in range(256):
        assert shim.lib.itch_message_length(byte) == itch.MESSAGE_LENGTHS.get(chr(byte), 0)
    assert shim.lib.ITCH_MIN_FRAMED == itch.MIN_FRAMED_LENGTH
    assert shim.lib.ITCH_MAX_MESSAGE == itch.MAX_MESSAGE_LENGTH


def test_c_record_is_the_schema_record(shim: Any) -> None:
    ffi = shim.ffi
    assert ffi.sizeof("itch_event_t") == ITCH_EVENT.itemsize
    for name, (_sub, offset, *_r) in (ITCH_EVENT.dtype.fields or {}).items():
        assert ffi.offsetof("itch_event_t", name) == offset, name
    assert [n for n, _ in ffi.typeof("itch_stats_t").fields][: len(COUNTERS)] == list(COUNTERS)


# ---------------------------------------------------------------------------------------------
# Builders and the decoders, type by type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(SPEC_LENGTHS))
def test_build_makes_the_spec_bytes(code: str) -> None:
    rec = built(code)
    assert rec.shape == (1,)
    assert rec["type_id"][0] == ITCH_EVENT.type_id and rec["version"][0] == ITCH_EVENT.version
    assert rec["raw_len"][0] == SPEC_LENGTHS[code]
    raw = rec.view(np.uint8).reshape(-1)[72:128]
    assert raw[: SPEC_LENGTHS[code]].tobytes() == spec_bytes(code)
    assert not raw[SPEC_LENGTHS[code] :].any()  # NUL-padded


@pytest.mark.parametrize("code", sorted(SPEC_LENGTHS))
@pytest.mark.parametrize("path", ["c", "reference"])
def test_decode_sets_the_documented_normalised_fields(
    code: str, path: str, decoder: ItchDecoder
) -> None:
    buf = framed(spec_bytes(code))
    ev = decoder.decode(buf, 77, 5) if path == "c" else decode_reference(buf, 77, 5)
    assert ev.size == 1
    rec = ev[0]
    assert (rec["type_id"], rec["version"], rec["seq"], rec["ts_ns"]) == (
        ITCH_EVENT.type_id,
        ITCH_EVENT.version,
        77,
        5,
    )
    assert rec["msg_type"] == ord(code)
    assert (rec["stock_locate"], rec["tracking"], rec["exch_ts_ns"]) == (LOCATE, TRACKING, TS)
    assert rec["raw_len"] == SPEC_LENGTHS[code]
    values = BODY[code][1]
    mapping = NORMALISED.get(code, {})
    for name in CARRIED:
        expected = as_int(values[mapping[name]]) if name in mapping else 0
        assert int(rec[name]) == expected, (code, name)
    # Every field of the message stays reachable through raw.
    view = wire_view(ev, code)[0]
    for name, value in values.items():
        assert view[name] == value, (code, name)


@pytest.mark.parametrize("code", sorted(SPEC_LENGTHS))
def test_build_equals_decode_and_reframes_to_the_same_bytes(
    code: str, decoder: ItchDecoder
) -> None:
    rec = built(code)
    buf = frame(rec)
    assert buf.tobytes() == framed(spec_bytes(code))
    ev = decoder.decode(buf)
    assert fields_equal(ev, rec)
    assert frame(ev).tobytes() == buf.tobytes()


def test_all_types_in_one_buffer_c_equals_reference(decoder: ItchDecoder) -> None:
    buf = framed(*(spec_bytes(c, ts=i * 1000) for i, c in enumerate(sorted(SPEC_LENGTHS))))
    ev = decoder.decode(buf, 1000, 42).copy()
    ref = decode_reference(buf, 1000, 42)
    assert ev.tobytes() == ref.tobytes()
    assert list(ev["seq"]) == list(range(1000, 1000 + len(SPEC_LENGTHS)))
    assert frame(ev).tobytes() == buf


def test_named_builders_fill_their_fields() -> None:
    ts = 34_200_000_000_000
    r = itch.stock_directory(ts, [1, 2], ["AAPL", "MSFT"], round_lot_size=[100, 10])
    v = wire_view(r, "R")
    assert list(v["stock"]) == [b"AAPL    ", b"MSFT    "]
    assert list(v["round_lot_size"]) == [100, 10]
    assert list(r["stock_locate"]) == [1, 2]
    assert v["issue_subtype"][0] == b"Z " and v["authenticity"][0] == b"P"
    h = itch.trading_action(ts, 3, "TSLA", "H", "LUDP")
    assert h["aux"][0] == ord("H") and wire_view(h, "H")["reason"][0] == b"LUDP"
    s = itch.system_event(ts, ["O", "Q"])
    assert list(s["aux"]) == [ord("O"), ord("Q")] and list(s["stock_locate"]) == [0, 0]
    assert wire_view(itch.reg_sho(ts, 1, "A", "2"), "Y")["reg_sho_action"][0] == b"2"
    lp = wire_view(itch.participant_position(ts, 1, "GSCO", "A", primary="Y"), "L")[0]
    assert (lp["mpid"], lp["primary_market_maker"], lp["participant_state"]) == (
        b"GSCO",
        b"Y",
        b"A",
    )
    mv = wire_view(itch.mwcb_decline(ts, 1, 2, 2**64 - 1), "V")[0]
    assert (mv["level1"], mv["level2"], mv["level3"]) == (1, 2, 2**64 - 1)
    assert wire_view(itch.mwcb_status(ts, "3"), "W")["breached_level"][0] == b"3"
    k = wire_view(itch.ipo_quoting(ts, 1, "X", release_time=5, qualifier="C", price=7), "K")[0]
    assert (k["release_time"], k["release_qualifier"], k["ipo_price"]) == (5, b"C", 7)
    j = itch.luld_collar(ts, 1, "X", reference_price=10, upper_price=11, lower_price=9)
    assert wire_view(j, "J")["upper_price"][0] == 11
    oh = wire_view(itch.operational_halt(ts, 1, "X", "B", "T"), "h")[0]
    assert (oh["market_code"], oh["halt_action"]) == (b"B", b"T")
    n = itch.noii(
        ts,
        1,
        "X",
        paired_shares=1,
        imbalance_shares=2,
        direction="S",
        far_price=3,
        near_price=4,
        reference_price=5,
        cross_type="C",
    )
    assert wire_view(n, "I")["price_variation"][0] == b" "
    assert wire_view(itch.rpii(ts, 1, "X", "B"), "N")["interest_flag"][0] == b"B"
    o = itch.dlcr(
        ts,
        1,
        "X",
        open_eligibility="Y",
        min_price=1,
        max_price=2,
        near_price=3,
        near_time=4,
        lower_collar=5,
        upper_collar=6,
    )
    assert wire_view(o, "O")["near_time"][0] == 4


def test_builders_refuse_values_that_do_not_fit() -> None:
    with pytest.raises(ItchArgumentError, match="longer than 8"):
        itch.stock_directory(0, 1, "TOOLONGSYM")
    with pytest.raises(ItchArgumentError, match="does not fit"):
        itch.stock_directory(0, 1, "A", round_lot_size=2**32)
    with pytest.raises(ItchArgumentError, match="negative"):
        itch.luld_collar(0, 1, "A", reference_price=-1, upper_price=0, lower_price=0)
    with pytest.raises(ItchArgumentError, match="timestamp"):
        itch.system_event(2**48, "O")
    with pytest.raises(ItchArgumentError, match="does not fit"):
        itch.system_event(0, "O", tracking=70_000)
    with pytest.raises(ItchArgumentError, match="no field"):
        build("A", 0, colour="red")
    with pytest.raises(ItchArgumentError, match="not an ITCH 5\\.0 message type"):
        build("Z", 0)
    with pytest.raises(ItchArgumentError, match="not ASCII"):
        itch.stock_directory(0, 1, "ÄPPL")
    with pytest.raises(ItchArgumentError, match="broadcast"):
        itch.stock_directory(0, [1, 2, 3], ["A", "B"])


# ---------------------------------------------------------------------------------------------
# pack_events: the simulator's encoder
# ---------------------------------------------------------------------------------------------


def order_events() -> np.ndarray:
    codes = "AFEXCDUPQB"
    ev = new_records(ITCH_EVENT, len(codes))
    ev["msg_type"] = [ord(c) for c in codes]
    ev["stock_locate"] = [1, 2, 1, 1, 1, 1, 1, 2, 2, 0]
    ev["tracking"] = 3
    ev["exch_ts_ns"] = np.arange(len(codes)) * 1_000 + 34_200_000_000_000
    ev["order_ref"] = [1, 2, 1, 1, 2, 1, 2, 0, 0, 0]
    ev["ref2"] = [0, 0, 500, 0, 501, 0, 3, 502, 503, 500]
    ev["shares"] = [100, 200, 10, 20, 30, 0, 150, 40, 10**10, 0]
    ev["price"] = [1_000_000, 1_000_100, 0, 0, 999_900, 0, 1_000_200, 1_000_300, 1_000_400, 0]
    ev["side"] = [ord(c) for c in "BS\0\0\0\0\0B\0\0"]
    ev["aux"] = [0, 0, 0, 0, ord("Y"), 0, 0, 0, ord("C"), 0]
    ev["seq"] = np.arange(len(codes)) + 1
    return ev


def test_pack_events_round_trips_every_order_type(decoder: ItchDecoder) -> None:
    ev = order_events()
    before = ev.copy()
    pack_events(ev, symbols={1: "AAPL", 2: b"MSFT"})
    assert list(ev["raw_len"]) == [SPEC_LENGTHS[chr(t)] for t in ev["msg_type"]]
    for name in ("type_id", "version", "flags", "seq", "ts_ns"):  # the header is kept
        assert np.array_equal(ev[name], before[name])
    out = decoder.decode(frame(ev))
    assert fields_equal(out, ev)
    assert fields_equal(out, before, skip=("seq", "ts_ns", "raw", "raw_len"))
    stocks = [wire_view(ev[i : i + 1], chr(ev["msg_type"][i]))["stock"][0] for i in (0, 1, 7, 8)]
    assert stocks == [b"AAPL    ", b"MSFT    ", b"MSFT    ", b"MSFT    "]
    assert wire_view(ev[1:2], "F")["attribution"][0] == b"TECT"


def test_pack_events_zeroes_fields_the_type_does_not_carry() -> None:
    ev = order_events()
    ev["side"] = ord("B")  # E/X/C/D/U/Q/B carry no side
    ev["price"][2] = 5  # E carries no price
    pack_events(ev, symbols=["", "AAPL", "MSFT"])
    assert list(ev["side"]) == [ord(c) for c in "BB\0\0\0\0\0B\0\0"]
    assert ev["price"][2] == 0


def test_pack_events_takes_mpids_and_symbol_arrays() -> None:
    ev = order_events()
    ev["msg_type"][0] = ord("F")
    pack_events(ev, symbols=np.array([b"", b"AAPL", b"MSFT"]), mpid=["GSCO", "MSCO"])
    assert list(wire_view(ev[:2], "F")["attribution"]) == [b"GSCO", b"MSCO"]


def test_pack_events_leaves_built_messages_alone_and_frames_a_mixed_stream(
    decoder: ItchDecoder,
) -> None:
    admin = np.concatenate([built("R"), built("I"), built("S")])
    ev = np.concatenate([admin[:2], order_events(), admin[2:]])
    pack_events(ev, symbols={1: "AAPL", 2: "MSFT"})
    assert ev[:2].tobytes() == admin[:2].tobytes()
    out = decoder.decode(frame(ev))
    assert fields_equal(out, ev)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("side", 0, "side must be 'B' or 'S'"),
        ("shares", 2**32, "does not fit"),
        ("price", -1, "negative"),
        ("exch_ts_ns", 2**48, "timestamp"),
        ("exch_ts_ns", -1, "timestamp"),
    ],
)
def test_pack_events_refuses_unencodable_values_without_writing(
    field: str, value: int, match: str
) -> None:
    ev = order_events()
    ev[field][0] = value
    before = ev.copy()
    with pytest.raises(ItchArgumentError, match=match):
        pack_events(ev, symbols={1: "AAPL", 2: "MSFT"})
    assert ev.tobytes() == before.tobytes()


def test_pack_events_refuses_bad_codes_missing_symbols_and_unbuilt_types() -> None:
    ev = order_events()
    ev["aux"][4] = 1  # C printable must be a printable character
    with pytest.raises(ItchArgumentError, match="printable"):
        pack_events(ev, symbols={1: "AAPL", 2: "MSFT"})
    with pytest.raises(ItchArgumentError, match="need `symbols`"):
        pack_events(order_events())
    with pytest.raises(ItchArgumentError, match="no symbol for stock locate 2"):
        pack_events(order_events(), symbols={1: "AAPL", 3: "X"})
    with pytest.raises(ItchArgumentError, match="beyond the symbol table"):
        pack_events(order_events(), symbols={1: "AAPL"})
    unbuilt = new_records(ITCH_EVENT, 1)
    unbuilt["msg_type"] = ord("R")
    with pytest.raises(ItchArgumentError, match="neither an order/trade"):
        pack_events(unbuilt)
    with pytest.raises(ItchArgumentError, match="ITCH_EVENT"):
        pack_events(np.zeros(3, dtype=np.uint8))
    with pytest.raises(ItchArgumentError, match="MPIDs given"):
        pack_events(order_events(), symbols={1: "A", 2: "B"}, mpid=["A", "B"])


def test_frame_is_length_prefixed_concatenation() -> None:
    ev = np.concatenate([built("S"), built("A"), built("I")])
    assert frame(ev).tobytes() == framed(spec_bytes("S"), spec_bytes("A"), spec_bytes("I"))
    assert frame(ev[:0]).size == 0
    assert frame(ev[::2]).tobytes() == framed(spec_bytes("S"), spec_bytes("I"))  # strided
    with pytest.raises(ItchArgumentError, match="raw bytes"):
        frame(new_records(ITCH_EVENT, 1))


# ---------------------------------------------------------------------------------------------
# The C decoder against the reference on a realistic stream
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mix() -> np.ndarray:
    return itch.synthetic_mix(30_000, seed=7)


def test_synthetic_mix_is_realistic_and_round_trips(mix: np.ndarray) -> None:
    counts = {
        chr(t): int(n) for t, n in zip(*np.unique(mix["msg_type"], return_counts=True), strict=True)
    }
    assert set(counts) == set(SPEC_LENGTHS)  # every type appears
    assert counts["A"] > counts["U"] > counts["F"] > counts["Q"]
    buf = frame(mix)
    dec = ItchDecoder()
    ev = dec.decode(buf, 1, 99)
    assert fields_equal(ev, mix)
    assert frame(ev).tobytes() == buf.tobytes()
    assert dec.stats["messages"] == mix.size and dec.stats["bytes"] == buf.size


def test_c_equals_reference_on_a_realistic_mix(mix: np.ndarray) -> None:
    buf = frame(mix)
    c, ref = (
        ItchDecoder(record_flags=RecordFlag.REPLAY),
        ReferenceDecoder(record_flags=RecordFlag.REPLAY),
    )
    a, b = c.decode(buf, 5, 123), ref.decode(buf, 5, 123)
    assert a.tobytes() == b.tobytes()
    assert (a["flags"] == RecordFlag.REPLAY).all()
    assert c.stats == ref.stats and c.type_counts == ref.type_counts
    assert (c.consumed, c.next_seq) == (ref.consumed, ref.next_seq) == (buf.size, 5 + mix.size)


def blocks_of(buf: np.ndarray, n_messages: int, rng: np.random.Generator) -> list[int]:
    """Message start offsets, for cutting a framed buffer into whole-message blocks."""
    starts, pos = [], 0
    while pos < buf.size:
        starts.append(pos)
        pos += 2 + (int(buf[pos]) << 8 | int(buf[pos + 1]))
    assert len(starts) == n_messages
    return starts


def test_decode_blocks_numbers_each_block_from_its_first_seq(mix: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    sub = mix[:2_000]
    buf = frame(sub)
    starts = blocks_of(buf, sub.size, rng)
    cuts = np.unique(np.r_[0, np.sort(rng.choice(len(starts), 80, replace=False)), len(starts)])
    offsets = np.array([starts[i] if i < len(starts) else buf.size for i in cuts[:-1]])
    ends = np.array([starts[i] if i < len(starts) else buf.size for i in cuts[1:]])
    first_seqs = 1_000 + cuts[:-1] * 3  # any numbering: each block's own
    recv = np.arange(offsets.size) + 10
    c, ref = ItchDecoder(capacity=1), ReferenceDecoder()
    a = c.decode_blocks(buf, offsets, ends - offsets, first_seqs, recv)
    b = ref.decode_blocks(buf, offsets, ends - offsets, first_seqs, recv)
    assert a.tobytes() == b.tobytes() and c.stats == ref.stats
    assert c.stats["blocks"] == offsets.size
    assert fields_equal(a, sub)
    counts = np.diff(cuts)
    assert list(a["seq"]) == list(
        np.concatenate([s + np.arange(k) for s, k in zip(first_seqs, counts, strict=True)])
    )
    assert list(a["ts_ns"]) == list(np.repeat(recv, counts))


def test_decode_blocks_accepts_scalars_and_empty_batches() -> None:
    buf = framed(spec_bytes("A"), spec_bytes("D"))
    dec = ItchDecoder()
    ev = dec.decode_blocks(buf, [0, 38], [38, 21], 7, 9)
    assert list(ev["seq"]) == [7, 7] and list(ev["ts_ns"]) == [9, 9]
    assert dec.decode_blocks(buf, [], [], []).size == 0


def test_output_is_a_reused_view_and_counters_accumulate() -> None:
    dec = ItchDecoder(capacity=1)
    buf = framed(spec_bytes("A"), spec_bytes("D"))
    first = dec.decode(buf)
    kept = first.copy()
    second = dec.decode(framed(spec_bytes("X")))
    assert np.shares_memory(first, second)
    assert kept["msg_type"][0] == ord("A") and first["msg_type"][0] == ord("X")
    assert dec.capacity >= 2
    assert dec.stats["messages"] == 3 and dec.stats["blocks"] == 2
    dec.reset_stats()
    assert dec.stats == dict.fromkeys(COUNTERS, 0) and dec.type_counts == {}


def test_decode_accepts_bytes_like_and_uint8_arrays() -> None:
    buf = framed(spec_bytes("A"))
    dec = ItchDecoder()
    for form in (buf, bytearray(buf), memoryview(buf), np.frombuffer(buf, np.uint8)):
        assert dec.decode(form)["order_ref"][0] == BODY["A"][1]["order_ref"]
    strided = np.zeros(2 * len(buf), np.uint8)
    strided[::2] = np.frombuffer(buf, np.uint8)
    assert dec.decode(strided[::2])["order_ref"][0] == BODY["A"][1]["order_ref"]


# ---------------------------------------------------------------------------------------------
# Malformed input: every cause counted, skipped, never raised
# ---------------------------------------------------------------------------------------------


def both(buf: bytes, **kw: Any) -> tuple[np.ndarray, dict[str, int], int, int]:
    """Decode with C and reference, assert they agree, return C's view of it."""
    c, ref = ItchDecoder(), ReferenceDecoder()
    a, b = c.decode(buf, 1, 0, **kw).copy(), ref.decode(buf, 1, 0, **kw)
    assert a.tobytes() == b.tobytes()
    assert c.stats == ref.stats
    assert (c.consumed, c.next_seq) == (ref.consumed, ref.next_seq)
    st = c.stats
    assert c.consumed == st["bytes"] + st["bytes_skipped"] + st["bytes_dropped"]
    return a, st, c.consumed, c.next_seq


A, D = spec_bytes("A"), spec_bytes("D")


def test_unknown_type_is_skipped_by_its_length_and_takes_a_seq() -> None:
    unknown = [b"Z" + bytes(10), b"\x00" * 3, b"\xff" * 300, b"a"]
    ev, st, _, next_seq = both(framed(A, *unknown, D))
    assert [chr(t) for t in ev["msg_type"]] == ["A", "D"]
    assert list(ev["seq"]) == [1, 6]  # the skipped messages kept their numbers
    assert st["unknown_type"] == 4 and st["messages"] == 2
    assert st["bytes_skipped"] == sum(2 + len(u) for u in unknown)
    assert next_seq == 7 and st["blocks"] == 1


@pytest.mark.parametrize(
    "bad",
    [A[:-1], A + b"\x00", D[:11]],  # a short and a long add, a delete cut to its header
)
def test_bad_length_drops_the_rest_of_the_block(bad: bytes) -> None:
    buf = framed(A, bad, D, D)
    ev, st, consumed, _ = both(buf)
    assert [chr(t) for t in ev["msg_type"]] == ["A"]
    assert st["bad_length"] == 1 and st["messages"] == 1
    assert st["bytes_dropped"] == len(buf) - 2 - len(A)
    assert consumed == len(buf) and st["blocks"] == 1


def test_zero_length_is_a_bad_length() -> None:
    buf = framed(A) + b"\x00\x00" + framed(D)
    ev, st, _, _ = both(buf)
    assert ev.size == 1 and st["bad_length"] == 1 and st["bytes_dropped"] == 2 + 2 + len(D)


@pytest.mark.parametrize("cut", [1, 2, 3, 20, 2 + len(D) - 1])
def test_buffer_ending_mid_message_is_truncated(cut: int) -> None:
    buf = framed(A, D)[: 2 + len(A) + cut]
    ev, st, consumed, next_seq = both(buf)
    assert ev.size == 1 and st["truncated"] == 1 and st["bytes_dropped"] == cut
    assert consumed == len(buf) and next_seq == 2


def test_a_length_beyond_the_buffer_is_truncated() -> None:
    buf = framed(A) + b"\xff\xff" + b"A" * 40
    _, st, _, _ = both(buf)
    assert st["truncated"] == 1 and st["bad_length"] == 0


def test_partial_tail_is_left_unconsumed_and_uncounted() -> None:
    full = framed(A, D)
    for cut in range(1, 2 + len(D)):
        buf = full[: len(full) - cut]
        ev, st, consumed, next_seq = both(buf, partial_tail=True)
        assert ev.size == 1 and consumed == 2 + len(A) and next_seq == 2
        assert st["truncated"] == 0 and st["bytes_dropped"] == 0 and st["blocks"] == 0
    # Bad lengths are still bad with partial_tail.
    _, st, consumed, _ = both(framed(A[:-1], D), partial_tail=True)
    assert st["bad_length"] == 1 and consumed == len(framed(A[:-1], D))


def test_a_bad_block_spoils_only_itself() -> None:
    good = framed(A, D)
    bad = framed(A[:-1], D)
    buf = good + bad + good
    offsets, lengths = [0, len(good), len(good) + len(bad)], [len(good), len(bad), len(good)]
    c, ref = ItchDecoder(), ReferenceDecoder()
    a = c.decode_blocks(buf, offsets, lengths, [1, 3, 5])
    b = ref.decode_blocks(buf, offsets, lengths, [1, 3, 5])
    assert a.tobytes() == b.tobytes() and c.stats == ref.stats
    assert list(a["seq"]) == [1, 2, 5, 6]
    assert c.stats["bad_length"] == 1 and c.stats["blocks"] == 3


def test_caller_misuse_raises_typed_errors() -> None:
    dec = ItchDecoder()
    with pytest.raises(ItchArgumentError, match="outside the buffer"):
        dec.decode_blocks(b"\x00" * 10, [5], [6], [1])
    with pytest.raises(ItchArgumentError, match="negative"):
        dec.decode_blocks(b"\x00" * 10, [-1], [1], [1])
    with pytest.raises(ItchArgumentError, match="1 entries for 2 blocks"):
        dec.decode_blocks(b"\x00" * 10, [0, 1], [1], [1])
    with pytest.raises(ItchArgumentError, match="uint8"):
        dec.decode(np.zeros(4, dtype=np.int32))
    with pytest.raises(ItchArgumentError, match="bytes or a uint8"):
        dec.decode("text")  # type: ignore[arg-type]
    with pytest.raises(ItchArgumentError, match="first_seq"):
        dec.decode(b"", -1)
    with pytest.raises(ItchArgumentError, match="recv_ns"):
        dec.decode(b"", 1, 2**63)
    with pytest.raises(ItchArgumentError):
        ItchDecoder(capacity=0)
    assert dec.stats == dict.fromkeys(COUNTERS, 0) | {"blocks": 0}


# ---------------------------------------------------------------------------------------------
# The C entry points directly: out_cap, resume, -EINVAL/-ERANGE
# ---------------------------------------------------------------------------------------------


def c_call(shim: Any, buf: bytes, cap: int, guard: int = 4) -> tuple[int, np.ndarray, Any, Any]:
    ffi, lib = shim.ffi, shim.lib
    out = new_records(ITCH_EVENT, cap + guard)
    out["seq"] = 0xDEAD  # sentinel: must survive past cap
    hdr = ffi.new("itch_header_t *", {"type_id": ITCH_EVENT.type_id, "version": 1})
    stats = ffi.new("itch_stats_t *")
    consumed, next_seq = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    n = lib.itch_decode(
        hdr,
        ffi.from_buffer("uint8_t[]", buf),
        len(buf),
        1,
        0,
        0,
        ffi.cast("itch_event_t *", ffi.from_buffer(out)),
        cap,
        stats,
        consumed,
        next_seq,
    )
    return n, out, stats, (consumed[0], next_seq[0])


def test_c_never_writes_past_out_cap_and_says_where_to_resume(shim: Any) -> None:
    msgs = [spec_bytes(c) for c in "AXDEUPS"]
    buf = framed(msgs[0], b"Z", *msgs[1:])
    n, out, stats, (consumed, next_seq) = c_call(shim, buf, 3)
    assert n == 3 and stats.out_full == 1 and stats.blocks == 0
    assert (out["seq"][3:] == 0xDEAD).all()
    assert consumed == len(framed(msgs[0], b"Z", msgs[1], msgs[2]))
    assert next_seq == 5
    # Resuming from there yields the rest.
    n2, out2, _, (consumed2, _) = c_call(shim, buf[consumed:], 10)
    assert n2 == 4 and consumed2 == len(buf) - consumed
    whole = decode_reference(buf)
    assert [chr(t) for t in np.r_[out["msg_type"][:3], out2["msg_type"][:4]]] == [
        chr(t) for t in whole["msg_type"]
    ]
    # A zero-capacity call consumes nothing decodable but still walks unknown types.
    n0, _, st0, (consumed0, _) = c_call(shim, framed(b"Z", msgs[0]), 0)
    assert n0 == 0 and consumed0 == 3 and st0.unknown_type == 1 and st0.out_full == 1


def test_c_decode_blocks_resumes_from_its_cursor(shim: Any) -> None:
    ffi, lib = shim.ffi, shim.lib
    block = framed(*(spec_bytes(c) for c in "ADXE"))
    buf = block * 3
    offsets = np.array([0, len(block), 2 * len(block)], dtype=np.uint64)
    lengths = np.full(3, len(block), dtype=np.uint64)
    seqs = np.array([10, 20, 30], dtype=np.uint64)
    recv = np.array([1, 2, 3], dtype=np.int64)
    hdr = ffi.new("itch_header_t *", {"type_id": ITCH_EVENT.type_id, "version": 1})
    stats, cursor = ffi.new("itch_stats_t *"), ffi.new("itch_cursor_t *")
    got: list[np.ndarray] = []
    calls = 0
    while cursor.block < 3:
        out = new_records(ITCH_EVENT, 5)
        n = lib.itch_decode_blocks(
            hdr,
            ffi.from_buffer("uint8_t[]", buf),
            len(buf),
            ffi.from_buffer("uint64_t[]", offsets),
            ffi.from_buffer("uint64_t[]", lengths),
            ffi.from_buffer("uint64_t[]", seqs),
            ffi.from_buffer("int64_t[]", recv),
            3,
            ffi.cast("itch_event_t *", ffi.from_buffer(out)),
            5,
            stats,
            cursor,
        )
        assert n >= 0
        got.append(out[:n].copy())
        calls += 1
    ev = np.concatenate(got)
    assert calls == 3 and stats.out_full == 2 and stats.blocks == 3
    assert list(ev["seq"]) == [10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33]
    assert list(ev["ts_ns"]) == [1] * 4 + [2] * 4 + [3] * 4
    # A block outside the buffer is refused before anything is decoded; NULLs are -EINVAL.
    cursor.block = 0
    bad_len = np.array([len(block), len(block), len(block) + 1], dtype=np.uint64)
    rc = lib.itch_decode_blocks(
        hdr,
        ffi.from_buffer("uint8_t[]", buf),
        len(buf),
        ffi.from_buffer("uint64_t[]", offsets),
        ffi.from_buffer("uint64_t[]", bad_len),
        ffi.from_buffer("uint64_t[]", seqs),
        ffi.from_buffer("int64_t[]", recv),
        3,
        ffi.NULL,
        0,
        stats,
        cursor,
    )
    assert rc == -34  # -ERANGE
    assert (
        lib.itch_decode(ffi.NULL, ffi.NULL, 0, 0, 0, 0, ffi.NULL, 0, stats, ffi.NULL, ffi.NULL)
        == -22
    )
