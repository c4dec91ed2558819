"""FIX 4.4 application messages <-> Tectra schema records (control-plane edge, one at a time).

This module owns the mapping between quickfix messages and `tectra.schema` records:

* inbound: NewOrderSingle (D), OrderCancelRequest (F), OrderCancelReplaceRequest (G) and
  OrderStatusRequest (H) -> one ORDER_REQUEST record (`decode_request`), with every field checked.
  A message that cannot become a valid record raises `MessageRejectedError` carrying the `Rejection`
  to answer with: a session-level Reject (35=3, SessionRejectReason(373) and RefTagID(371)) for a
  bad or missing tag, or a BusinessMessageReject (35=j, BusinessRejectReason(380)) for an
  unsupported message type, a conditionally required field or an account the session may not use;
* outbound: EXECUTION_REPORT -> ExecutionReport (35=8) or OrderCancelReject (35=9), after
  `check_execution_report` verified ExecType/OrdStatus and CumQty/LeavesQty/AvgPx are consistent
  per FIX 4.4 (a gateway bug raises `ReportInvalidError` instead of reaching the wire);
* `RejectReason` -> OrdRejReason(103) / CxlRejReason(102) and Text(58);
* exact conversions: Price(44) strings through `tectra.schema.price_to_fixed` (more than 4
  decimals is refused, never rounded), prices out through `fixed_to_str`, UTCTimestamp <-> int ns.

Nothing here touches sockets, sessions or threads; `acceptor.py` calls it on quickfix's thread.
Prices never pass through float: quickfix field objects such as `quickfix.Price` would convert
to double, so every field is read and written as its raw string.
"""

from __future__ import annotations

import calendar
import enum
import functools
import operator
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import quickfix as fix

from tectra.schema import (
    ACCOUNT_WIDTH,
    CL_ORD_ID_WIDTH,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    ExecType,
    OrderAction,
    OrdStatus,
    OrdType,
    RejectReason,
    SchemaError,
    Side,
    TimeInForce,
    encode_symbol,
    fixed_to_str,
    price_to_fixed,
)

__all__ = [
    "CXL_REJ_REASON",
    "ORD_REJ_REASON",
    "BusinessRejectReason",
    "DecodedRequest",
    "FixCodecError",
    "MessageRejectedError",
    "Rejection",
    "ReportInvalidError",
    "RequestKind",
    "SessionDefaults",
    "SessionRejectReason",
    "avg_px",
    "check_cancel_reject",
    "check_execution_report",
    "decode_request",
    "encode_cancel_reject",
    "encode_execution_report",
    "encode_reject",
    "format_utc_timestamp",
    "parse_utc_timestamp",
]

# Tags used here (FIX 4.4).
ACCOUNT: Final[int] = 1
AVG_PX: Final[int] = 6
CL_ORD_ID: Final[int] = 11
CUM_QTY: Final[int] = 14
EXEC_ID: Final[int] = 17
LAST_PX: Final[int] = 31
LAST_QTY: Final[int] = 32
MSG_SEQ_NUM: Final[int] = 34
MSG_TYPE: Final[int] = 35
ORDER_ID: Final[int] = 37
ORDER_QTY: Final[int] = 38
ORD_STATUS: Final[int] = 39
ORD_TYPE: Final[int] = 40
ORIG_CL_ORD_ID: Final[int] = 41
POSS_DUP_FLAG: Final[int] = 43
PRICE: Final[int] = 44
REF_SEQ_NUM: Final[int] = 45
SIDE: Final[int] = 54
SYMBOL: Final[int] = 55
TEXT: Final[int] = 58
TIME_IN_FORCE: Final[int] = 59
TRANSACT_TIME: Final[int] = 60
POSS_RESEND: Final[int] = 97
CXL_REJ_REASON_TAG: Final[int] = 102
ORD_REJ_REASON_TAG: Final[int] = 103
EXEC_TYPE: Final[int] = 150
LEAVES_QTY: Final[int] = 151
SECONDARY_ORDER_ID: Final[int] = 198
REF_TAG_ID: Final[int] = 371
REF_MSG_TYPE: Final[int] = 372
SESSION_REJECT_REASON: Final[int] = 373
BUSINESS_REJECT_REF_ID: Final[int] = 379
BUSINESS_REJECT_REASON: Final[int] = 380
CXL_REJ_RESPONSE_TO: Final[int] = 434

_TAG_NAMES: Final[dict[int, str]] = {
    ACCOUNT: "Account",
    CL_ORD_ID: "ClOrdID",
    ORDER_ID: "OrderID",
    ORDER_QTY: "OrderQty",
    ORD_TYPE: "OrdType",
    ORIG_CL_ORD_ID: "OrigClOrdID",
    PRICE: "Price",
    SIDE: "Side",
    SYMBOL: "Symbol",
    TIME_IN_FORCE: "TimeInForce",
    TRANSACT_TIME: "TransactTime",
}


class SessionRejectReason(enum.IntEnum):
    """FIX 4.4 SessionRejectReason(373) (quickfix sends most; the codec 1, 5 and 6)."""

    INVALID_TAG_NUMBER = 0
    REQUIRED_TAG_MISSING = 1
    TAG_NOT_DEFINED_FOR_MESSAGE_TYPE = 2
    UNDEFINED_TAG = 3
    TAG_WITHOUT_VALUE = 4
    VALUE_IS_INCORRECT = 5
    INCORRECT_DATA_FORMAT = 6
    DECRYPTION_PROBLEM = 7
    SIGNATURE_PROBLEM = 8
    COMP_ID_PROBLEM = 9
    SENDING_TIME_ACCURACY_PROBLEM = 10
    INVALID_MSG_TYPE = 11
    XML_VALIDATION_ERROR = 12
    TAG_APPEARS_MORE_THAN_ONCE = 13
    TAG_OUT_OF_ORDER = 14
    REPEATING_GROUP_OUT_OF_ORDER = 15
    INCORRECT_NUM_IN_GROUP = 16
    DELIMITER_IN_VALUE = 17
    OTHER = 99


class BusinessRejectReason(enum.IntEnum):
    """FIX 4.4 BusinessRejectReason(380) values."""

    OTHER = 0
    UNKNOWN_ID = 1
    UNKNOWN_SECURITY = 2
    UNSUPPORTED_MESSAGE_TYPE = 3
    APPLICATION_NOT_AVAILABLE = 4
    CONDITIONALLY_REQUIRED_FIELD_MISSING = 5
    NOT_AUTHORIZED = 6


class RequestKind(enum.Enum):
    """Which application message an ORDER_REQUEST came from (value: its MsgType)."""

    NEW = "D"
    CANCEL = "F"
    REPLACE = "G"
    STATUS = "H"


_ACTIONS: Final[dict[RequestKind, OrderAction]] = {
    RequestKind.NEW: OrderAction.NEW,
    RequestKind.CANCEL: OrderAction.CANCEL,
    RequestKind.REPLACE: OrderAction.REPLACE,
    RequestKind.STATUS: OrderAction.NONE,  # the schema has no STATUS action yet
}


@dataclass(frozen=True)
class Rejection:
    """How to refuse an inbound message: a Reject (35=3) or a BusinessMessageReject (35=j)."""

    msg_type: str
    """'3' (session-level Reject) or 'j' (BusinessMessageReject)."""
    reason: int
    """SessionRejectReason(373) for '3', BusinessRejectReason(380) for 'j'."""
    text: str
    """Text(58): what was wrong, naming the tag."""
    ref_tag: int | None = None
    """RefTagID(371) on a Reject."""

    @property
    def counter_name(self) -> str:
        """Counter key: 'reject_<reason name>' or 'business_reject_<reason name>'."""
        if self.msg_type == "3":
            try:
                return f"reject_{SessionRejectReason(self.reason).name.lower()}"
            except ValueError:
                return f"reject_{self.reason}"
        try:
            return f"business_reject_{BusinessRejectReason(self.reason).name.lower()}"
        except ValueError:
            return f"business_reject_{self.reason}"


class FixCodecError(ValueError):
    """A FIX message could not be converted (either direction)."""


class MessageRejectedError(FixCodecError):
    """An inbound message is malformed or unsupported; `rejection` says how to answer it."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.text)
        self.rejection = rejection


class ReportInvalidError(FixCodecError):
    """An EXECUTION_REPORT record is inconsistent and was not encoded; the message lists why."""


def _tag(tag: int) -> str:
    name = _TAG_NAMES.get(tag)
    return f"{name}({tag})" if name else f"tag {tag}"


def _bad_value(tag: int, text: str) -> MessageRejectedError:
    return MessageRejectedError(
        Rejection("3", SessionRejectReason.VALUE_IS_INCORRECT, f"{_tag(tag)}: {text}", tag)
    )


def _bad_format(tag: int, text: str) -> MessageRejectedError:
    return MessageRejectedError(
        Rejection("3", SessionRejectReason.INCORRECT_DATA_FORMAT, f"{_tag(tag)}: {text}", tag)
    )


def _missing(tag: int, why: str = "") -> MessageRejectedError:
    text = f"required tag missing: {_tag(tag)}{why}"
    return MessageRejectedError(Rejection("3", SessionRejectReason.REQUIRED_TAG_MISSING, text, tag))


def _business(reason: BusinessRejectReason, text: str) -> MessageRejectedError:
    return MessageRejectedError(Rejection("j", reason, text))


# --------------------------------------------------------------------------------------------
# Value conversions
# --------------------------------------------------------------------------------------------

_TS_RE: Final[re.Pattern[str]] = re.compile(
    r"^(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$"
)
_QTY_RE: Final[re.Pattern[str]] = re.compile(r"^(\d{1,18})(?:\.0*)?$")
_DIGITS_RE: Final[re.Pattern[str]] = re.compile(r"^\d{1,19}$")
_PRINTABLE_RE: Final[re.Pattern[str]] = re.compile(r"^[\x20-\x7e]*$")


@functools.lru_cache(maxsize=64)
def _day_seconds(y: int, mo: int, d: int) -> int:
    datetime(y, mo, d, tzinfo=UTC)  # range check: ValueError on 2024-02-30
    return calendar.timegm((y, mo, d, 0, 0, 0))


def parse_utc_timestamp(text: str) -> int:
    """FIX UTCTimestamp 'YYYYMMDD-HH:MM:SS[.fff[fff[fff]]]' -> ns since the epoch, exactly."""
    match = _TS_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a UTCTimestamp")
    h, mi, s = int(match[4]), int(match[5]), int(match[6])
    if h > 23 or mi > 59 or s > 60:  # 60: a leap second, as FIX allows
        raise ValueError(f"{text!r} is not a valid time of day")
    day = _day_seconds(int(match[1]), int(match[2]), int(match[3]))
    frac = match[7]
    ns = int(frac.ljust(9, "0")) if frac else 0
    return (day + h * 3600 + mi * 60 + s) * 1_000_000_000 + ns


def format_utc_timestamp(ns: int) -> str:
    """ns since the epoch -> 'YYYYMMDD-HH:MM:SS.sss' (FIX 4.4 has millisecond timestamps)."""
    sec, rem = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec)) + f".{rem // 1_000_000:03d}"


def avg_px(notional: int, cum_qty: int) -> int:
    """Average price in 1e-4 units from sum(last_px * last_qty) and CumQty, rounded half away
    from zero (EXECUTION_REPORT.avg_px's rule); 0 before any fill."""
    if cum_qty <= 0:
        return 0
    q, r = divmod(abs(notional), cum_qty)
    if 2 * r >= cum_qty:
        q += 1
    return -q if notional < 0 else q


_SIDE_IN: Final[dict[str, Side]] = {
    "1": Side.BUY,
    "2": Side.SELL,
    "5": Side.SELL_SHORT,
    "6": Side.SELL_SHORT_EXEMPT,
}
_SIDE_OUT: Final[dict[int, str]] = {int(v): k for k, v in _SIDE_IN.items()}
_ORD_TYPE_IN: Final[dict[str, OrdType]] = {"1": OrdType.MARKET, "2": OrdType.LIMIT}
_TIF_IN: Final[dict[str, TimeInForce]] = {
    chr(t.value): t for t in TimeInForce if t not in (TimeInForce.NONE, TimeInForce.GTD)
}

# RejectReason -> OrdRejReason(103): 0 broker option, 1 unknown symbol, 2 exchange closed,
# 3 order exceeds limit, 5 unknown order, 6 duplicate order, 11 unsupported order
# characteristic, 99 other.
ORD_REJ_REASON: Final[dict[RejectReason, int]] = {
    RejectReason.INVALID_SYMBOL: 1,
    RejectReason.PRICE_BANDS: 0,
    RejectReason.MAX_SIZE: 3,
    RejectReason.MAX_NOTIONAL: 3,
    RejectReason.CREDIT: 3,
    RejectReason.POSITION: 3,
    RejectReason.RATE_LIMIT: 0,
    RejectReason.SELF_MATCH: 0,
    RejectReason.RESTRICTED: 0,
    RejectReason.STALE_REFERENCE: 0,
    RejectReason.HALTED: 2,
    RejectReason.QUEUE_FULL: 99,
    RejectReason.DEGRADED: 2,
    RejectReason.DUPLICATE_CL_ORD_ID: 6,
    RejectReason.UNKNOWN_ORDER: 5,
    RejectReason.INVALID_ORDER: 11,
    RejectReason.VENUE_REJECT: 0,
    RejectReason.UNKNOWN: 99,
}
# RejectReason -> CxlRejReason(102): 1 unknown order, 2 broker option, 6 duplicate ClOrdID,
# 99 other.
CXL_REJ_REASON: Final[dict[RejectReason, int]] = {
    RejectReason.UNKNOWN_ORDER: 1,
    RejectReason.DUPLICATE_CL_ORD_ID: 6,
    RejectReason.UNKNOWN: 99,
    RejectReason.QUEUE_FULL: 99,
}


# --------------------------------------------------------------------------------------------
# Inbound
# --------------------------------------------------------------------------------------------

# The codec fills whole records from tuples in dtype order (one numpy call instead of one per
# field); a layout change must be mirrored here, and this check makes the import fail until it is.
_ORDER_FIELDS: Final[tuple[str, ...]] = (
    "type_id", "version", "flags", "seq", "ts_ns", "order_id", "orig_order_id", "price", "qty",
    "instrument_id", "account_id", "strategy_id", "session_id", "venue_id", "action", "side",
    "ord_type", "time_in_force", "symbol", "cl_ord_id", "orig_cl_ord_id", "account",
    "transact_ns",
)  # fmt: skip
_REPORT_FIELDS: Final[tuple[str, ...]] = (
    "type_id", "version", "flags", "seq", "ts_ns", "order_id", "venue_order_id", "exec_id",
    "price", "order_qty", "last_px", "last_qty", "cum_qty", "leaves_qty", "avg_px",
    "instrument_id", "account_id", "strategy_id", "session_id", "venue_id", "exec_type",
    "ord_status", "side", "reject_reason", "symbol", "order_token", "cl_ord_id",
    "orig_cl_ord_id", "transact_ns",
)  # fmt: skip
if ORDER_REQUEST.dtype.names != _ORDER_FIELDS or ORDER_REQUEST.version != 1:
    raise ImportError("adapters.fix.codec maps ORDER_REQUEST v1; update it for the new layout")
if EXECUTION_REPORT.dtype.names != _REPORT_FIELDS or EXECUTION_REPORT.version != 1:
    raise ImportError("adapters.fix.codec maps EXECUTION_REPORT v1; update it for the new layout")

# FIX 4.4 DATA fields may hold SOH bytes: a message carrying one is read tag by tag instead.
_DATA_TAGS: Final[tuple[str, ...]] = tuple(
    str(t) for t in (89, 91, 96, 213, 349, 351, 353, 355, 357, 359, 361, 363, 365, 446, 619, 622)
)
_WANTED_BODY: Final[tuple[int, ...]] = (
    ACCOUNT, CL_ORD_ID, ORDER_ID, ORDER_QTY, ORD_TYPE, ORIG_CL_ORD_ID, PRICE, SIDE, SYMBOL,
    TIME_IN_FORCE, TRANSACT_TIME,
)  # fmt: skip
_WANTED_HEADER: Final[tuple[int, ...]] = (MSG_SEQ_NUM, MSG_TYPE, POSS_DUP_FLAG, POSS_RESEND)

Fields = dict[str, str]
_SPLIT_TAG: Final = operator.methodcaller("split", "=", 1)


def message_fields(message: Any) -> Fields:
    """Tag (as text) -> value of every field of a quickfix message, header included.

    One `toString()` call and a split: reading a dozen tags one SWIG call at a time costs several
    times more. Tags Tectra reads never sit inside repeating groups of D/F/G/H, and quickfix's
    dictionary check has already refused repeated tags, so one value per tag is enough."""
    raw = str(message.toString())
    try:
        fields = dict(map(_SPLIT_TAG, raw.split("\x01")[:-1]))  # the text ends with SOH
    except ValueError:
        fields = {}
    if not fields or any(t in fields for t in _DATA_TAGS):
        fields = {}
        for source, tags in ((message.getHeader(), _WANTED_HEADER), (message, _WANTED_BODY)):
            for tag in tags:
                if source.isSetField(tag):
                    fields[str(tag)] = str(source.getField(tag))
    return fields


@dataclass(frozen=True)
class SessionDefaults:
    """What a session contributes to each of its records."""

    session_id: int
    account: str = ""
    account_id: int = 0
    strategy_id: int = 0


@dataclass(frozen=True)
class DecodedRequest:
    """One inbound application message as a record."""

    kind: RequestKind
    record: npt.NDArray[np.void]
    """ORDER_REQUEST, shape (1,): a batch of one, ready for a ring push."""
    cl_ord_id: str
    poss_dup: bool
    """PossDupFlag(43)=Y or PossResend(97)=Y: may repeat an order already received."""
    msg_seq_num: int
    """MsgSeqNum(34) of the message (0 if absent)."""


def _require(f: Fields, tag: int) -> str:
    value = f.get(str(tag))
    if not value:
        raise _missing(tag)
    return value


def _id_field(f: Fields, tag: int) -> bytes:
    value = _require(f, tag)
    if len(value) > CL_ORD_ID_WIDTH:
        raise _bad_value(tag, f"{value!r} is longer than {CL_ORD_ID_WIDTH} characters")
    if not _PRINTABLE_RE.match(value):
        raise _bad_value(tag, f"{value!r} must be printable ASCII")
    return value.encode("ascii")


def _quantity(f: Fields, tag: int) -> int:
    text = _require(f, tag)
    match = _QTY_RE.match(text)
    if match is None:
        raise _bad_value(tag, f"{text!r} is not a whole positive quantity")
    qty = int(match[1])
    if qty <= 0:
        raise _bad_value(tag, f"{text!r} must be greater than zero")
    return qty


def _price(f: Fields, ord_type: OrdType) -> int:
    text = f.get("44")
    if ord_type == OrdType.MARKET:
        if text is not None:
            raise _bad_value(PRICE, "not allowed on a market order")
        return 0
    if text is None:
        raise _business(
            BusinessRejectReason.CONDITIONALLY_REQUIRED_FIELD_MISSING,
            "Price(44) is required for a limit order",
        )
    try:
        value = price_to_fixed(text)
    except SchemaError as exc:
        if "decimal places" in str(exc):
            raise _bad_value(PRICE, f"{text!r} has more than 4 decimal places") from exc
        raise _bad_format(PRICE, f"{text!r} is not a decimal price") from exc
    if value <= 0:
        raise _bad_value(PRICE, f"{text!r} must be greater than zero")
    return value


def _order_id(f: Fields) -> int:
    # OrderID(37) we issue is the gateway order id in decimal; anything else (e.g. "NONE") is
    # not ours to resolve and is left to ClOrdID lookup.
    text = f.get("37")
    if text is None or not _DIGITS_RE.match(text) or int(text) > 0xFFFF_FFFF_FFFF_FFFF:
        return 0
    return int(text)


def decode_request(message: Any, defaults: SessionDefaults, recv_ns: int) -> DecodedRequest:
    """A D/F/G/H quickfix message -> ORDER_REQUEST (header ts_ns = `recv_ns`, seq 0).

    Raises MessageRejectedError for anything else, or when a field cannot be represented
    exactly: ClOrdID/OrigClOrdID over 20 characters, a price with more than 4 decimals, an
    unsupported Side/OrdType/TimeInForce, a missing Symbol/OrderQty/Price, a foreign Account.
    """
    f = message_fields(message)
    msg_type = f.get("35", "")
    try:
        kind = RequestKind(msg_type)
    except ValueError:
        raise _business(
            BusinessRejectReason.UNSUPPORTED_MESSAGE_TYPE,
            f"unsupported message type {msg_type!r}: D, F, G and H are accepted",
        ) from None
    cl_ord_id = _id_field(f, CL_ORD_ID)
    side_text = _require(f, SIDE)
    side = _SIDE_IN.get(side_text)
    if side is None:
        raise _bad_value(SIDE, f"{side_text!r} not supported: 1 buy, 2 sell, 5 short, 6 exempt")
    symbol = _require(f, SYMBOL)
    try:
        symbol_bytes = encode_symbol(symbol)
    except SchemaError as exc:
        raise _bad_value(SYMBOL, f"{symbol!r} must be 1 to 8 printable characters") from exc

    account = f.get("1")
    if account is not None and defaults.account and account != defaults.account:
        raise _business(
            BusinessRejectReason.NOT_AUTHORIZED,
            f"Account(1) {account!r} is not this session's account",
        )
    account = account if account is not None else defaults.account
    if len(account) > ACCOUNT_WIDTH or not _PRINTABLE_RE.match(account or " "):
        raise _bad_value(ACCOUNT, f"{account!r} must be at most {ACCOUNT_WIDTH} characters")

    transact_ns = 0
    transact = f.get("60")
    if transact is not None:
        try:
            transact_ns = parse_utc_timestamp(transact)
        except ValueError as exc:
            raise _bad_format(TRANSACT_TIME, f"{transact!r} is not a UTCTimestamp") from exc

    order_id = orig_order_id = 0
    orig_cl_ord_id = b""
    if kind in (RequestKind.CANCEL, RequestKind.REPLACE):
        orig_cl_ord_id = _id_field(f, ORIG_CL_ORD_ID)
        orig_order_id = _order_id(f)
    elif kind == RequestKind.STATUS:
        order_id = _order_id(f)

    ord_type = OrdType.NONE
    tif = TimeInForce.NONE
    qty = price = 0
    if kind in (RequestKind.NEW, RequestKind.REPLACE):
        type_text = _require(f, ORD_TYPE)
        found_type = _ORD_TYPE_IN.get(type_text)
        if found_type is None:
            raise _bad_value(ORD_TYPE, f"{type_text!r} not supported: 1 market, 2 limit")
        ord_type = found_type
        qty = _quantity(f, ORDER_QTY)
        price = _price(f, ord_type)
        tif_text = f.get("59")
        if tif_text is None:
            tif = TimeInForce.DAY
        else:
            found_tif = _TIF_IN.get(tif_text)
            if found_tif is None:
                raise _bad_value(TIME_IN_FORCE, f"{tif_text!r} not supported (GTD has no expiry)")
            tif = found_tif
    elif kind == RequestKind.CANCEL and "38" in f:
        _quantity(f, ORDER_QTY)  # validated, not carried: a CANCEL record has qty 0

    rec = np.zeros(1, dtype=ORDER_REQUEST.dtype)
    rec[0] = (
        ORDER_REQUEST.type_id, ORDER_REQUEST.version, 0, 0, recv_ns, order_id, orig_order_id,
        price, qty, 0, defaults.account_id, defaults.strategy_id, defaults.session_id, 0,
        _ACTIONS[kind], side, ord_type, tif, symbol_bytes, cl_ord_id, orig_cl_ord_id,
        account.encode("ascii"), transact_ns,
    )  # fmt: skip
    seq_text = f.get("34", "")
    return DecodedRequest(
        kind,
        rec,
        cl_ord_id.decode("ascii"),
        f.get("43") == "Y" or f.get("97") == "Y",
        int(seq_text) if seq_text.isdigit() else 0,
    )


# --------------------------------------------------------------------------------------------
# Outbound
# --------------------------------------------------------------------------------------------

_TERMINAL: Final[frozenset[int]] = frozenset(
    {OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED}
    | {OrdStatus.DONE_FOR_DAY}
)
_WORKING: Final[frozenset[int]] = frozenset(
    {OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED, OrdStatus.PENDING_NEW}
    | {OrdStatus.PENDING_CANCEL, OrdStatus.PENDING_REPLACE, OrdStatus.REPLACED}
)
_TRADE_STATUS: Final[frozenset[int]] = frozenset(
    {OrdStatus.PARTIALLY_FILLED, OrdStatus.FILLED, OrdStatus.PENDING_CANCEL}
    | {OrdStatus.PENDING_REPLACE}
)
_FILL_TYPES: Final[frozenset[int]] = frozenset(
    {ExecType.TRADE, ExecType.TRADE_CORRECT, ExecType.TRADE_CANCEL}
)
_EXEC_TYPES: Final[frozenset[int]] = frozenset(int(x) for x in ExecType if x != ExecType.NONE)
_ORD_STATUSES: Final[frozenset[int]] = frozenset(int(x) for x in OrdStatus if x != OrdStatus.NONE)
_REJECT_REASONS: Final[dict[int, RejectReason]] = {int(x): x for x in RejectReason}
_I = {name: i for i, name in enumerate(_REPORT_FIELDS)}
(_ORDER_ID, _VENUE_ORDER_ID, _EXEC_ID, _PRICE, _ORDER_QTY, _LAST_PX, _LAST_QTY, _CUM_QTY,
 _LEAVES_QTY, _AVG_PX, _EXEC_TYPE, _ORD_STATUS, _SIDE, _REJECT_REASON, _SYMBOL, _CL_ORD_ID,
 _ORIG_CL_ORD_ID, _TRANSACT_NS) = (
    _I[n] for n in (
        "order_id", "venue_order_id", "exec_id", "price", "order_qty", "last_px", "last_qty",
        "cum_qty", "leaves_qty", "avg_px", "exec_type", "ord_status", "side", "reject_reason",
        "symbol", "cl_ord_id", "orig_cl_ord_id", "transact_ns",
    )
)  # fmt: skip
_UNSAFE_RE: Final[re.Pattern[bytes]] = re.compile(rb"[^\x20-\x7e]")
_UNSAFE_TEXT_RE: Final[re.Pattern[str]] = re.compile(r"[^\x20-\x7e]")


def _values(record: np.void | npt.NDArray[np.void]) -> tuple[Any, ...]:
    """The record as a plain tuple (one numpy call; fields read by index afterwards)."""
    if isinstance(record, np.ndarray):
        if record.shape != (1,):
            raise ReportInvalidError(f"expected one record, got shape {record.shape}")
        record = record[0]
    if record.dtype != EXECUTION_REPORT.dtype:
        raise ReportInvalidError("record is not an EXECUTION_REPORT")
    return tuple(record.item())


def _report_problems(v: tuple[Any, ...]) -> list[str]:
    problems: list[str] = []
    et, st = v[_EXEC_TYPE], v[_ORD_STATUS]
    order_qty, cum, leaves, last_qty = v[_ORDER_QTY], v[_CUM_QTY], v[_LEAVES_QTY], v[_LAST_QTY]
    st_name = OrdStatus(st).name if st in _ORD_STATUSES else str(st)
    if et not in _EXEC_TYPES:
        problems.append(f"exec_type {et} is not a FIX ExecType")
    if st not in _ORD_STATUSES:
        problems.append(f"ord_status {st} is not a FIX OrdStatus")
    if v[_REJECT_REASON] not in _REJECT_REASONS:
        problems.append(f"reject_reason {v[_REJECT_REASON]} unknown")
    if v[_SIDE] not in _SIDE_OUT:
        problems.append(f"side {v[_SIDE]} has no FIX Side")
    if not v[_CL_ORD_ID]:
        problems.append("cl_ord_id is empty")
    if v[_EXEC_ID] == 0:
        problems.append("exec_id is 0 (ExecID must be unique per report)")
    if min(order_qty, cum, leaves, last_qty) < 0:
        problems.append("negative quantity")
    if st in _TERMINAL and leaves != 0:
        problems.append(f"OrdStatus {st_name} needs LeavesQty 0, got {leaves}")
    if st in _WORKING and leaves != order_qty - cum:
        problems.append(f"LeavesQty {leaves} != OrderQty {order_qty} - CumQty {cum}")
    if st in (OrdStatus.NEW, OrdStatus.PENDING_NEW) and cum != 0:
        problems.append(f"OrdStatus {st_name} with CumQty {cum}")
    if st == OrdStatus.PARTIALLY_FILLED and not 0 < cum < order_qty:
        problems.append(f"PARTIALLY_FILLED needs 0 < CumQty {cum} < OrderQty {order_qty}")
    if st == OrdStatus.FILLED and (cum != order_qty or cum == 0):
        problems.append(f"FILLED needs CumQty {cum} == OrderQty {order_qty} > 0")
    if cum > order_qty:
        problems.append(f"CumQty {cum} exceeds OrderQty {order_qty}")
    if et == ExecType.TRADE:
        if not 0 < last_qty <= cum:
            problems.append(f"Trade needs 0 < LastQty {last_qty} <= CumQty {cum}")
        if st not in _TRADE_STATUS:
            problems.append(f"Trade with OrdStatus {st_name}")
    elif et not in _FILL_TYPES and last_qty != 0:
        problems.append(f"LastQty {last_qty} on a non-trade report")
    if cum == 0 and v[_AVG_PX] != 0:
        problems.append("AvgPx set before any fill")
    rejected_type, rejected_status = et == ExecType.REJECTED, st == OrdStatus.REJECTED
    if rejected_type != rejected_status and et != ExecType.ORDER_STATUS:
        problems.append("ExecType REJECTED and OrdStatus REJECTED go together")
    for i in (_SYMBOL, _CL_ORD_ID, _ORIG_CL_ORD_ID):
        if _UNSAFE_RE.search(v[i]):
            problems.append(f"{_REPORT_FIELDS[i]} {v[i]!r} is not printable ASCII")
    return problems


def check_execution_report(record: np.void | npt.NDArray[np.void]) -> None:
    """Raise ReportInvalidError unless the report is consistent per FIX 4.4.

    Working orders: LeavesQty = OrderQty - CumQty; done orders: LeavesQty = 0; New: CumQty 0;
    PartiallyFilled: 0 < CumQty < OrderQty; Filled: CumQty = OrderQty; a Trade has
    0 < LastQty <= CumQty; no fill yet means AvgPx 0; ExecType Rejected goes with OrdStatus
    Rejected; text fields are printable ASCII.
    """
    problems = _report_problems(_values(record))
    if problems:
        raise ReportInvalidError("; ".join(problems))


class _TimestampText:
    """'YYYYMMDD-HH:MM:SS.sss' with the strftime part cached per second (a tuple swapped
    atomically, so threads may share it)."""

    def __init__(self) -> None:
        self._cache: tuple[int, str] = (-1, "")

    def __call__(self, ns: int) -> str:
        sec, rem = divmod(ns, 1_000_000_000)
        cached_sec, prefix = self._cache
        if sec != cached_sec:
            prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(sec))
            self._cache = (sec, prefix)
        return f"{prefix}.{rem // 1_000_000:03d}"


_timestamp_text = _TimestampText()


def _message(body: str) -> Any:
    # Built as FIX text and parsed once by quickfix: twenty setField calls through SWIG cost
    # three times as much. quickfix fills in the header and recomputes BodyLength/CheckSum.
    return fix.Message(f"8=FIX.4.4\x019={len(body)}\x01{body}10=000\x01", False)


def _clean_text(text: str) -> str:
    return _UNSAFE_TEXT_RE.sub("?", text)[:200]


def _reason_text(v: tuple[Any, ...], text: str) -> str:
    reason = _REJECT_REASONS.get(v[_REJECT_REASON], RejectReason.UNKNOWN)
    name = reason.name if reason != RejectReason.NONE else ""
    return ": ".join(x for x in (name, _clean_text(text)) if x)


def _common(v: tuple[Any, ...], account: str) -> list[str]:
    if account and _UNSAFE_TEXT_RE.search(account):
        raise ReportInvalidError(f"account {account!r} is not printable ASCII")
    parts = [f"1={account}"] if account else []
    parts.append(f"11={v[_CL_ORD_ID].decode()}")
    parts.append(f"37={v[_ORDER_ID] or 'NONE'}")
    if v[_ORIG_CL_ORD_ID]:
        parts.append(f"41={v[_ORIG_CL_ORD_ID].decode()}")
    parts.append(f"60={_timestamp_text(v[_TRANSACT_NS] or time.time_ns())}")
    if v[_VENUE_ORDER_ID]:
        parts.append(f"198={v[_VENUE_ORDER_ID]}")
    return parts


def encode_execution_report(
    record: np.void | npt.NDArray[np.void], *, account: str = "", text: str = ""
) -> Any:
    """EXECUTION_REPORT -> quickfix ExecutionReport (35=8); ReportInvalidError if inconsistent.

    OrderID(37) is the gateway order id ('NONE' when 0), SecondaryOrderID(198) the venue's; on a
    reject OrdRejReason(103) and Text(58) come from reject_reason (plus `text`).
    """
    v = _values(record)
    problems = _report_problems(v)
    if problems:
        raise ReportInvalidError("; ".join(problems))
    parts = _common(v, account)
    parts += [
        f"6={fixed_to_str(v[_AVG_PX])}",
        f"14={v[_CUM_QTY]}",
        f"17={v[_EXEC_ID]}",
        f"38={v[_ORDER_QTY]}",
        f"39={chr(v[_ORD_STATUS])}",
        f"54={_SIDE_OUT[v[_SIDE]]}",
        f"150={chr(v[_EXEC_TYPE])}",
        f"151={v[_LEAVES_QTY]}",
    ]
    symbol = v[_SYMBOL].rstrip(b" ")
    if symbol:
        parts.append(f"55={symbol.decode()}")
    if v[_PRICE]:
        parts.append(f"44={fixed_to_str(v[_PRICE])}")
    if v[_LAST_QTY]:
        parts.append(f"31={fixed_to_str(v[_LAST_PX])}")
        parts.append(f"32={v[_LAST_QTY]}")
    if v[_ORD_STATUS] == OrdStatus.REJECTED:
        reason = _REJECT_REASONS[v[_REJECT_REASON]]
        parts.append(f"103={ORD_REJ_REASON.get(reason, 99)}")
    full_text = _reason_text(v, text)
    if full_text:
        parts.append(f"58={full_text}")
    return _message("35=8\x01" + "\x01".join(parts) + "\x01")


def check_cancel_reject(record: np.void | npt.NDArray[np.void]) -> None:
    """Raise ReportInvalidError unless the record can become an OrderCancelReject."""
    problems = _cancel_reject_problems(_values(record))
    if problems:
        raise ReportInvalidError("; ".join(problems))


def _cancel_reject_problems(v: tuple[Any, ...]) -> list[str]:
    problems = []
    if not v[_CL_ORD_ID] or not v[_ORIG_CL_ORD_ID]:
        problems.append("a cancel reject needs cl_ord_id and orig_cl_ord_id")
    if v[_ORD_STATUS] not in _ORD_STATUSES:
        problems.append(f"ord_status {v[_ORD_STATUS]} is not a FIX OrdStatus")
    if v[_REJECT_REASON] not in _REJECT_REASONS:
        problems.append(f"reject_reason {v[_REJECT_REASON]} unknown")
    for i in (_CL_ORD_ID, _ORIG_CL_ORD_ID):
        if _UNSAFE_RE.search(v[i]):
            problems.append(f"{_REPORT_FIELDS[i]} {v[i]!r} is not printable ASCII")
    return problems


def encode_cancel_reject(
    record: np.void | npt.NDArray[np.void],
    *,
    response_to: OrderAction,
    account: str = "",
    text: str = "",
) -> Any:
    """EXECUTION_REPORT (cl_ord_id = the cancel/replace request's, orig_cl_ord_id = the order's,
    ord_status = the order's current status, reject_reason) -> OrderCancelReject (35=9)."""
    if response_to not in (OrderAction.CANCEL, OrderAction.REPLACE):
        raise ReportInvalidError(f"response_to must be CANCEL or REPLACE, not {response_to!r}")
    v = _values(record)
    problems = _cancel_reject_problems(v)
    if problems:
        raise ReportInvalidError("; ".join(problems))
    parts = _common(v, account)
    reason = _REJECT_REASONS[v[_REJECT_REASON]]
    parts += [
        f"39={chr(v[_ORD_STATUS])}",
        f"102={CXL_REJ_REASON.get(reason, 2)}",
        f"434={'1' if response_to == OrderAction.CANCEL else '2'}",
    ]
    full_text = _reason_text(v, text)
    if full_text:
        parts.append(f"58={full_text}")
    return _message("35=9\x01" + "\x01".join(parts) + "\x01")


def encode_reject(
    rejection: Rejection, *, ref_seq_num: int, ref_msg_type: str, ref_id: str = ""
) -> Any:
    """A Reject (35=3) or BusinessMessageReject (35=j) answering message `ref_seq_num`."""
    msg = fix.Message()
    msg.getHeader().setField(MSG_TYPE, rejection.msg_type)
    msg.setField(REF_SEQ_NUM, str(ref_seq_num))
    msg.setField(REF_MSG_TYPE, ref_msg_type)
    msg.setField(TEXT, rejection.text[:200])
    if rejection.msg_type == "3":
        msg.setField(SESSION_REJECT_REASON, str(rejection.reason))
        if rejection.ref_tag is not None:
            msg.setField(REF_TAG_ID, str(rejection.ref_tag))
    else:
        msg.setField(BUSINESS_REJECT_REASON, str(rejection.reason))
        if ref_id:
            msg.setField(BUSINESS_REJECT_REF_ID, ref_id)
    return msg
