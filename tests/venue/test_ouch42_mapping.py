"""ORDER_REQUEST -> OUCH bytes, and OUCH outbound -> EXECUTION_REPORT through the tracker:
exec type, order status, last px/qty, cum/leaves and the exact average price."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import ouch42 as o
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
    encode_symbol,
    new_records,
)

MIDNIGHT = 1_700_000_000 * 10**9


def request(
    action: OrderAction = OrderAction.NEW,
    *,
    order_id: int = 1,
    qty: int = 100,
    price: int = 1_500_000,
    side: Side = Side.BUY,
    ord_type: OrdType = OrdType.LIMIT,
    tif: TimeInForce = TimeInForce.DAY,
    cl: str = "C1",
    orig_cl: str = "",
) -> Any:
    rec = new_records(ORDER_REQUEST, 1)[0]
    rec["order_id"] = order_id
    rec["action"] = action
    rec["qty"] = qty
    rec["price"] = price
    rec["side"] = side
    rec["ord_type"] = ord_type
    rec["time_in_force"] = tif
    rec["symbol"] = encode_symbol("AAPL")
    rec["cl_ord_id"] = cl.encode()
    rec["orig_cl_ord_id"] = orig_cl.encode()
    rec["instrument_id"] = 7
    rec["account_id"] = 3
    rec["session_id"] = 2
    rec["strategy_id"] = 9
    return rec


def test_new_limit_day_maps_to_enter_order() -> None:
    msg = o.request_to_ouch(request(), "TOK1", defaults=o.OuchOrderDefaults(firm="GSCO"))
    assert msg == o.EnterOrder(
        "TOK1", Side.BUY, 100, "AAPL", 1_500_000, o.TIF_MARKET_HOURS, firm="GSCO"
    )


def test_market_ioc_and_cancel_and_replace_mapping() -> None:
    msg = o.request_to_ouch(request(ord_type=OrdType.MARKET, tif=TimeInForce.IOC), "T2")
    assert isinstance(msg, o.EnterOrder)
    assert msg.price == o.MARKET_PRICE and msg.time_in_force == o.TIF_IOC
    assert o.request_to_ouch(request(OrderAction.CANCEL), "T3", "T1") == o.CancelOrder("T1", 0)
    rep = o.request_to_ouch(request(OrderAction.REPLACE, qty=300), "T4", "T1", cum_qty=120)
    assert rep == o.ReplaceOrder("T1", "T4", 180, 1_500_000, o.TIF_MARKET_HOURS)


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request(tif=TimeInForce.GTC), o.OuchErrorReason.BAD_REQUEST),
        (request(ord_type=OrdType.STOP), o.OuchErrorReason.BAD_REQUEST),
        (request(price=0), o.OuchErrorReason.BAD_PRICE),
        (request(side=Side.NONE), o.OuchErrorReason.BAD_SIDE),
        (request(OrderAction.NONE), o.OuchErrorReason.BAD_REQUEST),
        (request(qty=0), o.OuchErrorReason.BAD_SHARES),
        (request(qty=1_000_000), o.OuchErrorReason.BAD_SHARES),
    ],
)
def test_unsendable_requests_are_typed_errors(req: Any, reason: o.OuchErrorReason) -> None:
    with pytest.raises(o.OuchError) as info:
        o.encode(o.request_to_ouch(req, "TOK"))
    assert info.value.reason is reason


def test_batch_mapping_keeps_errors_in_place() -> None:
    reqs = new_records(ORDER_REQUEST, 3)
    reqs[0] = request(order_id=1)
    reqs[1] = request(order_id=2, tif=TimeInForce.FOK)
    reqs[2] = request(OrderAction.CANCEL, order_id=3)
    out = o.requests_to_ouch(reqs, ["A1", "A2", "A3"], ["", "", "A1"])
    assert isinstance(out[0], bytes) and len(out[0]) == 49
    assert isinstance(out[1], o.OuchError)
    assert out[2] == o.encode(o.CancelOrder("A1", 0))


@pytest.mark.parametrize(
    ("notional", "qty", "expected"),
    [(0, 0, 0), (300, 2, 150), (301, 2, 151), (299, 2, 150), (-301, 2, -151), (10, 3, 3)],
)
def test_average_price_rounds_half_away_from_zero(notional: int, qty: int, expected: int) -> None:
    assert o.average_price(notional, qty) == expected


@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, o.MAX_PRICE)), min_size=1))
def test_average_price_is_exact(fills: list[tuple[int, int]]) -> None:
    qty = sum(q for q, _ in fills)
    notional = sum(q * p for q, p in fills)
    exact = Fraction(notional, qty)
    got = o.average_price(notional, qty)
    assert abs(Fraction(got) - exact) <= Fraction(1, 2)
    if abs(Fraction(got) - exact) == Fraction(1, 2):
        assert got > exact  # positive prices: halves go up


def one(recs: Any) -> Any:
    assert recs.dtype == EXECUTION_REPORT.dtype and len(recs) == 1
    return recs[0]


def test_tracker_full_lifecycle_partial_fills_and_cancel() -> None:
    tr = o.OuchOrderTracker(venue_id=5, midnight_realtime_ns=MIDNIGHT)
    wire = tr.on_request(request(qty=300), "TOK1")
    assert o.decode_inbound(wire) == o.EnterOrder(
        "TOK1", Side.BUY, 300, "AAPL", 1_500_000, o.TIF_MARKET_HOURS
    )
    acc = o.Accepted(
        1000, "TOK1", Side.BUY, 300, "AAPL", 1_500_000, 99998, "", "A", 77, "A", "N", 0, "N", "L"
    )
    r = one(tr.on_message(acc, now_ns=5))
    assert (r["exec_type"], r["ord_status"]) == (ExecType.NEW, OrdStatus.NEW)
    assert (r["venue_order_id"], r["leaves_qty"], r["cum_qty"]) == (77, 300, 0)
    assert r["transact_ns"] == MIDNIGHT + 1000 and r["ts_ns"] == 5 and r["venue_id"] == 5
    assert bytes(r["order_token"]) == b"TOK1" and bytes(r["cl_ord_id"]) == b"C1"
    assert (r["account_id"], r["instrument_id"], r["strategy_id"]) == (3, 7, 9)

    r = one(tr.on_message(o.Executed(1001, "TOK1", 100, 1_500_000, "A", 11), 6))
    assert (r["exec_type"], r["ord_status"]) == (ExecType.TRADE, OrdStatus.PARTIALLY_FILLED)
    assert (r["last_qty"], r["last_px"], r["cum_qty"], r["leaves_qty"]) == (
        100,
        1_500_000,
        100,
        200,
    )
    assert r["exec_id"] == 11 and r["avg_px"] == 1_500_000

    r = one(tr.on_message(o.Executed(1002, "TOK1", 50, 1_499_999, "A", 12), 7))
    assert (r["cum_qty"], r["leaves_qty"]) == (150, 150)
    # (100 * 1_500_000 + 50 * 1_499_999) / 150 = 1_499_999.67 -> 1_500_000
    assert r["avg_px"] == 1_500_000

    tr.on_request(request(OrderAction.CANCEL, order_id=2, qty=0, cl="CX"), "", "TOK1")
    r = one(tr.on_message(o.Canceled(1003, "TOK1", 150, "U"), 8))
    assert (r["exec_type"], r["ord_status"]) == (ExecType.CANCELED, OrdStatus.CANCELED)
    assert (r["cum_qty"], r["leaves_qty"], r["order_qty"]) == (150, 0, 150)
    assert bytes(r["cl_ord_id"]) == b"CX" and bytes(r["orig_cl_ord_id"]) == b"C1"
    assert r["order_id"] == 1
    assert tr.order_state("TOK1") == (OrdStatus.CANCELED, 150, 0)


def test_tracker_full_fill_and_broken_trade() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=100, side=Side.SELL), "S1")
    tr.on_message(o.Executed(1, "S1", 60, 2_000_000, "R", 1), 0)
    r = one(tr.on_message(o.Executed(2, "S1", 40, 2_000_100, "R", 2), 0))
    assert (r["ord_status"], r["leaves_qty"], r["cum_qty"]) == (OrdStatus.FILLED, 0, 100)
    assert r["avg_px"] == 2_000_040
    r = one(tr.on_message(o.BrokenTrade(3, "S1", 2, "E"), 0))
    assert r["exec_type"] == ExecType.TRADE_CANCEL
    assert (r["last_qty"], r["last_px"], r["cum_qty"], r["avg_px"]) == (
        40,
        2_000_100,
        60,
        2_000_000,
    )
    with pytest.raises(o.OuchError) as info:
        tr.on_message(o.BrokenTrade(4, "S1", 99, "E"), 0)
    assert info.value.reason is o.OuchErrorReason.UNKNOWN_MATCH


def test_tracker_replace_carries_fills_and_reports_new_identity() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=300, cl="A"), "T1")
    tr.on_message(o.Executed(1, "T1", 100, 1_500_000, "A", 1), 0)
    wire = tr.on_request(
        request(OrderAction.REPLACE, order_id=2, qty=500, price=1_510_000, cl="B", orig_cl="A"),
        "T2",
        "T1",
    )
    assert o.decode_inbound(wire) == o.ReplaceOrder("T1", "T2", 400, 1_510_000, o.TIF_MARKET_HOURS)
    rep = o.Replaced(
        2, "T2", Side.BUY, 400, "AAPL", 1_510_000, 99998, "", "A", 88, "A", "N", 0, "N", "L", "T1"
    )
    r = one(tr.on_message(rep, 0))
    assert (r["exec_type"], r["ord_status"]) == (ExecType.REPLACED, OrdStatus.PARTIALLY_FILLED)
    assert (r["order_id"], r["order_qty"], r["cum_qty"], r["leaves_qty"]) == (2, 500, 100, 400)
    assert bytes(r["cl_ord_id"]) == b"B" and bytes(r["orig_cl_ord_id"]) == b"A"
    assert r["price"] == 1_510_000 and r["venue_order_id"] == 88
    assert tr.order_state("T1") == (OrdStatus.REPLACED, 100, 0)
    r = one(tr.on_message(o.Executed(3, "T2", 400, 1_510_000, "A", 2), 0))
    assert (r["ord_status"], r["cum_qty"]) == (OrdStatus.FILLED, 500)
    assert r["avg_px"] == (100 * 1_500_000 + 400 * 1_510_000) // 500


def test_tracker_replace_rejected_leaves_original_intact() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=300, cl="A"), "T1")
    tr.on_request(
        request(OrderAction.REPLACE, order_id=2, qty=200, cl="B", orig_cl="A"), "T2", "T1"
    )
    r = one(tr.on_message(o.Rejected(1, "T2", "X"), 0))
    assert r["exec_type"] == ExecType.REJECTED
    assert r["ord_status"] == OrdStatus.PENDING_NEW  # the original's status, not REJECTED
    assert r["reject_reason"] == RejectReason.VENUE_REJECT
    assert tr.order_state("T1") is not None and tr.order_state("T1")[0] is not OrdStatus.REJECTED


def test_tracker_new_rejected_cancel_pending_and_cancel_reject() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(cl="N1"), "R1")
    r = one(tr.on_message(o.Rejected(1, "R1", "S"), 0))
    assert (r["exec_type"], r["ord_status"], r["reject_reason"]) == (
        ExecType.REJECTED,
        OrdStatus.REJECTED,
        RejectReason.VENUE_REJECT,
    )
    tr.on_request(request(order_id=2, cl="N2"), "R2")
    tr.on_request(request(OrderAction.CANCEL, order_id=3, cl="X2"), "", "R2")
    r = one(tr.on_message(o.CancelPending(2, "R2"), 0))
    assert (r["exec_type"], r["ord_status"]) == (ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL)
    r = one(tr.on_message(o.CancelReject(3, "R2"), 0))
    assert r["exec_type"] == ExecType.REJECTED and r["ord_status"] == OrdStatus.NEW
    assert bytes(r["cl_ord_id"]) == b"X2" and bytes(r["orig_cl_ord_id"]) == b"N2"


def test_tracker_partial_cancel_modify_and_priority_update() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=500, side=Side.SELL), "M1")
    r = one(tr.on_message(o.Canceled(1, "M1", 200, "U"), 0))
    assert (r["exec_type"], r["leaves_qty"], r["order_qty"]) == (ExecType.RESTATED, 300, 300)
    r = one(tr.on_message(o.OrderModified(2, "M1", Side.SELL_SHORT, 250), 0))
    assert (r["exec_type"], r["side"], r["leaves_qty"]) == (ExecType.RESTATED, Side.SELL_SHORT, 250)
    r = one(tr.on_message(o.OrderPriorityUpdate(3, "M1", 1_400_000, "A", 99), 0))
    assert (r["price"], r["venue_order_id"]) == (1_400_000, 99)
    r = one(tr.on_message(o.AiqCanceled(4, "M1", 250, "Q", 250, 1_400_000, "A"), 0))
    assert r["ord_status"] == OrdStatus.CANCELED


def test_tracker_unknown_tokens_counted_and_batch_skips_them() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(), "K1")
    msgs: list[o.OutboundMessage] = [
        o.SystemEvent(0, "S"),
        o.Executed(1, "NOPE", 1, 1, "A", 1),
        o.Executed(2, "K1", 10, 1_500_000, "A", 2),
    ]
    recs = tr.on_messages(msgs, 0)
    assert len(recs) == 1 and recs["seq"][0] == 1
    assert tr.counters.errors == {o.OuchErrorReason.UNKNOWN_TOKEN: 1}
    with pytest.raises(o.OuchError):
        tr.on_request(request(OrderAction.CANCEL), "", "NOPE")
    with pytest.raises(o.OuchError) as info:
        tr.on_request(request(), "K1")
    assert info.value.reason is o.OuchErrorReason.DUPLICATE_TOKEN


def test_tracker_is_bounded_and_forgets_closed_orders_first() -> None:
    tr = o.OuchOrderTracker(max_orders=2)
    tr.on_request(request(), "A")
    tr.on_request(request(), "B")
    with pytest.raises(o.OuchError) as info:
        tr.on_request(request(), "C")
    assert info.value.reason is o.OuchErrorReason.TRACKER_FULL
    tr.on_message(o.Canceled(1, "A", 100, "U"), 0)
    tr.on_request(request(), "C")
    assert tr.order_state("A") is None and len(tr) == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 3_000_000)), min_size=1, max_size=20))
def test_tracker_cum_leaves_avg_invariants(fills: list[tuple[int, int]]) -> None:
    total = sum(q for q, _ in fills) + 7
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=total), "P1")
    recs = [
        one(tr.on_message(o.Executed(i, "P1", q, p, "A", i + 1), 0))
        for i, (q, p) in enumerate(fills)
    ]
    arr = np.array(recs, dtype=EXECUTION_REPORT.dtype)
    assert np.all(arr["cum_qty"] + arr["leaves_qty"] == total)
    assert np.all(np.diff(arr["cum_qty"]) > 0)
    notional = sum(q * p for q, p in fills)
    assert arr["avg_px"][-1] == o.average_price(notional, total - 7)


def test_replace_of_an_order_that_then_fills_or_cancels_is_reported_rejected() -> None:
    tr = o.OuchOrderTracker()
    tr.on_request(request(qty=100, cl="A"), "T1")
    tr.on_request(request(OrderAction.REPLACE, order_id=2, qty=50, cl="B", orig_cl="A"), "T2", "T1")
    recs = tr.on_message(o.Executed(1, "T1", 100, 1_500_000, "A", 1), 0)
    assert [int(x) for x in recs["exec_type"]] == [ExecType.TRADE, ExecType.REJECTED]
    assert recs["ord_status"][1] == OrdStatus.FILLED and recs["order_id"][1] == 2
    assert bytes(recs["cl_ord_id"][1]) == b"B" and bytes(recs["orig_cl_ord_id"][1]) == b"A"
    assert recs.dtype == EXECUTION_REPORT.dtype

    tr.on_request(request(qty=100, order_id=3, cl="C"), "T3")
    tr.on_request(request(OrderAction.REPLACE, order_id=4, qty=50, cl="D", orig_cl="C"), "T4", "T3")
    recs = tr.on_message(o.Canceled(2, "T3", 100, "S"), 0)
    assert [int(x) for x in recs["exec_type"]] == [ExecType.CANCELED, ExecType.REJECTED]
    assert recs["ord_status"][1] == OrdStatus.CANCELED
    # A late Replaced for it is not accepted silently.
    late = o.Replaced(
        3, "T4", Side.BUY, 50, "AAPL", 1, 99998, "", "A", 9, "A", "N", 0, "N", "L", "T3"
    )
    with pytest.raises(o.OuchError):
        tr.on_message(late, 0)
