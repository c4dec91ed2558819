"""Every record layout in Tectra: numpy structured dtypes mirroring C structs, versioned.

This module owns, and is the only place that defines:

* the fixed-size records that cross shared-memory rings and fill journals (`LAYOUTS`), each a
  `RecordLayout` with a type id, a layout version and a numpy dtype declared with explicit
  offsets, little-endian types and a common 24-byte header;
* the integer codes stored inside those records (`Side`, `OrdType`, `RejectReason`, ...);
* the value conventions: prices are int64 in 1e-4 units (`PRICE_SCALE`), quantities int64,
  times int64 nanoseconds, symbols 8 space-padded ASCII bytes plus a uint32 instrument id;
* `SCHEMA_VERSION`, the version of the whole set, and the rules for changing it
  (`compare_to_lock` checks them against `tests/golden/schema_lock.json`).

Every layout is validated when the module is imported: a record that crosses a ring and is not a
multiple of 64 bytes, a misaligned integer, a native-endian or floating-point field, a missing
header or a duplicate type id raises `SchemaError` and the import fails.

Codecs (`adapters/`) map wire bytes to these records; nothing else defines a layout.
`docs/schemas.md` documents every layout; its tables are `render_markdown()` output.
"""

from __future__ import annotations

import enum
import hashlib
import json
import operator
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BOOK_UPDATE",
    "CACHE_LINE",
    "ENUMS",
    "EXECUTION_REPORT",
    "HEADER_DTYPE",
    "HEADER_SIZE",
    "ITCH_EVENT",
    "KILL_ACK",
    "KILL_COMMAND",
    "LAYOUTS",
    "LIFECYCLE_EVENT",
    "LOCK_UPDATE_ENV",
    "ORDER_REQUEST",
    "PRICE_DECIMALS",
    "PRICE_SCALE",
    "RING_PROBE",
    "RISK_VERDICT",
    "SCHEMA_VERSION",
    "TICK",
    "TRADE",
    "BookAction",
    "Component",
    "ExecType",
    "FieldSpec",
    "KillAckStatus",
    "KillAction",
    "KillReason",
    "KillScope",
    "LifecycleReason",
    "LifecycleState",
    "LockFinding",
    "OrdStatus",
    "OrdType",
    "OrderAction",
    "RecordFlag",
    "RecordLayout",
    "RejectReason",
    "SchemaError",
    "Side",
    "TimeInForce",
    "TradeKind",
    "TradingState",
    "Verdict",
    "compare_to_lock",
    "decode_symbol",
    "decode_text",
    "dtype_fingerprint",
    "encode_symbol",
    "encode_text",
    "fixed_to_str",
    "layout_by_type_id",
    "lock_document",
    "new_records",
    "price_to_fixed",
    "probe_checksum",
    "record_to_dict",
    "render_c_header",
    "render_markdown",
    "updated_lock",
    "view_records",
]

# --------------------------------------------------------------------------------------------
# Versions and conventions
# --------------------------------------------------------------------------------------------

SCHEMA_VERSION: Final[int] = 2
"""Version of the whole set of layouts and codes. Bump it whenever any layout's version is bumped,
a layout is added or removed, or an enum value is renumbered or removed. Journals store it in
their segment header."""

PRICE_SCALE: Final[int] = 10_000
"""Prices are int64 counts of 1e-4 currency units (ITCH 5.0's Price(4)): $12.34 is 123_400."""
PRICE_DECIMALS: Final[int] = 4

CACHE_LINE: Final[int] = 64
"""Records that cross a ring are a whole number of cache lines."""

SYMBOL_WIDTH: Final[int] = 8  # ITCH 5.0 "Stock" field: 8 bytes, right-padded with spaces
CL_ORD_ID_WIDTH: Final[int] = 20  # FIX ClOrdID as accepted at the client edge
ORDER_TOKEN_WIDTH: Final[int] = 14  # OUCH 4.2 Order Token: 14 alphanumeric bytes
ACCOUNT_WIDTH: Final[int] = 16  # FIX Account (tag 1) as accepted at the client edge
NAME_WIDTH: Final[int] = 16  # short names: kill scope key, kill subscriber name
ISSUER_WIDTH: Final[int] = 32  # who issued a kill command (user, certificate CN, trigger name)
REASON_TEXT_WIDTH: Final[int] = 80  # free text on lifecycle events

LOCK_UPDATE_ENV: Final[str] = "TECTRA_UPDATE_SCHEMA_LOCK"
"""Set to 1 while running tests/unit/test_schema.py to rewrite tests/golden/schema_lock.json.
The rewrite is refused while any change still needs a version bump."""


class SchemaError(ValueError):
    """A record layout, a record, a symbol or a price violates the schema."""


# --------------------------------------------------------------------------------------------
# Codes stored inside records.
#
# 0 means "not set" in every code except LifecycleState (INIT is 0), so a zeroed record is never
# a valid order, verdict or command by accident. Where a protocol already defines a one-character
# code, the value is that character's ASCII code point (Side from ITCH/OUCH, OrdType,
# TimeInForce, ExecType and OrdStatus from FIX 4.4), which keeps hex dumps readable and codecs
# trivial. Tectra's own codes are small integers.
# --------------------------------------------------------------------------------------------


class LifecycleState(enum.IntEnum):
    """Process lifecycle; only READY trades."""

    INIT = 0
    WARMUP = 1
    READY = 2
    DEGRADED = 3
    HALTED = 4


class RecordFlag(enum.IntFlag):
    """Bits of the header `flags` word."""

    NONE = 0
    SYNTHETIC = 1  # warm-up or injected test data: never acted on by the live order path
    REPLAY = 2  # produced while replaying a journal, not live
    SNAPSHOT = 4  # part of a state snapshot or resend, not a live change


class Side(enum.IntEnum):
    """Order or book side; ASCII code points of ITCH 5.0 / OUCH 4.2 Buy/Sell Indicator."""

    NONE = 0
    BUY = ord("B")
    SELL = ord("S")
    SELL_SHORT = ord("T")
    SELL_SHORT_EXEMPT = ord("E")


class OrdType(enum.IntEnum):
    """Order type; ASCII code points of FIX 4.4 OrdType (tag 40)."""

    NONE = 0
    MARKET = ord("1")
    LIMIT = ord("2")
    STOP = ord("3")
    STOP_LIMIT = ord("4")


class TimeInForce(enum.IntEnum):
    """Time in force; ASCII code points of FIX 4.4 TimeInForce (tag 59)."""

    NONE = 0
    DAY = ord("0")
    GTC = ord("1")
    OPG = ord("2")
    IOC = ord("3")
    FOK = ord("4")
    GTX = ord("5")
    GTD = ord("6")
    AT_THE_CLOSE = ord("7")


class OrderAction(enum.IntEnum):
    """What an ORDER_REQUEST asks for (FIX NewOrderSingle / OrderCancelRequest / ...Replace)."""

    NONE = 0
    NEW = 1
    CANCEL = 2
    REPLACE = 3


class ExecType(enum.IntEnum):
    """Execution report type; ASCII code points of FIX 4.4 ExecType (tag 150)."""

    NONE = 0
    NEW = ord("0")
    DONE_FOR_DAY = ord("3")
    CANCELED = ord("4")
    REPLACED = ord("5")
    PENDING_CANCEL = ord("6")
    STOPPED = ord("7")
    REJECTED = ord("8")
    SUSPENDED = ord("9")
    PENDING_NEW = ord("A")
    CALCULATED = ord("B")
    EXPIRED = ord("C")
    RESTATED = ord("D")
    PENDING_REPLACE = ord("E")
    TRADE = ord("F")
    TRADE_CORRECT = ord("G")
    TRADE_CANCEL = ord("H")
    ORDER_STATUS = ord("I")


class OrdStatus(enum.IntEnum):
    """Order status; ASCII code points of FIX 4.4 OrdStatus (tag 39)."""

    NONE = 0
    NEW = ord("0")
    PARTIALLY_FILLED = ord("1")
    FILLED = ord("2")
    DONE_FOR_DAY = ord("3")
    CANCELED = ord("4")
    REPLACED = ord("5")
    PENDING_CANCEL = ord("6")
    STOPPED = ord("7")
    REJECTED = ord("8")
    SUSPENDED = ord("9")
    PENDING_NEW = ord("A")
    CALCULATED = ord("B")
    EXPIRED = ord("C")
    ACCEPTED_FOR_BIDDING = ord("D")
    PENDING_REPLACE = ord("E")


class RejectReason(enum.IntEnum):
    """Why an order was (or, in dry-run, would have been) rejected. NONE (alias OK) = accepted.

    Values are stable; the FIX adapter maps them to OrdRejReason/CxlRejReason and Text.
    """

    NONE = 0
    OK = 0  # alias of NONE, reads better on a passing verdict
    INVALID_SYMBOL = 1
    PRICE_BANDS = 2
    MAX_SIZE = 3
    MAX_NOTIONAL = 4
    CREDIT = 5
    POSITION = 6
    RATE_LIMIT = 7
    SELF_MATCH = 8
    RESTRICTED = 9
    STALE_REFERENCE = 10  # reference price missing or older than its limit (fail closed)
    HALTED = 11  # kill switch or lifecycle HALTED
    QUEUE_FULL = 12  # backpressure: the order ring was full (never a silent drop)
    DEGRADED = 13  # lifecycle DEGRADED: orders are not executable
    DUPLICATE_CL_ORD_ID = 14
    UNKNOWN_ORDER = 15  # cancel/replace of an order the gateway does not know
    INVALID_ORDER = 16  # malformed request: bad side, quantity, price or type
    VENUE_REJECT = 17  # the venue rejected it (OUCH Rejected)
    UNKNOWN = 255


class Verdict(enum.IntEnum):
    """Outcome of the pre-trade risk check."""

    NONE = 0
    PASS = 1
    REJECT = 2


class KillScope(enum.IntEnum):
    """What a kill command applies to."""

    NONE = 0
    FIRM = 1
    VENUE = 2
    ACCOUNT = 3
    STRATEGY = 4
    SYMBOL = 5


class KillAction(enum.IntEnum):
    """What a kill command does within its scope."""

    NONE = 0
    BLOCK = 1  # reject new orders
    CANCEL_ALL = 2  # block, and mass-cancel open orders at the venue
    SLOW = 3  # tight order-rate throttle
    ISOLATE_VENUE = 4  # cancel, then drop the venue's traffic in the kernel (TC egress guard)
    CLEAR = 5  # lift the scope's kill state (risk-officer role, with a reason)


class KillReason(enum.IntEnum):
    """Why a kill command was issued: the trigger that fired, or MANUAL."""

    NONE = 0
    MANUAL = 1
    REJECT_RATE = 2
    STALE_MARKET_DATA = 3
    LATENCY_SPIKE = 4
    EXPOSURE_JUMP = 5
    VENUE_LINK_DOWN = 6
    MAX_LOSS = 7
    MAX_DRAWDOWN = 8
    RESTART_FAIL_CLOSED = 9  # state unreadable or persisted as halted at start-up


class KillAckStatus(enum.IntEnum):
    """What a subscriber reports having done with a kill command."""

    NONE = 0
    APPLIED = 1
    ALREADY_APPLIED = 2  # same kill id seen before: no second effect (idempotent)
    PARTIAL = 3  # applied, but some cancels failed or are unconfirmed
    FAILED = 4
    DRY_RUN = 5  # counts are what it would have done


class BookAction(enum.IntEnum):
    """L2 level change. ADD inserts at `level` (deeper levels shift down), DELETE removes it
    (deeper levels shift up), CHANGE replaces its quantity/count, CLEAR empties the side
    (or both sides when side is NONE)."""

    NONE = 0
    ADD = 1
    CHANGE = 2
    DELETE = 3
    CLEAR = 4


class TradeKind(enum.IntEnum):
    """Which venue event a TRADE came from; ASCII code points of the ITCH 5.0 message type."""

    NONE = 0
    EXECUTED = ord("E")  # displayed order executed at its price
    EXECUTED_WITH_PRICE = ord("C")  # displayed order executed at another price
    NON_DISPLAYED = ord("P")  # trade against a non-displayed order
    CROSS = ord("Q")  # opening/closing/IPO/halt cross
    BROKEN = ord("B")  # a previous match number was broken


class TradingState(enum.IntEnum):
    """Instrument trading state; ASCII code points of the ITCH 5.0 Trading Action state."""

    UNKNOWN = 0
    HALTED = ord("H")
    PAUSED = ord("P")
    QUOTATION_ONLY = ord("Q")
    TRADING = ord("T")


class Component(enum.IntEnum):
    """Which part of the appliance produced a record (lifecycle events, journals)."""

    NONE = 0
    FEED = 1
    GATEWAY = 2
    KILL = 3
    JOURNAL = 4
    MGMT = 5
    DEMO = 6
    RISK = 7
    SIM = 8
    STRATEGY = 9
    BACKTEST = 10
    REPLAY = 11


class LifecycleReason(enum.IntEnum):
    """Why a lifecycle transition happened."""

    NONE = 0
    STARTUP = 1
    WARMUP_COMPLETE = 2
    STALE_FEED = 3
    FEED_GAP = 4
    RING_LOST = 5
    DEPENDENCY_FAILED = 6
    RECOVERED = 7
    KILL_SWITCH = 8
    OPERATOR = 9
    SHUTDOWN = 10


ENUMS: Final[Mapping[str, type[enum.Enum]]] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            LifecycleState,
            RecordFlag,
            Side,
            OrdType,
            TimeInForce,
            OrderAction,
            ExecType,
            OrdStatus,
            RejectReason,
            Verdict,
            KillScope,
            KillAction,
            KillReason,
            KillAckStatus,
            BookAction,
            TradeKind,
            TradingState,
            Component,
            LifecycleReason,
        )
    }
)
"""Every code enum, by name; their values are recorded in the schema lock."""

_ASCII_CODED: Final[frozenset[type[enum.Enum]]] = frozenset(
    {Side, OrdType, TimeInForce, ExecType, OrdStatus, TradeKind, TradingState}
)

# --------------------------------------------------------------------------------------------
# Layout machinery
# --------------------------------------------------------------------------------------------

_INT_SIZES: Final[frozenset[int]] = frozenset({1, 2, 4, 8})
_NAME_RE: Final[re.Pattern[str]] = re.compile(r"^[A-Z][A-Z0-9_]*$")
_FIELD_RE: Final[re.Pattern[str]] = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class FieldSpec:
    """One documented field: name, numpy format (explicit byte order), byte offset, meaning.

    `shape` makes a fixed array of `fmt`; `codes` names the enum whose values the field holds.
    """

    name: str
    fmt: str
    offset: int
    doc: str
    shape: tuple[int, ...] = ()
    codes: type[enum.Enum] | None = None

    @property
    def numpy_format(self) -> str | tuple[str, tuple[int, ...]]:
        return (self.fmt, self.shape) if self.shape else self.fmt


@dataclass(frozen=True)
class RecordLayout:
    """A fixed-size record: its name, type id (header `type_id`), layout version and dtype.

    Constructing one validates it (see `validate_layout`); an invalid layout raises SchemaError.
    `fields` documents each dtype field; `doc` says what the record is for.
    """

    name: str
    type_id: int
    version: int
    dtype: np.dtype[np.void]
    crosses_ring: bool
    doc: str = ""
    fields: tuple[FieldSpec, ...] = ()

    def __post_init__(self) -> None:
        validate_layout(self)

    @property
    def itemsize(self) -> int:
        return int(self.dtype.itemsize)

    @property
    def fingerprint(self) -> str:
        return dtype_fingerprint(self.dtype)


def _make_dtype(fields: Sequence[FieldSpec], itemsize: int) -> np.dtype[np.void]:
    return np.dtype(
        {
            "names": [f.name for f in fields],
            "formats": [f.numpy_format for f in fields],
            "offsets": [f.offset for f in fields],
            "itemsize": itemsize,
        }
    )


# The common header, first in every record, so a reader of a mixed stream (a journal) can tell
# records apart: read 24 bytes, look the layout up by (type_id, version), take its itemsize.
_HEADER_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("type_id", "<u2", 0, "Record type id (the layout's type_id); 0 is never a record"),
    FieldSpec("version", "<u2", 2, "Layout version of this record; readers refuse unknown ones"),
    FieldSpec("flags", "<u4", 4, "Flag bits; unused bits are zero", codes=RecordFlag),
    FieldSpec("seq", "<u8", 8, "Producer sequence number for this stream, from 1; a gap is loss"),
    FieldSpec("ts_ns", "<i8", 16, "When the producer made the record: CLOCK_MONOTONIC ns"),
)
HEADER_SIZE: Final[int] = 24
HEADER_DTYPE: Final[np.dtype[np.void]] = _make_dtype(_HEADER_FIELDS, HEADER_SIZE)
"""The header alone, for peeking at the next record of a mixed stream."""


def _layout(
    name: str,
    *,
    type_id: int,
    version: int,
    itemsize: int,
    doc: str,
    body: Sequence[FieldSpec],
    crosses_ring: bool = True,
) -> RecordLayout:
    fields = (*_HEADER_FIELDS, *body)
    return RecordLayout(
        name=name,
        type_id=type_id,
        version=version,
        dtype=_make_dtype(fields, itemsize),
        crosses_ring=crosses_ring,
        doc=doc,
        fields=fields,
    )


def _field_problems(layout: RecordLayout) -> list[str]:
    dt = layout.dtype
    problems: list[str] = []
    if dt.names is None or dt.fields is None:
        return ["dtype is not a structured dtype"]
    if dt.itemsize % 8:
        problems.append(f"itemsize {dt.itemsize} is not a multiple of 8")
    if layout.crosses_ring and dt.itemsize % CACHE_LINE:
        problems.append(
            f"crosses a ring but itemsize {dt.itemsize} is not a multiple of {CACHE_LINE}"
        )
    placed: list[tuple[int, int, str]] = []
    for name in dt.names:
        sub, offset = dt.fields[name][:2]
        base = sub.base
        if not _FIELD_RE.match(name):
            problems.append(f"field {name!r}: names are lower_snake_case")
        if base.names is not None or base.kind not in "iuS":
            problems.append(
                f"field {name!r}: type {base.str} not allowed "
                "(signed/unsigned integers and fixed bytes only; no floats, no nesting)"
            )
            continue
        if base.kind in "iu":
            if base.itemsize not in _INT_SIZES:
                problems.append(f"field {name!r}: integer size {base.itemsize}")
            if base.itemsize > 1 and not base.str.startswith("<"):
                problems.append(f"field {name!r}: {base.str} is not explicitly little-endian")
            if offset % base.itemsize:
                problems.append(
                    f"field {name!r}: offset {offset} not aligned to {base.itemsize} bytes"
                )
        placed.append((offset, sub.itemsize, name))
    placed.sort()
    for (off, size, name), nxt in zip(placed, [*placed[1:], None], strict=True):
        end = off + size
        if end > dt.itemsize:
            problems.append(f"field {name!r} ends at {end}, past itemsize {dt.itemsize}")
        if nxt is not None and end > nxt[0]:
            problems.append(f"field {name!r} overlaps {nxt[2]!r}")
    return problems


def _header_problems(dt: np.dtype[np.void]) -> list[str]:
    if dt.fields is None:
        return []
    got = sorted((int(off), name, sub.str) for name, (sub, off, *_rest) in dt.fields.items())[
        : len(_HEADER_FIELDS)
    ]
    want = [(f.offset, f.name, np.dtype(f.fmt).str) for f in _HEADER_FIELDS]
    if got != want:
        return [f"does not start with the common header {want}: got {got}"]
    return []


def _spec_problems(layout: RecordLayout) -> list[str]:
    if not layout.fields:
        return []
    dt = layout.dtype
    problems: list[str] = []
    if list(dt.names or ()) != [f.name for f in layout.fields]:
        return ["field documentation does not list exactly the dtype's fields in order"]
    assert dt.fields is not None
    for spec in layout.fields:
        sub, off = dt.fields[spec.name][:2]
        if off != spec.offset or sub != np.dtype(spec.numpy_format):
            problems.append(f"field {spec.name!r}: documentation disagrees with the dtype")
        if not spec.doc:
            problems.append(f"field {spec.name!r}: undocumented")
        if spec.codes is not None:
            info = np.iinfo(sub.base)
            values = [int(m.value) for m in spec.codes]
            if min(values) < info.min or max(values) > info.max:
                problems.append(
                    f"field {spec.name!r}: {spec.codes.__name__} values do not fit {sub.str}"
                )
    return problems


def validate_layout(layout: RecordLayout) -> None:
    """Raise SchemaError listing everything wrong with `layout` (called on construction)."""
    problems: list[str] = []
    if not _NAME_RE.match(layout.name):
        problems.append("name must be UPPER_SNAKE_CASE")
    if not 1 <= layout.type_id <= 0xFFFF:
        problems.append(f"type_id {layout.type_id} outside 1..65535")
    if not 1 <= layout.version <= 0xFFFF:
        problems.append(f"version {layout.version} outside 1..65535")
    if not isinstance(layout.dtype, np.dtype):
        problems.append("dtype is not a numpy dtype")
    else:
        problems += _field_problems(layout)
        if not problems:
            problems += _header_problems(layout.dtype) + _spec_problems(layout)
    if problems:
        raise SchemaError(f"layout {layout.name}: " + "; ".join(problems))


def build_registry(layouts: Iterable[RecordLayout]) -> Mapping[str, RecordLayout]:
    """A read-only name -> layout mapping; SchemaError on duplicate names or type ids."""
    by_name: dict[str, RecordLayout] = {}
    by_id: dict[int, str] = {}
    for layout in layouts:
        if layout.name in by_name:
            raise SchemaError(f"duplicate layout name {layout.name}")
        if layout.type_id in by_id:
            raise SchemaError(
                f"type_id {layout.type_id} used by both {by_id[layout.type_id]} and {layout.name}"
            )
        by_name[layout.name] = layout
        by_id[layout.type_id] = layout.name
    return MappingProxyType(by_name)


# --------------------------------------------------------------------------------------------
# The records. Offsets are explicit and every gap is reserved (zero on write, ignored on read).
# Clocks: header ts_ns and every *_ns "time" field without further note are CLOCK_MONOTONIC of
# the producing host; exch_ts_ns is the venue's own timestamp; transact_ns is realtime (epoch).
# --------------------------------------------------------------------------------------------

F = FieldSpec

RING_PROBE: Final[RecordLayout] = _layout(
    "RING_PROBE",
    type_id=0x0001,
    version=1,
    itemsize=64,
    doc="One cache line of checkable payload, used by ring tests, benchmarks and the demo.",
    body=(
        F("send_ns", "<i8", 24, "CLOCK_MONOTONIC ns stamped just before push (latency origin)"),
        F("payload", "<u8", 32, "Payload words (tests fill them from a seeded PRNG)", (3,)),
        F("checksum", "<u8", 56, "probe_checksum(): FNV-1a fold of seq, send_ns, payload"),
    ),
)

LIFECYCLE_EVENT: Final[RecordLayout] = _layout(
    "LIFECYCLE_EVENT",
    type_id=0x0002,
    version=1,
    itemsize=128,
    doc="A lifecycle transition of one component (journaled: INIT>WARMUP>READY<>DEGRADED>HALTED).",
    body=(
        F("component", "<u2", 24, "Component that changed state", codes=Component),
        F("from_state", "u1", 26, "State before", codes=LifecycleState),
        F("to_state", "u1", 27, "State after", codes=LifecycleState),
        F("reason_code", "<u2", 28, "Why", codes=LifecycleReason),
        F("instance", "<u4", 32, "Worker/instance index within the role (0 if single)"),
        F("pid", "<u4", 36, "Process id of the component"),
        F("reason_text", f"S{REASON_TEXT_WIDTH}", 40, "Short human reason, ASCII, NUL-padded"),
    ),
)

TICK: Final[RecordLayout] = _layout(
    "TICK",
    type_id=0x0010,
    version=1,
    itemsize=128,
    doc="Top of book of one instrument after a change. An empty side has qty 0 and px 0.",
    body=(
        F("instrument_id", "<u4", 24, "Instrument id (feed's stock directory / config)"),
        F("trading_state", "u1", 28, "Trading state of the instrument", codes=TradingState),
        F("symbol", "S8", 32, "Symbol, ASCII, space-padded to 8 (ITCH Stock)"),
        F("bid_px", "<i8", 40, "Best bid price, 1e-4 units"),
        F("bid_qty", "<i8", 48, "Quantity at the best bid"),
        F("ask_px", "<i8", 56, "Best ask price, 1e-4 units"),
        F("ask_qty", "<i8", 64, "Quantity at the best ask"),
        F("bid_orders", "<u4", 72, "Orders at the best bid"),
        F("ask_orders", "<u4", 76, "Orders at the best ask"),
        F("last_px", "<i8", 80, "Last trade price, 1e-4 units (0 before the first trade)"),
        F("last_qty", "<i8", 88, "Last trade quantity"),
        F("last_update_ns", "<i8", 96, "CLOCK_MONOTONIC ns when the top last changed"),
        F("exch_ts_ns", "<i8", 104, "Venue timestamp of that change (ITCH: ns since midnight)"),
    ),
)

BOOK_UPDATE: Final[RecordLayout] = _layout(
    "BOOK_UPDATE",
    type_id=0x0011,
    version=1,
    itemsize=128,
    doc="One L2 price-level change; applying a stream of them in order rebuilds the book.",
    body=(
        F("instrument_id", "<u4", 24, "Instrument id"),
        F("side", "u1", 28, "Book side (NONE only with CLEAR: both sides)", codes=Side),
        F("action", "u1", 29, "Level change", codes=BookAction),
        F("level", "<u2", 30, "Level index, 0 = best"),
        F("symbol", "S8", 32, "Symbol, ASCII, space-padded to 8"),
        F("price", "<i8", 40, "Level price, 1e-4 units"),
        F("qty", "<i8", 48, "Total quantity at the level after the change (0 on DELETE)"),
        F("order_count", "<u4", 56, "Orders at the level after the change"),
        F("exch_ts_ns", "<i8", 64, "Venue timestamp of the event (ITCH: ns since midnight)"),
    ),
)

TRADE: Final[RecordLayout] = _layout(
    "TRADE",
    type_id=0x0012,
    version=1,
    itemsize=128,
    doc="A trade printed by the venue.",
    body=(
        F("instrument_id", "<u4", 24, "Instrument id"),
        F("aggressor_side", "u1", 28, "Incoming order's side (NONE: unknown)", codes=Side),
        F("trade_kind", "u1", 29, "Venue event the trade came from", codes=TradeKind),
        F("symbol", "S8", 32, "Symbol, ASCII, space-padded to 8"),
        F("price", "<i8", 40, "Trade price, 1e-4 units"),
        F("qty", "<i8", 48, "Trade quantity"),
        F("match_number", "<u8", 56, "Venue match number (unique per venue and day)"),
        F("buy_order_ref", "<u8", 64, "Venue order reference of the buy order (0: unknown)"),
        F("sell_order_ref", "<u8", 72, "Venue order reference of the sell order (0: unknown)"),
        F("exch_ts_ns", "<i8", 80, "Venue timestamp (ITCH: ns since midnight)"),
    ),
)

ITCH_EVENT: Final[RecordLayout] = _layout(
    "ITCH_EVENT",
    type_id=0x0013,
    version=1,
    itemsize=128,
    doc="One decoded ITCH 5.0 message: the fields the book needs, normalised, plus the raw "
    "message bytes so every field of every message type stays available (adapters.itch views "
    "`raw` through per-type wire dtypes). Header seq = MoldUDP64 sequence number of the "
    "message; header ts_ns = receive time (CLOCK_MONOTONIC) of its packet.",
    body=(
        F(
            "msg_type",
            "u1",
            24,
            "ITCH message type, ASCII ('A', 'F', 'E', 'C', 'X', 'D', 'U', ...)",
        ),
        F("side", "u1", 25, "Buy/sell indicator of A/F/P ('B'/'S'); 0 when the type has none"),
        F(
            "aux",
            "u1",
            26,
            "Type-specific code: printable (C), cross type (Q), event code (S), "
            "trading state (H), 0 otherwise",
        ),
        F("raw_len", "u1", 27, "Length of the ITCH message in bytes (as framed on the wire)"),
        F("stock_locate", "<u2", 28, "ITCH stock locate code (the feed's instrument id)"),
        F("tracking", "<u2", 30, "ITCH tracking number"),
        F("exch_ts_ns", "<i8", 32, "ITCH timestamp: ns since midnight (6 bytes on the wire)"),
        F("order_ref", "<u8", 40, "Order reference number (A/F/E/C/X/D/U original, P/B: 0)"),
        F("ref2", "<u8", 48, "U: new order reference; E/C/P/Q/B: match number; else 0"),
        F("shares", "<u8", 56, "Shares: A/F/P/Q shares, E/C executed, X cancelled, U new size"),
        F("price", "<i8", 64, "Price, 1e-4 units: A/F/U/P/Q price, C execution price; else 0"),
        F("raw", "S56", 72, "The ITCH message bytes (big-endian, as on the wire), NUL-padded"),
    ),
)

ORDER_REQUEST: Final[RecordLayout] = _layout(
    "ORDER_REQUEST",
    type_id=0x0020,
    version=1,
    itemsize=192,
    doc="A client's new / cancel / replace request as the gateway hands it to risk and the venue.",
    body=(
        F("order_id", "<u8", 24, "Gateway order id (unique per gateway; keys verdicts/reports)"),
        F("orig_order_id", "<u8", 32, "Cancel/replace: gateway id of the order acted on, else 0"),
        F("price", "<i8", 40, "Limit price, 1e-4 units (0 for MARKET and CANCEL)"),
        F("qty", "<i8", 48, "Order quantity; for REPLACE the new total, for CANCEL 0"),
        F("instrument_id", "<u4", 56, "Instrument id"),
        F("account_id", "<u4", 60, "Account id (interned from `account`)"),
        F("strategy_id", "<u4", 64, "Strategy id"),
        F("session_id", "<u4", 68, "Client session id (FIX session)"),
        F("venue_id", "<u4", 72, "Destination venue id"),
        F("action", "u1", 76, "New, cancel or replace", codes=OrderAction),
        F("side", "u1", 77, "Side", codes=Side),
        F("ord_type", "u1", 78, "Order type", codes=OrdType),
        F("time_in_force", "u1", 79, "Time in force", codes=TimeInForce),
        F("symbol", "S8", 80, "Symbol, ASCII, space-padded to 8"),
        F("cl_ord_id", f"S{CL_ORD_ID_WIDTH}", 88, "FIX ClOrdID (11), ASCII, NUL-padded"),
        F(
            "orig_cl_ord_id",
            f"S{CL_ORD_ID_WIDTH}",
            108,
            "FIX OrigClOrdID (41) for cancel/replace, else empty",
        ),
        F("account", f"S{ACCOUNT_WIDTH}", 128, "FIX Account (1), ASCII, NUL-padded"),
        F("transact_ns", "<i8", 144, "FIX TransactTime (60), realtime ns since epoch; 0: absent"),
    ),
)

RISK_VERDICT: Final[RecordLayout] = _layout(
    "RISK_VERDICT",
    type_id=0x0021,
    version=1,
    itemsize=64,
    doc=(
        "Pre-trade risk outcome for one ORDER_REQUEST. A dry-run rule that would reject yields "
        "verdict PASS with dry_run 1 and that rule's reason and id."
    ),
    body=(
        F("order_id", "<u8", 24, "ORDER_REQUEST.order_id judged"),
        F("request_seq", "<u8", 32, "Header seq of that ORDER_REQUEST"),
        F("decision_ns", "<i8", 40, "Decision latency, ns (risk entry to verdict)"),
        F("account_id", "<u4", 48, "Account id"),
        F("instrument_id", "<u4", 52, "Instrument id"),
        F("verdict", "u1", 56, "Pass or reject", codes=Verdict),
        F("dry_run", "u1", 57, "1: reason/rule_id come from a dry-run rule; order passed"),
        F("reason_code", "<u2", 58, "Reject reason (NONE on a clean pass)", codes=RejectReason),
        F("rule_id", "<u2", 60, "Id of the deciding rule (0: none)"),
    ),
)

EXECUTION_REPORT: Final[RecordLayout] = _layout(
    "EXECUTION_REPORT",
    type_id=0x0022,
    version=1,
    itemsize=256,
    doc="Order state change reported to the client (FIX 4.4 ExecutionReport semantics).",
    body=(
        F("order_id", "<u8", 24, "Gateway order id"),
        F("venue_order_id", "<u8", 32, "Venue order reference (OUCH Order Reference Number)"),
        F("exec_id", "<u8", 40, "Execution id: venue match number on fills, gateway id else"),
        F("price", "<i8", 48, "Order limit price, 1e-4 units"),
        F("order_qty", "<i8", 56, "Order quantity"),
        F("last_px", "<i8", 64, "Price of this fill, 1e-4 units (0 if not a fill)"),
        F("last_qty", "<i8", 72, "Quantity of this fill (0 if not a fill)"),
        F("cum_qty", "<i8", 80, "Total filled quantity"),
        F("leaves_qty", "<i8", 88, "Quantity still open (0 when done)"),
        F("avg_px", "<i8", 96, "Average fill price, 1e-4 units, rounded half away from zero"),
        F("instrument_id", "<u4", 104, "Instrument id"),
        F("account_id", "<u4", 108, "Account id"),
        F("strategy_id", "<u4", 112, "Strategy id"),
        F("session_id", "<u4", 116, "Client session id"),
        F("venue_id", "<u4", 120, "Venue id"),
        F("exec_type", "u1", 124, "FIX ExecType (150)", codes=ExecType),
        F("ord_status", "u1", 125, "FIX OrdStatus (39)", codes=OrdStatus),
        F("side", "u1", 126, "Side", codes=Side),
        F("reject_reason", "<u2", 128, "Reason on REJECTED, else NONE", codes=RejectReason),
        F("symbol", "S8", 136, "Symbol, ASCII, space-padded to 8"),
        F("order_token", f"S{ORDER_TOKEN_WIDTH}", 144, "OUCH 4.2 Order Token, ASCII"),
        F("cl_ord_id", f"S{CL_ORD_ID_WIDTH}", 160, "FIX ClOrdID (11), ASCII, NUL-padded"),
        F(
            "orig_cl_ord_id",
            f"S{CL_ORD_ID_WIDTH}",
            180,
            "FIX OrigClOrdID (41) on cancel/replace, else empty",
        ),
        F("transact_ns", "<i8", 200, "Transaction time, realtime ns since epoch"),
    ),
)

KILL_COMMAND: Final[RecordLayout] = _layout(
    "KILL_COMMAND",
    type_id=0x0030,
    version=1,
    itemsize=128,
    doc=(
        "A kill-switch command fanned out to every subscriber; the same kill_id twice has one "
        "effect."
    ),
    body=(
        F("kill_id", "<u8", 24, "Kill id, unique per firm; the idempotency key"),
        F("epoch", "<u8", 32, "Control-block epoch this command produces (+1 per effect)"),
        F("ack_timeout_ns", "<i8", 40, "Subscribers must ack within this many ns"),
        F("scope_id", "<u4", 48, "Id in scope: venue/account/strategy/instrument id; FIRM 0"),
        F("slow_max_orders_per_s", "<u4", 52, "SLOW: order-rate cap per session; else 0"),
        F("scope", "u1", 56, "What it applies to", codes=KillScope),
        F("action", "u1", 57, "What it does", codes=KillAction),
        F("reason_code", "<u2", 58, "Trigger that fired, or MANUAL", codes=KillReason),
        F("dry_run", "u1", 60, "1: drill, subscribers report what they would do"),
        F("scope_key", f"S{NAME_WIDTH}", 64, "Human name of the scope (symbol, account, venue)"),
        F("issued_by", f"S{ISSUER_WIDTH}", 80, "Issuer: user, certificate CN or trigger name"),
    ),
)

KILL_ACK: Final[RecordLayout] = _layout(
    "KILL_ACK",
    type_id=0x0031,
    version=1,
    itemsize=128,
    doc="A subscriber's acknowledgement of a KILL_COMMAND, with what it did.",
    body=(
        F("kill_id", "<u8", 24, "KILL_COMMAND.kill_id acknowledged"),
        F("epoch", "<u8", 32, "Control-block epoch the subscriber now runs at"),
        F("applied_ns", "<i8", 40, "CLOCK_MONOTONIC ns when the block took effect"),
        F("orders_blocked", "<u8", 48, "New orders rejected because of this kill so far"),
        F("cancels_sent", "<u8", 56, "Cancel messages sent to venues"),
        F("cancels_confirmed", "<u8", 64, "Cancels the venues confirmed"),
        F("cancels_failed", "<u8", 72, "Cancels rejected or timed out"),
        F("subscriber_id", "<u4", 80, "Subscriber id (gateway instance)"),
        F("status", "u1", 84, "Outcome", codes=KillAckStatus),
        F("action", "u1", 85, "Action acknowledged", codes=KillAction),
        F("scope", "u1", 86, "Scope acknowledged", codes=KillScope),
        F("subscriber_name", f"S{NAME_WIDTH}", 88, "Subscriber name, ASCII, NUL-padded"),
    ),
)

del F

LAYOUTS: Final[Mapping[str, RecordLayout]] = build_registry(
    (
        RING_PROBE,
        LIFECYCLE_EVENT,
        TICK,
        BOOK_UPDATE,
        TRADE,
        ITCH_EVENT,
        ORDER_REQUEST,
        RISK_VERDICT,
        EXECUTION_REPORT,
        KILL_COMMAND,
        KILL_ACK,
    )
)
"""Every record layout, by name."""

_BY_TYPE_ID: Final[Mapping[int, RecordLayout]] = MappingProxyType(
    {layout.type_id: layout for layout in LAYOUTS.values()}
)


def _check_registry_at_import() -> None:
    # Layouts are validated when constructed; here the registry-wide rules are checked again so a
    # layout added to LAYOUTS by hand without _layout() cannot slip through.
    for name, layout in LAYOUTS.items():
        if name != layout.name:
            raise SchemaError(f"LAYOUTS key {name} holds layout {layout.name}")
        if len(layout.fields) != len(layout.dtype.names or ()):
            raise SchemaError(f"layout {name}: every field must be documented")
        if layout.version > SCHEMA_VERSION:
            raise SchemaError(
                f"layout {name} version {layout.version} is newer than SCHEMA_VERSION "
                f"{SCHEMA_VERSION}; bump SCHEMA_VERSION with it"
            )


_check_registry_at_import()

# --------------------------------------------------------------------------------------------
# Lookup, allocation and reading
# --------------------------------------------------------------------------------------------


def layout_by_type_id(type_id: int, version: int | None = None) -> RecordLayout:
    """The layout whose header type_id is `type_id`.

    With `version`, also refuse a record version this build does not know (SchemaError), as every
    reader of journals and rings must.
    """
    layout = _BY_TYPE_ID.get(int(type_id))
    if layout is None:
        raise SchemaError(f"unknown record type_id {int(type_id)}")
    if version is not None and int(version) != layout.version:
        raise SchemaError(
            f"{layout.name} record version {int(version)} is not supported "
            f"(this build reads version {layout.version})"
        )
    return layout


def _resolve(name_or_layout: str | RecordLayout) -> RecordLayout:
    if isinstance(name_or_layout, RecordLayout):
        return name_or_layout
    layout = LAYOUTS.get(name_or_layout)
    if layout is None:
        raise SchemaError(f"unknown record layout {name_or_layout!r}")
    return layout


def new_records(name_or_layout: str | RecordLayout, n: int) -> npt.NDArray[np.void]:
    """`n` zeroed records with header type_id and version filled in."""
    layout = _resolve(name_or_layout)
    count = operator.index(n)
    if count < 0:
        raise SchemaError(f"record count must be >= 0, got {count}")
    records = np.zeros(count, dtype=layout.dtype)
    records["type_id"] = layout.type_id
    records["version"] = layout.version
    return records


def view_records(
    buf: bytes | bytearray | memoryview | npt.NDArray[Any],
    name_or_layout: str | RecordLayout,
) -> npt.NDArray[np.void]:
    """Interpret `buf` as records of one layout, zero-copy, refusing any record whose header does
    not carry this layout's type_id and version (SchemaError names the first bad index)."""
    layout = _resolve(name_or_layout)
    if isinstance(buf, np.ndarray) and buf.dtype == layout.dtype:
        records: npt.NDArray[np.void] = buf.reshape(-1)
    else:
        if isinstance(buf, np.ndarray):
            raw = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
        else:
            raw = np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
        if raw.size % layout.itemsize:
            raise SchemaError(
                f"{raw.size} bytes is not a whole number of {layout.name} records "
                f"({layout.itemsize} bytes each)"
            )
        records = raw.view(layout.dtype)
    bad = np.flatnonzero(
        (records["type_id"] != layout.type_id) | (records["version"] != layout.version)
    )
    if bad.size:
        i = int(bad[0])
        raise SchemaError(
            f"record {i} of {records.size}: type_id {int(records['type_id'][i])} version "
            f"{int(records['version'][i])}, expected {layout.name} type_id {layout.type_id} "
            f"version {layout.version} ({bad.size} bad records)"
        )
    return records


# FNV-1a constants (64-bit). Folding whole 64-bit words: each step is a bijection of the running
# hash, so changing any single word always changes the checksum.
_FNV_OFFSET: Final[int] = 0xCBF29CE484222325
_FNV_PRIME: Final[int] = 0x100000001B3


def probe_checksum(records: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
    """Checksum of RING_PROBE records: h = FNV offset; for w in (seq, send_ns, payload[0..2]):
    h = (h ^ w) * FNV prime mod 2**64 (send_ns taken as its two's-complement uint64).

    Store it with `r["checksum"] = probe_checksum(r)`; a consumer verifies with equality.
    C code computes the same function over the same words.
    """
    arr = np.asarray(records).reshape(-1)
    if arr.dtype != RING_PROBE.dtype:
        raise SchemaError("probe_checksum takes RING_PROBE records")
    payload = arr["payload"]
    words = (
        arr["seq"],
        arr["send_ns"].astype(np.uint64),
        payload[:, 0],
        payload[:, 1],
        payload[:, 2],
    )
    h = np.full(arr.shape, _FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(_FNV_PRIME)
    for w in words:
        h ^= w
        h *= prime  # array arithmetic wraps modulo 2**64 without warnings
    return h


# --------------------------------------------------------------------------------------------
# Symbols, text and prices
# --------------------------------------------------------------------------------------------


def encode_symbol(symbol: str) -> bytes:
    """'AAPL' -> b'AAPL    ': 1 to 8 printable ASCII characters, no spaces, space-padded like
    ITCH's Stock field."""
    if not isinstance(symbol, str):
        raise SchemaError(f"symbol must be str, got {type(symbol).__name__}")
    if not 1 <= len(symbol) <= SYMBOL_WIDTH:
        raise SchemaError(f"symbol {symbol!r} must be 1 to {SYMBOL_WIDTH} characters")
    if not all("!" <= ch <= "~" for ch in symbol):
        raise SchemaError(f"symbol {symbol!r} must be printable ASCII without spaces")
    return symbol.encode("ascii").ljust(SYMBOL_WIDTH, b" ")


def decode_symbol(raw: bytes | np.bytes_) -> str:
    """b'AAPL    ' (or numpy's NUL-stripped b'AAPL') -> 'AAPL'."""
    data = bytes(raw)
    if len(data) > SYMBOL_WIDTH:
        raise SchemaError(f"symbol field {data!r} longer than {SYMBOL_WIDTH} bytes")
    text = data.rstrip(b" \x00")
    if not text or not all(0x21 <= b <= 0x7E for b in text):
        raise SchemaError(f"symbol field {data!r} is not a padded printable ASCII symbol")
    return text.decode("ascii")


def encode_text(text: str, width: int) -> bytes:
    """ASCII text for a fixed-width NUL-padded field (ids, names, reasons); SchemaError if it
    does not fit or is not printable ASCII."""
    if not isinstance(text, str):
        raise SchemaError(f"text must be str, got {type(text).__name__}")
    if len(text) > width:
        raise SchemaError(f"{text!r} is longer than the field's {width} bytes")
    if not all(" " <= ch <= "~" for ch in text):
        raise SchemaError(f"{text!r} must be printable ASCII")
    return text.encode("ascii").ljust(width, b"\x00")


def decode_text(raw: bytes | np.bytes_) -> str:
    """A NUL-padded ASCII field -> str (trailing NULs removed)."""
    data = bytes(raw).rstrip(b"\x00")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"text field {data!r} is not ASCII") from exc


_PRICE_RE: Final[re.Pattern[str]] = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_INT64_MIN: Final[int] = -(2**63)
_INT64_MAX: Final[int] = 2**63 - 1


def price_to_fixed(price: str | Decimal | int | np.integer[Any]) -> int:
    """Exact decimal price -> int64 1e-4 units: '12.34' -> 123400.

    Accepts a plain decimal string (no exponent, spaces or '_'), a finite Decimal, or an int
    (whole units). More than 4 decimals that are not zeros, floats, and values outside int64
    raise SchemaError: no rounding ever happens here.
    """
    if isinstance(price, bool | float | np.floating):
        raise SchemaError(f"price {price!r}: pass a str or Decimal, never a float or bool")
    if isinstance(price, int | np.integer):
        value = int(price) * PRICE_SCALE
    else:
        if isinstance(price, str):
            if not _PRICE_RE.match(price):
                raise SchemaError(f"price {price!r} is not a plain decimal number")
            dec = Decimal(price)
        elif isinstance(price, Decimal):
            dec = price
            if not dec.is_finite():
                raise SchemaError(f"price {price!r} is not finite")
        else:
            raise SchemaError(f"price must be str, Decimal or int, got {type(price).__name__}")
        sign, digits, exponent = dec.as_tuple()
        assert isinstance(exponent, int)  # finite: exponent is never 'n', 'N' or 'F'
        mantissa = int("".join(map(str, digits)) or "0")
        shift = exponent + PRICE_DECIMALS
        if mantissa == 0:
            value = 0
        elif shift >= 0:
            if len(digits) + shift > 20:  # certainly beyond int64: avoid a huge power
                raise SchemaError(f"price {price!r} does not fit int64 1e-4 units")
            value = mantissa * 10**shift
        else:
            divisor = 10**-shift
            if mantissa % divisor:
                raise SchemaError(f"price {price!r} has more than {PRICE_DECIMALS} decimal places")
            value = mantissa // divisor
        if sign:
            value = -value
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise SchemaError(f"price {price!r} does not fit int64 1e-4 units")
    return value


def fixed_to_str(value: int | np.integer[Any]) -> str:
    """int64 1e-4 units -> shortest exact decimal string: 123400 -> '12.34', -1 -> '-0.0001'."""
    if isinstance(value, bool):
        raise SchemaError("fixed_to_str takes an integer price, not a bool")
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise SchemaError(f"fixed_to_str takes an integer, got {type(value).__name__}") from exc
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise SchemaError(f"{v} does not fit int64")
    whole, frac = divmod(abs(v), PRICE_SCALE)
    sign = "-" if v < 0 else ""
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{PRICE_DECIMALS}d}".rstrip("0")


def record_to_dict(record: np.void) -> dict[str, Any]:
    """One record as plain Python values for humans and exports: codes become enum members
    (ints when unknown), symbols and text become str, arrays become lists."""
    layout = layout_by_type_id(int(record["type_id"]), int(record["version"]))
    if record.dtype != layout.dtype:
        raise SchemaError(f"record dtype does not match {layout.name}")
    out: dict[str, Any] = {}
    for spec in layout.fields:
        value = record[spec.name]
        if np.dtype(spec.fmt).kind == "S":
            if spec.name == "symbol" and bytes(value).strip(b" \x00"):
                out[spec.name] = decode_symbol(value)
            else:
                out[spec.name] = decode_text(value)
        elif spec.shape:
            out[spec.name] = [int(x) for x in value]
        elif spec.codes is not None:
            try:
                out[spec.name] = spec.codes(int(value))
            except ValueError:
                out[spec.name] = int(value)
        else:
            out[spec.name] = int(value)
    return out


# --------------------------------------------------------------------------------------------
# Fingerprints and the schema lock
# --------------------------------------------------------------------------------------------


def _describe_dtype(dt: np.dtype[Any]) -> dict[str, Any]:
    if dt.names is None or dt.fields is None:
        return {"itemsize": int(dt.itemsize), "format": dt.base.str, "shape": list(dt.shape)}
    fields: list[list[Any]] = []
    for name in dt.names:
        sub, offset = dt.fields[name][:2]
        base = sub.base
        fmt: Any = _describe_dtype(base) if base.names is not None else base.str
        fields.append([name, fmt, list(sub.shape), int(offset)])
    fields.sort(key=lambda f: (f[3], f[0]))
    return {"itemsize": int(dt.itemsize), "fields": fields}


def dtype_fingerprint(dtype: np.dtype[Any]) -> str:
    """sha256 hex of the dtype's field names, formats (with byte order), shapes, offsets and
    itemsize, in offset order. Stable across processes, machines and numpy versions; rings keep
    it in their header so a mismatched attacher is refused."""
    canonical = json.dumps(_describe_dtype(np.dtype(dtype)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _field_lines(dt: np.dtype[Any]) -> list[str]:
    lines = []
    for name, fmt, shape, offset in _describe_dtype(dt).get("fields", []):
        dims = "".join(f"[{n}]" for n in shape)
        lines.append(f"{name} {fmt if isinstance(fmt, str) else 'struct'}{dims} @{offset}")
    return lines


def lock_document(
    layouts: Mapping[str, RecordLayout] | None = None,
    schema_version: int | None = None,
    enums: Mapping[str, type[enum.Enum]] | None = None,
) -> dict[str, Any]:
    """The content of tests/golden/schema_lock.json for these layouts (default: this module's)."""
    layouts = LAYOUTS if layouts is None else layouts
    enums = ENUMS if enums is None else enums
    return {
        "_comment": (
            "Generated. Rewrite only with "
            f"{LOCK_UPDATE_ENV}=1 pytest tests/unit/test_schema.py, after bumping versions; "
            "see docs/schemas.md."
        ),
        "schema_version": SCHEMA_VERSION if schema_version is None else schema_version,
        "layouts": {
            name: {
                "type_id": lay.type_id,
                "version": lay.version,
                "itemsize": lay.itemsize,
                "fingerprint": lay.fingerprint,
                "fields": _field_lines(lay.dtype),
            }
            for name, lay in sorted(layouts.items())
        },
        "enums": {
            name: {key: int(m.value) for key, m in cls.__members__.items()}
            for name, cls in sorted(enums.items())
        },
        "retired_type_ids": [],
    }


@dataclass(frozen=True)
class LockFinding:
    """One difference between the code and the schema lock.

    `blocking` findings are incompatible changes that still need a version bump (or are never
    allowed, like reusing a type id); the lock may not be rewritten while any exists. The others
    mean the lock is merely stale and may be rewritten.
    """

    subject: str
    message: str
    blocking: bool


_UPDATE_HINT: Final[str] = (
    f"then rewrite the lock: {LOCK_UPDATE_ENV}=1 .venv/bin/pytest tests/unit/test_schema.py"
)


def compare_to_lock(
    lock: Mapping[str, Any],
    layouts: Mapping[str, RecordLayout] | None = None,
    schema_version: int | None = None,
    enums: Mapping[str, type[enum.Enum]] | None = None,
) -> list[LockFinding]:
    """Every difference between the layouts/enums in code and a lock document.

    Compatibility rule: no change is compatible in place. A layout whose fingerprint or type id
    differs from the lock while its version was not raised is blocking; raising a layout's
    version, adding or removing a layout, or renumbering/removing an enum value also needs
    SCHEMA_VERSION raised above the lock's. New enum members only make the lock stale.
    """
    layouts = LAYOUTS if layouts is None else layouts
    enums = ENUMS if enums is None else enums
    schema_version = SCHEMA_VERSION if schema_version is None else schema_version
    try:
        locked_version = int(lock["schema_version"])
        locked_layouts: Mapping[str, Mapping[str, Any]] = lock["layouts"]
        locked_enums: Mapping[str, Mapping[str, int]] = lock.get("enums", {})
        retired: list[int] = list(lock.get("retired_type_ids", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"malformed schema lock: {exc!r}") from exc

    findings: list[LockFinding] = []
    set_changes: list[str] = []  # changes that require SCHEMA_VERSION > locked_version

    def add(subject: str, message: str, *, blocking: bool) -> None:
        findings.append(LockFinding(subject, message, blocking))

    locked_ids = {int(entry["type_id"]): name for name, entry in locked_layouts.items()}
    locked_ids.update({int(tid): "a retired layout" for tid in retired})
    for name, layout in sorted(layouts.items()):
        entry = locked_layouts.get(name)
        if entry is None:
            owner = locked_ids.get(layout.type_id)
            if owner is not None:
                add(
                    name,
                    f"type_id {layout.type_id} belonged to {owner} in the lock; type ids are "
                    "never reused: choose a new one",
                    blocking=True,
                )
            add(name, "new layout not in the lock", blocking=False)
            set_changes.append(f"{name} added")
            continue
        old_version = int(entry["version"])
        changed = entry["fingerprint"] != layout.fingerprint
        id_changed = int(entry["type_id"]) != layout.type_id
        if layout.version < old_version:
            add(
                name,
                f"version went back from {old_version} to {layout.version}; versions only rise",
                blocking=True,
            )
        elif layout.version == old_version and (changed or id_changed):
            what = []
            if changed:
                old_lines = list(entry.get("fields", []))
                new_lines = _field_lines(layout.dtype)
                diff = [f"-{x}" for x in old_lines if x not in new_lines]
                diff += [f"+{x}" for x in new_lines if x not in old_lines]
                size = (
                    f", itemsize {entry.get('itemsize')} -> {layout.itemsize}"
                    if entry.get("itemsize") != layout.itemsize
                    else ""
                )
                what.append(f"fields changed ({', '.join(diff) or 'offsets/order'}{size})")
            if id_changed:
                what.append(f"type_id {entry['type_id']} -> {layout.type_id}")
            add(
                name,
                f"{'; '.join(what)} but version is still {old_version}. A layout never changes "
                f"in place: bump {name}'s version to {old_version + 1} and SCHEMA_VERSION to "
                f"{locked_version + 1} in tectra/schema.py, {_UPDATE_HINT}",
                blocking=True,
            )
        elif layout.version > old_version:
            add(
                name,
                f"version {old_version} -> {layout.version} not yet recorded in the lock",
                blocking=False,
            )
            set_changes.append(f"{name} version bumped")
    for name in sorted(set(locked_layouts) - set(layouts)):
        add(name, "layout removed (its type id will be retired for good)", blocking=False)
        set_changes.append(f"{name} removed")

    for name, cls in sorted(enums.items()):
        members = {key: int(m.value) for key, m in cls.__members__.items()}
        old = locked_enums.get(name)
        if old is None:
            add(name, "new enum not in the lock", blocking=False)
            continue
        broken = [
            f"{k}={v}" + (f"->{members[k]}" if k in members else " removed")
            for k, v in sorted(old.items())
            if members.get(k) != v
        ]
        if broken:
            add(name, f"values renumbered or removed: {', '.join(broken)}", blocking=False)
            set_changes.append(f"enum {name} changed incompatibly")
        added = sorted(set(members) - set(old))
        if added:
            add(name, f"new members {added} not yet in the lock", blocking=False)
    for name in sorted(set(locked_enums) - set(enums)):
        add(name, "enum removed", blocking=False)
        set_changes.append(f"enum {name} removed")

    if schema_version < locked_version:
        add(
            "SCHEMA_VERSION",
            f"went back from {locked_version} to {schema_version}",
            blocking=True,
        )
    elif set_changes and schema_version == locked_version:
        add(
            "SCHEMA_VERSION",
            f"still {schema_version} although the set changed ({'; '.join(set_changes)}): "
            f"bump SCHEMA_VERSION to {locked_version + 1}, {_UPDATE_HINT}",
            blocking=True,
        )
    elif schema_version > locked_version:
        add(
            "SCHEMA_VERSION",
            f"{locked_version} -> {schema_version} not yet recorded",
            blocking=False,
        )
    return findings


def updated_lock(
    lock: Mapping[str, Any] | None,
    layouts: Mapping[str, RecordLayout] | None = None,
    schema_version: int | None = None,
    enums: Mapping[str, type[enum.Enum]] | None = None,
) -> dict[str, Any]:
    """The lock document to write in place of `lock` (None: no lock yet).

    Refused with SchemaError while `compare_to_lock` reports any blocking finding, so the lock
    can only move forward together with version bumps. Type ids of removed layouts are kept in
    `retired_type_ids` so they are never handed out again.
    """
    fresh = lock_document(layouts, schema_version, enums)
    if lock is None:
        return fresh
    blocking = [f for f in compare_to_lock(lock, layouts, schema_version, enums) if f.blocking]
    if blocking:
        raise SchemaError(
            "refusing to rewrite the schema lock: "
            + " | ".join(f"{f.subject}: {f.message}" for f in blocking)
        )
    live_ids = {int(entry["type_id"]) for entry in fresh["layouts"].values()}
    retired = {int(t) for t in lock.get("retired_type_ids", [])}
    retired |= {int(entry["type_id"]) for entry in lock["layouts"].values()} - live_ids
    fresh["retired_type_ids"] = sorted(retired)
    return fresh


# --------------------------------------------------------------------------------------------
# Renderers: the docs tables and a C header, both generated from the declarations above
# --------------------------------------------------------------------------------------------


def _type_name(spec_fmt: str, shape: tuple[int, ...]) -> str:
    dt = np.dtype(spec_fmt)
    base = f"char[{dt.itemsize}]" if dt.kind == "S" else f"{dt.kind}{dt.itemsize * 8}"
    return base + "".join(f"[{n}]" for n in shape)


def _code_label(cls: type[enum.Enum], value: int) -> str:
    return f"{value} ('{chr(value)}')" if cls in _ASCII_CODED and value else str(value)


def _markdown_row(spec: FieldSpec) -> str:
    size = int(np.dtype(spec.numpy_format).itemsize)
    meaning = spec.doc + (f" (`{spec.codes.__name__}`)" if spec.codes else "")
    return (
        f"| {spec.offset} | {size} | {_type_name(spec.fmt, spec.shape)} "
        f"| `{spec.name}` | {meaning} |"
    )


def render_markdown() -> str:
    """Markdown tables for every layout and enum (the generated part of docs/schemas.md)."""
    table_head = ["| offset | size | type | field | meaning |", "|---:|---:|---|---|---|"]
    out: list[str] = [
        f"Schema set version: **{SCHEMA_VERSION}**.",
        "",
        "### Common header",
        "",
        f"The first {HEADER_SIZE} bytes of every record (`HEADER_DTYPE`).",
        "",
        *table_head,
        *(_markdown_row(spec) for spec in _HEADER_FIELDS),
        "",
    ]
    for layout in sorted(LAYOUTS.values(), key=lambda lay: lay.type_id):
        ring = "crosses rings" if layout.crosses_ring else "does not cross rings"
        out += [
            f"### {layout.name}",
            "",
            f"type_id `0x{layout.type_id:04x}` ({layout.type_id}), version {layout.version}, "
            f"{layout.itemsize} bytes, {ring}. {layout.doc}",
            "",
            f"Fingerprint `{layout.fingerprint}`",
            "",
            *table_head,
            f"| 0 | {HEADER_SIZE} | header | `type_id` `version` `flags` `seq` `ts_ns` "
            "| common header |",
        ]
        pos = HEADER_SIZE
        for spec in sorted(layout.fields[len(_HEADER_FIELDS) :], key=lambda f: f.offset):
            if spec.offset > pos:
                out.append(f"| {pos} | {spec.offset - pos} | pad | | reserved, zero |")
            out.append(_markdown_row(spec))
            pos = spec.offset + int(np.dtype(spec.numpy_format).itemsize)
        if pos < layout.itemsize:
            out.append(f"| {pos} | {layout.itemsize - pos} | pad | | reserved, zero |")
        out.append("")
    out += ["### Codes", ""]
    for name, cls in ENUMS.items():
        doc = " ".join((cls.__doc__ or "").split())
        pairs = ", ".join(
            f"{key} = {_code_label(cls, int(m.value))}" for key, m in cls.__members__.items()
        )
        out += [f"- **`{name}`**: {doc} {pairs}."]
    out.append("")
    return "\n".join(out)


_C_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "|i1": "int8_t",
        "|u1": "uint8_t",
        "<i2": "int16_t",
        "<u2": "uint16_t",
        "<i4": "int32_t",
        "<u4": "uint32_t",
        "<i8": "int64_t",
        "<u8": "uint64_t",
    }
)


def render_c_header() -> str:
    """A C11 header with one struct per layout (explicit padding), type ids, versions,
    fingerprints and _Static_asserts on every size and offset, for csrc/."""
    lines = [
        "/* Generated by tectra.schema.render_c_header(); do not edit. */",
        "#ifndef TECTRA_SCHEMA_H",
        "#define TECTRA_SCHEMA_H",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        f"#define TECTRA_SCHEMA_VERSION {SCHEMA_VERSION}",
        f"#define TECTRA_PRICE_SCALE {PRICE_SCALE}",
        "",
    ]
    for layout in sorted(LAYOUTS.values(), key=lambda lay: lay.type_id):
        struct = f"tectra_{layout.name.lower()}_t"
        lines += [
            f"#define TECTRA_TYPE_{layout.name} {layout.type_id}",
            f"#define TECTRA_VERSION_{layout.name} {layout.version}",
            f'#define TECTRA_FINGERPRINT_{layout.name} "{layout.fingerprint}"',
            "typedef struct {",
        ]
        pos = 0
        for spec in sorted(layout.fields, key=lambda f: f.offset):
            if spec.offset > pos:
                lines.append(f"    uint8_t _pad{pos}[{spec.offset - pos}];")
            dt = np.dtype(spec.fmt)
            dims = "".join(f"[{n}]" for n in spec.shape)
            if dt.kind == "S":
                lines.append(f"    char {spec.name}{dims}[{dt.itemsize}];")
            else:
                lines.append(f"    {_C_TYPES[dt.str]} {spec.name}{dims};")
            pos = spec.offset + int(np.dtype(spec.numpy_format).itemsize)
        if pos < layout.itemsize:
            lines.append(f"    uint8_t _pad{pos}[{layout.itemsize - pos}];")
        lines.append(f"}} {struct};")
        lines.append(
            f'_Static_assert(sizeof({struct}) == {layout.itemsize}, "{layout.name} size");'
        )
        lines += [
            f"_Static_assert(offsetof({struct}, {spec.name}) == {spec.offset}, "
            f'"{layout.name}.{spec.name} offset");'
            for spec in layout.fields
        ]
        lines.append("")
    lines.append("#endif /* TECTRA_SCHEMA_H */")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tectra.schema markdown|c-header`: print generated docs tables or C header."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["markdown"]:
        sys.stdout.write(render_markdown())
        return 0
    if args == ["c-header"]:
        sys.stdout.write(render_c_header())
        return 0
    sys.stderr.write("usage: python -m tectra.schema markdown|c-header\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
