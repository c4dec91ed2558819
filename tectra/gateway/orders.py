"""Order state: the FIX 4.4 order state machine over a bounded, array-backed order store.

This module owns what the gateway believes about each of its orders:

* `OrderStore(capacity)`: every order the gateway knows, one row of `ORDER_ROW_DTYPE` per order
  in a fixed-size numpy array (ids, ClOrdIDs, account/strategy/session/venue/instrument, side,
  price, quantities, exact fill notional, average price, status, venue token). Batch inputs:
  `on_requests(ORDER_REQUEST records, now_ns)` for client new/cancel/replace requests and
  `on_reports(EXECUTION_REPORT records, now_ns)` for what the venue said (as produced by
  `adapters.ouch42.OuchOrderTracker`). Every status change, and every fill, is one row of
  `TRANSITION_DTYPE`; a call's rows are returned (`on_reports`) or left in `last_transitions`
  (`on_requests`) for the journal.
* The transition table (`docs/gateway.md`): PENDING_NEW -> NEW -> PARTIALLY_FILLED -> FILLED;
  PENDING_CANCEL -> CANCELED, or back on a cancel reject; PENDING_REPLACE -> REPLACED, the
  replacement continuing under its own order id / ClOrdID with the cum qty carried over;
  REJECTED; DONE_FOR_DAY and EXPIRED when the venue says so.
* Bad input never corrupts state: an invalid request is refused with a `RejectReason` (and a
  finer `RequestRejectCause` counter); a report for an unknown order, one that would overfill,
  or one that makes no sense in the order's status is counted (`ReportIssue`) and ignored.
* Fixed point: prices int64 in 1e-4 units, quantities int64, both bounded by `MAX_PRICE` and
  `MAX_QTY` (2**31 - 1) so a fill notional, and the sum of an order's fill notionals, stay below
  2**62. `avg_px` = notional / cum_qty rounded half away from zero (`round_div`), as the
  EXECUTION_REPORT schema says.
* `state_arrays()` / `OrderStore.from_state_arrays()` and `OrderStateComponent`, the journal
  `Component` wrapper (`tectra.journal.capture`), whose `snapshot()` bytes are deterministic.

A step is a pure function of (state, inputs, now_ns): no clock, no I/O, no randomness.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import (
    CL_ORD_ID_WIDTH,
    EXECUTION_REPORT,
    ORDER_REQUEST,
    ORDER_TOKEN_WIDTH,
    SYMBOL_WIDTH,
    Component,
    ExecType,
    OrderAction,
    OrdStatus,
    OrdType,
    RejectReason,
    Side,
    new_records,
)

__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "MAX_PRICE",
    "MAX_QTY",
    "ORDER_ROW_DTYPE",
    "ORDER_TRANSITION_TYPE",
    "TRANSITION_DTYPE",
    "OrderStateComponent",
    "OrderStore",
    "OrderStoreError",
    "ReportIssue",
    "RequestRejectCause",
    "TransitionSource",
    "pack_arrays",
    "request_rejects",
    "round_div",
    "unpack_arrays",
]

MAX_PRICE: Final[int] = 2**31 - 1
"""Largest accepted price (1e-4 units, $214 748.3647); OUCH 4.2 prices are 32-bit too."""
MAX_QTY: Final[int] = 2**31 - 1
"""Largest accepted order or fill quantity; with MAX_PRICE, any sum of fills of one order
(cum_qty <= MAX_QTY) has |notional| < 2**62, inside int64."""

ORDER_TRANSITION_TYPE: Final[int] = 0xF040
"""Opaque journal type code under which `OrderStateComponent` journals transition rows (one
`TRANSITION_DTYPE` row per payload). Proposed for `tectra.journal.format.RecordType`."""


class OrderStoreError(ValueError):
    """A call the store cannot accept at all (wrong dtype, bad capacity, bad state arrays)."""


class RequestRejectCause(enum.IntEnum):
    """Why `on_requests` refused a request (finer than `RejectReason`; each is counted)."""

    NONE = 0
    INVALID_FIELDS = 1  # side, quantity, price, order type, ids out of range  -> INVALID_ORDER
    DUPLICATE_CL_ORD_ID = 2  # ClOrdID already used in this session -> DUPLICATE_CL_ORD_ID
    DUPLICATE_ORDER_ID = 3  # gateway order id already in the store -> INVALID_ORDER
    UNKNOWN_ORDER = 4  # cancel/replace of an order the store does not know -> UNKNOWN_ORDER
    ORDER_FINAL = 5  # cancel/replace of a filled/canceled/... order ("too late") -> UNKNOWN_ORDER
    ORDER_PENDING = 6  # cancel/replace while a cancel or replace is pending -> INVALID_ORDER
    REPLACE_BELOW_CUM = 7  # replace to a qty not above the filled qty -> INVALID_ORDER
    MISMATCH = 8  # cancel/replace naming another session/account/side/instrument -> INVALID_ORDER
    STORE_FULL = 9  # no free row even after reclaiming final orders -> QUEUE_FULL
    UNKNOWN_ACTION = 10  # action not NEW/CANCEL/REPLACE -> INVALID_ORDER


_CAUSE_REASON: Final[Mapping[RequestRejectCause, RejectReason]] = {
    RequestRejectCause.NONE: RejectReason.NONE,
    RequestRejectCause.INVALID_FIELDS: RejectReason.INVALID_ORDER,
    RequestRejectCause.DUPLICATE_CL_ORD_ID: RejectReason.DUPLICATE_CL_ORD_ID,
    RequestRejectCause.DUPLICATE_ORDER_ID: RejectReason.INVALID_ORDER,
    RequestRejectCause.UNKNOWN_ORDER: RejectReason.UNKNOWN_ORDER,
    RequestRejectCause.ORDER_FINAL: RejectReason.UNKNOWN_ORDER,
    RequestRejectCause.ORDER_PENDING: RejectReason.INVALID_ORDER,
    RequestRejectCause.REPLACE_BELOW_CUM: RejectReason.INVALID_ORDER,
    RequestRejectCause.MISMATCH: RejectReason.INVALID_ORDER,
    RequestRejectCause.STORE_FULL: RejectReason.QUEUE_FULL,
    RequestRejectCause.UNKNOWN_ACTION: RejectReason.INVALID_ORDER,
}


class ReportIssue(enum.IntEnum):
    """Why `on_reports` ignored an EXECUTION_REPORT (each is counted; state is untouched)."""

    NONE = 0
    UNKNOWN_ORDER = 1  # order_id not in the store
    OVERFILL = 2  # cum_qty + last_qty would exceed the order quantity
    BAD_FILL = 3  # fill/bust with last_qty or last_px out of range, or a bust of more than filled
    FINAL_ORDER = 4  # the order is already final (late or duplicate report)
    INVALID_TRANSITION = 5  # exec type makes no sense in the order's current status
    UNSUPPORTED = 6  # exec type the store does not act on (ORDER_STATUS, CALCULATED, ...)
    OVERFLOW = 7  # an int64 sum would overflow


class TransitionSource(enum.IntEnum):
    """What caused a transition row."""

    NONE = 0
    REQUEST = 1  # a client request (ORDER_REQUEST)
    REPORT = 2  # a venue report (EXECUTION_REPORT)
    INTERNAL = 3  # a consequence of another transition (a replacement orphaned by a fill)


LIVE_STATUSES: Final[frozenset[int]] = frozenset(
    {
        OrdStatus.PENDING_NEW,
        OrdStatus.NEW,
        OrdStatus.PARTIALLY_FILLED,
        OrdStatus.PENDING_CANCEL,
        OrdStatus.PENDING_REPLACE,
    }
)
FINAL_STATUSES: Final[frozenset[int]] = frozenset(
    {
        OrdStatus.FILLED,
        OrdStatus.CANCELED,
        OrdStatus.REPLACED,
        OrdStatus.REJECTED,
        OrdStatus.DONE_FOR_DAY,
        OrdStatus.EXPIRED,
    }
)
_STAGED: Final[int] = int(OrdStatus.NONE)  # a replacement waiting for the venue's REPLACED
_PENDING: Final[frozenset[int]] = frozenset({OrdStatus.PENDING_CANCEL, OrdStatus.PENDING_REPLACE})
_SIDES: Final[frozenset[int]] = frozenset(
    {Side.BUY, Side.SELL, Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT}
)

ORDER_ROW_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    [
        ("used", "u1"),
        ("status", "u1"),
        ("prev_status", "u1"),  # status to return to when a pending cancel/replace is refused
        ("side", "u1"),
        ("account_id", "<u4"),
        ("strategy_id", "<u4"),
        ("session_id", "<u4"),
        ("venue_id", "<u4"),
        ("instrument_id", "<u4"),
        ("order_id", "<u8"),
        ("orig_order_id", "<u8"),  # a replacement: the order it replaces
        ("replaced_by", "<u8"),  # an order in PENDING_REPLACE: its staged replacement
        ("final_seq", "<u8"),  # order in which rows became final (reclaim oldest first)
        ("price", "<i8"),
        ("order_qty", "<i8"),
        ("cum_qty", "<i8"),
        ("leaves_qty", "<i8"),
        ("notional", "<i8"),  # exact sum of last_qty * last_px over fills, 1e-4 units
        ("avg_px", "<i8"),  # round_div(notional, cum_qty)
        ("created_ns", "<i8"),
        ("updated_ns", "<i8"),
        ("cl_ord_id", f"S{CL_ORD_ID_WIDTH}"),
        ("orig_cl_ord_id", f"S{CL_ORD_ID_WIDTH}"),
        ("pending_cl_ord_id", f"S{CL_ORD_ID_WIDTH}"),  # ClOrdID of a pending cancel request
        ("token", f"S{ORDER_TOKEN_WIDTH}"),
        ("symbol", f"S{SYMBOL_WIDTH}"),
    ]
)
"""One order of the store. Not a ring record: it lives only inside `OrderStore` snapshots."""

TRANSITION_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    [
        ("seq", "<u8"),  # transition number in this store, from 1, never reused
        ("order_id", "<u8"),
        ("ts_ns", "<i8"),  # now_ns of the step that made it
        ("last_qty", "<i8"),  # fill (or bust) quantity, else 0
        ("last_px", "<i8"),  # fill (or bust) price, else 0
        ("order_qty", "<i8"),  # figures after the transition
        ("price", "<i8"),
        ("cum_qty", "<i8"),
        ("leaves_qty", "<i8"),
        ("avg_px", "<i8"),
        ("exec_id", "<u8"),  # the report's exec_id, or the request's order id
        ("reject_reason", "<u2"),
        ("from_status", "u1"),
        ("to_status", "u1"),
        ("exec_type", "u1"),
        ("source", "u1"),
        ("pad", "V2"),
        ("request_cl_ord_id", f"S{CL_ORD_ID_WIDTH}"),  # see below
        ("pad2", "V12"),
    ]
)
"""One journaled state change (128 bytes). `request_cl_ord_id` is the ClOrdID of the cancel or
replace request a transition answers (PENDING_CANCEL/PENDING_REPLACE, the cancel/replace reject,
CANCELED after a cancel request), empty otherwise: the client's ExecutionReport or
OrderCancelReject carries it as ClOrdID and the order's own as OrigClOrdID.
from_status NONE means the order was created (or a replacement was staged); from == to records
a fill or restatement without a status change."""


def round_div(num: int, den: int) -> int:
    """num / den rounded half away from zero, exact for any Python ints (den != 0)."""
    if den == 0:
        raise ZeroDivisionError("round_div by zero")
    if den < 0:
        num, den = -num, -den
    magnitude = (2 * abs(num) + den) // (2 * den)
    return magnitude if num >= 0 else -magnitude


# --------------------------------------------------------------------------------------------
# Deterministic array (de)serialisation for snapshots
# --------------------------------------------------------------------------------------------

_SNAP_MAGIC: Final[bytes] = b"TECTRA-ARRAYS\x00\x01"
_LEN: Final[struct.Struct] = struct.Struct("<Q")


def pack_arrays(arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Named arrays -> bytes; same arrays, same bytes (no timestamps, names sorted)."""
    out = [_SNAP_MAGIC]
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        meta = json.dumps(
            {"name": name, "descr": np.lib.format.dtype_to_descr(arr.dtype), "shape": arr.shape},
            sort_keys=True,
        ).encode()
        data = arr.tobytes()
        out += [_LEN.pack(len(meta)), meta, _LEN.pack(len(data)), data]
    return b"".join(out)


def unpack_arrays(blob: bytes) -> dict[str, npt.NDArray[Any]]:
    """The inverse of `pack_arrays`; OrderStoreError on anything malformed."""
    if not blob.startswith(_SNAP_MAGIC):
        raise OrderStoreError("not a packed array snapshot")
    pos = len(_SNAP_MAGIC)
    result: dict[str, npt.NDArray[Any]] = {}
    try:
        while pos < len(blob):
            (n,) = _LEN.unpack_from(blob, pos)
            meta = json.loads(blob[pos + 8 : pos + 8 + n])
            pos += 8 + n
            (m,) = _LEN.unpack_from(blob, pos)
            raw = blob[pos + 8 : pos + 8 + m]
            if len(raw) != m:
                raise OrderStoreError("truncated snapshot")
            pos += 8 + m
            dtype = np.lib.format.descr_to_dtype(_descr_fix(meta["descr"]))
            arr = np.frombuffer(raw, dtype=dtype).reshape(tuple(meta["shape"])).copy()
            result[str(meta["name"])] = arr
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise OrderStoreError(f"malformed snapshot: {exc}") from exc
    return result


def _descr_fix(descr: Any) -> Any:
    # json turns a structured descr's (name, format[, shape]) tuples into lists; put them back.
    if not isinstance(descr, list):
        return descr
    fields = []
    for item in descr:
        name, fmt, *shape = item
        entry: tuple[Any, ...] = (name, _descr_fix(fmt))
        if shape:
            entry += (tuple(shape[0]),)
        fields.append(entry)
    return fields


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class OrderStore:
    """Bounded order store and FIX 4.4 order state machine (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity <= 0:
            raise OrderStoreError(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.rows: npt.NDArray[np.void] = np.zeros(capacity, dtype=ORDER_ROW_DTYPE)
        self.request_rejects = np.zeros(len(RequestRejectCause), dtype=np.uint64)
        self.report_issues = np.zeros(len(ReportIssue), dtype=np.uint64)
        self.requests_accepted = 0
        self.reports_applied = 0
        self.transition_seq = 0
        self.final_seq = 0
        self.last_transitions: npt.NDArray[np.void] = np.zeros(0, dtype=TRANSITION_DTYPE)
        self.last_report_issues: npt.NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self._by_id: dict[int, int] = {}
        self._by_cl: dict[tuple[int, bytes], int] = {}
        self._free: list[int] = list(range(capacity - 1, -1, -1))  # pop() -> lowest slot
        self._out: list[tuple[Any, ...]] = []

    # ---- queries -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def slot_of(self, order_id: int) -> int | None:
        """Row index of an order id, or None."""
        return self._by_id.get(int(order_id))

    def order(self, order_id: int) -> dict[str, Any] | None:
        """One order as a dict of plain Python values (control plane, tests)."""
        slot = self._by_id.get(int(order_id))
        if slot is None:
            return None
        row = self.rows[slot]
        return {name: row[name].item() for name in ORDER_ROW_DTYPE.names or ()}

    def order_id_for(self, session_id: int, cl_ord_id: bytes) -> int | None:
        """Order id of the row holding (session, ClOrdID), or None."""
        slot = self._by_cl.get((int(session_id), bytes(cl_ord_id)))
        return None if slot is None else int(self.rows["order_id"][slot])

    def status(self, order_id: int) -> OrdStatus | None:
        slot = self._by_id.get(int(order_id))
        return None if slot is None else OrdStatus(int(self.rows["status"][slot]))

    def live_mask(self) -> npt.NDArray[np.bool_]:
        """Rows holding live (working or pending) orders."""
        live: npt.NDArray[np.bool_] = (self.rows["used"] == 1) & np.isin(
            self.rows["status"], sorted(LIVE_STATUSES)
        )
        return live

    def counters(self) -> dict[str, int]:
        """Accepted/applied totals and every reject cause and report issue, by name."""
        out = {
            "requests_accepted": self.requests_accepted,
            "reports_applied": self.reports_applied,
            "transitions": self.transition_seq,
        }
        for cause in RequestRejectCause:
            if cause:
                out[f"request_reject_{cause.name.lower()}"] = int(self.request_rejects[cause])
        for issue in ReportIssue:
            if issue:
                out[f"report_ignored_{issue.name.lower()}"] = int(self.report_issues[issue])
        return out

    def set_token(self, order_id: int, token: bytes) -> bool:
        """Record the venue token of an order (the gateway assigns it when sending)."""
        slot = self._by_id.get(int(order_id))
        if slot is None or len(token) > ORDER_TOKEN_WIDTH:
            return False
        self.rows["token"][slot] = token
        return True

    # ---- transitions -------------------------------------------------------------------------

    def _emit(
        self,
        slot: int,
        from_status: int,
        exec_type: int,
        source: TransitionSource,
        now_ns: int,
        *,
        last_qty: int = 0,
        last_px: int = 0,
        exec_id: int = 0,
        reason: int = 0,
        cl: bytes = b"",
    ) -> None:
        r = self.rows[slot]
        self.transition_seq += 1
        self._out.append(
            (
                self.transition_seq,
                int(r["order_id"]),
                now_ns,
                last_qty,
                last_px,
                int(r["order_qty"]),
                int(r["price"]),
                int(r["cum_qty"]),
                int(r["leaves_qty"]),
                int(r["avg_px"]),
                exec_id,
                reason,
                from_status,
                int(r["status"]),
                exec_type,
                int(source),
                b"\x00\x00",
                cl,
                b"\x00" * 12,
            )
        )

    def _drain(self) -> npt.NDArray[np.void]:
        out = (
            np.array(self._out, dtype=TRANSITION_DTYPE)
            if self._out
            else np.zeros(0, dtype=TRANSITION_DTYPE)
        )
        self._out = []
        self.last_transitions = out
        return out

    def _set_status(self, slot: int, status: int, now_ns: int) -> None:
        self.rows["status"][slot] = status
        self.rows["updated_ns"][slot] = now_ns
        if status in FINAL_STATUSES:
            self.rows["leaves_qty"][slot] = 0
            self.final_seq += 1
            self.rows["final_seq"][slot] = self.final_seq

    # ---- rows --------------------------------------------------------------------------------

    def _take_slot(self) -> int | None:
        if self._free:
            return self._free.pop()
        # Reclaim the order that became final first; staged and live rows are never reclaimed.
        used = self.rows["used"] == 1
        final = used & np.isin(self.rows["status"], sorted(FINAL_STATUSES))
        if not final.any():
            return None
        candidates = np.flatnonzero(final)
        slot = int(candidates[np.argmin(self.rows["final_seq"][candidates])])
        self._release(slot)
        return self._free.pop()

    def _release(self, slot: int) -> None:
        r = self.rows[slot]
        self._by_id.pop(int(r["order_id"]), None)
        key = (int(r["session_id"]), bytes(r["cl_ord_id"]))
        if self._by_cl.get(key) == slot:
            del self._by_cl[key]
        self.rows[slot] = np.zeros(1, dtype=ORDER_ROW_DTYPE)[0]
        self._free.append(slot)

    # ---- requests ----------------------------------------------------------------------------

    def on_requests(
        self, orders: npt.NDArray[np.void], now_ns: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint16]]:
        """Apply a batch of ORDER_REQUEST records in order.

        Returns (accepted mask, `RejectReason` per request, NONE where accepted). Accepted NEW
        orders enter PENDING_NEW; accepted cancels put the order in PENDING_CANCEL; accepted
        replaces put the order in PENDING_REPLACE and stage the replacement under the request's
        order id and ClOrdID. The transitions are left in `last_transitions`."""
        if orders.dtype != ORDER_REQUEST.dtype:
            raise OrderStoreError("on_requests takes ORDER_REQUEST records")
        n = int(orders.shape[0])
        accepted = np.zeros(n, dtype=np.bool_)
        reasons = np.zeros(n, dtype=np.uint16)
        now = int(now_ns)
        for i in range(n):
            cause = self._request(orders[i], now)
            if cause is RequestRejectCause.NONE:
                accepted[i] = True
                self.requests_accepted += 1
            else:
                self.request_rejects[cause] += 1
                reasons[i] = _CAUSE_REASON[cause]
        self._drain()
        return accepted, reasons

    def _request(self, req: Any, now: int) -> RequestRejectCause:
        action = int(req["action"])
        order_id = int(req["order_id"])
        cl = bytes(req["cl_ord_id"])
        session = int(req["session_id"])
        if action not in (OrderAction.NEW, OrderAction.CANCEL, OrderAction.REPLACE):
            return RequestRejectCause.UNKNOWN_ACTION
        if order_id == 0 or not cl:
            return RequestRejectCause.INVALID_FIELDS
        if action == OrderAction.NEW:
            cause = _check_new(req)
            if cause:
                return cause
        elif action == OrderAction.REPLACE:
            qty, price = int(req["qty"]), int(req["price"])
            if not 0 < qty <= MAX_QTY or not 0 <= price <= MAX_PRICE:
                return RequestRejectCause.INVALID_FIELDS
        if order_id in self._by_id:
            return RequestRejectCause.DUPLICATE_ORDER_ID
        if (session, cl) in self._by_cl:
            return RequestRejectCause.DUPLICATE_CL_ORD_ID
        if action == OrderAction.NEW:
            return self._new(req, now)
        orig_slot = self._find_orig(req)
        if orig_slot is None:
            return RequestRejectCause.UNKNOWN_ORDER
        o = self.rows[orig_slot]
        status = int(o["status"])
        if status in FINAL_STATUSES or status == _STAGED:
            return RequestRejectCause.ORDER_FINAL if status else RequestRejectCause.UNKNOWN_ORDER
        if status in _PENDING:
            return RequestRejectCause.ORDER_PENDING
        if int(o["session_id"]) != session or int(o["account_id"]) != int(req["account_id"]):
            return RequestRejectCause.MISMATCH
        iid = int(req["instrument_id"])
        side = int(req["side"])
        if (iid and iid != int(o["instrument_id"])) or (side and side != int(o["side"])):
            return RequestRejectCause.MISMATCH
        if action == OrderAction.CANCEL:
            o["prev_status"] = status
            o["pending_cl_ord_id"] = cl
            self._set_status(orig_slot, OrdStatus.PENDING_CANCEL, now)
            self._emit(
                orig_slot,
                status,
                ExecType.PENDING_CANCEL,
                TransitionSource.REQUEST,
                now,
                exec_id=order_id,
                cl=cl,
            )
            return RequestRejectCause.NONE
        # REPLACE: FIX refuses a replace of a PENDING_NEW order (not yet acknowledged) too.
        if status == OrdStatus.PENDING_NEW:
            return RequestRejectCause.ORDER_PENDING
        if int(req["qty"]) <= int(o["cum_qty"]):
            return RequestRejectCause.REPLACE_BELOW_CUM
        slot = self._take_slot()
        if slot is None:
            return RequestRejectCause.STORE_FULL
        o = self.rows[orig_slot]
        n = self.rows[slot]
        for name in (
            "account_id",
            "strategy_id",
            "session_id",
            "venue_id",
            "instrument_id",
            "side",
            "symbol",
            "cum_qty",
            "notional",
            "avg_px",
            "token",
        ):
            n[name] = o[name]
        n["token"] = b""
        n["used"] = 1
        n["status"] = _STAGED
        n["order_id"] = order_id
        n["orig_order_id"] = int(o["order_id"])
        n["cl_ord_id"] = cl
        n["orig_cl_ord_id"] = o["cl_ord_id"]
        n["price"] = int(req["price"])
        n["order_qty"] = int(req["qty"])
        n["leaves_qty"] = int(req["qty"]) - int(o["cum_qty"])
        n["created_ns"] = now
        n["updated_ns"] = now
        self._by_id[order_id] = slot
        self._by_cl[(session, cl)] = slot
        o["prev_status"] = status
        o["replaced_by"] = order_id
        self._set_status(orig_slot, OrdStatus.PENDING_REPLACE, now)
        self._emit(
            orig_slot,
            status,
            ExecType.PENDING_REPLACE,
            TransitionSource.REQUEST,
            now,
            exec_id=order_id,
            cl=cl,
        )
        return RequestRejectCause.NONE

    def _find_orig(self, req: Any) -> int | None:
        orig_id = int(req["orig_order_id"])
        if orig_id:
            return self._by_id.get(orig_id)
        orig_cl = bytes(req["orig_cl_ord_id"])
        if orig_cl:
            return self._by_cl.get((int(req["session_id"]), orig_cl))
        return None

    def _new(self, req: Any, now: int) -> RequestRejectCause:
        slot = self._take_slot()
        if slot is None:
            return RequestRejectCause.STORE_FULL
        r = self.rows[slot]
        order_id = int(req["order_id"])
        cl = bytes(req["cl_ord_id"])
        r["used"] = 1
        r["order_id"] = order_id
        r["cl_ord_id"] = cl
        for name in ("account_id", "strategy_id", "session_id", "venue_id", "instrument_id"):
            r[name] = int(req[name])
        r["side"] = int(req["side"])
        r["symbol"] = bytes(req["symbol"])
        r["price"] = int(req["price"])
        r["order_qty"] = int(req["qty"])
        r["leaves_qty"] = int(req["qty"])
        r["created_ns"] = now
        self._by_id[order_id] = slot
        self._by_cl[(int(req["session_id"]), cl)] = slot
        self._set_status(slot, OrdStatus.PENDING_NEW, now)
        self._emit(slot, 0, ExecType.PENDING_NEW, TransitionSource.REQUEST, now, exec_id=order_id)
        return RequestRejectCause.NONE

    # ---- reports -----------------------------------------------------------------------------

    def on_reports(self, reports: npt.NDArray[np.void], now_ns: int) -> npt.NDArray[np.void]:
        """Apply a batch of venue EXECUTION_REPORT records in order; returns the transitions.

        A report that cannot apply (see `ReportIssue`) is counted in `report_issues` and
        ignored; the store is unchanged by it. `last_report_issues` holds the `ReportIssue` of
        each report of the batch (NONE where applied): book positions from those only."""
        if reports.dtype != EXECUTION_REPORT.dtype:
            raise OrderStoreError("on_reports takes EXECUTION_REPORT records")
        now = int(now_ns)
        n = int(reports.shape[0])
        issues = np.zeros(n, dtype=np.uint8)
        for i in range(n):
            issue = self._report(reports[i], now)
            if issue is ReportIssue.NONE:
                self.reports_applied += 1
            else:
                issues[i] = issue
                self.report_issues[issue] += 1
        self.last_report_issues = issues
        return self._drain()

    def _report(self, rep: Any, now: int) -> ReportIssue:
        slot = self._by_id.get(int(rep["order_id"]))
        if slot is None:
            return ReportIssue.UNKNOWN_ORDER
        r = self.rows[slot]
        status = int(r["status"])
        et = int(rep["exec_type"])
        token = bytes(rep["order_token"])
        if et == ExecType.TRADE_CANCEL:
            return self._bust(slot, rep, now)
        if status in FINAL_STATUSES:
            return ReportIssue.FINAL_ORDER
        if status == _STAGED:
            if et == ExecType.REPLACED:
                issue = self._replaced(slot, rep, now)
            elif et == ExecType.REJECTED:
                issue = self._replace_refused(slot, now, int(rep["exec_id"]))
            else:
                issue = ReportIssue.INVALID_TRANSITION
            if issue is ReportIssue.NONE and token:
                self.rows["token"][slot] = token
            return issue
        if token and not bytes(r["token"]):
            r["token"] = token
        exec_id = int(rep["exec_id"])
        if et == ExecType.TRADE:
            return self._fill(slot, rep, now)
        if et == ExecType.NEW:
            return self._ack(slot, now, exec_id)
        if et == ExecType.CANCELED:
            return self._finish(slot, OrdStatus.CANCELED, ExecType.CANCELED, now, exec_id)
        if et == ExecType.DONE_FOR_DAY:
            return self._finish(slot, OrdStatus.DONE_FOR_DAY, ExecType.DONE_FOR_DAY, now, exec_id)
        if et == ExecType.EXPIRED:
            return self._finish(slot, OrdStatus.EXPIRED, ExecType.EXPIRED, now, exec_id)
        if et == ExecType.REJECTED:
            return self._rejected(slot, rep, now)
        if et == ExecType.PENDING_CANCEL:
            if status == OrdStatus.PENDING_CANCEL:
                pending = bytes(r["pending_cl_ord_id"])
                self._emit(
                    slot, status, et, TransitionSource.REPORT, now, exec_id=exec_id, cl=pending
                )
                return ReportIssue.NONE
            if status == OrdStatus.PENDING_REPLACE:
                return ReportIssue.INVALID_TRANSITION
            r["prev_status"] = status  # unsolicited (venue-initiated) cancel pending
            self._set_status(slot, OrdStatus.PENDING_CANCEL, now)
            self._emit(slot, status, et, TransitionSource.REPORT, now, exec_id=exec_id)
            return ReportIssue.NONE
        if et == ExecType.RESTATED:
            return self._restated(slot, rep, now)
        if et == ExecType.REPLACED:
            # Addressed to the replaced order rather than its replacement: apply to the latter.
            staged = self._by_id.get(int(r["replaced_by"]))
            if status != OrdStatus.PENDING_REPLACE or staged is None:
                return ReportIssue.INVALID_TRANSITION
            return self._replaced(staged, rep, now)
        if et in (ExecType.PENDING_NEW, ExecType.PENDING_REPLACE):
            return ReportIssue.NONE if status == et else ReportIssue.INVALID_TRANSITION
        return ReportIssue.UNSUPPORTED

    def _live_status(self, slot: int) -> int:
        return int(OrdStatus.PARTIALLY_FILLED if self.rows["cum_qty"][slot] > 0 else OrdStatus.NEW)

    def _ack(self, slot: int, now: int, exec_id: int) -> ReportIssue:
        r = self.rows[slot]
        status = int(r["status"])
        if status == OrdStatus.PENDING_NEW:
            self._set_status(slot, OrdStatus.NEW, now)
        elif status in _PENDING and int(r["prev_status"]) == OrdStatus.PENDING_NEW:
            r["prev_status"] = OrdStatus.NEW  # acknowledged while a cancel was pending
        else:
            return ReportIssue.INVALID_TRANSITION
        self._emit(slot, status, ExecType.NEW, TransitionSource.REPORT, now, exec_id=exec_id)
        return ReportIssue.NONE

    def _fill(self, slot: int, rep: Any, now: int) -> ReportIssue:
        qty, px = int(rep["last_qty"]), int(rep["last_px"])
        if not 0 < qty <= MAX_QTY or not 0 < px <= MAX_PRICE:
            return ReportIssue.BAD_FILL
        r = self.rows[slot]
        cum = int(r["cum_qty"]) + qty
        if cum > int(r["order_qty"]):
            return ReportIssue.OVERFILL
        notional = int(r["notional"]) + qty * px  # < 2**62: cum <= MAX_QTY, px <= MAX_PRICE
        status = int(r["status"])
        r["cum_qty"] = cum
        r["notional"] = notional
        r["avg_px"] = round_div(notional, cum)
        r["leaves_qty"] = int(r["order_qty"]) - cum
        if cum == int(r["order_qty"]):
            self._set_status(slot, OrdStatus.FILLED, now)
        elif status in _PENDING:
            r["prev_status"] = OrdStatus.PARTIALLY_FILLED
            r["updated_ns"] = now
        else:
            self._set_status(slot, OrdStatus.PARTIALLY_FILLED, now)
        self._emit(
            slot,
            status,
            ExecType.TRADE,
            TransitionSource.REPORT,
            now,
            last_qty=qty,
            last_px=px,
            exec_id=int(rep["exec_id"]),
        )
        if int(r["status"]) == OrdStatus.FILLED:
            self._orphan_replacement(slot, now)
        return ReportIssue.NONE

    def _bust(self, slot: int, rep: Any, now: int) -> ReportIssue:
        qty, px = int(rep["last_qty"]), int(rep["last_px"])
        r = self.rows[slot]
        status = int(r["status"])
        if status == _STAGED:
            return ReportIssue.INVALID_TRANSITION
        if not 0 < qty <= int(r["cum_qty"]) or not 0 < px <= MAX_PRICE:
            return ReportIssue.BAD_FILL
        notional = int(r["notional"]) - qty * px
        cum = int(r["cum_qty"]) - qty
        if notional < 0 or (cum == 0 and notional != 0):
            return ReportIssue.BAD_FILL
        r["cum_qty"] = cum
        r["notional"] = notional
        r["avg_px"] = round_div(notional, cum) if cum else 0
        if status in LIVE_STATUSES:
            r["leaves_qty"] = int(r["order_qty"]) - cum
            if status in _PENDING:
                r["prev_status"] = self._live_status(slot)
            elif status != OrdStatus.PENDING_NEW:
                r["status"] = self._live_status(slot)
        elif status == OrdStatus.FILLED:
            # The broken shares do not return to the book: the order stays done, with less.
            r["order_qty"] = cum
        r["updated_ns"] = now
        self._emit(
            slot,
            status,
            ExecType.TRADE_CANCEL,
            TransitionSource.REPORT,
            now,
            last_qty=qty,
            last_px=px,
            exec_id=int(rep["exec_id"]),
        )
        return ReportIssue.NONE

    def _finish(self, slot: int, to: int, et: int, now: int, exec_id: int) -> ReportIssue:
        status = int(self.rows["status"][slot])
        pending = bytes(self.rows["pending_cl_ord_id"][slot])
        self._set_status(slot, to, now)
        self.rows["pending_cl_ord_id"][slot] = b""
        self._emit(slot, status, et, TransitionSource.REPORT, now, exec_id=exec_id, cl=pending)
        self._orphan_replacement(slot, now)
        return ReportIssue.NONE

    def _orphan_replacement(self, slot: int, now: int) -> None:
        # The venue ignores a replace of an order that is no longer live: the staged
        # replacement will never go live. Its later venue reject is then a FINAL_ORDER report.
        staged_id = int(self.rows["replaced_by"][slot])
        staged = self._by_id.get(staged_id) if staged_id else None
        self.rows["replaced_by"][slot] = 0
        if staged is None or int(self.rows["status"][staged]) != _STAGED:
            return
        self.rows["leaves_qty"][staged] = 0
        self._set_status(staged, OrdStatus.REJECTED, now)
        self._emit(
            staged,
            _STAGED,
            ExecType.REJECTED,
            TransitionSource.INTERNAL,
            now,
            reason=RejectReason.UNKNOWN_ORDER,
        )

    def _rejected(self, slot: int, rep: Any, now: int) -> ReportIssue:
        r = self.rows[slot]
        status = int(r["status"])
        exec_id = int(rep["exec_id"])
        reason = int(rep["reject_reason"]) or int(RejectReason.VENUE_REJECT)
        if int(rep["ord_status"]) == OrdStatus.REJECTED:
            # The order itself is refused: only before the venue accepted it.
            if status == OrdStatus.PENDING_NEW or (
                status in _PENDING and int(r["prev_status"]) == OrdStatus.PENDING_NEW
            ):
                self._set_status(slot, OrdStatus.REJECTED, now)
                self._emit(
                    slot,
                    status,
                    ExecType.REJECTED,
                    TransitionSource.REPORT,
                    now,
                    exec_id=exec_id,
                    reason=reason,
                )
                self._orphan_replacement(slot, now)
                return ReportIssue.NONE
            return ReportIssue.INVALID_TRANSITION
        # A refused cancel or replace: the order returns to the status it had.
        if status == OrdStatus.PENDING_CANCEL:
            pending = bytes(r["pending_cl_ord_id"])
            r["pending_cl_ord_id"] = b""
            self._set_status(slot, int(r["prev_status"]), now)
            self._emit(
                slot,
                status,
                ExecType.REJECTED,
                TransitionSource.REPORT,
                now,
                exec_id=exec_id,
                reason=reason,
                cl=pending,
            )
            return ReportIssue.NONE
        if status == OrdStatus.PENDING_REPLACE:
            staged = self._by_id.get(int(r["replaced_by"]))
            if staged is None:
                return ReportIssue.INVALID_TRANSITION
            return self._replace_refused(staged, now, exec_id, reason)
        return ReportIssue.INVALID_TRANSITION

    def _replace_refused(
        self, staged: int, now: int, exec_id: int, reason: int = RejectReason.VENUE_REJECT
    ) -> ReportIssue:
        orig = self._by_id.get(int(self.rows["orig_order_id"][staged]))
        if orig is None or int(self.rows["status"][orig]) != OrdStatus.PENDING_REPLACE:
            return ReportIssue.INVALID_TRANSITION
        self.rows["replaced_by"][orig] = 0
        self._set_status(orig, int(self.rows["prev_status"][orig]), now)
        self._emit(
            orig,
            OrdStatus.PENDING_REPLACE,
            ExecType.REJECTED,
            TransitionSource.REPORT,
            now,
            exec_id=exec_id,
            reason=reason,
            cl=bytes(self.rows["cl_ord_id"][staged]),
        )
        self.rows["leaves_qty"][staged] = 0
        self._set_status(staged, OrdStatus.REJECTED, now)
        self._emit(
            staged,
            _STAGED,
            ExecType.REJECTED,
            TransitionSource.REPORT,
            now,
            exec_id=exec_id,
            reason=reason,
        )
        return ReportIssue.NONE

    def _replaced(self, staged: int, rep: Any, now: int) -> ReportIssue:
        n = self.rows[staged]
        orig = self._by_id.get(int(n["orig_order_id"]))
        if orig is None or int(self.rows["status"][orig]) != OrdStatus.PENDING_REPLACE:
            return ReportIssue.INVALID_TRANSITION
        o = self.rows[orig]
        price = int(rep["price"]) or int(n["price"])
        if not 0 <= price <= MAX_PRICE:
            return ReportIssue.BAD_FILL
        # The replacement takes over the fills of the order it replaces (cum qty carries over).
        cum = int(o["cum_qty"])
        n["cum_qty"] = cum
        n["notional"] = o["notional"]
        n["avg_px"] = o["avg_px"]
        n["price"] = price
        if int(n["order_qty"]) < cum:
            n["order_qty"] = cum
        n["leaves_qty"] = int(n["order_qty"]) - cum
        if not bytes(n["token"]):
            n["token"] = o["token"]
        o["replaced_by"] = 0
        self._set_status(orig, OrdStatus.REPLACED, now)
        self._emit(
            orig,
            OrdStatus.PENDING_REPLACE,
            ExecType.REPLACED,
            TransitionSource.REPORT,
            now,
            exec_id=int(rep["exec_id"]),
        )
        to = OrdStatus.FILLED if int(n["leaves_qty"]) == 0 else self._live_status(staged)
        self._set_status(staged, to, now)
        self._emit(
            staged,
            _STAGED,
            ExecType.REPLACED,
            TransitionSource.REPORT,
            now,
            exec_id=int(rep["exec_id"]),
        )
        return ReportIssue.NONE

    def _restated(self, slot: int, rep: Any, now: int) -> ReportIssue:
        # A venue-side change: size reduction (leaves_qty) and/or a new price.
        r = self.rows[slot]
        status = int(r["status"])
        leaves = int(rep["leaves_qty"])
        price = int(rep["price"]) or int(r["price"])
        if not 0 <= leaves <= int(r["leaves_qty"]) or not 0 <= price <= MAX_PRICE:
            return ReportIssue.INVALID_TRANSITION
        r["price"] = price
        r["leaves_qty"] = leaves
        r["order_qty"] = int(r["cum_qty"]) + leaves
        if leaves == 0:
            self._set_status(
                slot, OrdStatus.CANCELED if not r["cum_qty"] else OrdStatus.FILLED, now
            )
        elif status == OrdStatus.PENDING_CANCEL and int(rep["ord_status"]) != status:
            r["pending_cl_ord_id"] = b""
            self._set_status(slot, int(r["prev_status"]), now)
        r["updated_ns"] = now
        self._emit(
            slot,
            status,
            ExecType.RESTATED,
            TransitionSource.REPORT,
            now,
            exec_id=int(rep["exec_id"]),
        )
        if int(r["status"]) in FINAL_STATUSES:
            self._orphan_replacement(slot, now)
        return ReportIssue.NONE

    # ---- client execution reports ------------------------------------------------------------

    def execution_reports(
        self, transitions: npt.NDArray[np.void], now_ns: int
    ) -> npt.NDArray[np.void]:
        """EXECUTION_REPORT records for the client, one per transition, figures (CumQty,
        LeavesQty, AvgPx, OrdStatus) as of that transition and identity from the store.
        FIX sends one report per replace: the replacement's REPLACED (ClOrdID the new one,
        OrigClOrdID the old); the replaced order's own move to REPLACED is not sent, nor is a
        staged replacement's REJECTED (the original's REJECTED transition carries the
        replacement's ClOrdID) unless the replacement was orphaned by the original finishing:
        then it is the refusal, with the original's status. Transitions of orders no longer in
        the store are skipped."""
        n = int(transitions.shape[0])
        by_id = self._by_id
        if n == 1:  # the common case: no numpy masks for one transition
            t = transitions[0]
            slot1 = by_id.get(int(t["order_id"]))
            if slot1 is None or _internal_only(
                int(t["from_status"]), int(t["to_status"]), int(t["source"])
            ):
                return new_records(EXECUTION_REPORT, 0)
            idx = np.zeros(1, np.int64)
            slots = np.array([slot1], np.int64)
        else:
            picked_i: list[int] = []
            picked_s: list[int] = []
            for i, (oid, fr, to, src) in enumerate(
                zip(
                    transitions["order_id"].tolist(),
                    transitions["from_status"].tolist(),
                    transitions["to_status"].tolist(),
                    transitions["source"].tolist(),
                    strict=True,
                )
            ):
                slot = by_id.get(oid)
                if slot is not None and not _internal_only(fr, to, src):
                    picked_i.append(i)
                    picked_s.append(slot)
            idx = np.array(picked_i, np.int64)
            slots = np.array(picked_s, np.int64)
        # Column by column into zeroed records, never whole-record fancy copies: a copy of a
        # padded record array leaves its padding bytes undefined, and journaled outputs must
        # be bit-identical.
        out = new_records(EXECUTION_REPORT, int(idx.shape[0]))
        if not idx.shape[0]:
            return out
        t = transitions[idx]
        rows = self.rows
        out["ts_ns"] = int(now_ns)
        for name in (
            "seq",
            "order_id",
            "exec_id",
            "price",
            "cum_qty",
            "leaves_qty",
            "avg_px",
            "last_px",
            "last_qty",
            "order_qty",
            "exec_type",
            "reject_reason",
        ):
            out[name] = t[name]
        for name in (
            "instrument_id",
            "account_id",
            "strategy_id",
            "session_id",
            "venue_id",
            "side",
            "symbol",
            "cl_ord_id",
            "orig_cl_ord_id",
        ):
            out[name] = rows[name][slots]
        out["order_token"] = rows["token"][slots]
        to_status = t["to_status"]
        out["ord_status"] = to_status
        orphaned = np.flatnonzero((t["from_status"] == _STAGED) & (to_status == OrdStatus.REJECTED))
        for j in orphaned.tolist():
            # An orphaned replace: the client sees its replace refused (ClOrdID the
            # replacement's), with the original order's status.
            orig = by_id.get(int(rows["orig_order_id"][int(slots[j])]))
            if orig is not None:
                out["ord_status"][j] = int(rows["status"][orig])
        request_cl = t["request_cl_ord_id"]
        answered = np.flatnonzero(request_cl != b"")
        if answered.size:
            out["orig_cl_ord_id"][answered] = rows["cl_ord_id"][slots[answered]]
            out["cl_ord_id"][answered] = request_cl[answered]
        out["transact_ns"] = t["ts_ns"]
        return out

    # ---- snapshots ---------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The whole state as named arrays (copies); `from_state_arrays` rebuilds the store."""
        scalars = np.array(
            [
                self.capacity,
                self.requests_accepted,
                self.reports_applied,
                self.transition_seq,
                self.final_seq,
            ],
            dtype=np.int64,
        )
        return {
            "rows": self.rows.copy(),
            "request_rejects": self.request_rejects.copy(),
            "report_issues": self.report_issues.copy(),
            "scalars": scalars,
        }

    @classmethod
    def from_state_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> OrderStore:
        """A store identical to the one whose `state_arrays()` these are."""
        try:
            rows = np.asarray(arrays["rows"])
            scalars = [int(x) for x in np.asarray(arrays["scalars"]).tolist()]
            rejects = np.asarray(arrays["request_rejects"], dtype=np.uint64)
            issues = np.asarray(arrays["report_issues"], dtype=np.uint64)
        except KeyError as exc:
            raise OrderStoreError(f"state arrays lack {exc}") from exc
        if rows.dtype != ORDER_ROW_DTYPE or len(scalars) != 5 or rows.shape != (scalars[0],):
            raise OrderStoreError("state arrays do not match ORDER_ROW_DTYPE / capacity")
        if rejects.shape != (len(RequestRejectCause),) or issues.shape != (len(ReportIssue),):
            raise OrderStoreError("counter arrays have the wrong shape")
        store = cls(scalars[0])
        store.rows = rows.copy()
        store.request_rejects = rejects.copy()
        store.report_issues = issues.copy()
        (
            _,
            store.requests_accepted,
            store.reports_applied,
            store.transition_seq,
            store.final_seq,
        ) = scalars
        used = np.flatnonzero(store.rows["used"] == 1).tolist()
        for slot in used:
            r = store.rows[slot]
            store._by_id[int(r["order_id"])] = slot
            store._by_cl[(int(r["session_id"]), bytes(r["cl_ord_id"]))] = slot
        taken = set(used)
        store._free = [s for s in range(scalars[0] - 1, -1, -1) if s not in taken]
        return store


def _internal_only(from_status: int, to_status: int, source: int) -> bool:
    return to_status == OrdStatus.REPLACED or (
        from_status == _STAGED
        and to_status == OrdStatus.REJECTED
        and source != TransitionSource.INTERNAL
    )


def _check_new(req: Any) -> RequestRejectCause:
    side, qty, price = int(req["side"]), int(req["qty"]), int(req["price"])
    ord_type = int(req["ord_type"])
    if side not in _SIDES or not 0 < qty <= MAX_QTY or not 0 <= price <= MAX_PRICE:
        return RequestRejectCause.INVALID_FIELDS
    if ord_type == OrdType.MARKET:
        return RequestRejectCause.NONE
    if ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT, OrdType.STOP) and price > 0:
        return RequestRejectCause.NONE
    return RequestRejectCause.INVALID_FIELDS


# --------------------------------------------------------------------------------------------
# Journal component
# --------------------------------------------------------------------------------------------


class OrderStateComponent:
    """`OrderStore` (and optionally a `PositionBook`) as a journal `Component`.

    `step(ORDER_REQUEST records)` -> [client EXECUTION_REPORTs for the refused requests and the
    PENDING_* transitions, transitions]; `step(EXECUTION_REPORT records)` -> [client
    EXECUTION_REPORTs, transitions], fills also applied to the position book. Transitions are an
    `OpaqueBatch` of type `ORDER_TRANSITION_TYPE`, one `TRANSITION_DTYPE` row per payload."""

    component_id: int = int(Component.GATEWAY)

    def __init__(self, store: OrderStore, positions: Any = None) -> None:
        self.store = store
        self.positions = positions

    def step(self, inputs: Any, now_ns: int) -> list[Any]:
        from tectra.journal.capture import OpaqueBatch

        if getattr(inputs, "dtype", None) == ORDER_REQUEST.dtype:
            accepted, reasons = self.store.on_requests(inputs, now_ns)
            trans = self.store.last_transitions
            reports = [
                self.store.execution_reports(trans, now_ns),
                request_rejects(inputs[~accepted], reasons[~accepted], now_ns),
            ]
            client = new_records(EXECUTION_REPORT, sum(int(r.shape[0]) for r in reports))
            pos = 0
            for part in reports:
                client[pos : pos + part.shape[0]] = part
                pos += int(part.shape[0])
        elif getattr(inputs, "dtype", None) == EXECUTION_REPORT.dtype:
            trans = self.store.on_reports(inputs, now_ns)
            if self.positions is not None:
                # Only what the store accepted moves positions: an overfill or a fill for an
                # unknown order is counted there and must not be booked here either.
                self.positions.on_reports(inputs[self.store.last_report_issues == 0])
            client = self.store.execution_reports(trans, now_ns)
        else:
            raise OrderStoreError("step takes ORDER_REQUEST or EXECUTION_REPORT records")
        batch = OpaqueBatch.from_payloads(ORDER_TRANSITION_TYPE, [t.tobytes() for t in trans])
        return [client, batch]

    def snapshot(self) -> bytes:
        arrays = {f"orders.{k}": v for k, v in self.store.state_arrays().items()}
        if self.positions is not None:
            arrays.update({f"positions.{k}": v for k, v in self.positions.state_arrays().items()})
        return pack_arrays(arrays)

    def restore(self, state: bytes) -> None:
        arrays = unpack_arrays(state)
        self.store = OrderStore.from_state_arrays(
            {k.removeprefix("orders."): v for k, v in arrays.items() if k.startswith("orders.")}
        )
        if self.positions is not None:
            pos = {
                k.removeprefix("positions."): v
                for k, v in arrays.items()
                if k.startswith("positions.")
            }
            self.positions = type(self.positions).from_state_arrays(pos)


def request_rejects(
    requests: npt.NDArray[np.void], reasons: npt.NDArray[np.uint16], now_ns: int
) -> npt.NDArray[np.void]:
    """Client EXECUTION_REPORTs (REJECTED) for refused ORDER_REQUESTs, one per request."""
    out = new_records(EXECUTION_REPORT, int(requests.shape[0]))
    for name in (
        "order_id",
        "price",
        "instrument_id",
        "account_id",
        "strategy_id",
        "session_id",
        "venue_id",
        "side",
        "symbol",
        "cl_ord_id",
        "orig_cl_ord_id",
    ):
        out[name] = requests[name]
    out["order_qty"] = requests["qty"]
    out["ts_ns"] = now_ns
    out["transact_ns"] = now_ns
    out["exec_type"] = ExecType.REJECTED
    out["ord_status"] = OrdStatus.REJECTED
    out["reject_reason"] = reasons
    return out
