"""The gateway core against the in-process venue simulator: fills, rejects by reason, cancels,
replaces, kill verdicts, mass cancel, cancel-on-disconnect, limits reload and snapshots."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.gateway.core import KILL_VERDICTS, LIMITS_UPDATE, SESSION_DOWN
from tectra.journal.capture import OpaqueBatch
from tectra.risk.limits import LimitsError
from tectra.schema import (
    KILL_COMMAND,
    ExecType,
    KillScope,
    OrderAction,
    OrdStatus,
    RejectReason,
    Side,
    new_records,
)
from tests.gateway._core_harness import Harness, limits_doc, request


def cat(*parts: np.ndarray) -> np.ndarray:
    out = new_records("ORDER_REQUEST", sum(len(p) for p in parts))
    i = 0
    for p in parts:
        out[i : i + len(p)] = p
        i += len(p)
    return out


def kinds(reports: np.ndarray) -> list[tuple[str, str]]:
    return [
        (ExecType(e).name, OrdStatus(s).name)
        for e, s in reports[["exec_type", "ord_status"]].tolist()
    ]


def reasons(reports: np.ndarray) -> list[str]:
    return [RejectReason(x).name for x in reports["reject_reason"].tolist()]


def test_marketable_order_fills_and_books_position() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    res = h.send(request("A1", qty=150, price=ref + 200))
    assert len(res.venue_out) == 1 and res.venue_out[0][:1] == b"O"  # Enter Order
    assert len(res.client_reports) == 0  # no PendingNew by default: the venue answers first
    out = h.pump()
    assert kinds(out.client_reports) == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "FILLED"),
    ]
    last = out.client_reports[-1]
    assert int(last["cum_qty"]) == 150 and int(last["leaves_qty"]) == 0
    pos = h.core.positions.position(1, 0, 1)
    assert pos["net_qty"] == 150 and pos["bought_qty"] == 150
    # Risk saw the fills: the exposure moved from open to executed.
    assert h.core.risk.account(1)["open_notional"] == 0


def test_every_refusal_is_a_reject_with_its_reason_and_nothing_reaches_the_venue() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("D1", qty=1, price=ref - 10_000))
    res = h.send(
        cat(
            request("X1", qty=50_000, price=ref),  # max qty 10 000
            request("X2", symbol="ZZZZ"),  # not in the limits
            request("D1", qty=1, price=ref - 10_000),  # ClOrdID used before
            request("X3", price=ref * 2),  # outside the 10 % band
            request("X4", account="NOPE", session=9),  # unknown account, unbound session
        )
    )
    assert res.venue_out == []
    assert reasons(res.client_reports) == [
        "MAX_SIZE",
        "INVALID_SYMBOL",
        "DUPLICATE_CL_ORD_ID",
        "PRICE_BANDS",
        "INVALID_ORDER",
    ]
    assert all(s == "REJECTED" for _, s in kinds(res.client_reports))
    assert h.core.rejects_by_reason["MAX_SIZE"] == 1


def test_stale_reference_fails_closed() -> None:
    h = Harness()
    h.now += 6_000_000_000  # max_ref_age_ns is 5 s
    res = h.send(request("S1"))
    assert reasons(res.client_reports) == ["STALE_REFERENCE"] and res.venue_out == []


def test_cancel_and_cancel_reject() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("R1", qty=5, price=ref - 500))
    h.pump()
    res = h.send(request("C1", action=OrderAction.CANCEL, orig="R1"))
    assert len(res.venue_out) == 1 and res.venue_out[0][:1] == b"X"
    out = h.pump()
    assert kinds(out.client_reports) == [("CANCELED", "CANCELED")]
    assert out.client_reports[0]["cl_ord_id"].rstrip(b"\0") == b"C1"
    assert out.client_reports[0]["orig_cl_ord_id"].rstrip(b"\0") == b"R1"
    # A cancel of an order that is gone: OrderCancelReject (response to cancel), not an ER.
    res = h.send(request("C2", action=OrderAction.CANCEL, orig="R1"))
    assert len(res.client_reports) == 0 and len(res.cancel_rejects) == 1
    assert res.cancel_reject_to.tolist() == [OrderAction.CANCEL]
    assert res.cancel_rejects[0]["ord_status"] == OrdStatus.CANCELED
    res = h.send(request("C3", action=OrderAction.CANCEL, orig="NEVER"))
    assert reasons(res.cancel_rejects) == ["UNKNOWN_ORDER"]


def test_replace_moves_the_order_and_keeps_fills() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("P1", qty=20, price=ref - 500))
    h.pump()
    res = h.send(request("P2", action=OrderAction.REPLACE, orig="P1", qty=30, price=ref - 400))
    assert len(res.venue_out) == 1 and res.venue_out[0][:1] == b"U"
    out = h.pump()
    assert kinds(out.client_reports) == [("REPLACED", "NEW")]
    rep = out.client_reports[0]
    assert rep["cl_ord_id"].rstrip(b"\0") == b"P2" and int(rep["order_qty"]) == 30
    assert h.core.open_orders() == 1


def test_kill_blocked_rejects_new_orders_but_never_cancels() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("K1", qty=5, price=ref - 500))
    h.pump()
    verdicts = np.array([2, 2], np.uint8)
    h.apply(OpaqueBatch(KILL_VERDICTS, verdicts, np.array([0, 2], np.int64)))
    res = h.send(
        cat(
            request("K2", qty=5, price=ref - 500),
            request("K3", action=OrderAction.CANCEL, orig="K1"),
        )
    )
    assert reasons(res.client_reports) == ["HALTED"]
    assert len(res.venue_out) == 1 and res.venue_out[0][:1] == b"X"
    assert h.core.counters["kill_blocked"] == 1


def test_kill_verdicts_of_the_wrong_length_block_everything() -> None:
    h = Harness()
    h.apply(OpaqueBatch(KILL_VERDICTS, np.zeros(3, np.uint8), np.array([0, 3], np.int64)))
    res = h.send(request("W1"))
    assert reasons(res.client_reports) == ["HALTED"]


def test_slow_mode_throttles_per_session() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    n = 12
    verdicts = np.ones(n, np.uint8)
    h.apply(OpaqueBatch(KILL_VERDICTS, verdicts, np.array([0, n], np.int64)))
    res = h.send(cat(*(request(f"L{i}", qty=1, price=ref - 500) for i in range(n))))
    burst = h.core.config.slow_burst
    assert len(res.venue_out) == burst
    assert reasons(res.client_reports) == ["RATE_LIMIT"] * (n - burst)


def test_mass_cancel_in_scope_is_confirmed_by_the_venue() -> None:
    h = Harness()
    ref, mref = h.ref("AAPL"), h.ref("MSFT")
    for i in range(4):
        h.send(request(f"M{i}", qty=5, price=ref - 500))
    h.send(request("N1", qty=5, price=mref - 500, symbol="MSFT"))
    h.pump()
    cmd = new_records(KILL_COMMAND, 1)
    cmd["kill_id"] = 42
    cmd["scope"] = KillScope.SYMBOL
    cmd["scope_id"] = 1  # AAPL
    res = h.apply(cmd)
    assert res is not None and len(res.venue_out) == 4
    assert h.core.kills[42].sent == 4 and h.core.kills[42].confirmed == 0
    out = h.pump()
    assert kinds(out.client_reports) == [("CANCELED", "CANCELED")] * 4
    assert h.core.kills[42].confirmed == 4 and not h.core.kills[42].pending
    assert h.core.open_orders() == 1  # MSFT untouched


def test_cancel_on_disconnect_touches_only_that_session() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("S1", qty=5, price=ref - 500, session=1))
    h.send(request("S2", qty=5, price=ref - 500, session=2, account="ACC2"))
    h.pump()
    res = h.apply(OpaqueBatch.from_payloads(SESSION_DOWN, [struct.pack("<I", 1)]))
    assert res is not None and len(res.venue_out) == 1
    h.pump()
    assert h.core.open_orders(KillScope.ACCOUNT, 2) == 1
    assert h.core.open_orders(KillScope.ACCOUNT, 1) == 0


def test_limits_update_is_an_input_and_a_bad_document_changes_nothing() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    update = {"version": 2, "document": limits_doc(max_qty=5)}
    h.apply(OpaqueBatch.from_payloads(LIMITS_UPDATE, [json.dumps(update).encode()]))
    assert h.core.risk.limits.version == 2
    res = h.send(request("Q1", qty=6, price=ref - 500))
    assert reasons(res.client_reports) == ["MAX_SIZE"]
    bad = {"version": 3, "document": limits_doc(max_qty=-1)}
    with pytest.raises(LimitsError):
        h.apply(OpaqueBatch.from_payloads(LIMITS_UPDATE, [json.dumps(bad).encode()]))
    assert h.core.risk.limits.version == 2


def test_venue_garbage_is_counted_not_fatal() -> None:
    h = Harness()
    res = h.core.on_venue([b"", b"Z123", b"A" + b"\0" * 5], h.tick())
    assert len(res.client_reports) == 0
    assert h.core.counters["venue_malformed"] == 3


def test_snapshot_restore_continues_identically() -> None:
    a = Harness()
    ref = a.ref("AAPL")
    a.send(request("A1", qty=5, price=ref - 500))
    a.pump()
    snap = a.core.snapshot()
    b = Harness()
    b.core.restore(snap)
    b.now = a.now
    assert b.core.open_orders() == 1
    ra = a.send(request("C1", action=OrderAction.CANCEL, orig="A1"))
    rb = b.core.on_requests(request("C1", action=OrderAction.CANCEL, orig="A1"), a.now)
    assert ra.venue_out == rb.venue_out


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["new", "cancel", "replace"]),
            st.integers(1, 300),
            st.integers(-800, 800),
            st.sampled_from([Side.BUY, Side.SELL]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_any_flow_keeps_state_risk_and_venue_consistent(
    ops: list[tuple[str, int, int, Side]],
) -> None:
    """Whatever clients send: every request gets exactly one answer path, the store and risk
    agree on what is open, and fills reconcile with positions."""
    h = Harness()
    ref = h.ref("AAPL")
    live: list[str] = []
    for n, (kind, qty, off, side) in enumerate(ops):
        cl = f"H{n}"
        if kind == "new" or not live:
            res = h.send(request(cl, qty=qty, price=ref + off, side=side))
            live.append(cl)
        elif kind == "cancel":
            res = h.send(request(cl, action=OrderAction.CANCEL, orig=live.pop(0), side=side))
        else:
            orig = live.pop(0)
            res = h.send(
                request(cl, action=OrderAction.REPLACE, orig=orig, qty=qty, price=ref + off)
            )
            live.append(cl)
        answered = len(res.venue_out) + len(res.client_reports) + len(res.cancel_rejects)
        assert answered >= 1
        h.pump()
    store_open = h.core.open_orders()
    risk_open = sum(
        1
        for oid in h.core.store.rows["order_id"][h.core.store.live_mask()].tolist()
        if h.core.risk.open_order(int(oid)) is not None
    )
    assert risk_open == store_open
    rows = h.core.store.rows
    # A replaced order's fills continue on its replacement: count each fill once.
    counted = (rows["used"] == 1) & (rows["status"] != OrdStatus.REPLACED)
    buys = int(rows["cum_qty"][counted & (rows["side"] == Side.BUY)].sum())
    sells = int(rows["cum_qty"][counted & (rows["side"] == Side.SELL)].sum())
    assert h.core.positions.position(1, 0, 1)["net_qty"] == buys - sells


def test_mass_cancel_and_disconnect_with_nothing_open_do_nothing() -> None:
    h = Harness()
    cmd = new_records(KILL_COMMAND, 1)
    cmd["kill_id"] = 7
    cmd["scope"] = KillScope.FIRM
    res = h.apply(cmd)
    assert res is not None and res.venue_out == [] and h.core.kills[7].sent == 0
    res = h.apply(OpaqueBatch.from_payloads(SESSION_DOWN, [struct.pack("<IQ", 1, 10**6)]))
    assert res is not None and res.venue_out == []


def test_disconnect_cutoff_spares_orders_sent_after_the_drop() -> None:
    h = Harness()
    ref = h.ref("AAPL")
    h.send(request("B1", qty=5, price=ref - 500))
    cutoff = h.core.next_order_id
    h.send(request("B2", qty=5, price=ref - 500))  # after logging on again
    h.pump()
    res = h.apply(OpaqueBatch.from_payloads(SESSION_DOWN, [struct.pack("<IQ", 1, cutoff)]))
    assert res is not None and len(res.venue_out) == 1
    h.pump()
    assert h.core.open_orders() == 1
