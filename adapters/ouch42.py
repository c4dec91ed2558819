"""OUCH 4.2: message codec with strict validation, and the mapping to and from schema records.

This module owns the OUCH 4.2 wire format and its meaning for Tectra, nothing else (the
transport is SoupBinTCP, `adapters.soupbintcp`; order state for clients is the gateway's):

* message layouts as declared tables (`_INBOUND_SPECS`, `_OUTBOUND_SPECS`): every field's
  name, width, kind and allowed values, from which the `struct` formats and per-field checks
  are built. Inbound (client -> venue): Enter Order
  (O), Replace Order (U), Cancel Order (X), Modify Order (M). Outbound (venue -> client):
  System Event (S), Accepted (A), Replaced (U), Canceled (C), AIQ Canceled (D), Executed (E),
  Broken Trade (B), Rejected (J), Cancel Pending (P), Cancel Reject (I), Order Priority Update
  (T), Order Modified (M). All integers big-endian; alpha fields left-justified and
  space-padded; prices are Price(4), the same 1e-4 units as `tectra.schema.PRICE_SCALE`;
  outbound timestamps are u64 nanoseconds since midnight;
* `encode` / `decode_inbound` / `decode_outbound`: the codec. Both directions validate every
  field (length, token charset, enumerated values, share and price ranges, timestamps) and
  raise `OuchError` with an `OuchErrorReason` and the field name; `OuchCodec` wraps them with
  `OuchCounters`;
* ORDER_REQUEST -> Enter / Replace / Cancel (`request_to_ouch`, `requests_to_ouch`), and
  `OuchOrderTracker`, which follows each token's order so outbound messages become
  EXECUTION_REPORT records with exec type, order status, last px/qty, cum/leaves and an average
  price computed in exact integer arithmetic (`average_price`).

Adapters import `tectra.schema` only.
"""

from __future__ import annotations

import enum
import operator
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import (
    EXECUTION_REPORT,
    ORDER_REQUEST,
    ExecType,
    OrderAction,
    OrdStatus,
    OrdType,
    RejectReason,
    Side,
    TimeInForce,
)

__all__ = [
    "BBO_WEIGHT_VALUES",
    "BROKEN_TRADE_REASONS",
    "CANCEL_REASONS",
    "CAPACITY_VALUES",
    "CROSS_TYPE_VALUES",
    "CUSTOMER_TYPE_VALUES",
    "DISPLAY_VALUES",
    "EVENT_CODES",
    "INBOUND_TYPES",
    "LIQUIDITY_FLAGS",
    "MARKET_PRICE",
    "MAX_PRICE",
    "MAX_SHARES",
    "MAX_TIMESTAMP_NS",
    "OUTBOUND_TYPES",
    "REJECT_REASONS",
    "TIF_IOC",
    "TIF_MARKET_HOURS",
    "TIF_SYSTEM_HOURS",
    "TOKEN_WIDTH",
    "Accepted",
    "AiqCanceled",
    "BrokenTrade",
    "CancelOrder",
    "CancelPending",
    "CancelReject",
    "Canceled",
    "EnterOrder",
    "Executed",
    "InboundMessage",
    "ModifyOrder",
    "OrderModified",
    "OrderPriorityUpdate",
    "OuchCodec",
    "OuchCounters",
    "OuchError",
    "OuchErrorReason",
    "OuchOrderDefaults",
    "OuchOrderTracker",
    "OutboundMessage",
    "Rejected",
    "ReplaceOrder",
    "Replaced",
    "SystemEvent",
    "average_price",
    "decode_inbound",
    "decode_outbound",
    "encode",
    "is_valid_token",
    "message_length",
    "request_to_ouch",
    "requests_to_ouch",
    "tif_from_ouch",
    "tif_to_ouch",
]

# --------------------------------------------------------------------------------------------
# Value domains (OUCH 4.2)
# --------------------------------------------------------------------------------------------

TOKEN_WIDTH: Final[int] = 14
STOCK_WIDTH: Final[int] = 8
FIRM_WIDTH: Final[int] = 4
MAX_SHARES: Final[int] = 999_999
"""Inbound Shares and Minimum Quantity must be below 1,000,000."""
MAX_PRICE: Final[int] = 1_999_999_900
"""$199,999.9900, the largest limit price."""
MARKET_PRICE: Final[int] = 0x7FFFFFFF
"""$214,748.3647: the special "market" price (Tectra's venue simulator: a market order)."""
TIF_IOC: Final[int] = 0
TIF_MARKET_HOURS: Final[int] = 99_998
TIF_SYSTEM_HOURS: Final[int] = 99_999
MAX_TIF_SECONDS: Final[int] = 86_399
"""Other Time in Force values are a lifetime in seconds, less than a day."""
MAX_TIMESTAMP_NS: Final[int] = 86_400 * 1_000_000_000 - 1
"""Outbound timestamps are nanoseconds since midnight."""

_SIDES: Final[frozenset[int]] = frozenset(
    {Side.BUY, Side.SELL, Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT}
)
DISPLAY_VALUES: Final[frozenset[str]] = frozenset("AYNPIMWLOTQ")
"""Attributable, anonymous (price to comply), non-display, post-only, imbalance-only, midpoint
peg, midpoint peg post-only, post-only attributable, retail type 1/2, retail price improving."""
CAPACITY_VALUES: Final[frozenset[str]] = frozenset("APRO")
ISO_VALUES: Final[frozenset[str]] = frozenset("YN")
CROSS_TYPE_VALUES: Final[frozenset[str]] = frozenset("NOCHSR")
CUSTOMER_TYPE_VALUES: Final[frozenset[str]] = frozenset("RN ")
EVENT_CODES: Final[frozenset[str]] = frozenset("SE")
ORDER_STATE_VALUES: Final[frozenset[str]] = frozenset("LD")
BBO_WEIGHT_VALUES: Final[frozenset[str]] = frozenset("0123 SN")
CANCEL_REASONS: Final[frozenset[str]] = frozenset("UITSDQZCKHXE")
"""User, IOC, timeout, supervisory, regulatory, self-match prevention, system, cross canceled,
market collars, halted, open protection, closed."""
REJECT_REASONS: Final[frozenset[str]] = frozenset("THZSDCLMRXNOWabcdefghijklmn")
BROKEN_TRADE_REASONS: Final[frozenset[str]] = frozenset("ECSX")
LIQUIDITY_FLAGS: Final[frozenset[str]] = frozenset("AROMCLHKJWmk078dfejrt456g")
_TOKEN_CHARS: Final[frozenset[int]] = frozenset(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)


# --------------------------------------------------------------------------------------------
# Errors and counters
# --------------------------------------------------------------------------------------------


class OuchErrorReason(enum.Enum):
    """Why an OUCH message, request or mapping step was refused."""

    EMPTY = "empty"
    UNKNOWN_TYPE = "unknown_type"
    BAD_LENGTH = "bad_length"
    BAD_TOKEN = "bad_token"
    BAD_SIDE = "bad_side"
    BAD_SHARES = "bad_shares"
    BAD_STOCK = "bad_stock"
    BAD_PRICE = "bad_price"
    BAD_TIME_IN_FORCE = "bad_time_in_force"
    BAD_FIRM = "bad_firm"
    BAD_ENUM = "bad_enum"  # a one-character code outside its documented set
    BAD_VALUE = "bad_value"  # an integer outside its range (minimum quantity, ...)
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_REQUEST = "bad_request"  # an ORDER_REQUEST OUCH cannot express
    UNKNOWN_TOKEN = "unknown_token"  # outbound message for a token the tracker never saw
    DUPLICATE_TOKEN = "duplicate_token"
    UNKNOWN_MATCH = "unknown_match"  # broken trade for a match number not on record
    TRACKER_FULL = "tracker_full"


class OuchError(ValueError):
    """A malformed OUCH message or an unmappable request; `field` names the culprit."""

    def __init__(
        self, reason: OuchErrorReason, detail: str, *, field: str = "", msg_type: str = ""
    ) -> None:
        where = f"{msg_type}." if msg_type else ""
        super().__init__(f"{reason.value}: {where}{field + ': ' if field else ''}{detail}")
        self.reason = reason
        self.detail = detail
        self.field = field
        self.msg_type = msg_type


@dataclass
class OuchCounters:
    """Per-codec counters, read at scrape time."""

    decoded: dict[str, int] = field(default_factory=dict)  # by message type letter
    encoded: dict[str, int] = field(default_factory=dict)
    errors: dict[OuchErrorReason, int] = field(default_factory=dict)

    def count_error(self, error: OuchError) -> None:
        self.errors[error.reason] = self.errors.get(error.reason, 0) + 1

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnterOrder:
    token: str
    side: Side
    shares: int
    stock: str
    price: int
    time_in_force: int
    firm: str = ""
    display: str = "A"
    capacity: str = "A"
    intermarket_sweep: str = "N"
    minimum_quantity: int = 0
    cross_type: str = "N"
    customer_type: str = " "


@dataclass(frozen=True)
class ReplaceOrder:
    existing_token: str
    replacement_token: str
    shares: int
    price: int
    time_in_force: int
    display: str = "A"
    intermarket_sweep: str = "N"
    minimum_quantity: int = 0


@dataclass(frozen=True)
class CancelOrder:
    """`shares` is the new intended size: 0 cancels the whole order."""

    token: str
    shares: int = 0


@dataclass(frozen=True)
class ModifyOrder:
    token: str
    side: Side
    shares: int


@dataclass(frozen=True)
class SystemEvent:
    timestamp: int
    event_code: str


@dataclass(frozen=True)
class Accepted:
    timestamp: int
    token: str
    side: Side
    shares: int
    stock: str
    price: int
    time_in_force: int
    firm: str
    display: str
    order_ref: int
    capacity: str
    intermarket_sweep: str
    minimum_quantity: int
    cross_type: str
    order_state: str
    bbo_weight: str = " "


@dataclass(frozen=True)
class Replaced:
    timestamp: int
    token: str  # the replacement token
    side: Side
    shares: int
    stock: str
    price: int
    time_in_force: int
    firm: str
    display: str
    order_ref: int
    capacity: str
    intermarket_sweep: str
    minimum_quantity: int
    cross_type: str
    order_state: str
    previous_token: str
    bbo_weight: str = " "


@dataclass(frozen=True)
class Canceled:
    timestamp: int
    token: str
    decrement_shares: int
    reason: str


@dataclass(frozen=True)
class AiqCanceled:
    timestamp: int
    token: str
    decrement_shares: int
    reason: str
    quantity_prevented: int
    execution_price: int
    liquidity_flag: str


@dataclass(frozen=True)
class Executed:
    timestamp: int
    token: str
    executed_shares: int
    execution_price: int
    liquidity_flag: str
    match_number: int


@dataclass(frozen=True)
class BrokenTrade:
    timestamp: int
    token: str
    match_number: int
    reason: str


@dataclass(frozen=True)
class Rejected:
    timestamp: int
    token: str
    reason: str


@dataclass(frozen=True)
class CancelPending:
    timestamp: int
    token: str


@dataclass(frozen=True)
class CancelReject:
    timestamp: int
    token: str


@dataclass(frozen=True)
class OrderPriorityUpdate:
    timestamp: int
    token: str
    price: int
    display: str
    order_ref: int


@dataclass(frozen=True)
class OrderModified:
    timestamp: int
    token: str
    side: Side
    shares: int


InboundMessage = EnterOrder | ReplaceOrder | CancelOrder | ModifyOrder
OutboundMessage = (
    SystemEvent
    | Accepted
    | Replaced
    | Canceled
    | AiqCanceled
    | Executed
    | BrokenTrade
    | Rejected
    | CancelPending
    | CancelReject
    | OrderPriorityUpdate
    | OrderModified
)

# --------------------------------------------------------------------------------------------
# Declared layouts
# --------------------------------------------------------------------------------------------


class _Kind(enum.Enum):
    """How a field is stored and checked; the first item of each value is its struct code
    (a serial number keeps kinds with the same code distinct)."""

    TOKEN = ("14s", 1)
    STOCK = ("8s", 2)
    FIRM = ("4s", 3)
    SIDE = ("1s", 4)
    CHAR = ("1s", 5)  # one character from the field's `allowed` set
    U32 = ("I", 6)  # range lo..hi
    U64 = ("Q", 7)
    PRICE_LIMIT = ("I", 8)  # inbound: 1..MAX_PRICE or MARKET_PRICE
    PRICE_ANY = ("I", 9)  # outbound: 0..MAX_PRICE or MARKET_PRICE
    TIF = ("I", 10)
    TIMESTAMP = ("Q", 11)

    @property
    def fmt(self) -> str:
        code: str = self.value[0]
        return code


@dataclass(frozen=True)
class _Field:
    name: str
    kind: _Kind
    allowed: frozenset[str] = frozenset()
    lo: int = 0
    hi: int = 0xFFFFFFFF
    reason: OuchErrorReason = OuchErrorReason.BAD_VALUE


def _shares(name: str, lo: int = 0, hi: int = MAX_SHARES) -> _Field:
    return _Field(name, _Kind.U32, lo=lo, hi=hi, reason=OuchErrorReason.BAD_SHARES)


def _char(name: str, allowed: frozenset[str]) -> _Field:
    return _Field(name, _Kind.CHAR, allowed=allowed, reason=OuchErrorReason.BAD_ENUM)


_TS = _Field("timestamp", _Kind.TIMESTAMP, reason=OuchErrorReason.BAD_TIMESTAMP)
_TOKEN = _Field("token", _Kind.TOKEN, reason=OuchErrorReason.BAD_TOKEN)
_SIDE = _Field("side", _Kind.SIDE, reason=OuchErrorReason.BAD_SIDE)
_STOCK = _Field("stock", _Kind.STOCK, reason=OuchErrorReason.BAD_STOCK)
_FIRM = _Field("firm", _Kind.FIRM, reason=OuchErrorReason.BAD_FIRM)
_TIF = _Field("time_in_force", _Kind.TIF, reason=OuchErrorReason.BAD_TIME_IN_FORCE)
_OUT_SHARES = _shares("shares", 0, 0xFFFFFFFF)


def _price(name: str, kind: _Kind) -> _Field:
    return _Field(name, kind, reason=OuchErrorReason.BAD_PRICE)


def _u64(name: str) -> _Field:
    return _Field(name, _Kind.U64)


def is_valid_token(token: str) -> bool:
    """1 to 14 ASCII letters and digits (OUCH tokens are case-sensitive, space-padded)."""
    return 1 <= len(token) <= TOKEN_WIDTH and all(ord(c) in _TOKEN_CHARS for c in token)


# Field checks are compiled once per field into a parse (wire value -> Python) and a render
# (Python -> wire value) closure, the same rules both ways, so a message costs one call per
# field. Text fields are checked on their padded wire form: content, then only spaces.
_TEXT_PATTERNS: Final[dict[_Kind, re.Pattern[bytes]]] = {
    _Kind.TOKEN: re.compile(rb"[0-9A-Za-z]+ *"),
    _Kind.STOCK: re.compile(rb"[!-~]+ *"),
    _Kind.FIRM: re.compile(rb"[A-Z0-9]* *"),  # blank: the account's default firm
}
_SIDE_BY_BYTE: Final[dict[bytes, Side]] = {bytes((s,)): Side(s) for s in _SIDES}

_Conv = Callable[[Any], Any]


def _int_range(f: _Field) -> Callable[[int], bool]:
    kind = f.kind
    if kind is _Kind.U32:
        lo, hi = f.lo, f.hi
        return lambda v: lo <= v <= hi
    if kind is _Kind.U64:
        return lambda v: 0 <= v <= 0xFFFFFFFFFFFFFFFF
    if kind is _Kind.TIMESTAMP:
        return lambda v: 0 <= v <= MAX_TIMESTAMP_NS
    if kind is _Kind.PRICE_LIMIT:
        return lambda v: 1 <= v <= MAX_PRICE or v == MARKET_PRICE
    if kind is _Kind.PRICE_ANY:
        return lambda v: 0 <= v <= MAX_PRICE or v == MARKET_PRICE
    special = (TIF_MARKET_HOURS, TIF_SYSTEM_HOURS)
    return lambda v: 0 <= v <= MAX_TIF_SECONDS or v in special


def _compile(f: _Field, type_code: str) -> tuple[_Conv, _Conv]:
    def bad(detail: str) -> OuchError:
        return OuchError(f.reason, detail, field=f.name, msg_type=type_code)

    kind = f.kind
    pattern = _TEXT_PATTERNS.get(kind)
    if pattern is not None:
        width = struct.calcsize(kind.fmt)

        def parse_text(raw: bytes) -> str:
            if pattern.fullmatch(raw) is None:
                raise bad(f"{raw!r} is blank or has characters outside its set")
            return raw.rstrip(b" ").decode("ascii")

        def render_text(value: Any) -> bytes:
            if not isinstance(value, str) or len(value) > width or not value.isascii():
                raise bad(f"{value!r} is not ASCII text of at most {width} characters")
            raw = value.encode("ascii").ljust(width, b" ")
            if pattern.fullmatch(raw) is None:
                raise bad(f"{value!r} is blank or has characters outside its set")
            return raw

        return parse_text, render_text
    if kind is _Kind.SIDE:

        def parse_side(raw: bytes) -> Side:
            side = _SIDE_BY_BYTE.get(raw)
            if side is None:
                raise bad(f"{raw!r} is not B, S, T or E")
            return side

        def render_side(value: Any) -> bytes:
            if not isinstance(value, int) or value not in _SIDES:
                raise bad(f"{value!r} is not B, S, T or E")
            return bytes((int(value),))

        return parse_side, render_side
    if kind is _Kind.CHAR:
        by_byte = {ch.encode("ascii"): ch for ch in f.allowed}
        listing = "".join(sorted(f.allowed))

        def parse_char(raw: bytes) -> str:
            ch = by_byte.get(raw)
            if ch is None:
                raise bad(f"{raw!r} not in {listing!r}")
            return ch

        def render_char(value: Any) -> bytes:
            if not isinstance(value, str) or value not in f.allowed:
                raise bad(f"{value!r} not in {listing!r}")
            return value.encode("ascii")

        return parse_char, render_char
    ok = _int_range(f)

    def parse_int(value: int) -> int:
        if not ok(value):
            raise bad(f"value {value} out of range")
        return value

    def render_int(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(f"{value!r} is not an integer")
        if not ok(value):
            raise bad(f"value {value} out of range")
        return value

    return parse_int, render_int


@dataclass(frozen=True)
class _Spec:
    type_code: str
    cls: type[Any]
    fields: tuple[_Field, ...]
    struct: struct.Struct
    parsers: tuple[_Conv, ...]
    renderers: tuple[_Conv, ...]
    values: Callable[[Any], tuple[Any, ...]]  # the message's field values, in wire order

    @property
    def size(self) -> int:
        return self.struct.size


def _spec(type_code: str, cls: type[Any], *body: _Field) -> _Spec:
    names = [f.name for f in fields(cls)]
    if names != [f.name for f in body] or len(body) < 2:
        # The table and the dataclass must agree, in order (decode builds positionally).
        raise AssertionError(f"OUCH {type_code}: fields {names} vs table")
    compiled = [_compile(f, type_code) for f in body]
    return _Spec(
        type_code,
        cls,
        body,
        struct.Struct(">1s" + "".join(f.kind.fmt for f in body)),
        tuple(p for p, _ in compiled),
        tuple(r for _, r in compiled),
        operator.attrgetter(*names),
    )


_INBOUND_SPECS: Final[tuple[_Spec, ...]] = (
    _spec(
        "O",
        EnterOrder,
        _TOKEN,
        _SIDE,
        _shares("shares", 1),
        _STOCK,
        _price("price", _Kind.PRICE_LIMIT),
        _TIF,
        _FIRM,
        _char("display", DISPLAY_VALUES),
        _char("capacity", CAPACITY_VALUES),
        _char("intermarket_sweep", ISO_VALUES),
        _shares("minimum_quantity"),
        _char("cross_type", CROSS_TYPE_VALUES),
        _char("customer_type", CUSTOMER_TYPE_VALUES),
    ),
    _spec(
        "U",
        ReplaceOrder,
        _Field("existing_token", _Kind.TOKEN, reason=OuchErrorReason.BAD_TOKEN),
        _Field("replacement_token", _Kind.TOKEN, reason=OuchErrorReason.BAD_TOKEN),
        _shares("shares"),
        _price("price", _Kind.PRICE_LIMIT),
        _TIF,
        _char("display", DISPLAY_VALUES),
        _char("intermarket_sweep", ISO_VALUES),
        _shares("minimum_quantity"),
    ),
    _spec("X", CancelOrder, _TOKEN, _shares("shares")),
    _spec("M", ModifyOrder, _TOKEN, _SIDE, _shares("shares")),
)

_OUTBOUND_SPECS: Final[tuple[_Spec, ...]] = (
    _spec("S", SystemEvent, _TS, _char("event_code", EVENT_CODES)),
    _spec(
        "A",
        Accepted,
        _TS,
        _TOKEN,
        _SIDE,
        _OUT_SHARES,
        _STOCK,
        _price("price", _Kind.PRICE_ANY),
        _TIF,
        _FIRM,
        _char("display", DISPLAY_VALUES),
        _u64("order_ref"),
        _char("capacity", CAPACITY_VALUES),
        _char("intermarket_sweep", ISO_VALUES),
        _shares("minimum_quantity", 0, 0xFFFFFFFF),
        _char("cross_type", CROSS_TYPE_VALUES),
        _char("order_state", ORDER_STATE_VALUES),
        _char("bbo_weight", BBO_WEIGHT_VALUES),
    ),
    _spec(
        "U",
        Replaced,
        _TS,
        _TOKEN,
        _SIDE,
        _OUT_SHARES,
        _STOCK,
        _price("price", _Kind.PRICE_ANY),
        _TIF,
        _FIRM,
        _char("display", DISPLAY_VALUES),
        _u64("order_ref"),
        _char("capacity", CAPACITY_VALUES),
        _char("intermarket_sweep", ISO_VALUES),
        _shares("minimum_quantity", 0, 0xFFFFFFFF),
        _char("cross_type", CROSS_TYPE_VALUES),
        _char("order_state", ORDER_STATE_VALUES),
        _Field("previous_token", _Kind.TOKEN, reason=OuchErrorReason.BAD_TOKEN),
        _char("bbo_weight", BBO_WEIGHT_VALUES),
    ),
    _spec(
        "C",
        Canceled,
        _TS,
        _TOKEN,
        _shares("decrement_shares", 0, 0xFFFFFFFF),
        _char("reason", CANCEL_REASONS),
    ),
    _spec(
        "D",
        AiqCanceled,
        _TS,
        _TOKEN,
        _shares("decrement_shares", 0, 0xFFFFFFFF),
        _char("reason", CANCEL_REASONS),
        _shares("quantity_prevented", 0, 0xFFFFFFFF),
        _price("execution_price", _Kind.PRICE_ANY),
        _char("liquidity_flag", LIQUIDITY_FLAGS),
    ),
    _spec(
        "E",
        Executed,
        _TS,
        _TOKEN,
        _shares("executed_shares", 1, 0xFFFFFFFF),
        _price("execution_price", _Kind.PRICE_ANY),
        _char("liquidity_flag", LIQUIDITY_FLAGS),
        _u64("match_number"),
    ),
    _spec(
        "B",
        BrokenTrade,
        _TS,
        _TOKEN,
        _u64("match_number"),
        _char("reason", BROKEN_TRADE_REASONS),
    ),
    _spec("J", Rejected, _TS, _TOKEN, _char("reason", REJECT_REASONS)),
    _spec("P", CancelPending, _TS, _TOKEN),
    _spec("I", CancelReject, _TS, _TOKEN),
    _spec(
        "T",
        OrderPriorityUpdate,
        _TS,
        _TOKEN,
        _price("price", _Kind.PRICE_ANY),
        _char("display", DISPLAY_VALUES),
        _u64("order_ref"),
    ),
    _spec("M", OrderModified, _TS, _TOKEN, _SIDE, _OUT_SHARES),
)

_INBOUND: Final[dict[int, _Spec]] = {ord(s.type_code): s for s in _INBOUND_SPECS}
_OUTBOUND: Final[dict[int, _Spec]] = {ord(s.type_code): s for s in _OUTBOUND_SPECS}
_BY_CLASS: Final[dict[type[Any], _Spec]] = {s.cls: s for s in (*_INBOUND_SPECS, *_OUTBOUND_SPECS)}
INBOUND_TYPES: Final[frozenset[str]] = frozenset(s.type_code for s in _INBOUND_SPECS)
OUTBOUND_TYPES: Final[frozenset[str]] = frozenset(s.type_code for s in _OUTBOUND_SPECS)


def message_length(cls: type[Any]) -> int:
    """Wire length of a message class, type byte included (EnterOrder -> 49)."""
    return _BY_CLASS[cls].size


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


def encode(message: InboundMessage | OutboundMessage) -> bytes:
    """Wire bytes of a message (type byte first). Invalid fields raise OuchError."""
    spec = _BY_CLASS.get(type(message))
    if spec is None:
        raise OuchError(OuchErrorReason.UNKNOWN_TYPE, f"not an OUCH message: {message!r}")
    values = [r(v) for r, v in zip(spec.renderers, spec.values(message), strict=True)]
    return spec.struct.pack(spec.type_code.encode("ascii"), *values)


def _decode(table: dict[int, _Spec], data: bytes | bytearray | memoryview, where: str) -> Any:
    buf = bytes(data)
    if not buf:
        raise OuchError(OuchErrorReason.EMPTY, f"empty {where} message")
    spec = table.get(buf[0])
    if spec is None:
        raise OuchError(OuchErrorReason.UNKNOWN_TYPE, f"{where} type {buf[:1]!r}")
    if len(buf) != spec.size:
        raise OuchError(
            OuchErrorReason.BAD_LENGTH,
            f"{len(buf)} bytes, expected {spec.size}",
            msg_type=spec.type_code,
        )
    raw = spec.struct.unpack(buf)
    return spec.cls(*[p(v) for p, v in zip(spec.parsers, raw[1:], strict=True)])


def decode_inbound(data: bytes | bytearray | memoryview) -> InboundMessage:
    """A client -> venue message (O, U, X, M). Raises OuchError."""
    msg: InboundMessage = _decode(_INBOUND, data, "inbound")
    return msg


def decode_outbound(data: bytes | bytearray | memoryview) -> OutboundMessage:
    """A venue -> client message (S, A, U, C, D, E, B, J, P, I, T, M). Raises OuchError."""
    msg: OutboundMessage = _decode(_OUTBOUND, data, "outbound")
    return msg


class OuchCodec:
    """The codec with counters: every decode/encode and every error by reason is counted."""

    def __init__(self) -> None:
        self.counters = OuchCounters()

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def decode_inbound(self, data: bytes | bytearray | memoryview) -> InboundMessage:
        try:
            msg = decode_inbound(data)
        except OuchError as error:
            self.counters.count_error(error)
            raise
        self._count(self.counters.decoded, _BY_CLASS[type(msg)].type_code)
        return msg

    def decode_outbound(self, data: bytes | bytearray | memoryview) -> OutboundMessage:
        try:
            msg = decode_outbound(data)
        except OuchError as error:
            self.counters.count_error(error)
            raise
        self._count(self.counters.decoded, _BY_CLASS[type(msg)].type_code)
        return msg

    def encode(self, message: InboundMessage | OutboundMessage) -> bytes:
        try:
            data = encode(message)
        except OuchError as error:
            self.counters.count_error(error)
            raise
        self._count(self.counters.encoded, _BY_CLASS[type(message)].type_code)
        return data


# --------------------------------------------------------------------------------------------
# ORDER_REQUEST -> OUCH
# --------------------------------------------------------------------------------------------


def tif_to_ouch(tif: int) -> int:
    """FIX TimeInForce -> OUCH: DAY -> market hours, IOC -> 0. Others cannot be sent."""
    if tif == TimeInForce.DAY:
        return TIF_MARKET_HOURS
    if tif == TimeInForce.IOC:
        return TIF_IOC
    raise OuchError(
        OuchErrorReason.BAD_REQUEST, f"time in force {tif} not supported by OUCH 4.2 day orders"
    )


def tif_from_ouch(tif: int) -> TimeInForce:
    """OUCH -> FIX: 0 is IOC; market/system hours and timed orders all live within the day."""
    return TimeInForce.IOC if tif == TIF_IOC else TimeInForce.DAY


def _text(raw: Any) -> str:
    return bytes(raw).rstrip(b"\x00 ").decode("ascii", errors="replace")


@dataclass(frozen=True)
class OuchOrderDefaults:
    """Enter Order fields ORDER_REQUEST does not carry (per venue session configuration)."""

    firm: str = ""
    display: str = "A"
    capacity: str = "A"
    intermarket_sweep: str = "N"
    cross_type: str = "N"
    customer_type: str = " "


def _limit_price(req: Any) -> int:
    if int(req["ord_type"]) == OrdType.MARKET:
        return MARKET_PRICE
    if int(req["ord_type"]) != OrdType.LIMIT:
        raise OuchError(
            OuchErrorReason.BAD_REQUEST, f"order type {int(req['ord_type'])} not supported"
        )
    price = int(req["price"])
    if not 1 <= price <= MAX_PRICE:
        raise OuchError(OuchErrorReason.BAD_PRICE, f"limit price {price} out of range")
    return price


def request_to_ouch(
    req: Any,
    token: str,
    orig_token: str = "",
    *,
    cum_qty: int = 0,
    defaults: OuchOrderDefaults = OuchOrderDefaults(),
) -> InboundMessage:
    """One ORDER_REQUEST record -> the OUCH message that carries it.

    NEW -> Enter Order under `token`. CANCEL -> Cancel Order of `orig_token` to 0 shares.
    REPLACE -> Replace Order of `orig_token` by `token`; ORDER_REQUEST's qty is the new total
    (FIX semantics) while OUCH's Shares is what stays open, so `cum_qty` (already filled on the
    original) is subtracted. Raises OuchError for what OUCH cannot express."""
    if getattr(req, "dtype", None) != ORDER_REQUEST.dtype:
        raise OuchError(OuchErrorReason.BAD_REQUEST, "not an ORDER_REQUEST record")
    action = int(req["action"])
    if action == OrderAction.NEW:
        side = int(req["side"])
        if side not in _SIDES:
            raise OuchError(OuchErrorReason.BAD_SIDE, f"side {side}")
        return EnterOrder(
            token=token,
            side=Side(side),
            shares=int(req["qty"]),
            stock=_text(req["symbol"]),
            price=_limit_price(req),
            time_in_force=tif_to_ouch(int(req["time_in_force"])),
            firm=defaults.firm,
            display=defaults.display,
            capacity=defaults.capacity,
            intermarket_sweep=defaults.intermarket_sweep,
            minimum_quantity=0,
            cross_type=defaults.cross_type,
            customer_type=defaults.customer_type,
        )
    if action == OrderAction.CANCEL:
        return CancelOrder(token=orig_token, shares=0)
    if action == OrderAction.REPLACE:
        open_shares = int(req["qty"]) - cum_qty
        if open_shares <= 0:
            raise OuchError(
                OuchErrorReason.BAD_REQUEST,
                f"replace to {int(req['qty'])} with {cum_qty} already filled leaves nothing open",
            )
        return ReplaceOrder(
            existing_token=orig_token,
            replacement_token=token,
            shares=open_shares,
            price=_limit_price(req),
            time_in_force=tif_to_ouch(int(req["time_in_force"])),
            display=defaults.display,
            intermarket_sweep=defaults.intermarket_sweep,
            minimum_quantity=0,
        )
    raise OuchError(OuchErrorReason.BAD_REQUEST, f"order action {action}")


def requests_to_ouch(
    reqs: npt.NDArray[np.void],
    tokens: Sequence[str],
    orig_tokens: Sequence[str] | None = None,
    *,
    cum_qtys: Sequence[int] | None = None,
    defaults: OuchOrderDefaults = OuchOrderDefaults(),
) -> list[bytes | OuchError]:
    """A batch of ORDER_REQUEST records -> wire bytes, one entry per record; a request OUCH
    cannot carry yields its OuchError in place (the caller rejects that order, never drops it)."""
    n = len(reqs)
    if len(tokens) != n or (orig_tokens is not None and len(orig_tokens) != n):
        raise ValueError("tokens and orig_tokens must match the batch length")
    out: list[bytes | OuchError] = []
    for i in range(n):
        try:
            msg = request_to_ouch(
                reqs[i],
                tokens[i],
                orig_tokens[i] if orig_tokens is not None else "",
                cum_qty=cum_qtys[i] if cum_qtys is not None else 0,
                defaults=defaults,
            )
            out.append(encode(msg))
        except OuchError as error:
            out.append(error)
    return out


# --------------------------------------------------------------------------------------------
# OUCH outbound -> EXECUTION_REPORT
# --------------------------------------------------------------------------------------------


_Row = tuple[Any, ...]
"""One EXECUTION_REPORT record as a tuple in field order (`OuchOrderTracker._report`)."""
_REPORT_TYPE_ID: Final = EXECUTION_REPORT.type_id
_REPORT_VERSION: Final = EXECUTION_REPORT.version


def _records(rows: Sequence[_Row]) -> npt.NDArray[np.void]:
    # Zeroed records (padding included), then every field of every row in one assignment.
    out = np.zeros(len(rows), dtype=EXECUTION_REPORT.dtype)
    if rows:
        out[:] = rows
    return out


def average_price(notional: int, qty: int) -> int:
    """notional / qty rounded half away from zero, in exact integer arithmetic (1e-4 units).

    `notional` is the sum of price * quantity over fills (price in 1e-4 units)."""
    if qty <= 0:
        return 0
    magnitude = (2 * abs(notional) + qty) // (2 * qty)
    return magnitude if notional >= 0 else -magnitude


@dataclass
class _Order:
    token: str
    order_id: int
    cl_ord_id: bytes
    side: int
    symbol: bytes
    price: int
    order_qty: int
    leaves_qty: int
    instrument_id: int
    account_id: int
    strategy_id: int
    session_id: int
    orig_cl_ord_id: bytes = b""
    venue_order_id: int = 0
    cum_qty: int = 0
    notional: int = 0
    status: OrdStatus = OrdStatus.PENDING_NEW
    closed: bool = False
    replaces: str = ""  # pending replacement: token of the order it replaces
    pending_cancel: tuple[int, bytes] | None = None  # (cancel request's order id, cl_ord_id)
    fills: OrderedDict[int, tuple[int, int]] = field(default_factory=OrderedDict)


class OuchOrderTracker:
    """Follows every order of one OUCH session by token, turning outbound messages into
    EXECUTION_REPORT records (a state machine: `on_request`, `on_message(msg, now_ns)`).

    Identity on reports: `order_id`/`cl_ord_id` are the order's own (after a replace, the
    replacement's); a report caused by a cancel request carries that request's `cl_ord_id` and
    the order's as `orig_cl_ord_id`. A refused cancel or replace (Cancel Reject, or Rejected for
    a replacement token) is an exec_type REJECTED report whose ord_status is *not* REJECTED:
    the order itself is unchanged.

    Bounded: at most `max_orders` tokens are remembered; closed orders are forgotten oldest
    first, and when every remembered order is still open a new one is refused (TRACKER_FULL).
    Each order keeps its last `max_fills` fills so a Broken Trade can be reversed.
    """

    def __init__(
        self,
        *,
        venue_id: int = 0,
        midnight_realtime_ns: int = 0,
        max_orders: int = 100_000,
        max_fills: int = 256,
    ) -> None:
        self.venue_id = venue_id
        self.midnight_realtime_ns = midnight_realtime_ns
        self.max_orders = max_orders
        self.max_fills = max_fills
        self.counters = OuchCounters()
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._replacing: dict[str, str] = {}  # token -> its pending replacement's token
        self._seq = 0

    def __len__(self) -> int:
        return len(self._orders)

    def state(self) -> dict[str, Any]:
        """The whole tracker as JSON-ready data (snapshots); `from_state` rebuilds it."""

        def order(o: _Order) -> dict[str, Any]:
            d = {f.name: getattr(o, f.name) for f in fields(_Order)}
            d["cl_ord_id"] = o.cl_ord_id.hex()
            d["symbol"] = o.symbol.hex()
            d["orig_cl_ord_id"] = o.orig_cl_ord_id.hex()
            d["status"] = int(o.status)
            d["pending_cancel"] = (
                None
                if o.pending_cancel is None
                else [o.pending_cancel[0], o.pending_cancel[1].hex()]
            )
            d["fills"] = [[k, v[0], v[1]] for k, v in o.fills.items()]
            return d

        return {
            "venue_id": self.venue_id,
            "midnight_realtime_ns": self.midnight_realtime_ns,
            "max_orders": self.max_orders,
            "max_fills": self.max_fills,
            "seq": self._seq,
            "orders": [order(o) for o in self._orders.values()],
            "closed": list(self._closed),
            "replacing": dict(self._replacing),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OuchOrderTracker:
        t = cls(
            venue_id=int(state["venue_id"]),
            midnight_realtime_ns=int(state["midnight_realtime_ns"]),
            max_orders=int(state["max_orders"]),
            max_fills=int(state["max_fills"]),
        )
        t._seq = int(state["seq"])
        for saved in state["orders"]:
            d = dict(saved)
            for name in ("cl_ord_id", "symbol", "orig_cl_ord_id"):
                d[name] = bytes.fromhex(d[name])
            d["status"] = OrdStatus(d["status"])
            pc = d["pending_cancel"]
            d["pending_cancel"] = None if pc is None else (int(pc[0]), bytes.fromhex(pc[1]))
            d["fills"] = OrderedDict((int(k), (int(q), int(px))) for k, q, px in d["fills"])
            o = _Order(**d)
            t._orders[o.token] = o
        t._closed = OrderedDict((tok, None) for tok in state["closed"])
        t._replacing = dict(state["replacing"])
        return t

    def order_state(self, token: str) -> tuple[OrdStatus, int, int] | None:
        """(status, cum_qty, leaves_qty) of a remembered token."""
        o = self._orders.get(token)
        return None if o is None else (o.status, o.cum_qty, o.leaves_qty)

    def _error(self, reason: OuchErrorReason, detail: str) -> OuchError:
        error = OuchError(reason, detail)
        self.counters.count_error(error)
        return error

    def _remember(self, order: _Order) -> None:
        if order.token in self._orders:
            raise self._error(OuchErrorReason.DUPLICATE_TOKEN, f"token {order.token} in use")
        while len(self._orders) >= self.max_orders:
            if not self._closed:
                raise self._error(
                    OuchErrorReason.TRACKER_FULL, f"{self.max_orders} open orders tracked"
                )
            old, _ = self._closed.popitem(last=False)
            self._orders.pop(old, None)
        self._orders[order.token] = order

    def _close(self, order: _Order, status: OrdStatus) -> None:
        order.status = status
        order.closed = True
        order.leaves_qty = 0
        self._closed[order.token] = None

    def on_request(
        self,
        req: Any,
        token: str,
        orig_token: str = "",
        *,
        defaults: OuchOrderDefaults = OuchOrderDefaults(),
    ) -> bytes:
        """Record an ORDER_REQUEST about to be sent and return its OUCH bytes.

        NEW and REPLACE need a fresh `token`; CANCEL and REPLACE name the order acted on by
        `orig_token`. Raises OuchError (counted) when the request cannot be sent."""
        action = int(req["action"]) if getattr(req, "dtype", None) == ORDER_REQUEST.dtype else 0
        orig = self._orders.get(orig_token) if orig_token else None
        if action in (OrderAction.CANCEL, OrderAction.REPLACE) and (orig is None or orig.closed):
            raise self._error(OuchErrorReason.UNKNOWN_TOKEN, f"no open order {orig_token!r}")
        try:
            msg = request_to_ouch(
                req,
                token,
                orig_token,
                cum_qty=orig.cum_qty if orig is not None else 0,
                defaults=defaults,
            )
            data = encode(msg)
        except OuchError as error:
            self.counters.count_error(error)
            raise
        if action == OrderAction.CANCEL:
            assert orig is not None
            orig.pending_cancel = (int(req["order_id"]), bytes(req["cl_ord_id"]))
            return data
        qty = int(req["qty"])
        order = _Order(
            token=token,
            order_id=int(req["order_id"]),
            cl_ord_id=bytes(req["cl_ord_id"]),
            side=int(req["side"]),
            symbol=bytes(req["symbol"]),
            price=int(req["price"]),
            order_qty=qty,
            leaves_qty=qty,
            instrument_id=int(req["instrument_id"]),
            account_id=int(req["account_id"]),
            strategy_id=int(req["strategy_id"]),
            session_id=int(req["session_id"]),
        )
        if action == OrderAction.REPLACE:
            assert orig is not None
            order.replaces = orig_token
            order.orig_cl_ord_id = orig.cl_ord_id
            order.side = orig.side
            order.symbol = orig.symbol
        self._remember(order)
        if action == OrderAction.REPLACE:
            self._replacing[orig_token] = token
        self._count_encoded(msg)
        return data

    def _count_encoded(self, msg: InboundMessage) -> None:
        code = _BY_CLASS[type(msg)].type_code
        self.counters.encoded[code] = self.counters.encoded.get(code, 0) + 1

    # -- reports -------------------------------------------------------------------------------

    def _report(
        self,
        order: _Order,
        exec_type: ExecType,
        timestamp: int,
        now_ns: int,
        *,
        status: OrdStatus | None = None,
        last_qty: int = 0,
        last_px: int = 0,
        exec_id: int = 0,
        reject: RejectReason = RejectReason.NONE,
        cl_ord_id: bytes | None = None,
        orig_cl_ord_id: bytes | None = None,
        order_id: int | None = None,
    ) -> _Row:
        # One tuple in EXECUTION_REPORT field order (`_records` writes a batch of them into
        # zeroed records at once): field-by-field stores into a numpy record cost ~15 us.
        self._seq += 1
        return (
            _REPORT_TYPE_ID,
            _REPORT_VERSION,
            0,
            self._seq,
            now_ns,
            order.order_id if order_id is None else order_id,
            order.venue_order_id,
            exec_id,
            order.price,
            order.order_qty,
            last_px,
            last_qty,
            order.cum_qty,
            order.leaves_qty,
            average_price(order.notional, order.cum_qty),
            order.instrument_id,
            order.account_id,
            order.strategy_id,
            order.session_id,
            self.venue_id,
            int(exec_type),
            int(order.status if status is None else status),
            order.side,
            int(reject),
            order.symbol,
            order.token.encode("ascii"),
            order.cl_ord_id if cl_ord_id is None else cl_ord_id,
            order.orig_cl_ord_id if orig_cl_ord_id is None else orig_cl_ord_id,
            self.midnight_realtime_ns + timestamp,
        )

    def _live_status(self, order: _Order) -> OrdStatus:
        return OrdStatus.PARTIALLY_FILLED if order.cum_qty > 0 else OrdStatus.NEW

    def on_messages(self, messages: Iterable[OutboundMessage], now_ns: int) -> npt.NDArray[np.void]:
        """A batch of outbound messages -> their EXECUTION_REPORT records, in order. Messages
        that cannot be mapped are counted (counters.errors) and skipped."""
        rows: list[_Row] = []
        for msg in messages:
            try:
                rows.extend(self._rows(msg, now_ns))
            except OuchError:
                continue
        return _records(rows)

    def on_message(self, msg: OutboundMessage, now_ns: int) -> npt.NDArray[np.void]:
        """One outbound message -> 0..2 EXECUTION_REPORT records. Raises OuchError (counted)
        for a token or match number it does not know."""
        return _records(self._rows(msg, now_ns))

    def _rows(self, msg: OutboundMessage, now_ns: int) -> list[_Row]:
        """`on_message` as report tuples (see `_report`)."""
        if isinstance(msg, SystemEvent):
            return []
        if isinstance(msg, Replaced):
            return self._on_replaced(msg, now_ns)
        order = self._orders.get(msg.token)
        if order is None:
            raise self._error(OuchErrorReason.UNKNOWN_TOKEN, f"{type(msg).__name__} {msg.token!r}")
        ts = msg.timestamp
        if isinstance(msg, Accepted):
            order.venue_order_id = msg.order_ref
            order.status = OrdStatus.NEW
            order.leaves_qty = msg.shares
            return [self._report(order, ExecType.NEW, ts, now_ns)]
        if isinstance(msg, Executed):
            return self._on_executed(order, msg, now_ns)
        if isinstance(msg, Canceled | AiqCanceled):
            return self._on_canceled(order, msg.decrement_shares, ts, now_ns)
        if isinstance(msg, Rejected):
            return self._on_rejected(order, ts, now_ns)
        if isinstance(msg, CancelPending):
            order.status = OrdStatus.PENDING_CANCEL
            return [self._report(order, ExecType.PENDING_CANCEL, ts, now_ns, **self._cxl(order))]
        if isinstance(msg, CancelReject):
            ids = self._cxl(order)
            order.pending_cancel = None
            if order.status is OrdStatus.PENDING_CANCEL:
                order.status = self._live_status(order)
            return [
                self._report(
                    order, ExecType.REJECTED, ts, now_ns, reject=RejectReason.VENUE_REJECT, **ids
                )
            ]
        if isinstance(msg, BrokenTrade):
            return self._on_broken(order, msg, now_ns)
        if isinstance(msg, OrderPriorityUpdate):
            order.price = msg.price
            order.venue_order_id = msg.order_ref
            return [self._report(order, ExecType.RESTATED, ts, now_ns)]
        if isinstance(msg, OrderModified):
            order.side = int(msg.side)
            order.leaves_qty = msg.shares
            order.order_qty = order.cum_qty + msg.shares
            return [self._report(order, ExecType.RESTATED, ts, now_ns)]
        raise self._error(OuchErrorReason.UNKNOWN_TYPE, repr(msg))  # pragma: no cover

    def _cxl(self, order: _Order) -> dict[str, Any]:
        if order.pending_cancel is None:
            return {}
        _oid, cl = order.pending_cancel
        return {"cl_ord_id": cl, "orig_cl_ord_id": order.cl_ord_id}

    def _on_executed(self, order: _Order, msg: Executed, now_ns: int) -> list[_Row]:
        qty, px = msg.executed_shares, msg.execution_price
        order.cum_qty += qty
        order.notional += qty * px
        order.leaves_qty = max(order.leaves_qty - qty, 0)
        order.fills[msg.match_number] = (qty, px)
        while len(order.fills) > self.max_fills:
            order.fills.popitem(last=False)
        if order.leaves_qty == 0:
            self._close(order, OrdStatus.FILLED)
        else:
            order.status = (
                OrdStatus.PENDING_CANCEL
                if order.status is OrdStatus.PENDING_CANCEL
                else OrdStatus.PARTIALLY_FILLED
            )
        report = self._report(
            order,
            ExecType.TRADE,
            msg.timestamp,
            now_ns,
            last_qty=qty,
            last_px=px,
            exec_id=msg.match_number,
        )
        if not order.closed:
            return [report]
        return [report, *self._orphaned_replacement(order, msg.timestamp, now_ns)]

    def _reject_replacement(
        self, pending: _Order, orig: _Order | None, ts: int, now_ns: int
    ) -> list[_Row]:
        """Report a replace that will never happen; the figures are the original's."""
        self._replacing.pop(pending.replaces, None)
        self._close(pending, OrdStatus.REJECTED)
        status = OrdStatus.REJECTED
        if orig is not None:
            status = orig.status
            pending.cum_qty, pending.notional = orig.cum_qty, orig.notional
            pending.leaves_qty, pending.order_qty = orig.leaves_qty, orig.order_qty
        reject = RejectReason.VENUE_REJECT
        return [self._report(pending, ExecType.REJECTED, ts, now_ns, status=status, reject=reject)]

    def _orphaned_replacement(self, order: _Order, ts: int, now_ns: int) -> list[_Row]:
        # The venue silently ignores a replace of an order that is no longer live.
        token = self._replacing.pop(order.token, None)
        pending = self._orders.get(token) if token is not None else None
        if pending is None or pending.closed:
            return []
        return self._reject_replacement(pending, order, ts, now_ns)

    def _on_canceled(self, order: _Order, decrement: int, ts: int, now_ns: int) -> list[_Row]:
        ids = self._cxl(order)
        order.leaves_qty = max(order.leaves_qty - decrement, 0)
        order.order_qty = order.cum_qty + order.leaves_qty
        if order.leaves_qty > 0:
            # A size reduction: the order lives on, smaller.
            order.status = self._live_status(order)
            order.pending_cancel = None
            return [self._report(order, ExecType.RESTATED, ts, now_ns, **ids)]
        self._close(order, OrdStatus.CANCELED)
        out = [self._report(order, ExecType.CANCELED, ts, now_ns, **ids)]
        order.pending_cancel = None
        return out + self._orphaned_replacement(order, ts, now_ns)

    def _on_rejected(self, order: _Order, ts: int, now_ns: int) -> list[_Row]:
        if order.replaces:
            return self._reject_replacement(order, self._orders.get(order.replaces), ts, now_ns)
        self._close(order, OrdStatus.REJECTED)
        return [
            self._report(order, ExecType.REJECTED, ts, now_ns, reject=RejectReason.VENUE_REJECT)
        ]

    def _on_replaced(self, msg: Replaced, now_ns: int) -> list[_Row]:
        new = self._orders.get(msg.token)
        old = self._orders.get(msg.previous_token)
        if new is None or new.closed or new.replaces != msg.previous_token or old is None:
            raise self._error(
                OuchErrorReason.UNKNOWN_TOKEN,
                f"Replaced {msg.previous_token!r} -> {msg.token!r} was not requested",
            )
        new.cum_qty, new.notional = old.cum_qty, old.notional
        new.fills = old.fills
        new.leaves_qty = msg.shares
        new.order_qty = new.cum_qty + msg.shares
        new.price = msg.price
        new.venue_order_id = msg.order_ref
        new.replaces = ""
        self._replacing.pop(old.token, None)
        self._close(old, OrdStatus.REPLACED)
        if msg.shares == 0 or msg.order_state == "D":
            self._close(new, OrdStatus.FILLED if new.cum_qty else OrdStatus.CANCELED)
        else:
            new.status = self._live_status(new)
        return [self._report(new, ExecType.REPLACED, msg.timestamp, now_ns)]

    def _on_broken(self, order: _Order, msg: BrokenTrade, now_ns: int) -> list[_Row]:
        fill = order.fills.pop(msg.match_number, None)
        if fill is None:
            raise self._error(
                OuchErrorReason.UNKNOWN_MATCH, f"match {msg.match_number} on {order.token}"
            )
        qty, px = fill
        order.cum_qty -= qty
        order.notional -= qty * px
        if not order.closed:
            order.status = self._live_status(order)
        elif order.status is OrdStatus.FILLED:
            # The broken shares do not come back to the book: the order stays done, with less.
            order.order_qty = order.cum_qty
            if order.cum_qty == 0:
                order.status = OrdStatus.CANCELED
        return [
            self._report(
                order,
                ExecType.TRADE_CANCEL,
                msg.timestamp,
                now_ns,
                last_qty=qty,
                last_px=px,
                exec_id=msg.match_number,
            )
        ]
