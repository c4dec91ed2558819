"""Price-time priority matching engine of the venue simulator.

This module owns the simulated venue's books and their rules, nothing about wire protocols:

* one limit order book per symbol; each side is a dict of price levels plus a heap of level
  prices with lazy deletion (best level in O(1) amortised, insert O(log n)), each level an
  insertion-ordered dict of resting orders (FIFO time priority, O(1) removal by reference);
* limit and market orders, time in force DAY (rests) and IOC (the rest is cancelled; market
  orders never rest); cancel (whole or down to a size), replace (loses priority when the price
  changes or the size goes up, keeps it when only the size goes down), modify (size down keeps
  priority; sell/short/short-exempt side changes); partial fills at the resting order's price;
* results as `OrderEvent`s for both sides of every match with one match number (the venue
  turns them into OUCH messages), in the order they happened;
* book changes as ITCH 5.0-style `ITCH_EVENT` records (add A, executed E, trade P for
  non-displayed orders, cancel X, delete D, replace U) passed to `on_itch` as one numpy batch
  per operation, so the feed-side simulator can publish the venue's book including the
  gateway's own orders. Only the normalised fields are set (msg_type, side, stock_locate,
  order_ref, ref2, shares, price, exch_ts_ns); the header's seq/ts_ns and `raw` are left for
  the publisher (`adapters.itch.pack_events` fills raw).

Time is an input: every operation takes `now_ns`, the venue's clock in nanoseconds since
midnight (ITCH/OUCH timestamps). Bounded: at most `max_orders` resting orders.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from tectra.schema import ITCH_EVENT, Side, TimeInForce, new_records

__all__ = [
    "Accepted",
    "Canceled",
    "Fill",
    "ItchCallback",
    "LevelView",
    "MatchError",
    "MatchErrorReason",
    "MatchingEngine",
    "Modified",
    "NewOrder",
    "OrderBook",
    "OrderEvent",
    "Rejected",
    "Replaced",
    "RestingOrder",
]

ItchCallback = Callable[[npt.NDArray[np.void]], None]
"""Receives one batch of ITCH_EVENT records per engine operation, in book order."""

_SELLS: Final[frozenset[int]] = frozenset({Side.SELL, Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT})
_SIDES: Final[frozenset[int]] = _SELLS | {Side.BUY}


class MatchErrorReason(enum.Enum):
    UNKNOWN_SYMBOL = "unknown_symbol"
    BAD_SIDE = "bad_side"
    BAD_QTY = "bad_qty"
    BAD_PRICE = "bad_price"
    BAD_TIF = "bad_tif"
    BOOK_FULL = "book_full"
    UNKNOWN_ORDER = "unknown_order"
    BAD_MODIFY = "bad_modify"


class MatchError(ValueError):
    """A request the engine refuses; the book is unchanged."""

    def __init__(self, reason: MatchErrorReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NewOrder:
    """An incoming order. `price` None is a market order. `owner`/`token` are opaque to the
    engine and come back on every event about the order. Non-displayed orders rest without an
    ITCH Add and trade as ITCH Trade (P)."""

    symbol: str
    side: Side
    qty: int
    price: int | None
    tif: TimeInForce = TimeInForce.DAY
    owner: str = ""
    token: str = ""
    displayed: bool = True


@dataclass
class RestingOrder:
    """An order on the book (mutable: its open quantity shrinks as it trades)."""

    ref: int
    symbol: str
    side: Side
    price: int
    qty: int
    owner: str
    token: str
    displayed: bool
    entered_ns: int

    @property
    def is_buy(self) -> bool:
        return self.side == Side.BUY


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """The order was accepted with venue reference `ref` (reported before any fill)."""

    ref: int
    owner: str
    token: str
    symbol: str
    side: Side
    qty: int
    price: int | None
    tif: TimeInForce
    now_ns: int


@dataclass(frozen=True)
class Fill:
    """One side of a match. `liquidity` 'A' for the resting order, 'R' for the incoming one;
    `leaves` is the order's open quantity after this fill."""

    ref: int
    owner: str
    token: str
    symbol: str
    side: Side
    qty: int
    price: int
    match_number: int
    liquidity: str
    leaves: int
    now_ns: int


@dataclass(frozen=True)
class Canceled:
    """`decrement` shares left the order; `leaves` remain open (0: the order is gone).
    `reason` is an OUCH cancel reason: 'U' user, 'I' IOC/market remainder, 'S' supervisory."""

    ref: int
    owner: str
    token: str
    symbol: str
    decrement: int
    leaves: int
    reason: str
    now_ns: int


@dataclass(frozen=True)
class Replaced:
    """Order `old_ref` is now `new_ref` (equal when priority was kept) with `qty` open at
    `price`. Reported before any fill the replacement causes."""

    old_ref: int
    new_ref: int
    owner: str
    old_token: str
    token: str
    symbol: str
    side: Side
    qty: int
    price: int
    priority_kept: bool
    now_ns: int


@dataclass(frozen=True)
class Modified:
    """Order `ref` now has side `side` and `qty` open, priority kept."""

    ref: int
    owner: str
    token: str
    symbol: str
    side: Side
    qty: int
    now_ns: int


@dataclass(frozen=True)
class Rejected:
    owner: str
    token: str
    reason: MatchErrorReason
    detail: str
    now_ns: int


OrderEvent = Accepted | Fill | Canceled | Replaced | Modified | Rejected


@dataclass(frozen=True)
class LevelView:
    price: int
    qty: int
    orders: int


# -- book -----------------------------------------------------------------------------------


@dataclass
class _Level:
    price: int
    orders: OrderedDict[int, RestingOrder] = field(default_factory=OrderedDict)
    qty: int = 0


class _BookSide:
    """Price levels of one side: dict by price + heap of prices with lazy deletion."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, _Level] = {}
        self._heap: list[int] = []  # -price for bids so the heap top is the best price
        self._in_heap: set[int] = set()

    def best(self) -> _Level | None:
        heap = self._heap
        while heap:
            price = -heap[0] if self.is_bid else heap[0]
            level = self.levels.get(price)
            if level is not None:
                return level
            heapq.heappop(heap)  # stale: the level emptied after it was pushed
            self._in_heap.discard(price)
        return None

    def add(self, order: RestingOrder) -> None:
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = _Level(order.price)
            if order.price not in self._in_heap:
                heapq.heappush(self._heap, -order.price if self.is_bid else order.price)
                self._in_heap.add(order.price)
        level.orders[order.ref] = order
        level.qty += order.qty

    def remove(self, order: RestingOrder) -> None:
        level = self.levels[order.price]
        del level.orders[order.ref]
        level.qty -= order.qty
        if not level.orders:
            del self.levels[order.price]

    def sorted_levels(self) -> list[_Level]:
        return sorted(self.levels.values(), key=lambda lv: -lv.price if self.is_bid else lv.price)


class OrderBook:
    """One symbol's book (read-only view for callers; the engine mutates it)."""

    def __init__(self, symbol: str, locate: int) -> None:
        self.symbol = symbol
        self.locate = locate
        self.bids = _BookSide(is_bid=True)
        self.asks = _BookSide(is_bid=False)

    def side_of(self, side: int) -> _BookSide:
        return self.bids if side == Side.BUY else self.asks

    def best_bid(self) -> LevelView | None:
        lv = self.bids.best()
        return None if lv is None else LevelView(lv.price, lv.qty, len(lv.orders))

    def best_ask(self) -> LevelView | None:
        lv = self.asks.best()
        return None if lv is None else LevelView(lv.price, lv.qty, len(lv.orders))

    def depth(self, side: Side, levels: int = 10) -> list[LevelView]:
        """Best `levels` price levels of a side, best first (a query: O(k log k))."""
        book_side = self.side_of(side)
        return [
            LevelView(lv.price, lv.qty, len(lv.orders)) for lv in book_side.sorted_levels()[:levels]
        ]

    def orders(self, side: Side) -> Iterator[RestingOrder]:
        """Resting orders of a side in priority order (best price, then earliest)."""
        for level in self.side_of(side).sorted_levels():
            yield from level.orders.values()

    def is_crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid.price >= ask.price


# -- engine ---------------------------------------------------------------------------------

# One pending ITCH row: (msg_type, side, locate, order_ref, ref2, shares, price, exch_ts_ns)
_Row = tuple[int, int, int, int, int, int, int, int]


class MatchingEngine:
    """Books for `symbols` (stock locate codes 1..n in that order) and the matching rules.

    Every operation returns the OrderEvents it caused, in order, and hands the book changes to
    `on_itch` as one ITCH_EVENT batch. Invalid requests raise MatchError from `cancel`,
    `replace` and `modify`; `submit` reports them as a Rejected event (an order is never
    silently dropped).
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        on_itch: ItchCallback | None = None,
        max_orders: int = 1_000_000,
    ) -> None:
        if len(set(symbols)) != len(symbols) or not symbols:
            raise ValueError("symbols must be a non-empty list without repeats")
        self.books: dict[str, OrderBook] = {
            sym: OrderBook(sym, locate) for locate, sym in enumerate(symbols, 1)
        }
        self.on_itch = on_itch
        self.max_orders = max_orders
        self._orders: dict[int, RestingOrder] = {}
        self._next_ref = 1
        self._next_match = 1
        self._rows: list[_Row] = []

    # -- queries --------------------------------------------------------------------------

    @property
    def symbols(self) -> dict[str, int]:
        """Symbol -> stock locate code."""
        return {sym: book.locate for sym, book in self.books.items()}

    def book(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            raise MatchError(MatchErrorReason.UNKNOWN_SYMBOL, symbol)
        return book

    def order(self, ref: int) -> RestingOrder | None:
        return self._orders.get(ref)

    def __len__(self) -> int:
        """Resting orders across all books."""
        return len(self._orders)

    @property
    def matches(self) -> int:
        """Match numbers used so far."""
        return self._next_match - 1

    # -- ITCH rows ------------------------------------------------------------------------

    def _itch(
        self,
        msg_type: str,
        order: RestingOrder,
        now_ns: int,
        *,
        order_ref: int | None = None,
        ref2: int = 0,
        shares: int = 0,
        price: int = 0,
    ) -> None:
        book = self.books[order.symbol]
        self._rows.append(
            (
                ord(msg_type),
                ord("B") if order.is_buy else ord("S"),
                book.locate,
                order.ref if order_ref is None else order_ref,
                ref2,
                shares,
                price,
                now_ns,
            )
        )

    def _publish(self) -> None:
        rows, self._rows = self._rows, []
        if not rows or self.on_itch is None:
            return
        recs = new_records(ITCH_EVENT, len(rows))
        cols = list(zip(*rows, strict=True))
        for name, values in zip(
            ("msg_type", "side", "stock_locate", "order_ref", "ref2", "shares", "price"),
            cols[:7],
            strict=True,
        ):
            recs[name] = values
        recs["exch_ts_ns"] = cols[7]
        self.on_itch(recs)

    # -- matching -------------------------------------------------------------------------

    def _new_ref(self) -> int:
        ref = self._next_ref
        self._next_ref += 1
        return ref

    def _match(
        self, taker: RestingOrder, limit: int | None, now_ns: int, events: list[OrderEvent]
    ) -> None:
        """Trade `taker` against the opposite side while it crosses (limit None: any price)."""
        book = self.books[taker.symbol]
        opposite = book.asks if taker.is_buy else book.bids
        while taker.qty > 0:
            level = opposite.best()
            if level is None:
                break
            if limit is not None and (level.price > limit if taker.is_buy else level.price < limit):
                break
            maker = next(iter(level.orders.values()))
            qty = min(taker.qty, maker.qty)
            match = self._next_match
            self._next_match += 1
            maker.qty -= qty
            level.qty -= qty
            taker.qty -= qty
            if maker.displayed:
                self._itch("E", maker, now_ns, shares=qty, ref2=match)
            else:
                # ITCH 5.0 Trade (P) reports non-displayed executions with order reference 0.
                self._itch(
                    "P", maker, now_ns, order_ref=0, shares=qty, ref2=match, price=level.price
                )
            if maker.qty == 0:
                del level.orders[maker.ref]
                if not level.orders:
                    del opposite.levels[level.price]
                del self._orders[maker.ref]
            for order, liquidity in ((maker, "A"), (taker, "R")):
                events.append(
                    Fill(
                        order.ref,
                        order.owner,
                        order.token,
                        order.symbol,
                        order.side,
                        qty,
                        level.price,
                        match,
                        liquidity,
                        order.qty,
                        now_ns,
                    )
                )

    def _rest(self, order: RestingOrder, now_ns: int) -> None:
        self.books[order.symbol].side_of(order.side).add(order)
        self._orders[order.ref] = order
        if order.displayed:
            self._itch("A", order, now_ns, shares=order.qty, price=order.price)

    def _validate_new(self, req: NewOrder) -> None:
        if req.symbol not in self.books:
            raise MatchError(MatchErrorReason.UNKNOWN_SYMBOL, f"symbol {req.symbol!r}")
        if req.side not in _SIDES:
            raise MatchError(MatchErrorReason.BAD_SIDE, f"side {req.side!r}")
        if req.qty <= 0:
            raise MatchError(MatchErrorReason.BAD_QTY, f"quantity {req.qty}")
        if req.price is not None and req.price <= 0:
            raise MatchError(MatchErrorReason.BAD_PRICE, f"price {req.price}")
        if req.tif not in (TimeInForce.DAY, TimeInForce.IOC):
            raise MatchError(MatchErrorReason.BAD_TIF, f"time in force {req.tif!r}")
        if len(self._orders) >= self.max_orders:
            raise MatchError(MatchErrorReason.BOOK_FULL, f"{self.max_orders} resting orders")

    def submit(self, req: NewOrder, now_ns: int) -> list[OrderEvent]:
        """Enter an order: Accepted, then fills, then (IOC/market remainder) Canceled 'I'."""
        try:
            self._validate_new(req)
        except MatchError as error:
            return [Rejected(req.owner, req.token, error.reason, error.detail, now_ns)]
        order = RestingOrder(
            self._new_ref(),
            req.symbol,
            Side(req.side),
            req.price if req.price is not None else 0,
            req.qty,
            req.owner,
            req.token,
            req.displayed,
            now_ns,
        )
        events: list[OrderEvent] = [
            Accepted(
                order.ref,
                req.owner,
                req.token,
                req.symbol,
                order.side,
                req.qty,
                req.price,
                req.tif,
                now_ns,
            )
        ]
        self._match(order, req.price, now_ns, events)
        if order.qty > 0:
            if req.price is None or req.tif == TimeInForce.IOC:
                events.append(
                    Canceled(
                        order.ref, order.owner, order.token, order.symbol, order.qty, 0, "I", now_ns
                    )
                )
                order.qty = 0
            else:
                self._rest(order, now_ns)
        self._publish()
        return events

    def _resting(self, ref: int) -> RestingOrder:
        order = self._orders.get(ref)
        if order is None:
            raise MatchError(MatchErrorReason.UNKNOWN_ORDER, f"no resting order {ref}")
        return order

    def _reduce(self, order: RestingOrder, new_qty: int, now_ns: int) -> int:
        """Shrink a resting order in place (keeps priority); returns the decrement."""
        decrement = order.qty - new_qty
        if new_qty == 0:
            self.books[order.symbol].side_of(order.side).remove(order)
            del self._orders[order.ref]
            if order.displayed:
                self._itch("D", order, now_ns)
        else:
            self.books[order.symbol].side_of(order.side).levels[order.price].qty -= decrement
            if order.displayed:
                self._itch("X", order, now_ns, shares=decrement)
        order.qty = new_qty
        return decrement

    def cancel(
        self, ref: int, now_ns: int, *, leave: int = 0, reason: str = "U"
    ) -> list[OrderEvent]:
        """Cancel order `ref` down to `leave` open shares (0: entirely). Asking to leave at
        least what is open changes nothing and returns no event."""
        order = self._resting(ref)
        if leave < 0:
            raise MatchError(MatchErrorReason.BAD_QTY, f"leave {leave}")
        if leave >= order.qty:
            return []
        decrement = self._reduce(order, leave, now_ns)
        self._publish()
        return [
            Canceled(
                order.ref, order.owner, order.token, order.symbol, decrement, leave, reason, now_ns
            )
        ]

    def replace(
        self, ref: int, now_ns: int, *, qty: int, price: int, token: str | None = None
    ) -> list[OrderEvent]:
        """Replace order `ref` by `qty` open shares at `price` (limit), under `token` (default:
        unchanged). Same price and no more shares: priority and reference are kept. Otherwise
        the order gets a new reference at the back of its new level, and trades first if the
        new price crosses."""
        order = self._resting(ref)
        if qty <= 0:
            raise MatchError(MatchErrorReason.BAD_QTY, f"replace quantity {qty}")
        if price <= 0:
            raise MatchError(MatchErrorReason.BAD_PRICE, f"replace price {price}")
        old_token = order.token
        new_token = old_token if token is None else token
        if price == order.price and qty <= order.qty:
            if qty < order.qty:
                self._reduce(order, qty, now_ns)
            order.token = new_token
            self._publish()
            return [
                Replaced(
                    ref,
                    ref,
                    order.owner,
                    old_token,
                    new_token,
                    order.symbol,
                    order.side,
                    qty,
                    price,
                    True,
                    now_ns,
                )
            ]
        book = self.books[order.symbol]
        book.side_of(order.side).remove(order)
        del self._orders[order.ref]
        new = RestingOrder(
            self._new_ref(),
            order.symbol,
            order.side,
            price,
            qty,
            order.owner,
            new_token,
            order.displayed,
            now_ns,
        )
        events: list[OrderEvent] = [
            Replaced(
                ref,
                new.ref,
                order.owner,
                old_token,
                new_token,
                order.symbol,
                order.side,
                qty,
                price,
                False,
                now_ns,
            )
        ]
        best = (book.asks if new.is_buy else book.bids).best()
        crosses = best is not None and (best.price <= price if new.is_buy else best.price >= price)
        if crosses:
            # ITCH has no "replace and trade": delete the old order, trade the new one as an
            # incoming order, then add what is left.
            if order.displayed:
                self._itch("D", order, now_ns)
            self._match(new, price, now_ns, events)
            if new.qty > 0:
                self._rest(new, now_ns)
        else:
            book.side_of(new.side).add(new)
            self._orders[new.ref] = new
            if order.displayed:
                self._itch("U", order, now_ns, ref2=new.ref, shares=qty, price=price)
        order.qty = 0
        self._publish()
        return events

    def modify(
        self, ref: int, now_ns: int, *, qty: int, side: Side | None = None
    ) -> list[OrderEvent]:
        """Reduce order `ref` to `qty` open shares and/or move it between sell, sell short and
        sell short exempt; priority is kept. More shares or a buy/sell flip is refused."""
        order = self._resting(ref)
        new_side = order.side if side is None else Side(side)
        if (new_side == Side.BUY) != order.is_buy:
            raise MatchError(MatchErrorReason.BAD_MODIFY, "cannot flip between buy and sell")
        if not 0 <= qty <= order.qty:
            raise MatchError(
                MatchErrorReason.BAD_MODIFY, f"modify to {qty} shares from {order.qty} open"
            )
        if qty < order.qty:
            self._reduce(order, qty, now_ns)
        order.side = new_side
        self._publish()
        return [Modified(ref, order.owner, order.token, order.symbol, new_side, qty, now_ns)]

    def cancel_all(self, owner: str, now_ns: int, *, reason: str = "S") -> list[OrderEvent]:
        """Cancel every resting order of `owner` (end of session, supervisory action)."""
        events: list[OrderEvent] = []
        for order in [o for o in self._orders.values() if o.owner == owner]:
            decrement = self._reduce(order, 0, now_ns)
            events.append(
                Canceled(
                    order.ref, order.owner, order.token, order.symbol, decrement, 0, reason, now_ns
                )
            )
        self._publish()
        return events
