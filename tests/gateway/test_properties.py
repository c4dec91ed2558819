"""Property tests: fill arithmetic of orders, P&L identities of positions, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.gateway.orders import MAX_PRICE, OrderStore, round_div
from tectra.gateway.positions import FeeSchedule, PositionBook
from tectra.schema import ExecType, OrdStatus, Side
from tests.gateway._helpers import (
    ACC,
    INSTR,
    NOW,
    STRAT,
    ack,
    cancel,
    fill,
    new,
    replace,
    report,
)

prices = st.integers(min_value=1, max_value=MAX_PRICE)
small_prices = st.integers(min_value=1, max_value=2_000_000)


@st.composite
def order_and_fills(draw: Any) -> tuple[int, list[tuple[int, int]]]:
    qty = draw(st.integers(min_value=1, max_value=10**6))
    fills: list[tuple[int, int]] = []
    left = qty
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        if left == 0:
            break
        q = draw(st.integers(min_value=1, max_value=left))
        fills.append((q, draw(prices)))
        left -= q
    return qty, fills


@settings(max_examples=200, deadline=None)
@given(order_and_fills(), st.lists(st.integers(min_value=1, max_value=10**6), max_size=3))
def test_cum_plus_leaves_and_avg_px(
    case: tuple[int, list[tuple[int, int]]], overfills: list[int]
) -> None:
    qty, fills = case
    store = OrderStore(4)
    store.on_requests(new(1, "C1", qty), NOW)
    store.on_reports(ack(1), NOW)
    notional = 0
    cum = 0
    for k, (q, px) in enumerate(fills):
        t = store.on_reports(fill(1, q, px, exec_id=k + 1), NOW + k)
        cum += q
        notional += q * px
        assert t.shape == (1,)
        assert int(t["cum_qty"][0]) == cum
        done = cum == qty
        if not done:
            assert int(t["cum_qty"][0]) + int(t["leaves_qty"][0]) == qty
            assert t["to_status"][0] == OrdStatus.PARTIALLY_FILLED
        else:
            assert t["leaves_qty"][0] == 0 and t["to_status"][0] == OrdStatus.FILLED
        avg = int(t["avg_px"][0])
        # avg_px is notional / cum rounded half away from zero: |avg * cum - notional| <= cum / 2
        assert 2 * abs(avg * cum - notional) <= cum
        assert avg == round_div(notional, cum)
    # fills beyond the order quantity are counted and never change the order
    before = store.state_arrays()["rows"].tobytes()
    for q in overfills:
        if cum + q > qty:
            store.on_reports(fill(1, q, 1), NOW)
            assert store.state_arrays()["rows"].tobytes() == before


sides = st.sampled_from([Side.BUY, Side.SELL])
signed_fills = st.lists(
    st.tuples(sides, st.integers(min_value=1, max_value=10**6), small_prices),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(signed_fills, small_prices)
def test_positions_net_and_pnl_identity(fills: list[tuple[Side, int, int]], mark: int) -> None:
    book = PositionBook(2, FeeSchedule(default=7))
    cash = 0
    net = 0
    for side, q, px in fills:
        book.book_fill(ACC, STRAT, INSTR, side=side, qty=q, px=px)
        d = q if side == Side.BUY else -q
        net += d
        cash -= d * px
    p = book.position(ACC, STRAT, INSTR)
    assert p["net_qty"] == net
    assert p["fees"] == 7 * sum(q for _, q, _ in fills)
    last_px = fills[-1][2]
    for m in (last_px, mark):
        unreal, marked = book.unrealised({INSTR: m})
        assert marked[0]
        # realised + unrealised equals the cash-flow P&L exactly, whatever the rounding
        assert p["realised_pnl"] + int(unreal[0]) == cash + net * m
    if net:
        assert 2 * abs(p["avg_open_px"] * net - p["cost"]) <= abs(net)
    else:
        assert p["cost"] == 0


ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["new", "ack", "fill", "cancel", "replace", "canceled", "reject", "cxlrej"]
        ),
        st.integers(min_value=1, max_value=6),
        st.integers(min_value=1, max_value=80),
        small_prices,
    ),
    max_size=60,
)


def apply_ops(seq: list[tuple[str, int, int, int]]) -> OrderStore:
    store = OrderStore(8)
    next_id = 100
    for k, (op, oid, q, px) in enumerate(seq):
        now = NOW + k
        if op == "new":
            store.on_requests(new(oid, f"N{oid}", q, px), now)
        elif op == "ack":
            store.on_reports(ack(oid), now)
        elif op == "fill":
            store.on_reports(fill(oid, q, px), now)
        elif op == "cancel":
            next_id += 1
            store.on_requests(cancel(next_id, f"X{next_id}", oid), now)
        elif op == "replace":
            next_id += 1
            store.on_requests(replace(next_id, f"R{next_id}", oid, q + 50, px), now)
            store.on_reports(report(next_id, ExecType.REPLACED), now)
        elif op == "canceled":
            store.on_reports(report(oid, ExecType.CANCELED), now)
        elif op == "reject":
            store.on_reports(report(oid, ExecType.REJECTED, ord_status=OrdStatus.REJECTED), now)
        else:
            store.on_reports(report(oid, ExecType.REJECTED, ord_status=OrdStatus.NEW), now)
    return store


@settings(max_examples=150, deadline=None)
@given(ops)
def test_determinism_and_invariants_under_any_sequence(
    seq: list[tuple[str, int, int, int]],
) -> None:
    a, b = apply_ops(seq), apply_ops(seq)
    sa, sb = a.state_arrays(), b.state_arrays()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    clone = OrderStore.from_state_arrays(sa)
    assert all(np.array_equal(sa[k], v) for k, v in clone.state_arrays().items())
    rows = a.rows[a.rows["used"] == 1]
    live = rows[
        np.isin(
            rows["status"],
            [
                OrdStatus.NEW,
                OrdStatus.PARTIALLY_FILLED,
                OrdStatus.PENDING_NEW,
                OrdStatus.PENDING_CANCEL,
                OrdStatus.PENDING_REPLACE,
            ],
        )
    ]
    assert (live["cum_qty"] + live["leaves_qty"] == live["order_qty"]).all()
    assert (rows["cum_qty"] <= rows["order_qty"]).all()
    assert (rows["leaves_qty"] >= 0).all()
    for r in rows[rows["cum_qty"] > 0]:
        assert int(r["avg_px"]) == round_div(int(r["notional"]), int(r["cum_qty"]))
