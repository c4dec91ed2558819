"""Property tests of tectra.feed.book: the C book against a pure-Python reference book on random
valid ITCH streams (adds/executes/cancels/deletes/replaces/trades across several instruments,
cut into random batches), the structural invariants after every batch, BOOK_UPDATE replay
rebuilding the L2 book, and random malformed events never corrupting it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tectra.feed.book import OrderBook
from tectra.schema import BookAction, Side, new_records

N_INSTR = 5
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ reference book


@dataclass
class RefBook:
    """The simplest correct book: dicts of orders and of levels, sorted on demand."""

    orders: dict[int, list[int]] = field(default_factory=dict)  # ref -> [instr, side, px, sh]
    levels: dict[tuple[int, int], dict[int, list[int]]] = field(default_factory=dict)

    def _level_add(self, instr: int, side: int, px: int, qty: int) -> None:
        lv = self.levels.setdefault((instr, side), {}).setdefault(px, [0, 0])
        lv[0] += qty
        lv[1] += 1

    def _level_take(self, instr: int, side: int, px: int, qty: int, gone: bool) -> None:
        lv = self.levels[(instr, side)][px]
        lv[0] -= qty
        lv[1] -= int(gone)
        if lv[1] == 0:
            del self.levels[(instr, side)][px]

    def add(self, ref: int, instr: int, side: int, px: int, shares: int) -> None:
        assert ref not in self.orders
        self.orders[ref] = [instr, side, px, shares]
        self._level_add(instr, side, px, shares)

    def reduce(self, ref: int, shares: int) -> None:
        o = self.orders[ref]
        gone = shares == o[3]
        self._level_take(o[0], o[1], o[2], shares, gone)
        if gone:
            del self.orders[ref]
        else:
            o[3] -= shares

    def l2(self, instr: int, side: int) -> list[tuple[int, int, int]]:
        lv = self.levels.get((instr, side), {})
        prices = sorted(lv, reverse=(side == 0))
        return [(p, lv[p][0], lv[p][1]) for p in prices]


def book_l2(book: OrderBook, instr: int, side: int) -> list[tuple[int, int, int]]:
    levels = book.levels(instr, Side.BUY if side == 0 else Side.SELL)
    return [(int(p), int(q), int(n)) for p, q, n in levels.tolist()]


# ------------------------------------------------------------------ stream generation

OP = st.tuples(
    st.integers(0, 9),  # kind
    st.integers(0, 10**6),  # choice of order / instrument
    st.integers(0, 10**6),  # price offset / size
    st.integers(0, 10**6),  # extra
)


def build_stream(ops: list[tuple[int, int, int, int]]) -> tuple[npt.NDArray[np.void], RefBook]:
    """Turn random integers into a valid ITCH_EVENT stream and the reference book it builds."""
    ref_book = RefBook()
    rows: list[tuple[int, int, int, int, int, int, int]] = []  # type, side, loc, ref, ref2, sh, px
    next_ref = 1
    match = 1
    for kind, a, b, c in ops:
        live = sorted(ref_book.orders)
        if kind <= 3 or not live:  # add (A or F)
            instr = a % N_INSTR
            side = b % 2
            # Around 10.0000 with a 0.01 tick; a narrow range makes shared levels common.
            off = (b // 2) % 12
            px = 100_000 + (off - 6) * 100 + (0 if side == 0 else 700)
            shares = 1 + c % 500
            ref_book.add(next_ref, instr, side, px, shares)
            rows.append(
                (ord("A" if c % 3 else "F"), ord("BS"[side]), instr, next_ref, 0, shares, px)
            )
            next_ref += 1
            continue
        ref = live[a % len(live)]
        instr, side, px, sh = ref_book.orders[ref]
        if kind == 4:  # executed (E or C)
            n = 1 + b % sh
            ref_book.reduce(ref, n)
            if c % 2:
                rows.append((ord("E"), 0, instr, ref, match, n, 0))
            else:
                rows.append((ord("C"), 0, instr, ref, match, n, px + 100 * (c % 3)))
            match += 1
        elif kind == 5:  # cancel (partial or to zero)
            n = 1 + b % sh
            ref_book.reduce(ref, n)
            rows.append((ord("X"), 0, instr, ref, 0, n, 0))
        elif kind in (6, 7):  # delete
            ref_book.reduce(ref, sh)
            rows.append((ord("D"), 0, instr, ref, 0, 0, 0))
        elif kind == 8:  # replace: new ref, new price/size, same side and instrument
            new_px = max(100, px + ((b % 5) - 2) * 100)
            new_sh = 1 + c % 400
            ref_book.reduce(ref, sh)
            ref_book.add(next_ref, instr, side, new_px, new_sh)
            rows.append((ord("U"), 0, instr, ref, next_ref, new_sh, new_px))
            next_ref += 1
        else:  # non-displayed trade: no book change
            rows.append((ord("P"), ord("B"), instr, 0, match, 1 + b % 100, px))
            match += 1
    ev = new_records("ITCH_EVENT", len(rows))
    if rows:
        arr = np.array(rows, dtype=np.int64)
        ev["msg_type"] = arr[:, 0]
        ev["side"] = arr[:, 1]
        ev["stock_locate"] = arr[:, 2]
        ev["order_ref"] = arr[:, 3]
        ev["ref2"] = arr[:, 4]
        ev["shares"] = arr[:, 5]
        ev["price"] = arr[:, 6]
        ev["aux"] = ord("Y")
    ev["seq"] = np.arange(1, len(rows) + 1)
    ev["ts_ns"] = 1_000 + np.arange(len(rows)) * 10
    ev["exch_ts_ns"] = 34_200_000_000_000 + np.arange(len(rows)) * 7
    return ev, ref_book


def replay_reference(ev: npt.NDArray[np.void], upto: int) -> RefBook:
    """The reference book after the first `upto` events (re-derived from the records)."""
    rb = RefBook()
    for rec in ev[:upto]:
        t = chr(int(rec["msg_type"]))
        ref = int(rec["order_ref"])
        if t in "AF":
            rb.add(
                ref,
                int(rec["stock_locate"]),
                0 if rec["side"] == ord("B") else 1,
                int(rec["price"]),
                int(rec["shares"]),
            )
        elif t in "ECX":
            rb.reduce(ref, int(rec["shares"]))
        elif t == "D":
            rb.reduce(ref, rb.orders[ref][3])
        elif t == "U":
            instr, side = rb.orders[ref][:2]
            rb.reduce(ref, rb.orders[ref][3])
            rb.add(int(rec["ref2"]), instr, side, int(rec["price"]), int(rec["shares"]))
    return rb


# ------------------------------------------------------------------ L2 replay from updates


def apply_updates(
    l2: dict[tuple[int, int], list[list[int]]], updates: npt.NDArray[np.void]
) -> None:
    for u in updates:
        key = (int(u["instrument_id"]), 0 if u["side"] == Side.BUY else 1)
        side = l2.setdefault(key, [])
        level = int(u["level"])
        row = [int(u["price"]), int(u["qty"]), int(u["order_count"])]
        action = int(u["action"])
        if action == BookAction.ADD:
            side.insert(level, row)
        elif action == BookAction.DELETE:
            assert side[level][0] == row[0]
            del side[level]
        else:
            assert action == BookAction.CHANGE
            assert side[level][0] == row[0]
            side[level] = row


# ------------------------------------------------------------------ properties


@SETTINGS
@given(ops=st.lists(OP, min_size=20, max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_book_matches_reference_after_every_batch(
    ops: list[tuple[int, int, int, int]], cuts: list[int]
) -> None:
    ev, _ = build_stream(ops)
    n = ev.shape[0]
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    # max_levels 8 would refuse levels; 64 lets sides grow through 8 -> 16 -> 32 blocks.
    book = OrderBook(max_instruments=N_INSTR, max_orders=4096, max_levels=64, output_capacity=64)
    rebuilt: dict[tuple[int, int], list[list[int]]] = {}
    last_tick: dict[int, tuple[int, ...]] = {}
    prev_seq = 0
    for lo, hi in itertools.pairwise(bounds):
        out = book.apply_all(ev[lo:hi])
        assert out.consumed == hi - lo
        apply_updates(rebuilt, out.updates)
        seqs = np.sort(np.concatenate([out.updates["seq"], out.ticks["seq"], out.trades["seq"]]))
        # One output sequence across the three record kinds: gapless, from 1.
        assert np.array_equal(seqs, np.arange(prev_seq + 1, prev_seq + 1 + seqs.size))
        prev_seq += seqs.size
        for t in out.ticks:
            last_tick[int(t["instrument_id"])] = tuple(
                int(t[k]) for k in ("bid_px", "bid_qty", "ask_px", "ask_qty")
            )
        ref_book = replay_reference(ev, hi)
        assert book.check_invariants() == []
        assert book.live_orders == len(ref_book.orders)
        for instr in range(N_INSTR):
            for side in (0, 1):
                want = ref_book.l2(instr, side)
                assert book_l2(book, instr, side) == want
                # Levels sorted best first, positive quantities and counts.
                prices = [p for p, _, _ in want]
                assert prices == sorted(prices, reverse=(side == 0))
                assert all(q > 0 and c > 0 for _, q, c in want)
                # BOOK_UPDATE stream rebuilds the same L2 book.
                assert [tuple(x) for x in rebuilt.get((instr, side), [])] == want
            if instr in last_tick:
                assert last_tick[instr] == book.top(instr)
        for ref, (instr, side, px, sh) in ref_book.orders.items():
            info = book.order(ref)
            assert info is not None
            assert (
                info.instrument,
                0 if info.side == Side.BUY else 1,
                info.price,
                info.shares,
            ) == (instr, side, px, sh)
    assert book.counters["events"] == n


@SETTINGS
@given(ops=st.lists(OP, min_size=10, max_size=300))
def test_deleting_every_order_empties_the_book(ops: list[tuple[int, int, int, int]]) -> None:
    ev, ref_book = build_stream(ops)
    book = OrderBook(max_instruments=N_INSTR, max_orders=4096, max_levels=64)
    book.apply_all(ev)
    live = sorted(ref_book.orders)
    dels = new_records("ITCH_EVENT", len(live))
    dels["msg_type"] = ord("D")
    dels["order_ref"] = live
    dels["stock_locate"] = [ref_book.orders[r][0] for r in live]
    out = book.apply_all(dels)
    assert book.counters["deletes"] == ev["msg_type"].tolist().count(ord("D")) + len(live)
    assert book.live_orders == 0
    assert not book.state_arrays(copy=False)["orders"]["ref"].any()
    for instr in range(N_INSTR):
        assert book.top(instr) == (0, 0, 0, 0)
        assert book.levels(instr, "B").size == 0 and book.levels(instr, "S").size == 0
        assert book.live_orders_of(instr) == 0
    assert book.check_invariants() == []
    # The last update of every side that had levels is a DELETE of level 0.
    if live:
        assert out.updates["action"][-1] == BookAction.DELETE


@SETTINGS
@given(
    ops=st.lists(OP, max_size=150),
    junk=st.lists(
        st.tuples(
            st.sampled_from(list(b"AFECXDUPQBHRSZ\x00")),
            st.sampled_from([0, ord("B"), ord("S"), ord("X")]),
            st.integers(0, 2 * N_INSTR),
            st.integers(0, 400),
            st.integers(0, 400),
            st.sampled_from([0, 1, 50, 10**6, 2**32, 2**40]),
            st.sampled_from([-100, 0, 100, 100_000, 100_300]),
        ),
        max_size=80,
    ),
    where=st.lists(st.integers(0, 10**6), max_size=80),
)
def test_malformed_events_are_counted_and_never_corrupt(
    ops: list[tuple[int, int, int, int]],
    junk: list[tuple[int, int, int, int, int, int, int]],
    where: list[int],
) -> None:
    ev, _ = build_stream(ops)
    bad = new_records("ITCH_EVENT", len(junk))
    for i, (t, side, loc, ref, ref2, sh, px) in enumerate(junk):
        bad[i]["msg_type"], bad[i]["side"], bad[i]["stock_locate"] = t, side, loc
        bad[i]["order_ref"], bad[i]["ref2"], bad[i]["shares"], bad[i]["price"] = ref, ref2, sh, px
    # Interleave junk into the valid stream at random positions.
    mixed = ev.copy()
    for i, rec in enumerate(bad):
        pos = where[i] % (mixed.shape[0] + 1) if i < len(where) else mixed.shape[0]
        mixed = np.concatenate([mixed[:pos], rec[None], mixed[pos:]])
    book = OrderBook(max_instruments=N_INSTR, max_orders=64, max_levels=8, level_pool=64)
    out = book.apply_all(mixed)
    assert out.consumed == mixed.shape[0]
    assert book.check_invariants() == []
    assert book.counters["events"] == mixed.shape[0]
    assert book.counters["internal"] == 0
    for instr in range(N_INSTR):
        for side_code in ("B", "S"):
            lv = book.levels(instr, side_code)
            assert (lv["qty"] > 0).all() and (lv["orders"] > 0).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_seeded_stream_matches_reference(seed: int) -> None:
    """Longer streams than hypothesis draws: deep books, many batches, block growth."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 10**6, size=(20_000, 4))
    raw[:, 0] = rng.integers(0, 10, size=20_000)
    ops = [tuple(int(x) for x in row) for row in raw]
    ev, ref_book = build_stream(ops)  # type: ignore[arg-type]
    book = OrderBook(max_instruments=N_INSTR, max_orders=20_000, max_levels=64, output_capacity=97)
    rebuilt: dict[tuple[int, int], list[list[int]]] = {}
    for lo in range(0, ev.shape[0], 1000):
        apply_updates(rebuilt, book.apply_all(ev[lo : lo + 1000]).updates)
        assert book.check_invariants() == []
    for instr in range(N_INSTR):
        for side in (0, 1):
            assert book_l2(book, instr, side) == ref_book.l2(instr, side)
            assert [tuple(x) for x in rebuilt.get((instr, side), [])] == ref_book.l2(instr, side)
    assert book.live_orders == len(ref_book.orders)
    assert (
        sum(
            v
            for k, v in book.counters.items()
            if k not in ("events", "adds", "executes", "cancels", "deletes", "replaces", "trades")
        )
        == 0
    )
