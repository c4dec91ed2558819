"""Unit tests of the order state machine (tectra.gateway.orders)."""

from __future__ import annotations

import numpy as np
import pytest

from tectra.gateway.orders import (
    MAX_PRICE,
    TRANSITION_DTYPE,
    OrderStore,
    OrderStoreError,
    ReportIssue,
    RequestRejectCause,
    TransitionSource,
    round_div,
)
from tectra.schema import ExecType, OrdStatus, RejectReason, Side
from tests.gateway._helpers import (
    NOW,
    PX,
    SESSION,
    ack,
    batch,
    cancel,
    fill,
    new,
    replace,
    report,
)

S = OrdStatus


def live_order(store: OrderStore, order_id: int = 1, cl: str = "C1", qty: int = 100) -> None:
    acc, _ = store.on_requests(new(order_id, cl, qty), NOW)
    assert acc.all()
    store.on_reports(ack(order_id), NOW + 1)
    assert store.status(order_id) is S.NEW


def frozen(store: OrderStore) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in store.state_arrays().items() if k != "report_issues"}


# ---- happy path ------------------------------------------------------------------------------


def test_new_ack_partial_full_fill() -> None:
    store = OrderStore(8)
    acc, reasons = store.on_requests(new(1, "C1", 300), NOW)
    assert acc.tolist() == [True] and reasons.tolist() == [0]
    t = store.last_transitions
    assert t.dtype == TRANSITION_DTYPE and t.shape == (1,)
    assert (t["from_status"][0], t["to_status"][0], t["exec_type"][0]) == (
        0,
        S.PENDING_NEW,
        ExecType.PENDING_NEW,
    )
    assert t["source"][0] == TransitionSource.REQUEST
    t = store.on_reports(ack(1), NOW + 1)
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_NEW, S.NEW)
    t = store.on_reports(fill(1, 100, 100_001, exec_id=9), NOW + 2)
    assert (t["from_status"][0], t["to_status"][0], t["exec_type"][0]) == (
        S.NEW,
        S.PARTIALLY_FILLED,
        ExecType.TRADE,
    )
    assert (t["cum_qty"][0], t["leaves_qty"][0], t["avg_px"][0]) == (100, 200, 100_001)
    assert (t["last_qty"][0], t["last_px"][0], t["exec_id"][0], t["ts_ns"][0]) == (
        100,
        100_001,
        9,
        NOW + 2,
    )
    t = store.on_reports(fill(1, 100, 100_002), NOW + 3)
    assert (t["to_status"][0], t["cum_qty"][0], t["leaves_qty"][0]) == (
        S.PARTIALLY_FILLED,
        200,
        100,
    )
    # (100 * 100001 + 100 * 100002) / 200 = 100001.5 -> half away from zero -> 100002
    assert t["avg_px"][0] == 100_002
    t = store.on_reports(fill(1, 100, 100_002), NOW + 4)
    assert (t["to_status"][0], t["cum_qty"][0], t["leaves_qty"][0]) == (S.FILLED, 300, 0)
    # (100001 + 2 * 100002) * 100 / 300 = 100001.666.. -> 100002
    assert t["avg_px"][0] == 100_002
    row = store.order(1)
    assert row is not None and row["notional"] == 100 * 100_001 + 200 * 100_002
    assert [int(x) for x in t["seq"]] == [5]
    assert store.counters()["reports_applied"] == 4


def test_round_div_half_away_from_zero() -> None:
    assert round_div(3, 2) == 2
    assert round_div(-3, 2) == -2
    assert round_div(5, 4) == 1
    assert round_div(7, 4) == 2
    assert round_div(0, 3) == 0
    assert round_div(-3, -2) == 2
    assert round_div(3, -2) == -2
    with pytest.raises(ZeroDivisionError):
        round_div(1, 0)


def test_execution_reports_for_client_on_partial_fill() -> None:
    store = OrderStore(4)
    live_order(store, qty=300)
    t = store.on_reports(fill(1, 120, 100_003, exec_id=77), NOW + 5)
    reps = store.execution_reports(t, NOW + 6)
    r = reps[0]
    assert r["exec_type"] == ExecType.TRADE and r["ord_status"] == S.PARTIALLY_FILLED
    assert (r["cum_qty"], r["leaves_qty"], r["avg_px"], r["order_qty"]) == (120, 180, 100_003, 300)
    assert (r["last_qty"], r["last_px"], r["exec_id"]) == (120, 100_003, 77)
    assert bytes(r["cl_ord_id"]).rstrip(b"\0") == b"C1" and r["side"] == Side.BUY


def test_fill_before_ack_and_venue_final_states() -> None:
    store = OrderStore(8)
    store.on_requests(new(1, "C1", 100), NOW)
    t = store.on_reports(fill(1, 40), NOW)
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_NEW, S.PARTIALLY_FILLED)
    for oid, et, st in (
        (2, ExecType.DONE_FOR_DAY, S.DONE_FOR_DAY),
        (3, ExecType.EXPIRED, S.EXPIRED),
    ):
        live_order(store, oid, f"C{oid}")
        t = store.on_reports(report(oid, et), NOW + 2)
        assert (t["from_status"][0], t["to_status"][0], t["leaves_qty"][0]) == (S.NEW, st, 0)


# ---- rejects ---------------------------------------------------------------------------------


def test_venue_reject_of_new_order() -> None:
    store = OrderStore(4)
    store.on_requests(new(1, "C1"), NOW)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.REJECTED), NOW + 1)
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_NEW, S.REJECTED)
    assert t["reject_reason"][0] == RejectReason.VENUE_REJECT
    assert store.order(1)["leaves_qty"] == 0  # type: ignore[index]


def test_reject_of_acknowledged_order_is_ignored() -> None:
    store = OrderStore(4)
    live_order(store)
    before = frozen(store)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.REJECTED), NOW + 1)
    assert t.shape == (0,)
    assert frozen(store) == before
    assert store.report_issues[ReportIssue.INVALID_TRANSITION] == 1


@pytest.mark.parametrize(
    ("req", "cause", "reason"),
    [
        (new(9, "C9", qty=0), RequestRejectCause.INVALID_FIELDS, RejectReason.INVALID_ORDER),
        (
            new(9, "C9", side=Side.NONE),
            RequestRejectCause.INVALID_FIELDS,
            RejectReason.INVALID_ORDER,
        ),
        (
            new(9, "C9", price=MAX_PRICE + 1),
            RequestRejectCause.INVALID_FIELDS,
            RejectReason.INVALID_ORDER,
        ),
        (new(9, "C9", price=0), RequestRejectCause.INVALID_FIELDS, RejectReason.INVALID_ORDER),
        (new(9, ""), RequestRejectCause.INVALID_FIELDS, RejectReason.INVALID_ORDER),
        (new(0, "C9"), RequestRejectCause.INVALID_FIELDS, RejectReason.INVALID_ORDER),
        (new(9, "C1"), RequestRejectCause.DUPLICATE_CL_ORD_ID, RejectReason.DUPLICATE_CL_ORD_ID),
        (new(1, "C9"), RequestRejectCause.DUPLICATE_ORDER_ID, RejectReason.INVALID_ORDER),
        (cancel(9, "X9", 42), RequestRejectCause.UNKNOWN_ORDER, RejectReason.UNKNOWN_ORDER),
        (replace(9, "X9", 42, 10), RequestRejectCause.UNKNOWN_ORDER, RejectReason.UNKNOWN_ORDER),
        (
            cancel(9, "X9", 1, account_id=99),
            RequestRejectCause.MISMATCH,
            RejectReason.INVALID_ORDER,
        ),
        (
            cancel(9, "X9", 1, side=Side.SELL),
            RequestRejectCause.MISMATCH,
            RejectReason.INVALID_ORDER,
        ),
        (replace(9, "X9", 1, qty=0), RequestRejectCause.INVALID_FIELDS, RejectReason.INVALID_ORDER),
    ],
)
def test_invalid_requests_are_refused_typed_and_counted(
    req: np.ndarray, cause: RequestRejectCause, reason: RejectReason
) -> None:
    store = OrderStore(8)
    live_order(store)
    before = frozen(store)
    acc, reasons = store.on_requests(req, NOW + 5)
    assert acc.tolist() == [False]
    assert reasons.tolist() == [reason]
    assert store.request_rejects[cause] == 1
    assert store.last_transitions.shape == (0,)
    after = frozen(store)
    assert after["rows"] == before["rows"]


def test_duplicate_cl_ord_id_in_other_session_is_allowed() -> None:
    store = OrderStore(8)
    live_order(store)
    acc, _ = store.on_requests(new(2, "C1", session_id=SESSION + 1), NOW)
    assert acc.all()


def test_cancel_or_replace_of_final_order_is_too_late() -> None:
    store = OrderStore(8)
    live_order(store, qty=10)
    store.on_reports(fill(1, 10), NOW)
    acc, reasons = store.on_requests(batch(cancel(2, "X2", 1), replace(3, "X3", 1, 20)), NOW)
    assert acc.tolist() == [False, False]
    assert reasons.tolist() == [RejectReason.UNKNOWN_ORDER] * 2
    assert store.request_rejects[RequestRejectCause.ORDER_FINAL] == 2


def test_mixed_batch_mask_lines_up() -> None:
    store = OrderStore(8)
    acc, reasons = store.on_requests(
        batch(new(1, "A"), new(2, "A"), new(3, "B", qty=-1), new(4, "C")), NOW
    )
    assert acc.tolist() == [True, False, False, True]
    assert reasons.tolist() == [0, RejectReason.DUPLICATE_CL_ORD_ID, RejectReason.INVALID_ORDER, 0]
    assert store.last_transitions["order_id"].tolist() == [1, 4]


# ---- cancels ---------------------------------------------------------------------------------


def test_cancel_flow() -> None:
    store = OrderStore(8)
    live_order(store)
    acc, _ = store.on_requests(cancel(2, "X1", 1), NOW + 2)
    assert acc.all()
    t = store.last_transitions
    assert (t["order_id"][0], t["from_status"][0], t["to_status"][0], t["exec_type"][0]) == (
        1,
        S.NEW,
        S.PENDING_CANCEL,
        ExecType.PENDING_CANCEL,
    )
    reps = store.execution_reports(t, NOW)
    assert bytes(reps["cl_ord_id"][0]).rstrip(b"\0") == b"X1"
    assert bytes(reps["orig_cl_ord_id"][0]).rstrip(b"\0") == b"C1"
    # A second cancel while one is pending is refused.
    acc, _ = store.on_requests(cancel(3, "X2", 1), NOW + 3)
    assert not acc.any() and store.request_rejects[RequestRejectCause.ORDER_PENDING] == 1
    t = store.on_reports(report(1, ExecType.CANCELED, ord_status=S.CANCELED), NOW + 4)
    assert (t["from_status"][0], t["to_status"][0], t["leaves_qty"][0]) == (
        S.PENDING_CANCEL,
        S.CANCELED,
        0,
    )


def test_cancel_by_orig_cl_ord_id() -> None:
    store = OrderStore(8)
    live_order(store)
    acc, _ = store.on_requests(cancel(2, "X1", 0, orig_cl="C1"), NOW)
    assert acc.all() and store.status(1) is S.PENDING_CANCEL


def test_cancel_reject_returns_to_previous_status() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_requests(cancel(2, "X1", 1), NOW)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.PENDING_CANCEL), NOW + 1)
    assert (t["from_status"][0], t["to_status"][0], t["exec_type"][0]) == (
        S.PENDING_CANCEL,
        S.NEW,
        ExecType.REJECTED,
    )
    assert store.status(1) is S.NEW
    reps = store.execution_reports(t, NOW)  # the client's OrderCancelReject
    assert bytes(reps["cl_ord_id"][0]).rstrip(b"\0") == b"X1"
    assert bytes(reps["orig_cl_ord_id"][0]).rstrip(b"\0") == b"C1"
    assert (reps["exec_type"][0], reps["ord_status"][0]) == (ExecType.REJECTED, S.NEW)


def test_fill_while_cancel_pending_then_cancel_reject() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_requests(cancel(2, "X1", 1), NOW)
    t = store.on_reports(fill(1, 30), NOW + 1)
    assert (t["from_status"][0], t["to_status"][0], t["cum_qty"][0]) == (
        S.PENDING_CANCEL,
        S.PENDING_CANCEL,
        30,
    )
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.PARTIALLY_FILLED), NOW + 2)
    assert t["to_status"][0] == S.PARTIALLY_FILLED
    # cancel of a partially filled order: canceled with cum kept
    store.on_requests(cancel(3, "X2", 1), NOW + 3)
    t = store.on_reports(report(1, ExecType.CANCELED), NOW + 4)
    assert (t["to_status"][0], t["cum_qty"][0], t["leaves_qty"][0]) == (S.CANCELED, 30, 0)


def test_cancel_of_pending_new_then_ack_then_cancel() -> None:
    store = OrderStore(8)
    store.on_requests(new(1, "C1"), NOW)
    acc, _ = store.on_requests(cancel(2, "X1", 1), NOW)
    assert acc.all()
    t = store.on_reports(ack(1), NOW + 1)
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_CANCEL, S.PENDING_CANCEL)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.NEW), NOW + 2)
    assert t["to_status"][0] == S.NEW


# ---- replaces --------------------------------------------------------------------------------


def test_replace_carries_cum_qty_to_new_order() -> None:
    store = OrderStore(8)
    live_order(store, qty=100)
    store.on_reports(fill(1, 40, 100_010), NOW)
    acc, _ = store.on_requests(replace(2, "C2", 1, qty=150, price=99_000), NOW + 1)
    assert acc.all()
    t = store.last_transitions
    assert (t["order_id"][0], t["from_status"][0], t["to_status"][0], t["exec_type"][0]) == (
        1,
        S.PARTIALLY_FILLED,
        S.PENDING_REPLACE,
        ExecType.PENDING_REPLACE,
    )
    assert store.status(2) is S.NONE  # staged until the venue confirms
    t = store.on_reports(report(2, ExecType.REPLACED, price=99_000), NOW + 2)
    assert t["order_id"].tolist() == [1, 2]
    assert t["to_status"].tolist() == [S.REPLACED, S.PARTIALLY_FILLED]
    assert t["exec_type"].tolist() == [ExecType.REPLACED] * 2
    assert (t["cum_qty"][1], t["leaves_qty"][1], t["avg_px"][1], t["price"][1]) == (
        40,
        110,
        100_010,
        99_000,
    )
    new_row = store.order(2)
    assert new_row is not None
    assert new_row["cl_ord_id"] == b"C2" and new_row["orig_cl_ord_id"] == b"C1"
    reps = store.execution_reports(t, NOW)  # FIX: one report, the replacement's
    assert reps.shape == (1,)
    assert (reps["order_id"][0], reps["exec_type"][0], reps["ord_status"][0]) == (
        2,
        ExecType.REPLACED,
        S.PARTIALLY_FILLED,
    )
    assert bytes(reps["cl_ord_id"][0]).rstrip(b"\0") == b"C2"
    assert bytes(reps["orig_cl_ord_id"][0]).rstrip(b"\0") == b"C1"
    assert (reps["cum_qty"][0], reps["leaves_qty"][0], reps["avg_px"][0]) == (40, 110, 100_010)
    # fills now go to the replacement; the replaced order takes no more reports
    t = store.on_reports(fill(2, 110, 100_000), NOW + 3)
    assert (t["to_status"][0], t["cum_qty"][0], t["leaves_qty"][0]) == (S.FILLED, 150, 0)
    assert t["avg_px"][0] == round_div(40 * 100_010 + 110 * 100_000, 150)
    store.on_reports(fill(1, 1), NOW + 4)
    assert store.report_issues[ReportIssue.FINAL_ORDER] == 1


def test_replace_chain() -> None:
    store = OrderStore(16)
    live_order(store, 1, "C1", qty=100)
    oid = 1
    cum = 0
    for step in range(1, 5):
        store.on_reports(fill(oid, 10, PX + step), NOW + step)
        cum += 10
        new_id = oid + 1
        acc, _ = store.on_requests(replace(new_id, f"C{new_id}", oid, qty=100 + step), NOW + step)
        assert acc.all()
        t = store.on_reports(report(new_id, ExecType.REPLACED), NOW + step)
        assert t["to_status"].tolist() == [S.REPLACED, S.PARTIALLY_FILLED]
        assert (t["cum_qty"][1], t["leaves_qty"][1]) == (cum, 100 + step - cum)
        oid = new_id
    row = store.order(oid)
    assert row is not None and row["orig_cl_ord_id"] == f"C{oid - 1}".encode()
    assert row["notional"] == sum(10 * (PX + s) for s in range(1, 5))


def test_replace_of_pending_orders_is_refused() -> None:
    store = OrderStore(8)
    store.on_requests(new(1, "C1"), NOW)
    acc, reasons = store.on_requests(replace(2, "C2", 1, 50), NOW)  # pending new
    assert not acc.any() and reasons.tolist() == [RejectReason.INVALID_ORDER]
    store.on_reports(ack(1), NOW)
    store.on_requests(cancel(3, "X3", 1), NOW)
    acc, _ = store.on_requests(replace(4, "C4", 1, 50), NOW)  # pending cancel
    assert not acc.any()
    store.on_reports(report(1, ExecType.REJECTED, ord_status=S.NEW), NOW)
    assert store.on_requests(replace(5, "C5", 1, 50), NOW)[0].all()
    acc, _ = store.on_requests(replace(6, "C6", 1, 60), NOW)  # pending replace
    assert not acc.any()
    assert store.request_rejects[RequestRejectCause.ORDER_PENDING] == 3


def test_replace_below_filled_qty_is_refused() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_reports(fill(1, 50), NOW)
    acc, _ = store.on_requests(replace(2, "C2", 1, 50), NOW)
    assert not acc.any()
    assert store.request_rejects[RequestRejectCause.REPLACE_BELOW_CUM] == 1


def test_replace_reject_restores_order_and_frees_clordid_slot() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_requests(replace(2, "C2", 1, 200), NOW)
    # as OuchOrderTracker reports it: addressed to the replacement, ord_status the original's
    t = store.on_reports(report(2, ExecType.REJECTED, ord_status=S.NEW), NOW + 1)
    assert t["order_id"].tolist() == [1, 2]
    assert t["to_status"].tolist() == [S.NEW, S.REJECTED]
    assert store.status(1) is S.NEW
    reps = store.execution_reports(t, NOW)  # one refusal, naming the replace request
    assert reps.shape == (1,)
    assert bytes(reps["cl_ord_id"][0]).rstrip(b"\0") == b"C2"
    assert bytes(reps["orig_cl_ord_id"][0]).rstrip(b"\0") == b"C1"
    assert (reps["exec_type"][0], reps["ord_status"][0]) == (ExecType.REJECTED, S.NEW)
    # and addressed to the original
    store.on_requests(replace(3, "C3", 1, 200), NOW + 2)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.NEW), NOW + 3)
    assert t["to_status"].tolist() == [S.NEW, S.REJECTED]
    assert store.status(3) is S.REJECTED


def test_fill_completing_order_orphans_pending_replacement() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_requests(replace(2, "C2", 1, 200), NOW)
    t = store.on_reports(fill(1, 100), NOW + 1)
    assert t["order_id"].tolist() == [1, 2]
    assert t["to_status"].tolist() == [S.FILLED, S.REJECTED]
    assert t["source"].tolist() == [TransitionSource.REPORT, TransitionSource.INTERNAL]
    reps = store.execution_reports(t, NOW)
    assert reps["exec_type"].tolist() == [ExecType.TRADE, ExecType.REJECTED]
    assert reps["ord_status"].tolist() == [S.FILLED, S.FILLED]
    assert bytes(reps["cl_ord_id"][1]).rstrip(b"\0") == b"C2"
    store.on_reports(report(2, ExecType.REJECTED, ord_status=S.FILLED), NOW + 2)
    assert store.report_issues[ReportIssue.FINAL_ORDER] == 1


def test_replaced_report_without_request_is_ignored() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_reports(report(1, ExecType.REPLACED), NOW)
    assert store.report_issues[ReportIssue.INVALID_TRANSITION] == 1
    assert store.status(1) is S.NEW


# ---- bad reports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep", "issue"),
    [
        (fill(99, 10), ReportIssue.UNKNOWN_ORDER),
        (fill(1, 101), ReportIssue.OVERFILL),
        (fill(1, 0), ReportIssue.BAD_FILL),
        (fill(1, 10, 0), ReportIssue.BAD_FILL),
        (fill(1, 10, -5), ReportIssue.BAD_FILL),
        (fill(1, 10, MAX_PRICE + 1), ReportIssue.BAD_FILL),
        (ack(1), ReportIssue.INVALID_TRANSITION),
        (report(1, ExecType.ORDER_STATUS), ReportIssue.UNSUPPORTED),
        (report(1, ExecType.TRADE_CANCEL, last_qty=5, last_px=PX), ReportIssue.BAD_FILL),
        (report(1, ExecType.REJECTED, ord_status=S.NEW), ReportIssue.INVALID_TRANSITION),
    ],
)
def test_bad_reports_are_counted_and_ignored(rep: np.ndarray, issue: ReportIssue) -> None:
    store = OrderStore(8)
    live_order(store)
    before = frozen(store)
    t = store.on_reports(batch(rep, fill(1, 10)), NOW + 9)
    assert t["order_id"].tolist() == [1]  # the good report after the bad one still applies
    assert store.report_issues[issue] == 1
    assert store.report_issues.sum() == 1
    fresh = OrderStore(8)
    live_order(fresh)
    fresh.on_reports(fill(1, 10), NOW + 9)
    assert frozen(store) == frozen(fresh)
    assert frozen(store) != before


def test_overfill_after_partial_never_corrupts() -> None:
    store = OrderStore(8)
    live_order(store, qty=100)
    store.on_reports(fill(1, 60), NOW)
    store.on_reports(fill(1, 41), NOW)
    row = store.order(1)
    assert row is not None and (row["cum_qty"], row["leaves_qty"]) == (60, 40)
    assert store.report_issues[ReportIssue.OVERFILL] == 1


def test_wrong_dtype_raises() -> None:
    store = OrderStore(2)
    with pytest.raises(OrderStoreError):
        store.on_requests(ack(1), NOW)
    with pytest.raises(OrderStoreError):
        store.on_reports(new(1, "C1"), NOW)
    with pytest.raises(OrderStoreError):
        OrderStore(0)


# ---- busts and restatements ------------------------------------------------------------------


def test_trade_cancel_reverses_a_fill() -> None:
    store = OrderStore(8)
    live_order(store, qty=100)
    store.on_reports(batch(fill(1, 30, PX), fill(1, 20, PX + 10)), NOW)
    t = store.on_reports(report(1, ExecType.TRADE_CANCEL, last_qty=30, last_px=PX), NOW + 1)
    assert (t["cum_qty"][0], t["leaves_qty"][0], t["avg_px"][0]) == (20, 80, PX + 10)
    t = store.on_reports(report(1, ExecType.TRADE_CANCEL, last_qty=20, last_px=PX + 10), NOW + 2)
    assert (t["to_status"][0], t["cum_qty"][0], t["avg_px"][0]) == (S.NEW, 0, 0)


def test_restated_size_reduction() -> None:
    store = OrderStore(8)
    live_order(store, qty=100)
    store.on_reports(fill(1, 10), NOW)
    t = store.on_reports(
        report(1, ExecType.RESTATED, ord_status=S.PARTIALLY_FILLED, leaves_qty=50), NOW + 1
    )
    assert (t["order_qty"][0], t["leaves_qty"][0], t["to_status"][0]) == (
        60,
        50,
        S.PARTIALLY_FILLED,
    )
    store.on_reports(report(1, ExecType.RESTATED, leaves_qty=70), NOW + 2)  # growth: refused
    assert store.report_issues[ReportIssue.INVALID_TRANSITION] == 1


# ---- bounds ----------------------------------------------------------------------------------


def test_store_full_rejects_then_reclaims_final_rows_oldest_first() -> None:
    store = OrderStore(2)
    live_order(store, 1, "C1")
    live_order(store, 2, "C2")
    acc, reasons = store.on_requests(new(3, "C3"), NOW)
    assert not acc.any() and reasons.tolist() == [RejectReason.QUEUE_FULL]
    store.on_reports(report(2, ExecType.CANCELED), NOW)
    store.on_reports(report(1, ExecType.CANCELED), NOW)
    acc, _ = store.on_requests(new(3, "C3"), NOW)
    assert acc.all()
    assert store.order(2) is None and store.order(1) is not None
    assert len(store) == 2


def test_venue_initiated_pending_cancel_and_unsolicited_cancel() -> None:
    store = OrderStore(8)
    live_order(store)
    t = store.on_reports(report(1, ExecType.PENDING_CANCEL), NOW)
    assert (t["from_status"][0], t["to_status"][0]) == (S.NEW, S.PENDING_CANCEL)
    t = store.on_reports(report(1, ExecType.PENDING_CANCEL), NOW)  # repeated: no change
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_CANCEL, S.PENDING_CANCEL)
    live_order(store, 2, "C2")
    t = store.on_reports(report(2, ExecType.CANCELED), NOW)
    assert (t["from_status"][0], t["to_status"][0]) == (S.NEW, S.CANCELED)


def test_replaced_report_addressed_to_original() -> None:
    store = OrderStore(8)
    live_order(store)
    store.on_requests(replace(2, "C2", 1, 300), NOW)
    t = store.on_reports(report(1, ExecType.REPLACED), NOW)
    assert t["order_id"].tolist() == [1, 2]
    assert t["to_status"].tolist() == [S.REPLACED, S.NEW]
    assert (t["order_qty"][1], t["leaves_qty"][1]) == (300, 300)


def test_reject_while_cancel_pending_on_unacked_order() -> None:
    store = OrderStore(8)
    store.on_requests(new(1, "C1"), NOW)
    store.on_requests(cancel(2, "X1", 1), NOW)
    t = store.on_reports(report(1, ExecType.REJECTED, ord_status=S.REJECTED), NOW)
    assert (t["from_status"][0], t["to_status"][0]) == (S.PENDING_CANCEL, S.REJECTED)


def test_bust_on_filled_order_keeps_it_done() -> None:
    store = OrderStore(8)
    live_order(store, qty=50)
    store.on_reports(batch(fill(1, 20, PX), fill(1, 30, PX + 2)), NOW)
    t = store.on_reports(report(1, ExecType.TRADE_CANCEL, last_qty=20, last_px=PX), NOW)
    assert (t["to_status"][0], t["order_qty"][0], t["cum_qty"][0], t["leaves_qty"][0]) == (
        S.FILLED,
        30,
        30,
        0,
    )
    assert t["avg_px"][0] == PX + 2
