"""NASDAQ TotalView-ITCH 5.0: wire formats, encoder, and the batch decoders.

This module owns:

* the wire layout of every ITCH 5.0 message type, declared once in `MESSAGES` (one
  `MessageSpec` per type: packed big-endian numpy dtype with explicit offsets whose itemsize is
  the spec length, and the mapping of wire fields onto the normalised `ITCH_EVENT` fields);
* the encoder: `pack_events` (normalised ITCH_EVENT order/trade records -> wire bytes in `raw`),
  `build` and the named builders for every other message type (`system_event`,
  `stock_directory`, ...), and `frame` (2-byte big-endian length prefixes, the framing of
  MoldUDP64 message blocks and of NASDAQ's binary files);
* `ItchDecoder`, the Python face of the C batch decoder `csrc/itch.c` (module `tectra._itch`):
  one C call per buffer or per receive batch of MoldUDP64 message blocks, into a reusable
  output array;
* `ReferenceDecoder` / `decode_reference`, a pure Python/numpy decoder with the same contract,
  used by tests to check the C path field by field and by perf as the baseline;
* `synthetic_mix`, a seeded NASDAQ-like message stream for tests and benchmarks.

Malformed wire data never raises: it is counted per cause in the decoder's `stats` and skipped
(see docs/itch.md for the taxonomy). `ItchError` and its subclasses are raised only for caller
misuse: wrong dtypes, values that do not fit their wire field, a block outside its buffer.

Imports `tectra.schema` and (lazily, inside `ItchDecoder`) `tectra._itch` only.
"""

from __future__ import annotations

import errno
import importlib
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import ITCH_EVENT

__all__ = [
    "COUNTERS",
    "EVENT_DTYPE",
    "MAX_MESSAGE_LENGTH",
    "MESSAGES",
    "MESSAGE_LENGTHS",
    "MIN_FRAMED_LENGTH",
    "ORDER_CODES",
    "WIRE_DTYPES",
    "ItchArgumentError",
    "ItchDecoder",
    "ItchError",
    "ItchUnavailableError",
    "MessageSpec",
    "ReferenceDecoder",
    "WireField",
    "build",
    "decode_reference",
    "dlcr",
    "frame",
    "ipo_quoting",
    "luld_collar",
    "message_spec",
    "mwcb_decline",
    "mwcb_status",
    "noii",
    "operational_halt",
    "pack_events",
    "participant_position",
    "reg_sho",
    "rpii",
    "stock_directory",
    "symbol_table",
    "synthetic_mix",
    "system_event",
    "trading_action",
    "wire_view",
]

Records = npt.NDArray[np.void]
Bytes = npt.NDArray[np.uint8]
BufferLike = bytes | bytearray | memoryview | npt.NDArray[Any]

EVENT_DTYPE: Final[np.dtype[np.void]] = ITCH_EVENT.dtype


class ItchError(Exception):
    """Base of every ITCH codec error. Raised for caller misuse only, never for bad wire data."""


class ItchArgumentError(ItchError, ValueError):
    """A bad argument: wrong dtype or shape, a value that does not fit its wire field, an
    unknown message type, a block outside its buffer."""


class ItchUnavailableError(ItchError, ImportError):
    """The compiled decoder `tectra._itch` is not built (run `python csrc/itch_build.py`)."""


# --------------------------------------------------------------------------------------------
# Wire layouts: the one table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireField:
    """One field of a message on the wire: numpy format (big-endian integers `>uN`, ASCII
    `Sn`), byte offset from the message type byte, meaning."""

    name: str
    fmt: str
    offset: int
    doc: str


# Every message starts with type, stock locate, tracking number and a 6-byte timestamp. numpy
# has no 48-bit integer, so the timestamp is declared as its high 16 and low 32 bits.
_COMMON: Final[tuple[WireField, ...]] = (
    WireField("msg_type", "S1", 0, "Message type"),
    WireField("stock_locate", ">u2", 1, "Stock locate code (0 for market-wide messages)"),
    WireField("tracking", ">u2", 3, "NASDAQ internal tracking number"),
    WireField("ts_hi", ">u2", 5, "Timestamp, ns since midnight: high 16 of 48 bits"),
    WireField("ts_lo", ">u4", 7, "Timestamp, ns since midnight: low 32 of 48 bits"),
)
BODY_OFFSET: Final[int] = 11


@dataclass(frozen=True)
class MessageSpec:
    """One ITCH 5.0 message type.

    `normalised` maps ITCH_EVENT fields to the wire fields they are copied from (single-byte
    ASCII codes are stored as their code point); every other wire field is reachable through
    `raw` with `wire_view`. Construction checks that the fields tile the message exactly and
    that the dtype's itemsize is the spec length.
    """

    code: str
    name: str
    title: str
    length: int
    body: tuple[WireField, ...]
    normalised: Mapping[str, str] = field(default_factory=dict)
    dtype: np.dtype[np.void] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = self.fields
        pos = 0
        for f in fields:
            size = np.dtype(f.fmt).itemsize
            if f.offset != pos:
                raise ItchError(f"ITCH {self.code}.{f.name}: offset {f.offset}, expected {pos}")
            pos += size
        if pos != self.length:
            raise ItchError(f"ITCH {self.code}: fields end at {pos}, spec length {self.length}")
        names = {f.name for f in fields}
        missing = set(self.normalised.values()) - names
        if missing or not set(self.normalised) <= set(EVENT_DTYPE.names or ()):
            raise ItchError(f"ITCH {self.code}: bad normalised mapping {dict(self.normalised)}")
        dtype = np.dtype(
            {
                "names": [f.name for f in fields],
                "formats": [f.fmt for f in fields],
                "offsets": [f.offset for f in fields],
                "itemsize": self.length,
            }
        )
        object.__setattr__(self, "dtype", dtype)

    @property
    def fields(self) -> tuple[WireField, ...]:
        return (*_COMMON, *self.body)

    @property
    def type_byte(self) -> int:
        return ord(self.code)


def _w(name: str, fmt: str, offset: int, doc: str) -> WireField:
    return WireField(name, fmt, offset, doc)


_PX4 = "Price(4): 4 implied decimals, Tectra's 1e-4 scale"
_PX8 = "Price(8): 8 implied decimals"
_STOCK = "Stock symbol, ASCII, space-padded to 8"
_ORDER_NORM: Final[Mapping[str, str]] = {
    "order_ref": "order_ref",
    "side": "side",
    "shares": "shares",
    "price": "price",
}

_SPECS: Final[tuple[MessageSpec, ...]] = (
    MessageSpec(
        "S",
        "system_event",
        "System Event",
        12,
        (_w("event_code", "S1", 11, "O/S/Q/M/E/C: start/end of messages, system, market hours"),),
        {"aux": "event_code"},
    ),
    MessageSpec(
        "R",
        "stock_directory",
        "Stock Directory",
        39,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("market_category", "S1", 19, "Listing market: Q/G/S/N/A/P/Z/V or space"),
            _w("financial_status", "S1", 20, "Financial status indicator (N: normal)"),
            _w("round_lot_size", ">u4", 21, "Shares in a round lot"),
            _w("round_lots_only", "S1", 25, "Y: only round lots accepted"),
            _w("issue_classification", "S1", 26, "Security class (C: common stock, ...)"),
            _w("issue_subtype", "S2", 27, "Issue sub-type, space-padded (Z: not applicable)"),
            _w("authenticity", "S1", 29, "P: live/production, T: test"),
            _w("short_sale_threshold", "S1", 30, "Y/N, space: not available"),
            _w("ipo_flag", "S1", 31, "Y/N, space: not available"),
            _w("luld_tier", "S1", 32, "LULD reference price tier: 1, 2 or space"),
            _w("etp_flag", "S1", 33, "Exchange-traded product: Y/N, space: not available"),
            _w("etp_leverage", ">u4", 34, "ETP leverage factor"),
            _w("inverse", "S1", 38, "Y: inverse ETP"),
        ),
    ),
    MessageSpec(
        "H",
        "trading_action",
        "Stock Trading Action",
        25,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("trading_state", "S1", 19, "H halted, P paused, Q quotation only, T trading"),
            _w("reserved", "S1", 20, "Reserved"),
            _w("reason", "S4", 21, "Trading action reason code, space-padded"),
        ),
        {"aux": "trading_state"},
    ),
    MessageSpec(
        "Y",
        "reg_sho",
        "Reg SHO Short Sale Price Test Restricted Indicator",
        20,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("reg_sho_action", "S1", 19, "0 none, 1 in effect (intraday), 2 remains in effect"),
        ),
    ),
    MessageSpec(
        "L",
        "participant_position",
        "Market Participant Position",
        26,
        (
            _w("mpid", "S4", 11, "Market participant identifier"),
            _w("stock", "S8", 15, _STOCK),
            _w("primary_market_maker", "S1", 23, "Y/N"),
            _w(
                "market_maker_mode", "S1", 24, "N normal, P passive, S syndicate, R pre-, L penalty"
            ),
            _w("participant_state", "S1", 25, "A active, E excused, W withdrawn, S suspended, D"),
        ),
    ),
    MessageSpec(
        "V",
        "mwcb_decline",
        "MWCB Decline Level",
        35,
        (
            _w("level1", ">u8", 11, f"Level 1 decline price, {_PX8}"),
            _w("level2", ">u8", 19, f"Level 2 decline price, {_PX8}"),
            _w("level3", ">u8", 27, f"Level 3 decline price, {_PX8}"),
        ),
    ),
    MessageSpec(
        "W",
        "mwcb_status",
        "MWCB Status",
        12,
        (_w("breached_level", "S1", 11, "MWCB level breached: 1, 2 or 3"),),
    ),
    MessageSpec(
        "K",
        "ipo_quoting",
        "IPO Quoting Period Update",
        28,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("release_time", ">u4", 19, "IPO quotation release time, seconds since midnight"),
            _w("release_qualifier", "S1", 23, "A anticipated, C cancelled/postponed"),
            _w("ipo_price", ">u4", 24, f"IPO price, {_PX4}"),
        ),
    ),
    MessageSpec(
        "J",
        "luld_collar",
        "LULD Auction Collar",
        35,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("reference_price", ">u4", 19, f"Auction collar reference price, {_PX4}"),
            _w("upper_price", ">u4", 23, f"Upper auction collar price, {_PX4}"),
            _w("lower_price", ">u4", 27, f"Lower auction collar price, {_PX4}"),
            _w("extension", ">u4", 31, "Number of auction collar extensions"),
        ),
    ),
    MessageSpec(
        "h",
        "operational_halt",
        "Operational Halt",
        21,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("market_code", "S1", 19, "Q NASDAQ, B BX, X PSX"),
            _w("halt_action", "S1", 20, "H halted, T resumed"),
        ),
    ),
    MessageSpec(
        "A",
        "add_order",
        "Add Order (no MPID attribution)",
        36,
        (
            _w("order_ref", ">u8", 11, "Order reference number, unique for the day"),
            _w("side", "S1", 19, "B buy, S sell"),
            _w("shares", ">u4", 20, "Displayed shares"),
            _w("stock", "S8", 24, _STOCK),
            _w("price", ">u4", 32, f"Limit price, {_PX4}"),
        ),
        _ORDER_NORM,
    ),
    MessageSpec(
        "F",
        "add_order_mpid",
        "Add Order with MPID Attribution",
        40,
        (
            _w("order_ref", ">u8", 11, "Order reference number, unique for the day"),
            _w("side", "S1", 19, "B buy, S sell"),
            _w("shares", ">u4", 20, "Displayed shares"),
            _w("stock", "S8", 24, _STOCK),
            _w("price", ">u4", 32, f"Limit price, {_PX4}"),
            _w("attribution", "S4", 36, "MPID of the entering firm"),
        ),
        _ORDER_NORM,
    ),
    MessageSpec(
        "E",
        "order_executed",
        "Order Executed",
        31,
        (
            _w("order_ref", ">u8", 11, "Order executed"),
            _w("executed_shares", ">u4", 19, "Shares executed"),
            _w("match_number", ">u8", 23, "Match number"),
        ),
        {"order_ref": "order_ref", "shares": "executed_shares", "ref2": "match_number"},
    ),
    MessageSpec(
        "C",
        "order_executed_price",
        "Order Executed With Price",
        36,
        (
            _w("order_ref", ">u8", 11, "Order executed"),
            _w("executed_shares", ">u4", 19, "Shares executed"),
            _w("match_number", ">u8", 23, "Match number"),
            _w("printable", "S1", 31, "Y printable, N non-printable"),
            _w("execution_price", ">u4", 32, f"Execution price, {_PX4}"),
        ),
        {
            "order_ref": "order_ref",
            "shares": "executed_shares",
            "ref2": "match_number",
            "aux": "printable",
            "price": "execution_price",
        },
    ),
    MessageSpec(
        "X",
        "order_cancel",
        "Order Cancel",
        23,
        (
            _w("order_ref", ">u8", 11, "Order reduced"),
            _w("cancelled_shares", ">u4", 19, "Shares removed from the order"),
        ),
        {"order_ref": "order_ref", "shares": "cancelled_shares"},
    ),
    MessageSpec(
        "D",
        "order_delete",
        "Order Delete",
        19,
        (_w("order_ref", ">u8", 11, "Order deleted"),),
        {"order_ref": "order_ref"},
    ),
    MessageSpec(
        "U",
        "order_replace",
        "Order Replace",
        35,
        (
            _w("original_order_ref", ">u8", 11, "Order replaced"),
            _w("new_order_ref", ">u8", 19, "Reference of the replacement order"),
            _w("shares", ">u4", 27, "New displayed shares"),
            _w("price", ">u4", 31, f"New price, {_PX4}"),
        ),
        {
            "order_ref": "original_order_ref",
            "ref2": "new_order_ref",
            "shares": "shares",
            "price": "price",
        },
    ),
    MessageSpec(
        "P",
        "trade",
        "Trade (non-cross)",
        44,
        (
            _w("order_ref", ">u8", 11, "Non-displayed order executed (0 since 2010)"),
            _w("side", "S1", 19, "B buy, S sell"),
            _w("shares", ">u4", 20, "Shares executed"),
            _w("stock", "S8", 24, _STOCK),
            _w("price", ">u4", 32, f"Trade price, {_PX4}"),
            _w("match_number", ">u8", 36, "Match number"),
        ),
        {**_ORDER_NORM, "ref2": "match_number"},
    ),
    MessageSpec(
        "Q",
        "cross_trade",
        "Cross Trade",
        40,
        (
            _w("shares", ">u8", 11, "Shares matched in the cross"),
            _w("stock", "S8", 19, _STOCK),
            _w("cross_price", ">u4", 27, f"Cross price, {_PX4}"),
            _w("match_number", ">u8", 31, "Match number"),
            _w("cross_type", "S1", 39, "O opening, C closing, H IPO/halt, I intraday/post-close"),
        ),
        {"shares": "shares", "price": "cross_price", "ref2": "match_number", "aux": "cross_type"},
    ),
    MessageSpec(
        "B",
        "broken_trade",
        "Broken Trade",
        19,
        (_w("match_number", ">u8", 11, "Match number of the trade broken"),),
        {"ref2": "match_number"},
    ),
    MessageSpec(
        "I",
        "noii",
        "Net Order Imbalance Indicator",
        50,
        (
            _w("paired_shares", ">u8", 11, "Shares paired at the current reference price"),
            _w("imbalance_shares", ">u8", 19, "Shares not paired"),
            _w("imbalance_direction", "S1", 27, "B buy, S sell, N none, O insufficient orders"),
            _w("stock", "S8", 28, _STOCK),
            _w("far_price", ">u4", 36, f"Far indicative clearing price, {_PX4}"),
            _w("near_price", ">u4", 40, f"Near indicative clearing price, {_PX4}"),
            _w("reference_price", ">u4", 44, f"Current reference price, {_PX4}"),
            _w("cross_type", "S1", 48, "O opening, C closing, H IPO/halt"),
            _w("price_variation", "S1", 49, "Deviation from reference: L, 1-9, A, B, C or space"),
        ),
    ),
    MessageSpec(
        "N",
        "rpii",
        "Retail Price Improvement Indicator",
        20,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("interest_flag", "S1", 19, "B buy, S sell, A both, N none"),
        ),
    ),
    MessageSpec(
        "O",
        "dlcr",
        "Direct Listing with Capital Raise Price Discovery",
        48,
        (
            _w("stock", "S8", 11, _STOCK),
            _w("open_eligibility", "S1", 19, "N not eligible, Y eligible"),
            _w("min_price", ">u4", 20, f"Minimum allowable price, {_PX4}"),
            _w("max_price", ">u4", 24, f"Maximum allowable price, {_PX4}"),
            _w("near_price", ">u4", 28, f"Near execution price, {_PX4}"),
            _w("near_time", ">u8", 32, "Time the near execution price was set, ns"),
            _w("lower_collar", ">u4", 40, f"Lower price range collar, {_PX4}"),
            _w("upper_collar", ">u4", 44, f"Upper price range collar, {_PX4}"),
        ),
    ),
)

MESSAGES: Final[Mapping[str, MessageSpec]] = MappingProxyType({s.code: s for s in _SPECS})
"""Every ITCH 5.0 message type by its type character."""
WIRE_DTYPES: Final[Mapping[str, np.dtype[np.void]]] = MappingProxyType(
    {c: s.dtype for c, s in MESSAGES.items()}
)
"""Packed big-endian dtype per type; itemsize == spec length."""
MESSAGE_LENGTHS: Final[Mapping[str, int]] = MappingProxyType(
    {c: s.length for c, s in MESSAGES.items()}
)
ORDER_CODES: Final[str] = "AFECXDUPQB"
"""Types `pack_events` encodes from normalised fields alone (plus symbols/MPID)."""
MAX_MESSAGE_LENGTH: Final[int] = max(MESSAGE_LENGTHS.values())
MIN_FRAMED_LENGTH: Final[int] = 2 + min(MESSAGE_LENGTHS.values())
"""Smallest valid framed message: bounds how many records a buffer can decode into."""
_LENGTH_BY_BYTE: Final[npt.NDArray[np.int64]] = np.zeros(256, dtype=np.int64)
for _spec in _SPECS:
    _LENGTH_BY_BYTE[_spec.type_byte] = _spec.length
del _spec

_RAW_OFFSET: Final[int] = EVENT_DTYPE.fields["raw"][1] if EVENT_DTYPE.fields else 0
_RAW_WIDTH: Final[int] = EVENT_DTYPE["raw"].itemsize
# The raw field as a writable (n, 56) uint8 matrix over any 1-D ITCH_EVENT array.
_RAW_MATRIX: Final[np.dtype[np.void]] = np.dtype(
    {
        "names": ["raw"],
        "formats": [("u1", (_RAW_WIDTH,))],
        "offsets": [_RAW_OFFSET],
        "itemsize": EVENT_DTYPE.itemsize,
    }
)
_TS_LIMIT: Final[int] = 1 << 48


def _event_wire_dtype(spec: MessageSpec) -> np.dtype[np.void]:
    return np.dtype(
        {
            "names": [f.name for f in spec.fields],
            "formats": [f.fmt for f in spec.fields],
            "offsets": [_RAW_OFFSET + f.offset for f in spec.fields],
            "itemsize": EVENT_DTYPE.itemsize,
        }
    )


_EVENT_WIRE_DTYPES: Final[Mapping[str, np.dtype[np.void]]] = MappingProxyType(
    {c: _event_wire_dtype(s) for c, s in MESSAGES.items()}
)


def message_spec(code: str | int) -> MessageSpec:
    """The spec of a message type given as its character ('A') or code point (65)."""
    key = chr(code) if isinstance(code, int) else code
    spec = MESSAGES.get(key)
    if spec is None:
        raise ItchArgumentError(f"not an ITCH 5.0 message type: {code!r}")
    return spec


def wire_view(events: Records, code: str | int) -> Records:
    """Zero-copy view of ITCH_EVENT records' `raw` through type `code`'s wire dtype (every
    field of the message, big-endian on read). Every row is read as that type: select rows
    first, e.g. `wire_view(ev[ev["msg_type"] == ord("R")], "R")["round_lot_size"]`."""
    ev = _as_events(events)
    return ev.view(_EVENT_WIRE_DTYPES[message_spec(code).code])


# --------------------------------------------------------------------------------------------
# Conversions between wire arrays and ITCH_EVENT records
# --------------------------------------------------------------------------------------------


def _as_events(events: Records) -> Records:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise ItchArgumentError("expected a numpy array of ITCH_EVENT records")
    return events.reshape(-1)


def _raw_matrix(events: Records) -> Bytes:
    matrix: Bytes = events.view(_RAW_MATRIX)["raw"]
    return matrix


def _wire_to_events(spec: MessageSpec, wire: Records, out: Records) -> None:
    """Fill `out` (same length as `wire`) the way the decoder fills records of this type;
    the header (type_id, version, flags, seq, ts_ns) is left to the caller."""
    out["msg_type"] = spec.type_byte
    out["side"] = 0
    out["aux"] = 0
    out["raw_len"] = spec.length
    out["stock_locate"] = wire["stock_locate"]
    out["tracking"] = wire["tracking"]
    out["exch_ts_ns"] = (wire["ts_hi"].astype(np.int64) << 32) | wire["ts_lo"].astype(np.int64)
    for name in ("order_ref", "ref2", "shares", "price"):
        out[name] = 0
    for ev_name, wire_name in spec.normalised.items():
        column = wire[wire_name]
        out[ev_name] = column.view(np.uint8) if column.dtype.kind == "S" else column
    raw = _raw_matrix(out)
    raw[:, : spec.length] = np.ascontiguousarray(wire).view(np.uint8).reshape(-1, spec.length)
    raw[:, spec.length :] = 0


def _check_fits(values: npt.NDArray[Any], fmt: str, what: str) -> None:
    bits = np.dtype(fmt).itemsize * 8
    if values.dtype.kind not in "iu":
        raise ItchArgumentError(f"{what}: integers required, got {values.dtype}")
    if values.dtype.kind == "i" and bool(np.any(values < 0)):
        raise ItchArgumentError(f"{what}: negative value does not fit {fmt}")
    if bits < 64 and bool(np.any(values > (1 << bits) - 1)):
        raise ItchArgumentError(f"{what}: value above {(1 << bits) - 1} does not fit {fmt}")


def _timestamps(values: npt.NDArray[Any], what: str) -> npt.NDArray[np.int64]:
    if values.dtype.kind not in "iu":
        raise ItchArgumentError(f"{what}: integer ns since midnight required")
    if bool(np.any((values < 0) | (values >= _TS_LIMIT))):
        raise ItchArgumentError(f"{what}: timestamp outside 0 .. 2**48-1 ns")
    return values.astype(np.int64)


def _put_header(
    spec: MessageSpec, wire: Records, locate: Any, tracking: Any, ts: npt.NDArray[np.int64]
) -> None:
    wire["msg_type"] = spec.code.encode("ascii")
    wire["stock_locate"] = locate
    wire["tracking"] = tracking
    wire["ts_hi"] = ts >> 32
    wire["ts_lo"] = ts & 0xFFFFFFFF


def _alpha(value: Any, width: int, what: str) -> npt.NDArray[np.bytes_]:
    """ITCH Alpha: ASCII, left-justified, space-padded to `width`. Accepts str/bytes (arrays),
    and for 1-byte codes also code points."""
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        try:
            arr = np.char.encode(arr, "ascii")
        except UnicodeEncodeError as exc:
            raise ItchArgumentError(f"{what}: not ASCII: {value!r}") from exc
    elif arr.dtype.kind in "iu" and width == 1:
        if bool(np.any((arr < 0) | (arr > 0x7F))):
            raise ItchArgumentError(f"{what}: code point outside ASCII")
        arr = arr.astype(np.uint8).view("S1")
    elif arr.dtype.kind != "S":
        raise ItchArgumentError(f"{what}: expected str or bytes, got {arr.dtype}")
    if arr.dtype.itemsize > width and bool(np.any(np.char.str_len(arr) > width)):
        raise ItchArgumentError(f"{what}: longer than {width} bytes: {value!r}")
    padded: npt.NDArray[np.bytes_] = np.char.ljust(arr, width, b" ").astype(f"S{width}")
    return padded


def symbol_table(symbols: Mapping[int, str | bytes] | npt.ArrayLike) -> npt.NDArray[np.bytes_]:
    """An S8 array indexed by stock locate from {locate: symbol} or a sequence/array whose
    index is the locate. Unset entries are b'' (encoding them is refused)."""
    if isinstance(symbols, Mapping):
        if not symbols:
            return np.zeros(0, dtype="S8")
        locates = np.fromiter((int(k) for k in symbols), dtype=np.int64, count=len(symbols))
        if bool(np.any((locates < 0) | (locates > 0xFFFF))):
            raise ItchArgumentError("symbol table: stock locates are 0..65535")
        table = np.zeros(int(locates.max()) + 1, dtype="S8")
        table[locates] = _alpha(list(symbols.values()), 8, "symbol")
        return table
    arr = np.asarray(symbols)
    if arr.ndim != 1:
        raise ItchArgumentError("symbol table: expected a 1-D sequence indexed by locate")
    set_ = np.char.str_len(arr) > 0 if arr.dtype.kind in "US" else np.ones(arr.shape, bool)
    table = np.zeros(arr.shape, dtype="S8")
    table[set_] = _alpha(arr[set_], 8, "symbol")
    return table


def _stocks_for(
    table: npt.NDArray[np.bytes_] | None, locates: npt.NDArray[np.uint16], code: str
) -> npt.NDArray[np.bytes_]:
    if table is None:
        raise ItchArgumentError(f"pack_events: '{code}' messages need `symbols` (locate -> stock)")
    idx = locates.astype(np.int64)
    if bool(np.any(idx >= table.size)):
        raise ItchArgumentError(f"pack_events: stock locate beyond the symbol table ({code})")
    stocks = table[idx]
    if bool(np.any(np.char.str_len(stocks) == 0)):
        bad = int(idx[np.char.str_len(stocks) == 0][0])
        raise ItchArgumentError(f"pack_events: no symbol for stock locate {bad}")
    return stocks


_SIDES: Final[npt.NDArray[np.uint8]] = np.array([ord("B"), ord("S")], dtype=np.uint8)


# The normalised ITCH_EVENT fields a message type may carry; the others are 0 after decoding.
_CARRIED: Final[tuple[str, ...]] = ("side", "aux", "order_ref", "ref2", "shares", "price")
# `raw` as 7 uint64 words per record (offset 72 is word-aligned): numpy scatters rows of a
# small integer matrix far faster than rows of bytes or whole structured records.
_RAW_WORDS: Final[np.dtype[np.void]] = np.dtype(
    {
        "names": ["w"],
        "formats": [("<u8", (_RAW_WIDTH // 8,))],
        "offsets": [_RAW_OFFSET],
        "itemsize": EVENT_DTYPE.itemsize,
    }
)


def _events_to_wire(
    spec: MessageSpec,
    cols: Mapping[str, npt.NDArray[Any]],
    symbols: npt.NDArray[np.bytes_] | None,
    mpid: npt.NDArray[np.bytes_],
) -> Records:
    """Wire records of type `spec` from gathered ITCH_EVENT columns (one per field used)."""
    locates = cols["stock_locate"]
    wire = np.zeros(locates.size, dtype=spec.dtype)
    ts = _timestamps(cols["exch_ts_ns"], f"{spec.code}.exch_ts_ns")
    _put_header(spec, wire, locates, cols["tracking"], ts)
    for ev_name, wire_name in spec.normalised.items():
        src = cols[ev_name]
        what = f"{spec.code}.{ev_name}"
        if spec.dtype[wire_name].kind == "S":
            if ev_name == "side" and not bool(np.all(np.isin(src, _SIDES))):
                raise ItchArgumentError(f"{what}: side must be 'B' or 'S'")
            if bool(np.any((src < 0x21) | (src > 0x7E))):
                raise ItchArgumentError(f"{what}: code must be a printable ASCII character")
            wire[wire_name].view(np.uint8)[...] = src
        else:
            _check_fits(src, spec.dtype[wire_name].str, what)
            wire[wire_name] = src
    if "stock" in (spec.dtype.names or ()):
        wire["stock"] = _stocks_for(symbols, locates, spec.code)
    if spec.code == "F":
        wire["attribution"] = np.broadcast_to(mpid, locates.shape)
    return wire


def _write_back(
    events: Records, rows: npt.NDArray[np.intp], spec: MessageSpec, wire: Records
) -> None:
    """Make the rows what the decoder would produce from `wire` (raw bytes, raw_len, carried
    fields kept, the others zeroed), touching only those columns: the header stays."""
    block = np.zeros((rows.size, _RAW_WIDTH), dtype=np.uint8)
    block[:, : spec.length] = wire.view(np.uint8).reshape(-1, spec.length)
    events.view(_RAW_WORDS)["w"][rows] = block.view(np.uint64)
    events["raw_len"][rows] = spec.length
    for name in _CARRIED:
        if name not in spec.normalised:
            events[name][rows] = 0


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


def pack_events(
    events: Records,
    *,
    symbols: Mapping[int, str | bytes] | npt.ArrayLike | None = None,
    mpid: str | bytes | npt.ArrayLike = b"TECT",
) -> None:
    """Fill `raw` and `raw_len` of ITCH_EVENT records (in place) from their normalised fields.

    Encodes msg_type A, F, E, C, X, D, U, P, Q, B from stock_locate, tracking, exch_ts_ns,
    order_ref, ref2, shares, price, side and aux as docs/itch.md maps them. A/F/P/Q take the
    stock from `symbols` (see `symbol_table`), F its attribution from `mpid` (one MPID, or one
    per F record in order). Afterwards every encoded record equals what the decoder makes of
    its bytes (normalised fields its type does not carry are zeroed); the header is kept.
    Records of any other type must already carry their raw bytes (from a builder) and are
    left untouched. Raises ItchArgumentError, before writing anything, on a value that does
    not fit its wire field, a side other than B/S, a code that is not printable ASCII, a
    missing symbol, or a record that is neither an order/trade type nor built.
    """
    ev = _as_events(events)
    types = ev["msg_type"]
    table = None if symbols is None else symbol_table(symbols)
    mpids = _alpha(mpid, 4, "mpid")
    planned: list[tuple[npt.NDArray[np.intp], MessageSpec, Records]] = []
    handled = np.zeros(ev.size, dtype=bool)
    for code in ORDER_CODES:
        rows = np.flatnonzero(types == ord(code))
        if rows.size == 0:
            continue
        handled[rows] = True
        spec = MESSAGES[code]
        if code == "F" and mpids.ndim == 1 and mpids.size != rows.size:
            raise ItchArgumentError(
                f"pack_events: {mpids.size} MPIDs given for {rows.size} F records"
            )
        needed = ("stock_locate", "tracking", "exch_ts_ns", *spec.normalised)
        cols = {name: ev[name][rows] for name in needed}
        planned.append((rows, spec, _events_to_wire(spec, cols, table, mpids)))
    others = np.flatnonzero(~handled)
    if others.size:
        raw = _raw_matrix(ev)[others]
        want = _LENGTH_BY_BYTE[types[others]]
        ok = (want > 0) & (ev["raw_len"][others] == want) & (raw[:, 0] == types[others])
        if not bool(np.all(ok)):
            i = int(others[np.flatnonzero(~ok)[0]])
            raise ItchArgumentError(
                f"pack_events: record {i} (msg_type {int(types[i])}) is neither an order/trade "
                "type nor a built message with raw bytes; use build() or the named builders"
            )
    for rows, spec, wire in planned:
        _write_back(ev, rows, spec, wire)


def build(
    code: str,
    ts_ns: npt.ArrayLike,
    *,
    stock_locate: npt.ArrayLike = 0,
    tracking: npt.ArrayLike = 0,
    **fields: Any,
) -> Records:
    """ITCH_EVENT records of message type `code`, from wire field values (names as in
    `MESSAGES[code].body`), with raw bytes and normalised fields set exactly as the decoder
    sets them (header seq/ts_ns stay 0). Every argument may be a scalar or a 1-D array;
    they broadcast, one record per element. Alpha fields take str/bytes (space-padded),
    one-byte codes also code points; omitted alpha fields are spaces, omitted integers 0."""
    spec = message_spec(code)
    body = {f.name: f for f in spec.body}
    unknown = sorted(set(fields) - set(body))
    if unknown:
        raise ItchArgumentError(f"ITCH {spec.code} has no field(s) {unknown}; has {list(body)}")
    names = ["ts_ns", "stock_locate", "tracking", *fields]
    values = [np.asarray(v) for v in (ts_ns, stock_locate, tracking, *fields.values())]
    try:
        shape = np.broadcast_shapes(*(v.shape for v in values))
    except ValueError as exc:
        raise ItchArgumentError(f"build {spec.code}: arguments do not broadcast: {exc}") from exc
    if len(shape) > 1:
        raise ItchArgumentError(f"build {spec.code}: arguments must be scalars or 1-D")
    n = int(np.prod(shape)) if shape else 1
    given = {
        name: np.broadcast_to(v, shape).reshape(n) for name, v in zip(names, values, strict=True)
    }
    wire = np.zeros(n, dtype=spec.dtype)
    _check_fits(given["stock_locate"], ">u2", f"{spec.code}.stock_locate")
    _check_fits(given["tracking"], ">u2", f"{spec.code}.tracking")
    ts = _timestamps(given["ts_ns"], f"{spec.code}.ts_ns")
    _put_header(spec, wire, given["stock_locate"], given["tracking"], ts)
    for f in spec.body:
        dt = np.dtype(f.fmt)
        what = f"{spec.code}.{f.name}"
        if dt.kind == "S":
            wire[f.name] = _alpha(given.get(f.name, b""), dt.itemsize, what)
        elif f.name in given:
            _check_fits(given[f.name], f.fmt, what)
            wire[f.name] = given[f.name]
    out = np.zeros(n, dtype=EVENT_DTYPE)
    out["type_id"] = ITCH_EVENT.type_id
    out["version"] = ITCH_EVENT.version
    _wire_to_events(spec, wire, out)
    return out


def system_event(ts_ns: npt.ArrayLike, code: Any, *, tracking: npt.ArrayLike = 0) -> Records:
    """S: market-wide event. `code`: O start of messages, S start of system hours, Q start of
    market hours, M end of market hours, E end of system hours, C end of messages."""
    return build("S", ts_ns, tracking=tracking, event_code=code)


def stock_directory(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    *,
    market_category: Any = "Q",
    financial_status: Any = "N",
    round_lot_size: npt.ArrayLike = 100,
    round_lots_only: Any = "N",
    issue_classification: Any = "C",
    issue_subtype: Any = "Z",
    authenticity: Any = "P",
    short_sale_threshold: Any = "N",
    ipo_flag: Any = "N",
    luld_tier: Any = "1",
    etp_flag: Any = "N",
    etp_leverage: npt.ArrayLike = 0,
    inverse: Any = "N",
    tracking: npt.ArrayLike = 0,
) -> Records:
    """R: one instrument of the day's universe (defaults: a normal NASDAQ Global Select common
    stock, round lot 100, live, tier 1)."""
    return build(
        "R",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        market_category=market_category,
        financial_status=financial_status,
        round_lot_size=round_lot_size,
        round_lots_only=round_lots_only,
        issue_classification=issue_classification,
        issue_subtype=issue_subtype,
        authenticity=authenticity,
        short_sale_threshold=short_sale_threshold,
        ipo_flag=ipo_flag,
        luld_tier=luld_tier,
        etp_flag=etp_flag,
        etp_leverage=etp_leverage,
        inverse=inverse,
    )


def trading_action(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    state: Any,
    reason: Any = "",
    *,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """H: trading state of one instrument (`state` H/P/Q/T, the `TradingState` codes; `reason`
    a 4-character reason code such as 'T1', 'LUDP', or blank)."""
    return build(
        "H",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        trading_state=state,
        reason=reason,
    )


def reg_sho(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    action: Any,
    *,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """Y: Reg SHO short-sale price test (`action` '0' none, '1' in effect, '2' remains)."""
    return build(
        "Y", ts_ns, stock_locate=locate, tracking=tracking, stock=symbol, reg_sho_action=action
    )


def participant_position(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    mpid: Any,
    symbol: Any,
    *,
    primary: Any = "N",
    mode: Any = "N",
    state: Any = "A",
    tracking: npt.ArrayLike = 0,
) -> Records:
    """L: a market maker's status in one instrument."""
    return build(
        "L",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        mpid=mpid,
        stock=symbol,
        primary_market_maker=primary,
        market_maker_mode=mode,
        participant_state=state,
    )


def mwcb_decline(
    ts_ns: npt.ArrayLike,
    level1: npt.ArrayLike,
    level2: npt.ArrayLike,
    level3: npt.ArrayLike,
    *,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """V: market-wide circuit breaker levels, Price(8) integers (1e-8 units)."""
    return build("V", ts_ns, tracking=tracking, level1=level1, level2=level2, level3=level3)


def mwcb_status(ts_ns: npt.ArrayLike, level: Any, *, tracking: npt.ArrayLike = 0) -> Records:
    """W: a market-wide circuit breaker level ('1', '2', '3') was breached."""
    return build("W", ts_ns, tracking=tracking, breached_level=level)


def ipo_quoting(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    *,
    release_time: npt.ArrayLike,
    qualifier: Any,
    price: npt.ArrayLike,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """K: IPO quotation release time (s since midnight), qualifier A/C, IPO price (1e-4)."""
    return build(
        "K",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        release_time=release_time,
        release_qualifier=qualifier,
        ipo_price=price,
    )


def luld_collar(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    *,
    reference_price: npt.ArrayLike,
    upper_price: npt.ArrayLike,
    lower_price: npt.ArrayLike,
    extension: npt.ArrayLike = 0,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """J: LULD auction collar (prices 1e-4 units)."""
    return build(
        "J",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        reference_price=reference_price,
        upper_price=upper_price,
        lower_price=lower_price,
        extension=extension,
    )


def operational_halt(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    market_code: Any,
    action: Any,
    *,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """h: operational halt on one market (`market_code` Q/B/X, `action` H halted, T resumed)."""
    return build(
        "h",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        market_code=market_code,
        halt_action=action,
    )


def noii(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    *,
    paired_shares: npt.ArrayLike,
    imbalance_shares: npt.ArrayLike,
    direction: Any,
    far_price: npt.ArrayLike,
    near_price: npt.ArrayLike,
    reference_price: npt.ArrayLike,
    cross_type: Any,
    price_variation: Any = " ",
    tracking: npt.ArrayLike = 0,
) -> Records:
    """I: net order imbalance indicator ahead of a cross (prices 1e-4 units)."""
    return build(
        "I",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        paired_shares=paired_shares,
        imbalance_shares=imbalance_shares,
        imbalance_direction=direction,
        far_price=far_price,
        near_price=near_price,
        reference_price=reference_price,
        cross_type=cross_type,
        price_variation=price_variation,
    )


def rpii(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    interest_flag: Any,
    *,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """N: retail price improvement interest (B, S, A both, N none)."""
    return build(
        "N",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        interest_flag=interest_flag,
    )


def dlcr(
    ts_ns: npt.ArrayLike,
    locate: npt.ArrayLike,
    symbol: Any,
    *,
    open_eligibility: Any,
    min_price: npt.ArrayLike,
    max_price: npt.ArrayLike,
    near_price: npt.ArrayLike,
    near_time: npt.ArrayLike,
    lower_collar: npt.ArrayLike,
    upper_collar: npt.ArrayLike,
    tracking: npt.ArrayLike = 0,
) -> Records:
    """O: direct listing with capital raise price discovery (prices 1e-4 units)."""
    return build(
        "O",
        ts_ns,
        stock_locate=locate,
        tracking=tracking,
        stock=symbol,
        open_eligibility=open_eligibility,
        min_price=min_price,
        max_price=max_price,
        near_price=near_price,
        near_time=near_time,
        lower_collar=lower_collar,
        upper_collar=upper_collar,
    )


def frame(events: Records) -> Bytes:
    """Concatenate each record's raw[:raw_len], each behind a 2-byte big-endian length: the
    message framing of MoldUDP64 blocks and NASDAQ binary files. Vectorised: one (n, 58)
    matrix, masked row-major."""
    ev = _as_events(events)
    lengths = ev["raw_len"].astype(np.int64)
    if bool(np.any((lengths == 0) | (lengths > _RAW_WIDTH))):
        raise ItchArgumentError("frame: every record needs raw bytes (raw_len 1..56)")
    matrix = np.empty((ev.size, _RAW_WIDTH + 2), dtype=np.uint8)
    matrix[:, 0] = 0  # raw_len <= 56 < 256: the high byte is always zero
    matrix[:, 1] = lengths
    matrix[:, 2:] = _raw_matrix(ev)
    keep = np.arange(_RAW_WIDTH + 2) < (lengths + 2)[:, None]
    framed: Bytes = matrix[keep]
    return framed


# --------------------------------------------------------------------------------------------
# A seeded synthetic stream (tests, benchmarks, smoke runs)
# --------------------------------------------------------------------------------------------

# Relative frequencies of the order-flow part, shaped like a NASDAQ day: adds and deletes
# dominate, then executions and replaces; every other type appears now and then.
_MIX: Final[Mapping[str, float]] = MappingProxyType(
    {
        "A": 0.36, "D": 0.30, "U": 0.08, "E": 0.08, "X": 0.06, "P": 0.03, "F": 0.03,
        "C": 0.01, "I": 0.01, "N": 0.005, "Q": 0.002, "H": 0.002, "B": 0.001, "Y": 0.001,
        "L": 0.001, "K": 0.0005, "J": 0.0005, "h": 0.0005, "O": 0.0003, "R": 0.0003,
        "S": 0.0002, "V": 0.0002, "W": 0.0002,
    }
)  # fmt: skip


def _synthetic_admin(
    code: str,
    rng: np.random.Generator,
    ts: npt.NDArray[np.int64],
    loc: npt.NDArray[np.int64],
    sym: npt.NDArray[np.bytes_],
) -> Records:
    k = ts.size
    px = rng.integers(1_000, 50_000, k) * 100
    pick = rng.choice
    match code:
        case "S":
            return system_event(ts, pick(list("OSQMEC"), k))
        case "R":
            return stock_directory(ts, loc, sym)
        case "H":
            return trading_action(ts, loc, sym, pick(list("HPQT"), k), "T1")
        case "Y":
            return reg_sho(ts, loc, sym, pick(list("012"), k))
        case "L":
            return participant_position(ts, loc, "TECT", sym)
        case "V":
            return mwcb_decline(ts, 4_500_00000000, 4_200_00000000, 3_800_00000000)
        case "W":
            return mwcb_status(ts, pick(list("123"), k))
        case "K":
            return ipo_quoting(ts, loc, sym, release_time=36_000, qualifier="A", price=px)
        case "J":
            return luld_collar(
                ts, loc, sym, reference_price=px, upper_price=px + 5_000, lower_price=px - 5_000
            )
        case "h":
            return operational_halt(ts, loc, sym, "Q", pick(list("HT"), k))
        case "I":
            paired = rng.integers(0, 100_000, k)
            return noii(
                ts,
                loc,
                sym,
                paired_shares=paired,
                imbalance_shares=paired // 3,
                direction=pick(list("BSNO"), k),
                far_price=px,
                near_price=px,
                reference_price=px,
                cross_type=pick(list("OCH"), k),
            )
        case "N":
            return rpii(ts, loc, sym, pick(list("BSAN"), k))
        case _:  # "O"
            return dlcr(
                ts,
                loc,
                sym,
                open_eligibility="Y",
                min_price=px - 10_000,
                max_price=px + 10_000,
                near_price=px,
                near_time=0,
                lower_collar=px - 5_000,
                upper_collar=px + 5_000,
            )


def synthetic_mix(
    n: int, *, seed: int = 0, n_symbols: int = 100, start_ns: int = 34_200 * 10**9
) -> Records:
    """`n` encoded ITCH_EVENT records of a seeded, realistic-looking stream for tests and
    benchmarks: a start-of-day prelude (S 'O', R and H 'T' per symbol, S 'Q'), then order flow
    in `_MIX` proportions (mostly A/D/U/E/X/P, some F/C/Q/B, every admin type now and then).
    Order references point at earlier adds, but sizes are not tracked: it exercises decoders,
    not book invariants."""
    if n < 0 or not 1 <= n_symbols <= 9_999:
        raise ItchArgumentError("synthetic_mix: n >= 0 and 1 <= n_symbols <= 9999")
    rng = np.random.default_rng(seed)
    locates = np.arange(1, n_symbols + 1)
    table = np.zeros(n_symbols + 1, dtype="S8")
    table[1:] = [f"TS{i:04d}".encode() for i in locates]
    prelude = np.concatenate(
        [
            system_event(start_ns, "O"),
            stock_directory(start_ns, locates, table[1:]),
            trading_action(start_ns, locates, table[1:], "T"),
            system_event(start_ns, "Q"),
        ]
    )
    m = n - prelude.size
    if m <= 0:
        return prelude[:n].copy()
    codes = np.array([ord(c) for c in _MIX], dtype=np.uint8)
    weights = np.array(list(_MIX.values()))
    types = rng.choice(codes, size=m, p=weights / weights.sum())
    ev = np.zeros(m, dtype=EVENT_DTYPE)
    ev["type_id"], ev["version"] = ITCH_EVENT.type_id, ITCH_EVENT.version
    ev["msg_type"] = types
    ts = start_ns + np.cumsum(rng.integers(20, 4_000, m))
    loc = rng.integers(1, n_symbols + 1, m)
    ev["exch_ts_ns"], ev["stock_locate"] = ts, loc
    ev["tracking"] = rng.integers(0, 8, m)

    def is_(chars: str) -> npt.NDArray[np.bool_]:
        return np.isin(types, [ord(c) for c in chars])

    new_ref = is_("AFU")
    issued = np.cumsum(new_ref)
    before = np.maximum(issued - new_ref, 1)
    earlier = 1 + (rng.random(m) * before).astype(np.uint64)
    ev["order_ref"] = np.where(is_("AF"), issued, np.where(is_("ECXDU"), earlier, 0))
    matches = np.cumsum(is_("ECPQB"))
    ev["ref2"] = np.where(is_("U"), issued, np.where(is_("ECPQB"), matches, 0))
    ev["side"] = np.where(is_("AFP"), rng.choice(_SIDES, m), 0)
    ev["shares"] = np.where(is_("Q"), rng.integers(1_000, 500_000, m), rng.integers(1, 20, m) * 100)
    base = rng.integers(1_000, 50_000, n_symbols + 1) * 100
    ev["price"] = base[loc] + rng.integers(-200, 200, m) * 100
    ev["aux"] = np.where(is_("C"), rng.choice(np.array([89, 78], np.uint8), m), 0)
    ev["aux"] = np.where(is_("Q"), rng.choice(np.frombuffer(b"OCHI", np.uint8), m), ev["aux"])
    for code in _MIX:
        if code in ORDER_CODES:
            continue
        rows = np.flatnonzero(types == ord(code))
        if rows.size:
            built = _synthetic_admin(code, rng, ts[rows], loc[rows], table[loc[rows]])
            ev[rows] = built
    pack_events(ev, symbols=table)
    out: Records = np.concatenate([prelude, ev])
    return out


# --------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------

COUNTERS: Final[tuple[str, ...]] = (
    "messages",  # records written
    "blocks",  # blocks (or whole decode buffers) walked to their end
    "bytes",  # bytes of decoded messages, length prefixes included
    "unknown_type",  # framed messages of a type ITCH 5.0 does not define: skipped
    "bad_length",  # length prefix 0 or not the type's spec length: rest of the block dropped
    "truncated",  # block ends inside a length prefix or a message: rest of the block dropped
    "bytes_skipped",  # bytes of unknown-type messages, prefixes included
    "bytes_dropped",  # bytes from a bad_length/truncated point to the end of its block
    "out_full",  # calls that stopped early because the output array was full
)
"""Decoder counters, in the order of `itch_stats_t`. For every call:
consumed == Δbytes + Δbytes_skipped + Δbytes_dropped."""


def _as_u8(buf: BufferLike) -> Bytes:
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise ItchArgumentError(f"decode: expected a uint8 array, got {buf.dtype}")
        data: Bytes = np.ascontiguousarray(buf).reshape(-1)
        return data
    if isinstance(buf, bytes | bytearray | memoryview):
        return np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
    raise ItchArgumentError(f"decode: expected bytes or a uint8 array, got {type(buf).__name__}")


@dataclass(frozen=True)
class _Blocks:
    offsets: npt.NDArray[np.uint64]
    lengths: npt.NDArray[np.uint64]
    first_seqs: npt.NDArray[np.uint64]
    recv_ns: npt.NDArray[np.int64]


def _block_column(value: npt.ArrayLike, name: str, dtype: type[np.generic], n: int) -> Any:
    """One per-block column as a contiguous 1-D array of `dtype` and length `n` (a scalar is
    repeated). The common case, an array already of that dtype, costs no conversion."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype == dtype and arr.shape == (n,) and arr.flags.c_contiguous:
        return arr
    if arr.size == 0:
        arr = arr.astype(np.int64)  # [] is float64
    if arr.dtype.kind in "fO" and not isinstance(value, np.ndarray) and dtype is np.uint64:
        # A list mixing small ints with ints above 2**63 becomes float64 or object: take the
        # Python ints exactly (sequence numbers are uint64).
        try:
            exact = np.asarray(value, dtype=object).reshape(-1)
            arr = np.array([operator.index(x) for x in exact], np.uint64).reshape(arr.shape)
        except (OverflowError, TypeError) as exc:
            raise ItchArgumentError(f"decode_blocks: {name}: {exc}") from exc
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        raise ItchArgumentError(f"decode_blocks: {name} must be integers, scalar or 1-D")
    if dtype is np.uint64 and arr.dtype.kind == "i" and bool(np.any(arr < 0)):
        raise ItchArgumentError(f"decode_blocks: negative value in {name}")
    if arr.ndim == 1 and arr.shape != (n,):
        raise ItchArgumentError(f"decode_blocks: {name} has {arr.size} entries for {n} blocks")
    return np.ascontiguousarray(np.broadcast_to(arr, (n,)), dtype=dtype)


def _as_blocks(
    offsets: npt.ArrayLike,
    lengths: npt.ArrayLike,
    first_seqs: npt.ArrayLike,
    recv_ns: npt.ArrayLike,
) -> _Blocks:
    """Per-block columns (bounds against the buffer are checked by the decoders)."""
    off = offsets if isinstance(offsets, np.ndarray) else np.asarray(offsets)
    if off.ndim != 1:
        raise ItchArgumentError("decode_blocks: offsets must be 1-D")
    n = off.shape[0]
    return _Blocks(
        _block_column(off, "offsets", np.uint64, n),
        _block_column(lengths, "lengths", np.uint64, n),
        _block_column(first_seqs, "first_seqs", np.uint64, n),
        _block_column(recv_ns, "recv_ns", np.int64, n),
    )


def _outside(size: int, blocks: _Blocks) -> bool:
    off = blocks.offsets
    return bool(np.any(off > size)) or bool(np.any(blocks.lengths > size - np.minimum(off, size)))


_U64: Final[int] = (1 << 64) - 1


def _empty_stats() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


class ReferenceDecoder:
    """Pure Python/numpy decoder with `ItchDecoder`'s contract (records, seq, counters,
    consumed/next_seq), for cross-checking the C path and as the benchmark baseline. Framing is
    walked in Python, fields are converted per type with the wire dtypes. Unbounded output."""

    def __init__(self, *, record_flags: int = 0) -> None:
        self._flags = int(record_flags)
        self._stats = _empty_stats()
        self._types = np.zeros(256, dtype=np.int64)
        self.consumed = 0
        self.next_seq = 0

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    @property
    def type_counts(self) -> dict[str, int]:
        """Decoded messages per type character (only types seen)."""
        return {chr(t): int(n) for t, n in enumerate(self._types) if n}

    def reset_stats(self) -> None:
        self._stats = _empty_stats()
        self._types[:] = 0

    def _walk(
        self,
        *,
        data: bytes,
        start: int,
        end: int,
        seq: int,
        partial_tail: bool,
        found: list[tuple[int, int, int]],
    ) -> tuple[int, int]:
        """Walk one block; append (message offset, type, seq) of each valid message; return
        (position reached, next seq)."""
        st = self._stats
        pos = start
        while pos < end:
            rem = end - pos
            mlen = (data[pos] << 8 | data[pos + 1]) if rem >= 2 else -1
            if mlen == 0:
                st["bad_length"] += 1
                st["bytes_dropped"] += rem
                return end, seq
            if mlen < 0 or mlen > rem - 2:
                if partial_tail:
                    return pos, seq
                st["truncated"] += 1
                st["bytes_dropped"] += rem
                return end, seq
            t = data[pos + 2]
            spec = MESSAGES.get(chr(t))
            if spec is None:
                st["unknown_type"] += 1
                st["bytes_skipped"] += 2 + mlen
                pos += 2 + mlen
                seq = (seq + 1) & _U64
                continue
            if mlen != spec.length:
                st["bad_length"] += 1
                st["bytes_dropped"] += rem
                return end, seq
            found.append((pos + 2, t, seq))
            st["messages"] += 1
            st["bytes"] += 2 + mlen
            self._types[t] += 1
            pos += 2 + mlen
            seq = (seq + 1) & _U64  # uint64 in C: wraps the same way
        return pos, seq

    def _records(
        self, u8: Bytes, found: list[tuple[int, int, int]], recv: npt.NDArray[np.int64]
    ) -> Records:
        out = np.zeros(len(found), dtype=EVENT_DTYPE)
        out["type_id"] = ITCH_EVENT.type_id
        out["version"] = ITCH_EVENT.version
        out["flags"] = self._flags
        if not found:
            return out
        starts = np.fromiter((f[0] for f in found), dtype=np.int64, count=len(found))
        types = np.fromiter((f[1] for f in found), dtype=np.int64, count=len(found))
        out["seq"] = np.fromiter((f[2] for f in found), dtype=np.uint64, count=len(found))
        out["ts_ns"] = recv
        for t in np.unique(types):
            spec = MESSAGES[chr(int(t))]
            rows = np.flatnonzero(types == t)
            idx = starts[rows, None] + np.arange(spec.length)
            wire = np.ascontiguousarray(u8[idx]).view(spec.dtype).reshape(-1)
            part = out[rows]
            _wire_to_events(spec, wire, part)
            out[rows] = part
        return out

    def decode(
        self,
        buf: BufferLike,
        first_seq: int = 1,
        recv_ns: int = 0,
        *,
        partial_tail: bool = False,
    ) -> Records:
        """Decode one buffer of length-prefixed messages; see `ItchDecoder.decode`."""
        u8 = _as_u8(buf)
        data = u8.tobytes()
        found: list[tuple[int, int, int]] = []
        pos, seq = self._walk(
            data=data,
            start=0,
            end=len(data),
            seq=int(first_seq),
            partial_tail=partial_tail,
            found=found,
        )
        if pos == len(data):
            self._stats["blocks"] += 1
        self.consumed, self.next_seq = pos, seq
        return self._records(u8, found, np.full(len(found), recv_ns, dtype=np.int64))

    def decode_blocks(
        self,
        buf: BufferLike,
        offsets: npt.ArrayLike,
        lengths: npt.ArrayLike,
        first_seqs: npt.ArrayLike,
        recv_ns: npt.ArrayLike = 0,
    ) -> Records:
        """Decode MoldUDP64 message blocks; see `ItchDecoder.decode_blocks`."""
        u8 = _as_u8(buf)
        blocks = _as_blocks(offsets, lengths, first_seqs, recv_ns)
        if _outside(u8.size, blocks):
            raise ItchArgumentError("decode_blocks: a block lies outside the buffer")
        data = u8.tobytes()
        found: list[tuple[int, int, int]] = []
        recv: list[int] = []
        for off, ln, seq, rns in zip(
            blocks.offsets.tolist(),
            blocks.lengths.tolist(),
            blocks.first_seqs.tolist(),
            blocks.recv_ns.tolist(),
            strict=True,
        ):
            before = len(found)
            self._walk(data=data, start=off, end=off + ln, seq=seq, partial_tail=False, found=found)
            recv += [rns] * (len(found) - before)
            self._stats["blocks"] += 1
        self.consumed = int(blocks.lengths.sum())
        return self._records(u8, found, np.array(recv, dtype=np.int64))


def decode_reference(buf: BufferLike, first_seq: int = 1, recv_ns: int = 0) -> Records:
    """Decode one buffer with the pure Python/numpy `ReferenceDecoder` (tests, baselines)."""
    return ReferenceDecoder().decode(buf, first_seq, recv_ns)


def _load_shim() -> tuple[Any, Any]:
    try:
        module = importlib.import_module("tectra._itch")
    except ImportError as exc:
        raise ItchUnavailableError(
            "the C ITCH decoder tectra._itch is not built: run `python csrc/itch_build.py` "
            f"or reinstall the package ({exc})"
        ) from exc
    ffi, lib = module.ffi, module.lib
    # The C struct must be the schema's record, field for field.
    if ffi.sizeof("itch_event_t") != EVENT_DTYPE.itemsize:
        raise ItchUnavailableError("tectra._itch: itch_event_t size differs from ITCH_EVENT")
    assert EVENT_DTYPE.fields is not None
    for name, (_sub, offset, *_rest) in EVENT_DTYPE.fields.items():
        if ffi.offsetof("itch_event_t", name) != offset:
            raise ItchUnavailableError(f"tectra._itch: itch_event_t.{name} offset differs")
    stats_fields = [name for name, _field in ffi.typeof("itch_stats_t").fields]
    if stats_fields[: len(COUNTERS)] != list(COUNTERS):
        raise ItchUnavailableError("tectra._itch: itch_stats_t counters differ from COUNTERS")
    return ffi, lib


class ItchDecoder:
    """The C batch decoder over a reusable output array.

    `decode`/`decode_blocks` return a view of that array, valid until the next call on this
    decoder (copy it to keep it). The array grows to fit the input (a buffer of `len` bytes
    holds at most len // 14 valid messages), so one call decodes a whole buffer. One thread at
    a time per decoder. Counters accumulate across calls until `reset_stats`.
    """

    def __init__(self, capacity: int = 4096, *, record_flags: int = 0) -> None:
        if capacity < 1:
            raise ItchArgumentError("capacity must be >= 1")
        self._ffi, self._lib = _load_shim()
        ffi = self._ffi
        self._hdr = ffi.new("itch_header_t *")
        self._hdr.type_id = ITCH_EVENT.type_id
        self._hdr.version = ITCH_EVENT.version
        self._hdr.flags = int(record_flags)
        self._stats = ffi.new("itch_stats_t *")
        self._consumed = ffi.new("uint64_t *")
        self._next_seq = ffi.new("uint64_t *")
        self._cursor = ffi.new("itch_cursor_t *")
        self._out = np.zeros(0, dtype=EVENT_DTYPE)
        self._out_ptr: Any = ffi.NULL
        self._reserve(capacity)

    def _reserve(self, capacity: int) -> None:
        if capacity <= self._out.size:
            return
        grown = np.zeros(max(capacity, 2 * self._out.size), dtype=EVENT_DTYPE)
        self._out = grown
        self._out_ptr = self._ffi.cast("itch_event_t *", self._ffi.from_buffer(grown))

    @property
    def capacity(self) -> int:
        return int(self._out.size)

    @property
    def consumed(self) -> int:
        """Bytes of the last `decode` input consumed (all of it unless partial_tail held back
        an incomplete message at the end)."""
        return int(self._consumed[0])

    @property
    def next_seq(self) -> int:
        """Sequence number the next message after the last `decode` would get."""
        return int(self._next_seq[0])

    @property
    def stats(self) -> dict[str, int]:
        return {name: int(getattr(self._stats, name)) for name in COUNTERS}

    @property
    def type_counts(self) -> dict[str, int]:
        """Decoded messages per type character (only types seen)."""
        by_type = self._stats.by_type
        return {chr(t): int(by_type[t]) for t in range(256) if by_type[t]}

    def reset_stats(self) -> None:
        self._stats = self._ffi.new("itch_stats_t *")

    def _check(self, rc: int) -> int:
        if rc == -errno.ERANGE:
            raise ItchArgumentError("decode_blocks: a block lies outside the buffer")
        if rc < 0:
            raise ItchArgumentError(f"itch decoder: {os.strerror(-rc)} (errno {-rc})")
        return rc

    def decode(
        self,
        buf: BufferLike,
        first_seq: int = 1,
        recv_ns: int = 0,
        *,
        partial_tail: bool = False,
    ) -> Records:
        """Decode a buffer of 2-byte-length-prefixed ITCH messages into ITCH_EVENT records.

        Message i (valid or of unknown type) gets seq first_seq + i; header ts_ns = recv_ns.
        With `partial_tail`, a message cut by the end of the buffer is left unconsumed and not
        counted (streaming from a file: prepend it to the next chunk); `consumed` and
        `next_seq` say where to resume.
        """
        u8 = _as_u8(buf)
        if not 0 <= int(first_seq) < 1 << 64:
            raise ItchArgumentError("first_seq must be 0 .. 2**64-1")
        if not -(1 << 63) <= int(recv_ns) < 1 << 63:
            raise ItchArgumentError("recv_ns must fit an int64")
        self._reserve(u8.size // MIN_FRAMED_LENGTH + 1)
        src = self._ffi.from_buffer("uint8_t[]", u8)
        flags = self._lib.ITCH_F_PARTIAL_TAIL if partial_tail else 0
        n = self._check(
            self._lib.itch_decode(
                self._hdr,
                src,
                u8.size,
                int(first_seq),
                int(recv_ns),
                flags,
                self._out_ptr,
                self._out.size,
                self._stats,
                self._consumed,
                self._next_seq,
            )
        )
        if self._consumed[0] < u8.size and not partial_tail:  # cannot happen: sized above
            raise ItchError("itch decoder: output array too small (internal sizing error)")
        return self._out[:n]

    def decode_blocks(
        self,
        buf: BufferLike,
        offsets: npt.ArrayLike,
        lengths: npt.ArrayLike,
        first_seqs: npt.ArrayLike,
        recv_ns: npt.ArrayLike = 0,
    ) -> Records:
        """Decode a receive batch of MoldUDP64 message blocks in one C call.

        Block k is buf[offsets[k] : offsets[k] + lengths[k]] (the message block of one packet,
        after its MoldUDP64 header); its messages get seq first_seqs[k] + i and header ts_ns
        recv_ns[k] (`first_seqs`/`recv_ns` may be scalars). A bad length or truncation drops the
        rest of that block only. Raises ItchArgumentError if a block lies outside `buf`.
        """
        u8 = _as_u8(buf)
        blocks = _as_blocks(offsets, lengths, first_seqs, recv_ns)
        nblocks = blocks.offsets.size
        # Clamped so a bogus length (refused by C with -ERANGE) cannot size a huge array.
        total = int(np.minimum(blocks.lengths, u8.size).sum())
        self._reserve(total // MIN_FRAMED_LENGTH + 1)
        ffi = self._ffi
        self._cursor.block = self._cursor.offset = self._cursor.seq = 0
        n = self._check(
            self._lib.itch_decode_blocks(
                self._hdr,
                ffi.from_buffer("uint8_t[]", u8),
                u8.size,
                ffi.from_buffer("uint64_t[]", blocks.offsets),
                ffi.from_buffer("uint64_t[]", blocks.lengths),
                ffi.from_buffer("uint64_t[]", blocks.first_seqs),
                ffi.from_buffer("int64_t[]", blocks.recv_ns),
                nblocks,
                self._out_ptr,
                self._out.size,
                self._stats,
                self._cursor,
            )
        )
        if self._cursor.block != nblocks:  # cannot happen: sized above
            raise ItchError("itch decoder: output array too small (internal sizing error)")
        self._consumed[0] = total
        return self._out[:n]
