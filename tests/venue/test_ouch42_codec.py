"""OUCH 4.2 codec: exact layouts, round trips of every message, strict validation, fuzzing with
arbitrary bytes (only OuchError, counted), and the corpus."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import ouch42 as o
from tectra.schema import Side

CORPUS = Path(__file__).parent / "corpus"

EXPECTED_LENGTHS = {
    o.EnterOrder: 49,
    o.ReplaceOrder: 47,
    o.CancelOrder: 19,
    o.ModifyOrder: 20,
    o.SystemEvent: 10,
    o.Accepted: 66,
    o.Replaced: 80,
    o.Canceled: 28,
    o.AiqCanceled: 37,
    o.Executed: 40,
    o.BrokenTrade: 32,
    o.Rejected: 24,
    o.CancelPending: 23,
    o.CancelReject: 23,
    o.OrderPriorityUpdate: 36,
    o.OrderModified: 28,
}


@pytest.mark.parametrize("cls", list(EXPECTED_LENGTHS), ids=lambda c: c.__name__)
def test_message_lengths_match_the_spec(cls: type[Any]) -> None:
    assert o.message_length(cls) == EXPECTED_LENGTHS[cls]


def test_enter_order_field_offsets() -> None:
    msg = o.EnterOrder(
        "ABCdef0123456Z",
        Side.SELL_SHORT,
        300,
        "MSFT",
        1_234_567,
        o.TIF_IOC,
        "GSCO",
        "N",
        "P",
        "Y",
        100,
        "N",
        "R",
    )
    wire = o.encode(msg)
    assert wire[0:1] == b"O"
    assert wire[1:15] == b"ABCdef0123456Z"
    assert wire[15:16] == b"T"
    assert struct.unpack(">I", wire[16:20])[0] == 300
    assert wire[20:28] == b"MSFT    "
    assert struct.unpack(">I", wire[28:32])[0] == 1_234_567
    assert struct.unpack(">I", wire[32:36])[0] == 0
    assert wire[36:40] == b"GSCO"
    assert wire[40:43] == b"NPY"
    assert struct.unpack(">I", wire[43:47])[0] == 100
    assert wire[47:49] == b"NR"


def test_executed_field_offsets() -> None:
    wire = o.encode(o.Executed(123, "TOK", 10, 1_000_000, "A", 2**40))
    assert wire[0:1] == b"E"
    assert struct.unpack(">Q", wire[1:9])[0] == 123
    assert wire[9:23] == b"TOK" + b" " * 11
    assert struct.unpack(">IIcQ", wire[23:40]) == (10, 1_000_000, b"A", 2**40)


# -- strategies: every valid message ---------------------------------------------------------

tokens = st.text(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=14
)
sides = st.sampled_from([Side.BUY, Side.SELL, Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT])
stocks = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ.", min_size=1, max_size=8)
firms = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=4)
limit_prices = st.one_of(st.integers(1, o.MAX_PRICE), st.just(o.MARKET_PRICE))
any_prices = st.one_of(st.integers(0, o.MAX_PRICE), st.just(o.MARKET_PRICE))
tifs = st.one_of(st.integers(0, 86_399), st.sampled_from([o.TIF_MARKET_HOURS, o.TIF_SYSTEM_HOURS]))
in_shares = st.integers(0, o.MAX_SHARES)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ts = st.integers(0, o.MAX_TIMESTAMP_NS)


def chars(values: frozenset[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(values))


inbound_messages = st.one_of(
    st.builds(
        o.EnterOrder,
        tokens,
        sides,
        st.integers(1, o.MAX_SHARES),
        stocks,
        limit_prices,
        tifs,
        firms,
        chars(o.DISPLAY_VALUES),
        chars(o.CAPACITY_VALUES),
        chars(frozenset("YN")),
        in_shares,
        chars(o.CROSS_TYPE_VALUES),
        chars(o.CUSTOMER_TYPE_VALUES),
    ),
    st.builds(
        o.ReplaceOrder,
        tokens,
        tokens,
        in_shares,
        limit_prices,
        tifs,
        chars(o.DISPLAY_VALUES),
        chars(frozenset("YN")),
        in_shares,
    ),
    st.builds(o.CancelOrder, tokens, in_shares),
    st.builds(o.ModifyOrder, tokens, sides, in_shares),
)

_order_common = (
    tokens,
    sides,
    u32,
    stocks,
    any_prices,
    tifs,
    firms,
    chars(o.DISPLAY_VALUES),
    u64,
    chars(o.CAPACITY_VALUES),
    chars(frozenset("YN")),
    u32,
    chars(o.CROSS_TYPE_VALUES),
    chars(frozenset("LD")),
)
outbound_messages = st.one_of(
    st.builds(o.SystemEvent, ts, chars(o.EVENT_CODES)),
    st.builds(o.Accepted, ts, *_order_common, chars(o.BBO_WEIGHT_VALUES)),
    st.builds(o.Replaced, ts, *_order_common, tokens, chars(o.BBO_WEIGHT_VALUES)),
    st.builds(o.Canceled, ts, tokens, u32, chars(o.CANCEL_REASONS)),
    st.builds(
        o.AiqCanceled,
        ts,
        tokens,
        u32,
        chars(o.CANCEL_REASONS),
        u32,
        any_prices,
        chars(o.LIQUIDITY_FLAGS),
    ),
    st.builds(
        o.Executed, ts, tokens, st.integers(1, 2**32 - 1), any_prices, chars(o.LIQUIDITY_FLAGS), u64
    ),
    st.builds(o.BrokenTrade, ts, tokens, u64, chars(o.BROKEN_TRADE_REASONS)),
    st.builds(o.Rejected, ts, tokens, chars(o.REJECT_REASONS)),
    st.builds(o.CancelPending, ts, tokens),
    st.builds(o.CancelReject, ts, tokens),
    st.builds(o.OrderPriorityUpdate, ts, tokens, any_prices, chars(o.DISPLAY_VALUES), u64),
    st.builds(o.OrderModified, ts, tokens, sides, u32),
)


@settings(max_examples=400, deadline=None)
@given(inbound_messages)
def test_inbound_round_trip(msg: o.InboundMessage) -> None:
    wire = o.encode(msg)
    assert len(wire) == o.message_length(type(msg))
    assert o.decode_inbound(wire) == msg


@settings(max_examples=600, deadline=None)
@given(outbound_messages)
def test_outbound_round_trip(msg: o.OutboundMessage) -> None:
    wire = o.encode(msg)
    assert len(wire) == o.message_length(type(msg))
    assert o.decode_outbound(wire) == msg


def test_every_message_type_is_covered() -> None:
    assert set("OUXM") == o.INBOUND_TYPES
    assert set("SAUCDEBJPITM") == o.OUTBOUND_TYPES


# -- strict validation -----------------------------------------------------------------------

BASE = o.EnterOrder("TOKEN1", Side.BUY, 100, "AAPL", 1_500_000, o.TIF_MARKET_HOURS)


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"token": ""}, o.OuchErrorReason.BAD_TOKEN, "token"),
        ({"token": "has space"}, o.OuchErrorReason.BAD_TOKEN, "token"),
        ({"token": "tok-1"}, o.OuchErrorReason.BAD_TOKEN, "token"),
        ({"token": "A" * 15}, o.OuchErrorReason.BAD_TOKEN, "token"),
        ({"token": "tökén"}, o.OuchErrorReason.BAD_TOKEN, "token"),
        ({"side": Side.NONE}, o.OuchErrorReason.BAD_SIDE, "side"),
        ({"shares": 0}, o.OuchErrorReason.BAD_SHARES, "shares"),
        ({"shares": 1_000_000}, o.OuchErrorReason.BAD_SHARES, "shares"),
        ({"stock": ""}, o.OuchErrorReason.BAD_STOCK, "stock"),
        ({"stock": "A B"}, o.OuchErrorReason.BAD_STOCK, "stock"),
        ({"stock": "TOOLONGXX"}, o.OuchErrorReason.BAD_STOCK, "stock"),
        ({"price": 0}, o.OuchErrorReason.BAD_PRICE, "price"),
        ({"price": o.MAX_PRICE + 1}, o.OuchErrorReason.BAD_PRICE, "price"),
        ({"price": -1}, o.OuchErrorReason.BAD_PRICE, "price"),
        ({"time_in_force": 86_400}, o.OuchErrorReason.BAD_TIME_IN_FORCE, "time_in_force"),
        ({"time_in_force": 100_000}, o.OuchErrorReason.BAD_TIME_IN_FORCE, "time_in_force"),
        ({"firm": "gsco"}, o.OuchErrorReason.BAD_FIRM, "firm"),
        ({"firm": " GS"}, o.OuchErrorReason.BAD_FIRM, "firm"),
        ({"display": "Z"}, o.OuchErrorReason.BAD_ENUM, "display"),
        ({"capacity": "X"}, o.OuchErrorReason.BAD_ENUM, "capacity"),
        ({"intermarket_sweep": "y"}, o.OuchErrorReason.BAD_ENUM, "intermarket_sweep"),
        ({"minimum_quantity": 1_000_000}, o.OuchErrorReason.BAD_SHARES, "minimum_quantity"),
        ({"cross_type": "Q"}, o.OuchErrorReason.BAD_ENUM, "cross_type"),
        ({"customer_type": "X"}, o.OuchErrorReason.BAD_ENUM, "customer_type"),
        ({"shares": True}, o.OuchErrorReason.BAD_SHARES, "shares"),
    ],
)
def test_encode_refuses_invalid_fields(
    change: dict[str, Any], reason: o.OuchErrorReason, field: str
) -> None:
    bad = dataclasses.replace(BASE, **change)
    with pytest.raises(o.OuchError) as info:
        o.encode(bad)
    assert info.value.reason is reason
    assert info.value.field == field
    assert info.value.msg_type == "O"


def _patch(wire: bytes, offset: int, raw: bytes) -> bytes:
    return wire[:offset] + raw + wire[offset + len(raw) :]


GOOD = o.encode(BASE)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", o.OuchErrorReason.EMPTY),
        (b"Q" + GOOD[1:], o.OuchErrorReason.UNKNOWN_TYPE),
        (GOOD[:-1], o.OuchErrorReason.BAD_LENGTH),
        (GOOD + b" ", o.OuchErrorReason.BAD_LENGTH),
        (_patch(GOOD, 1, b" TOKEN1       "), o.OuchErrorReason.BAD_TOKEN),  # leading space
        (_patch(GOOD, 1, b"TOK EN1       "), o.OuchErrorReason.BAD_TOKEN),  # inner space
        (_patch(GOOD, 1, b" " * 14), o.OuchErrorReason.BAD_TOKEN),
        (_patch(GOOD, 1, b"TOKEN\x00       "), o.OuchErrorReason.BAD_TOKEN),
        (_patch(GOOD, 15, b"b"), o.OuchErrorReason.BAD_SIDE),
        (_patch(GOOD, 16, struct.pack(">I", 0)), o.OuchErrorReason.BAD_SHARES),
        (_patch(GOOD, 20, b"AA\x01L    "), o.OuchErrorReason.BAD_STOCK),
        (_patch(GOOD, 28, struct.pack(">I", 0x7FFFFFFE)), o.OuchErrorReason.BAD_PRICE),
        (_patch(GOOD, 32, struct.pack(">I", 99_997)), o.OuchErrorReason.BAD_TIME_IN_FORCE),
        (_patch(GOOD, 40, b"\xff"), o.OuchErrorReason.BAD_ENUM),
    ],
)
def test_decode_rejects_malformed_inbound(wire: bytes, reason: o.OuchErrorReason) -> None:
    codec = o.OuchCodec()
    with pytest.raises(o.OuchError) as info:
        codec.decode_inbound(wire)
    assert info.value.reason is reason
    assert codec.counters.errors == {reason: 1}


def test_decode_rejects_bad_outbound_fields() -> None:
    good = o.encode(o.Executed(1, "T", 5, 100, "R", 1))
    with pytest.raises(o.OuchError) as info:
        o.decode_outbound(_patch(good, 1, struct.pack(">Q", o.MAX_TIMESTAMP_NS + 1)))
    assert info.value.reason is o.OuchErrorReason.BAD_TIMESTAMP
    with pytest.raises(o.OuchError) as info:
        o.decode_outbound(_patch(good, 23, struct.pack(">I", 0)))  # executed 0 shares
    assert info.value.reason is o.OuchErrorReason.BAD_SHARES
    with pytest.raises(o.OuchError) as info:
        o.decode_outbound(_patch(good, 31, b"?"))  # liquidity flag
    assert info.value.reason is o.OuchErrorReason.BAD_ENUM


def test_direction_matters() -> None:
    # 'U' and 'M' exist both ways with different layouts.
    replace = o.encode(o.ReplaceOrder("A", "B", 10, 100, 0))
    with pytest.raises(o.OuchError) as info:
        o.decode_outbound(replace)
    assert info.value.reason is o.OuchErrorReason.BAD_LENGTH
    with pytest.raises(o.OuchError):
        o.decode_inbound(o.encode(o.SystemEvent(0, "S")))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=90))
def test_fuzz_arbitrary_bytes_only_ouch_errors(blob: bytes) -> None:
    codec = o.OuchCodec()
    for decode in (codec.decode_inbound, codec.decode_outbound):
        try:
            msg = decode(blob)
        except o.OuchError:
            continue
        assert o.encode(msg) == blob  # whatever decodes re-encodes to the same bytes
    assert codec.counters.errors_total + sum(codec.counters.decoded.values()) == 2


@settings(max_examples=800, deadline=None)
@given(st.one_of(inbound_messages, outbound_messages), st.data())
def test_fuzz_single_byte_corruption(msg: Any, data: st.DataObject) -> None:
    wire = bytearray(o.encode(msg))
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] = data.draw(st.integers(0, 255))
    decode = (
        o.decode_inbound
        if type(msg).__name__
        in {
            "EnterOrder",
            "ReplaceOrder",
            "CancelOrder",
            "ModifyOrder",
        }
        else o.decode_outbound
    )
    with contextlib.suppress(o.OuchError):
        decode(bytes(wire))


def test_corpus() -> None:
    files = sorted(CORPUS.glob("ouch-*.bin"))
    assert len(files) >= 10
    for path in files:
        decode = o.decode_inbound if path.name.startswith("ouch-in") else o.decode_outbound
        data = path.read_bytes()
        if "-valid-" in path.name:
            assert o.encode(decode(data)) == data, path.name
        else:
            with pytest.raises(o.OuchError):
                decode(data)
