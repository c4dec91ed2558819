"""Matching engine: scenarios, and property tests against a brute-force reference model (price-
time priority, no crossed book, conservation of shares, both sides of every match reported
alike) with the ITCH callback's events rebuilding exactly the displayed book."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.schema import ITCH_EVENT, Side, TimeInForce
from tectra.sim.matching import (
    Accepted,
    Canceled,
    Fill,
    MatchError,
    MatchErrorReason,
    MatchingEngine,
    Modified,
    NewOrder,
    OrderEvent,
    Rejected,
    Replaced,
)


class ItchBook:
    """Rebuilds the displayed book from ITCH_EVENT batches, as a feed consumer would."""

    def __init__(self) -> None:
        self.orders: dict[int, tuple[int, int, int, int]] = {}  # ref -> (locate, side, px, qty)
        self.trades: list[tuple[int, int, int]] = []  # (match, shares, price) of 'P'
        self.batches = 0

    def __call__(self, recs: Any) -> None:
        assert recs.dtype == ITCH_EVENT.dtype and len(recs) > 0
        self.batches += 1
        for r in recs:
            t = chr(int(r["msg_type"]))
            ref = int(r["order_ref"])
            if t == "A":
                assert ref not in self.orders
                self.orders[ref] = (
                    int(r["stock_locate"]),
                    int(r["side"]),
                    int(r["price"]),
                    int(r["shares"]),
                )
            elif t in "EX":
                loc, side, px, qty = self.orders[ref]
                assert 0 < int(r["shares"]) <= qty
                left = qty - int(r["shares"])
                if left:
                    self.orders[ref] = (loc, side, px, left)
                else:
                    del self.orders[ref]
            elif t == "D":
                del self.orders[ref]
            elif t == "U":
                loc, side, _px, _qty = self.orders.pop(ref)
                self.orders[int(r["ref2"])] = (loc, side, int(r["price"]), int(r["shares"]))
            elif t == "P":
                assert ref == 0
                self.trades.append((int(r["ref2"]), int(r["shares"]), int(r["price"])))
            else:  # pragma: no cover
                raise AssertionError(f"unexpected ITCH type {t}")


def displayed(engine: MatchingEngine) -> dict[int, tuple[int, int, int, int]]:
    out = {}
    for book in engine.books.values():
        for side in (Side.BUY, Side.SELL):
            for o in book.orders(side):
                if o.displayed:
                    s = ord("B") if o.is_buy else ord("S")
                    out[o.ref] = (book.locate, s, o.price, o.qty)
    return out


def fills(events: list[OrderEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


@pytest.fixture
def eng() -> tuple[MatchingEngine, ItchBook]:
    itch = ItchBook()
    return MatchingEngine(["AAPL", "MSFT"], on_itch=itch), itch


def buy(qty: int, px: int | None, **kw: Any) -> NewOrder:
    return NewOrder("AAPL", Side.BUY, qty, px, **kw)


def sell(qty: int, px: int | None, **kw: Any) -> NewOrder:
    return NewOrder("AAPL", Side.SELL, qty, px, **kw)


def test_price_then_time_priority(eng: tuple[MatchingEngine, ItchBook]) -> None:
    e, itch = eng
    a = e.submit(sell(100, 101, owner="a", token="A"), 1)[0]
    b = e.submit(sell(100, 100, owner="b", token="B"), 2)[0]
    c = e.submit(sell(100, 100, owner="c", token="C"), 3)[0]
    assert isinstance(a, Accepted) and isinstance(b, Accepted) and isinstance(c, Accepted)
    ev = e.submit(buy(250, 101, owner="x", token="X"), 4)
    f = fills(ev)
    # Best price first (100), earliest first within it (B then C), then 101.
    assert [(x.ref, x.qty, x.price, x.liquidity) for x in f if x.liquidity == "A"] == [
        (b.ref, 100, 100, "A"),
        (c.ref, 100, 100, "A"),
        (a.ref, 50, 101, "A"),
    ]
    assert [x.match_number for x in f] == [1, 1, 2, 2, 3, 3]
    assert f[-1].leaves == 0 and f[-2].leaves == 50
    assert e.book("AAPL").best_ask() is not None
    assert e.book("AAPL").best_ask().qty == 50  # type: ignore[union-attr]
    assert itch.orders == displayed(e)


def test_partial_fill_rests_remainder_and_ioc_cancels_it(
    eng: tuple[MatchingEngine, ItchBook],
) -> None:
    e, itch = eng
    e.submit(sell(30, 100), 1)
    ev = e.submit(buy(100, 100, owner="x", token="X"), 2)
    assert [type(x) for x in ev] == [Accepted, Fill, Fill]
    assert e.book("AAPL").best_bid().qty == 70  # type: ignore[union-attr]
    e.submit(sell(30, 99), 3)
    ev = e.submit(sell(100, 99, tif=TimeInForce.IOC, owner="y", token="Y"), 4)
    assert isinstance(ev[-1], Canceled) and ev[-1].reason == "I" and ev[-1].decrement == 60
    # The sell at 99 traded with the resting bid; the IOC took the rest and cancelled 60.
    assert e.book("AAPL").best_bid() is None and e.book("AAPL").best_ask() is None
    assert itch.orders == displayed(e)


def test_market_order_sweeps_and_never_rests(eng: tuple[MatchingEngine, ItchBook]) -> None:
    e, itch = eng
    for px in (100, 101, 102):
        e.submit(sell(10, px), 1)
    ev = e.submit(buy(50, None, owner="m", token="M"), 2)
    taker = [x for x in fills(ev) if x.liquidity == "R"]
    assert [(x.qty, x.price) for x in taker] == [(10, 100), (10, 101), (10, 102)]
    assert isinstance(ev[-1], Canceled) and ev[-1].decrement == 20
    assert e.book("AAPL").best_bid() is None and len(e) == 0
    ev = e.submit(buy(5, None), 3)
    assert [type(x) for x in ev] == [Accepted, Canceled]
    assert itch.orders == {}


def test_replace_priority_rules(eng: tuple[MatchingEngine, ItchBook]) -> None:
    e, itch = eng
    first = e.submit(buy(100, 100, token="F"), 1)[0]
    second = e.submit(buy(100, 100, token="S"), 2)[0]
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    # Size down at the same price keeps priority and reference.
    (rep,) = e.replace(first.ref, 3, qty=60, price=100, token="F2")
    assert isinstance(rep, Replaced) and rep.priority_kept and rep.new_ref == first.ref
    assert [o.token for o in e.book("AAPL").orders(Side.BUY)] == ["F2", "S"]
    # Size up loses priority and gets a new reference.
    (rep,) = e.replace(first.ref, 4, qty=80, price=100)
    assert isinstance(rep, Replaced) and not rep.priority_kept and rep.new_ref != first.ref
    assert [o.token for o in e.book("AAPL").orders(Side.BUY)] == ["S", "F2"]
    assert itch.orders == displayed(e)
    # A price change that crosses trades first and rests the remainder.
    e.submit(sell(50, 101, token="A"), 5)
    ev = e.replace(second.ref, 6, qty=100, price=101, token="S2")
    assert isinstance(ev[0], Replaced)
    assert [(x.qty, x.price, x.liquidity) for x in fills(ev) if x.token == "S2"] == [(50, 101, "R")]
    assert e.book("AAPL").best_bid().price == 101  # type: ignore[union-attr]
    assert itch.orders == displayed(e)
    with pytest.raises(MatchError) as info:
        e.replace(second.ref, 7, qty=10, price=100)
    assert info.value.reason is MatchErrorReason.UNKNOWN_ORDER


def test_modify_and_cancel(eng: tuple[MatchingEngine, ItchBook]) -> None:
    e, itch = eng
    a = e.submit(sell(100, 100, token="A"), 1)[0]
    b = e.submit(sell(100, 100, token="B"), 1)[0]
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    (m,) = e.modify(a.ref, 2, qty=40, side=Side.SELL_SHORT)
    assert isinstance(m, Modified) and m.side == Side.SELL_SHORT and m.qty == 40
    assert next(iter(e.book("AAPL").orders(Side.SELL))).ref == a.ref  # still first
    with pytest.raises(MatchError):
        e.modify(a.ref, 2, qty=41)
    with pytest.raises(MatchError):
        e.modify(a.ref, 2, qty=10, side=Side.BUY)
    assert e.cancel(a.ref, 3, leave=40) == []  # nothing to reduce
    (c,) = e.cancel(a.ref, 3, leave=10)
    assert isinstance(c, Canceled) and (c.decrement, c.leaves) == (30, 10)
    (c,) = e.cancel(b.ref, 4)
    assert (c.decrement, c.leaves) == (100, 0) and e.order(b.ref) is None
    assert itch.orders == displayed(e)
    assert e.book("AAPL").depth(Side.SELL) == [type(e.book("AAPL").depth(Side.SELL)[0])(100, 10, 1)]


def test_non_displayed_orders_trade_as_itch_p(eng: tuple[MatchingEngine, ItchBook]) -> None:
    e, itch = eng
    hidden = e.submit(sell(100, 100, displayed=False), 1)[0]
    assert isinstance(hidden, Accepted)
    assert itch.orders == {}
    ev = e.submit(buy(40, 100), 2)
    (maker,) = [x for x in fills(ev) if x.liquidity == "A"]
    assert itch.trades == [(maker.match_number, 40, 100)]


def test_rejections_are_events_not_drops() -> None:
    e = MatchingEngine(["AAPL"], max_orders=1)
    assert isinstance(e.submit(NewOrder("XXXX", Side.BUY, 1, 1), 0)[0], Rejected)
    assert isinstance(e.submit(NewOrder("AAPL", Side.NONE, 1, 1), 0)[0], Rejected)
    assert isinstance(e.submit(NewOrder("AAPL", Side.BUY, 0, 1), 0)[0], Rejected)
    assert isinstance(e.submit(NewOrder("AAPL", Side.BUY, 1, 0), 0)[0], Rejected)
    assert isinstance(e.submit(NewOrder("AAPL", Side.BUY, 1, 1, TimeInForce.GTC), 0)[0], Rejected)
    assert isinstance(e.submit(NewOrder("AAPL", Side.BUY, 1, 1), 0)[0], Accepted)
    full = e.submit(NewOrder("AAPL", Side.BUY, 1, 1), 0)[0]
    assert isinstance(full, Rejected) and full.reason is MatchErrorReason.BOOK_FULL


def test_itch_fields_and_locates(eng: tuple[MatchingEngine, ItchBook]) -> None:
    seen: list[Any] = []
    e = MatchingEngine(["AAPL", "MSFT"], on_itch=seen.append)
    assert e.symbols == {"AAPL": 1, "MSFT": 2}
    e.submit(NewOrder("MSFT", Side.SELL, 10, 5_000_000), 123)
    e.submit(NewOrder("MSFT", Side.BUY, 4, 5_000_000), 456)
    add, exe = seen[0][0], seen[1][0]
    assert (chr(add["msg_type"]), chr(add["side"]), add["stock_locate"]) == ("A", "S", 2)
    assert (add["order_ref"], add["shares"], add["price"], add["exch_ts_ns"]) == (
        1,
        10,
        5_000_000,
        123,
    )
    assert (chr(exe["msg_type"]), exe["order_ref"], exe["shares"], exe["ref2"]) == ("E", 1, 4, 1)
    assert exe["type_id"] == ITCH_EVENT.type_id


# -- property tests against a brute-force model ---------------------------------------------


@dataclass
class ModelOrder:
    ref: int
    buy: bool
    price: int
    qty: int
    seq: int


@dataclass
class Model:
    orders: dict[int, ModelOrder] = field(default_factory=dict)
    next_ref: int = 1
    seq: int = 0

    def _priority(self, buy_side: bool) -> list[ModelOrder]:
        side = [o for o in self.orders.values() if o.buy == buy_side]
        return sorted(side, key=lambda o: ((-o.price if buy_side else o.price), o.seq))

    def _take(
        self, buy: bool, qty: int, limit: int | None
    ) -> tuple[int, list[tuple[int, int, int]]]:
        out = []
        for maker in self._priority(not buy):
            if qty == 0:
                break
            if limit is not None and (maker.price > limit if buy else maker.price < limit):
                break
            q = min(qty, maker.qty)
            out.append((maker.ref, q, maker.price))
            maker.qty -= q
            qty -= q
            if maker.qty == 0:
                del self.orders[maker.ref]
        return qty, out

    def _rest(self, ref: int, buy: bool, price: int, qty: int) -> None:
        self.seq += 1
        self.orders[ref] = ModelOrder(ref, buy, price, qty, self.seq)

    def submit(self, buy: bool, qty: int, price: int | None, ioc: bool) -> tuple[int, list]:
        ref = self.next_ref
        self.next_ref += 1
        left, out = self._take(buy, qty, price)
        if left and price is not None and not ioc:
            self._rest(ref, buy, price, left)
        return ref, out

    def replace(self, ref: int, qty: int, price: int) -> list:
        o = self.orders[ref]
        if price == o.price and qty <= o.qty:
            o.qty = qty
            return []
        del self.orders[ref]
        new = self.next_ref
        self.next_ref += 1
        left, out = self._take(o.buy, qty, price)
        if left:
            self._rest(new, o.buy, price, left)
        return out


op = st.one_of(
    st.tuples(
        st.just("new"),
        st.booleans(),
        st.integers(1, 50),
        st.one_of(st.none(), st.integers(95, 105)),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 10**6), st.integers(0, 40)),
    st.tuples(st.just("replace"), st.integers(0, 10**6), st.integers(1, 60), st.integers(95, 105)),
    st.tuples(st.just("modify"), st.integers(0, 10**6), st.integers(0, 40)),
)


@settings(max_examples=250, deadline=None)
@given(st.lists(op, min_size=1, max_size=60))
def test_engine_matches_reference_model(ops: list[tuple[Any, ...]]) -> None:
    itch = ItchBook()
    e = MatchingEngine(["AAPL"], on_itch=itch)
    model = Model()
    entered: dict[int, int] = {}  # original ref -> shares in (+ size changes by replace/modify)
    filled: dict[int, int] = {}
    canceled: dict[int, int] = {}
    lineage: dict[int, int] = {}  # current ref -> original ref
    by_match: dict[int, list[Fill]] = {}

    def adjust(ref: int, delta: int) -> None:
        entered[lineage[ref]] += delta

    for t, o in enumerate(ops):
        kind = o[0]
        resting = sorted(e._orders)
        if kind == "new":
            _, is_buy, qty, px, ioc, hidden = o
            side = Side.BUY if is_buy else Side.SELL
            tif = TimeInForce.IOC if ioc else TimeInForce.DAY
            ev = e.submit(NewOrder("AAPL", side, qty, px, tif, displayed=not hidden), t)
            ref, expected = model.submit(is_buy, qty, px, ioc)
            assert isinstance(ev[0], Accepted) and ev[0].ref == ref
            entered[ref] = qty
            lineage[ref] = ref
        elif not resting:
            continue
        else:
            ref = resting[o[1] % len(resting)]
            if kind == "cancel":
                leave = min(o[2], e._orders[ref].qty)
                ev = e.cancel(ref, t, leave=leave)
                model.orders[ref].qty = leave
                if leave == 0:
                    del model.orders[ref]
                expected = []
            elif kind == "replace":
                adjust(ref, o[2] - e._orders[ref].qty)
                ev = e.replace(ref, t, qty=o[2], price=o[3])
                rep = ev[0]
                assert isinstance(rep, Replaced)
                expected = model.replace(ref, o[2], o[3])
                lineage[rep.new_ref] = lineage[ref]
            else:
                qty = min(o[2], e._orders[ref].qty)
                adjust(ref, qty - e._orders[ref].qty)
                ev = e.modify(ref, t, qty=qty)
                model.orders[ref].qty = qty
                if qty == 0:
                    del model.orders[ref]
                expected = []
        got = [(f.ref, f.qty, f.price) for f in fills(ev) if f.liquidity == "A"]
        assert got == expected  # price-time priority, fill by fill
        for f in fills(ev):
            by_match.setdefault(f.match_number, []).append(f)
            filled[lineage[f.ref]] = filled.get(lineage[f.ref], 0) + f.qty
        for c in ev:
            if isinstance(c, Canceled):
                canceled[lineage[c.ref]] = canceled.get(lineage[c.ref], 0) + c.decrement
        # Never crossed; the engine's book is the model's book, order by order.
        book = e.book("AAPL")
        assert not book.is_crossed()
        for side, is_buy in ((Side.BUY, True), (Side.SELL, False)):
            assert [(x.ref, x.price, x.qty) for x in book.orders(side)] == [
                (m.ref, m.price, m.qty) for m in model._priority(is_buy)
            ]
            levels = book.depth(side, 100)
            assert all(
                lv.qty == sum(x.qty for x in book.orders(side) if x.price == lv.price)
                for lv in levels
            )
        # The ITCH stream rebuilds exactly the displayed book.
        assert itch.orders == displayed(e)
    # Both sides of every match reported alike, once each.
    for match, pair in by_match.items():
        assert len(pair) == 2, match
        maker, taker = sorted(pair, key=lambda f: f.liquidity)
        assert (maker.liquidity, taker.liquidity) == ("A", "R")
        assert maker.qty == taker.qty and maker.price == taker.price
        assert (maker.side == Side.BUY) != (taker.side == Side.BUY)
    assert sorted(by_match) == list(range(1, e.matches + 1))
    # Conservation, order by order: shares in = filled + cancelled + still open.
    open_qty: dict[int, int] = {}
    for ref, order in e._orders.items():
        open_qty[lineage[ref]] = open_qty.get(lineage[ref], 0) + order.qty
    for orig, qty_in in entered.items():
        assert qty_in == filled.get(orig, 0) + canceled.get(orig, 0) + open_qty.get(orig, 0)
    assert len(model.orders) == len(e)
