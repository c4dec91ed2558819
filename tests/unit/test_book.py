"""Unit tests of tectra.feed.book: outputs of each ITCH event type, counted refusals of invalid
events and exceeded capacities, short output buffers, determinism, level-block growth and
reuse, the order hash table under strided references, and state-array round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tectra.feed.book import (
    COUNTER_NAMES,
    BookArgumentError,
    BookStateError,
    OrderBook,
)
from tectra.schema import (
    BOOK_UPDATE,
    TICK,
    TRADE,
    BookAction,
    RecordFlag,
    Side,
    TradeKind,
    TradingState,
    new_records,
)

B, S = ord("B"), ord("S")


def events(*rows: dict[str, Any]) -> npt.NDArray[np.void]:
    """ITCH_EVENT records from dicts; msg_type may be a str; seq/ts_ns default to 1.., 100*i."""
    ev = new_records("ITCH_EVENT", len(rows))
    for i, row in enumerate(rows):
        ev[i]["seq"] = i + 1
        ev[i]["ts_ns"] = 1000 + 100 * i
        ev[i]["exch_ts_ns"] = 34_200_000_000_000 + 10 * i
        for key, value in row.items():
            ev[i][key] = ord(value) if isinstance(value, str) and len(value) == 1 else value
    return ev


def add(
    ref: int, px: int, shares: int, side: str = "B", loc: int = 1, t: str = "A"
) -> dict[str, Any]:
    return {
        "msg_type": t,
        "order_ref": ref,
        "price": px,
        "shares": shares,
        "side": side,
        "stock_locate": loc,
    }


def small_book(**kw: Any) -> OrderBook:
    args: dict[str, Any] = {"max_instruments": 8, "max_orders": 64, "max_levels": 8}
    args.update(kw)
    return OrderBook(**args)


def nonzero_counters(book: OrderBook) -> dict[str, int]:
    return {k: v for k, v in book.counters.items() if v}


# ------------------------------------------------------------------ outputs per event type


def test_add_execute_cancel_delete_outputs() -> None:
    book = small_book()
    out = book.apply(
        events(
            add(1, 100_000, 100),
            add(2, 100_000, 50),
            add(3, 100_100, 10),
            add(4, 100_500, 30, side="S"),
            {"msg_type": "E", "order_ref": 3, "shares": 4, "ref2": 77, "stock_locate": 1},
            {"msg_type": "X", "order_ref": 2, "shares": 20, "stock_locate": 1},
            {"msg_type": "D", "order_ref": 3, "stock_locate": 1},
        )
    )
    assert out.consumed == 7
    u = out.updates
    assert (u["type_id"] == BOOK_UPDATE.type_id).all() and (
        u["version"] == BOOK_UPDATE.version
    ).all()
    got = [
        (
            chr(r["side"]),
            BookAction(r["action"]).name,
            int(r["level"]),
            int(r["price"]),
            int(r["qty"]),
            int(r["order_count"]),
        )
        for r in u
    ]
    assert got == [
        ("B", "ADD", 0, 100_000, 100, 1),
        ("B", "CHANGE", 0, 100_000, 150, 2),
        ("B", "ADD", 0, 100_100, 10, 1),  # better price inserted on top
        ("S", "ADD", 0, 100_500, 30, 1),
        ("B", "CHANGE", 0, 100_100, 6, 1),  # executed 4 of 10
        ("B", "CHANGE", 1, 100_000, 130, 2),  # cancelled 20 of 50, second level
        ("B", "DELETE", 0, 100_100, 0, 0),  # deleted the rest of ref 3
    ]
    # ts_ns is the input's receive time; exch_ts_ns the venue's.
    assert u["ts_ns"].tolist() == [1000, 1100, 1200, 1300, 1400, 1500, 1600]
    assert u["exch_ts_ns"][0] == 34_200_000_000_000
    (trade,) = out.trades
    assert trade["type_id"] == TRADE.type_id
    assert (trade["price"], trade["qty"], trade["match_number"]) == (100_100, 4, 77)
    assert trade["aggressor_side"] == Side.SELL  # a resting bid was hit
    assert (trade["buy_order_ref"], trade["sell_order_ref"]) == (3, 0)
    assert trade["trade_kind"] == TradeKind.EXECUTED
    # Ticks: every top change (the cancel at level 1 does not move the top).
    t = out.ticks
    assert (t["type_id"] == TICK.type_id).all()
    assert [
        (int(r["bid_px"]), int(r["bid_qty"]), int(r["ask_px"]), int(r["ask_qty"])) for r in t
    ] == [
        (100_000, 100, 0, 0),
        (100_000, 150, 0, 0),
        (100_100, 10, 0, 0),
        (100_100, 10, 100_500, 30),
        (100_100, 6, 100_500, 30),
        (100_000, 130, 100_500, 30),
    ]
    assert t["last_px"][-1] == 100_100 and t["last_qty"][-1] == 4
    assert t["last_update_ns"][-1] == 1600 and t["ts_ns"][-1] == 1600
    # One sequence over all outputs, in emission order.
    seqs = np.sort(np.concatenate([u["seq"], t["seq"], out.trades["seq"]]))
    assert seqs.tolist() == list(range(1, 1 + seqs.size))
    assert book.out_seq == seqs.size
    assert book.top(1) == (100_000, 130, 100_500, 30)
    assert book.levels(1, Side.BUY).tolist() == [(100_000, 130, 2)]
    assert book.order(1) == (1, 1, Side.BUY, 100_000, 100)
    assert book.order(3) is None
    assert book.last_seq == 7
    assert nonzero_counters(book) == {
        "events": 7,
        "adds": 4,
        "executes": 1,
        "cancels": 1,
        "deletes": 1,
    }


def test_replace_moves_order_keeps_side_and_instrument() -> None:
    book = small_book()
    book.apply(events(add(1, 100_000, 100, side="S", loc=2), add(2, 100_000, 5, side="S", loc=2)))
    out = book.apply(
        events(
            {
                "msg_type": "U",
                "order_ref": 1,
                "ref2": 9,
                "price": 99_900,
                "shares": 70,
                "stock_locate": 2,
            }
        )
    )
    assert [
        (BookAction(r["action"]).name, int(r["level"]), int(r["price"]), int(r["qty"]))
        for r in out.updates
    ] == [("CHANGE", 0, 100_000, 5), ("ADD", 0, 99_900, 70)]
    assert book.order(1) is None
    assert book.order(9) == (9, 2, Side.SELL, 99_900, 70)
    assert book.top(2) == (0, 0, 99_900, 70)
    assert book.counters["replaces"] == 1


def test_trades_crosses_broken_and_nonprintable() -> None:
    book = small_book()
    book.apply(events(add(1, 100_000, 100)))
    out = book.apply(
        events(
            {
                "msg_type": "C",
                "order_ref": 1,
                "shares": 10,
                "price": 100_050,
                "aux": ord("Y"),
                "ref2": 5,
                "stock_locate": 1,
            },
            {
                "msg_type": "C",
                "order_ref": 1,
                "shares": 10,
                "price": 100_050,
                "aux": ord("N"),
                "ref2": 6,
                "stock_locate": 1,
            },
            {
                "msg_type": "P",
                "side": "S",
                "shares": 300,
                "price": 100_200,
                "ref2": 7,
                "stock_locate": 1,
            },
            {"msg_type": "Q", "shares": 1000, "price": 100_300, "ref2": 8, "stock_locate": 1},
            {"msg_type": "Q", "shares": 0, "price": 100_300, "ref2": 9, "stock_locate": 1},
            {"msg_type": "B", "ref2": 7, "stock_locate": 1},
        )
    )
    kinds = [TradeKind(k).name for k in out.trades["trade_kind"]]
    assert kinds == ["EXECUTED_WITH_PRICE", "NON_DISPLAYED", "CROSS", "BROKEN"]
    assert out.trades["price"].tolist() == [100_050, 100_200, 100_300, 0]
    assert out.trades["qty"].tolist() == [10, 300, 1000, 0]
    assert out.trades["match_number"].tolist() == [5, 7, 8, 7]
    assert out.trades["aggressor_side"].tolist() == [Side.SELL, Side.BUY, 0, 0]
    assert out.trades["sell_order_ref"].tolist() == [0, 0, 0, 0]
    assert book.levels(1, "B").tolist() == [(100_000, 80, 1)]  # both C reduce the book
    assert book.order(1) is not None and book.order(1).shares == 80  # type: ignore[union-attr]
    # Last trade is carried by ticks (P/Q move no level but still tick).
    assert out.ticks["last_px"].tolist() == [100_050, 100_050, 100_200, 100_300]
    assert nonzero_counters(book) == {
        "events": 7,
        "adds": 1,
        "executes": 2,
        "nonprintable": 1,
        "trades": 1,
        "crosses": 1,
        "zero_qty_trade": 1,
        "broken": 1,
    }


def test_directory_and_trading_action_label_outputs() -> None:
    book = small_book()
    raw = bytearray(56)
    raw[0:1] = b"R"
    raw[11:19] = b"AAPL    "
    hraw = bytearray(56)
    hraw[0:1] = b"H"
    hraw[11:19] = b"AAPL    "
    out = book.apply(
        events(
            {"msg_type": "R", "stock_locate": 3, "raw": bytes(raw)},
            {"msg_type": "H", "stock_locate": 3, "aux": TradingState.HALTED, "raw": bytes(hraw)},
            {"msg_type": "H", "stock_locate": 3, "aux": TradingState.HALTED},
            {"msg_type": "H", "stock_locate": 3, "aux": TradingState.TRADING},
            add(1, 1_500_000, 100, loc=3),
            {"msg_type": "S", "aux": ord("Q")},
        )
    )
    assert book.symbol(3) == b"AAPL    "
    assert out.ticks["trading_state"].tolist() == [
        TradingState.HALTED,
        TradingState.TRADING,
        TradingState.TRADING,
    ]
    assert (out.ticks["symbol"] == b"AAPL    ").all()
    assert out.updates["symbol"][0] == b"AAPL    "
    assert book.trading_state(3) == TradingState.TRADING
    assert nonzero_counters(book) == {
        "events": 6,
        "directory": 1,
        "trading_actions": 3,
        "adds": 1,
        "ignored": 1,
    }


def test_flags_propagate_synthetic_and_replay_only() -> None:
    book = small_book()
    ev = events(add(1, 100_000, 1), add(2, 100_000, 1))
    ev["flags"] = [RecordFlag.SYNTHETIC | RecordFlag.SNAPSHOT | 0x100, RecordFlag.REPLAY]
    out = book.apply(ev)
    assert out.updates["flags"].tolist() == [RecordFlag.SYNTHETIC, RecordFlag.REPLAY]
    assert out.ticks["flags"].tolist() == [RecordFlag.SYNTHETIC, RecordFlag.REPLAY]


# ------------------------------------------------------------------ invalid events


@pytest.mark.parametrize(
    ("row", "cause"),
    [
        ({"msg_type": "E", "order_ref": 99, "shares": 1, "stock_locate": 1}, "unknown_ref"),
        ({"msg_type": "X", "order_ref": 99, "shares": 1, "stock_locate": 1}, "unknown_ref"),
        ({"msg_type": "D", "order_ref": 99, "stock_locate": 1}, "unknown_ref"),
        (
            {
                "msg_type": "U",
                "order_ref": 99,
                "ref2": 50,
                "price": 1,
                "shares": 1,
                "stock_locate": 1,
            },
            "unknown_ref",
        ),
        ({"msg_type": "D", "order_ref": 0, "stock_locate": 1}, "bad_ref"),
        (add(1, 100_000, 5), "duplicate_ref"),
        (
            {
                "msg_type": "U",
                "order_ref": 1,
                "ref2": 2,
                "price": 1,
                "shares": 1,
                "stock_locate": 1,
            },
            "duplicate_ref",
        ),
        (
            {
                "msg_type": "U",
                "order_ref": 1,
                "ref2": 1,
                "price": 1,
                "shares": 1,
                "stock_locate": 1,
            },
            "duplicate_ref",
        ),
        (
            {
                "msg_type": "U",
                "order_ref": 1,
                "ref2": 0,
                "price": 1,
                "shares": 1,
                "stock_locate": 1,
            },
            "bad_ref",
        ),
        ({"msg_type": "E", "order_ref": 1, "shares": 101, "stock_locate": 1}, "exec_exceeds"),
        ({"msg_type": "X", "order_ref": 1, "shares": 101, "stock_locate": 1}, "cancel_exceeds"),
        ({"msg_type": "E", "order_ref": 1, "shares": 0, "stock_locate": 1}, "bad_shares"),
        (
            {"msg_type": "C", "order_ref": 1, "shares": 1, "price": 0, "stock_locate": 1},
            "bad_price",
        ),
        ({"msg_type": "D", "order_ref": 1, "stock_locate": 2}, "instr_mismatch"),
        (add(7, 100_000, 5, side="X"), "bad_side"),
        (add(7, 0, 5), "bad_price"),
        (add(7, -5, 5), "bad_price"),
        (add(7, 100_000, 0), "bad_shares"),
        (add(7, 100_000, 2**32), "bad_shares"),
        (add(0, 100_000, 5), "bad_ref"),
        (add(7, 100_000, 5, loc=8), "bad_instrument"),
        ({"msg_type": "Z", "stock_locate": 1}, "unknown_type"),
        ({"msg_type": "I", "stock_locate": 9000}, "ignored"),
    ],
)
def test_invalid_event_is_counted_and_skipped(row: dict[str, Any], cause: str) -> None:
    book = small_book()
    book.apply(events(add(1, 100_000, 100), add(2, 100_100, 10)))
    before = book.state_arrays()
    out = book.apply(events(row))
    assert out.consumed == 1
    assert out.updates.size == 0 and out.ticks.size == 0 and out.trades.size == 0
    assert book.counters[cause] == 1
    after = book.state_arrays()
    for name in ("orders", "levels", "instruments"):
        assert np.array_equal(before[name], after[name]), name
    assert book.check_invariants() == []


def test_wrong_record_type_is_counted_without_touching_cursors() -> None:
    book = small_book()
    ev = events(add(1, 100_000, 100))
    ev["type_id"] = TICK.type_id
    book.apply(ev)
    assert book.counters["bad_record"] == 1 and book.counters["adds"] == 0
    assert book.last_seq == 0


def test_apply_rejects_bad_arrays() -> None:
    book = small_book()
    with pytest.raises(BookArgumentError):
        book.apply(new_records("TICK", 2))
    with pytest.raises(BookArgumentError):
        book.apply(events(add(1, 1, 1), add(2, 1, 1), add(3, 1, 1))[::2])
    with pytest.raises(BookArgumentError):
        book.apply([1, 2])  # type: ignore[arg-type]
    assert book.apply(events()).consumed == 0


# ------------------------------------------------------------------ capacities


def test_order_table_full_refuses_and_counts() -> None:
    book = small_book(max_orders=4)
    out = book.apply(events(*(add(r, 100_000 + r, 1) for r in range(1, 7))))
    assert out.consumed == 6
    assert book.live_orders == 4
    assert book.counters["order_table_full"] == 2
    assert book.order(5) is None
    # A later delete frees room for a new add; refs of refused adds are simply unknown.
    book.apply(
        events(
            {"msg_type": "D", "order_ref": 1, "stock_locate": 1},
            {"msg_type": "D", "order_ref": 5, "stock_locate": 1},
            add(8, 1, 1),
        )
    )
    assert book.counters["unknown_ref"] == 1 and book.order(8) is not None
    assert book.check_invariants() == []


def test_depth_full_refuses_new_levels_but_not_existing_ones() -> None:
    book = small_book(max_levels=8)
    book.apply(events(*(add(r, 100_000 - 100 * r, 1) for r in range(1, 11))))
    assert book.counters["depth_full"] == 2
    assert book.levels(1, "B").size == 8
    book.apply(events(add(20, 100_000 - 100, 5)))  # existing level: accepted
    assert book.levels(1, "B")["qty"][0] == 6
    assert book.check_invariants() == []


def test_level_pool_full_refuses_and_freed_blocks_are_reused() -> None:
    # Two top blocks of 16 slots. Instrument 1's bid takes 8 of the first, then grows to 16:
    # it moves to the second top block and its old 8 merges back with its free buddy.
    book = small_book(max_levels=16, level_pool=32)
    book.apply(events(*(add(r, 100_000 - 100 * r, 1) for r in range(1, 10))))
    sides = book.state_arrays(copy=False)["instruments"]["side"]
    assert (int(sides[1][0]["off"]), int(sides[1][0]["cap"]), int(sides[1][0]["n"])) == (16, 16, 9)
    # The merged first block is split again for two more instruments.
    book.apply(events(add(50, 100_000, 1, loc=2), add(51, 100_000, 1, loc=3)))
    assert (int(sides[2][0]["off"]), int(sides[3][0]["off"])) == (0, 8)
    # Nothing left: a fourth instrument, and instrument 2 growing past 8 levels, are refused.
    book.apply(events(add(52, 100_000, 1, loc=4)))
    book.apply(events(*(add(60 + r, 90_000 - 100 * r, 1, loc=2) for r in range(8))))
    assert book.counters["level_pool_full"] == 2
    assert book.levels(2, "B").size == 8 and book.levels(4, "B").size == 0
    assert book.check_invariants() == []
    assert book.level_pool == 32


def test_level_pool_rounds_up_to_whole_top_blocks() -> None:
    assert small_book(max_levels=64, level_pool=100).level_pool == 128


def test_deep_book_grows_through_block_classes_and_stays_sorted() -> None:
    book = OrderBook(max_instruments=2, max_orders=10_000, max_levels=4096, level_pool=20_000)
    rng = np.random.default_rng(7)
    prices = rng.permutation(np.arange(1, 3001)) * 100
    ev = events(*(add(i + 1, int(p), 10, side="S") for i, p in enumerate(prices)))
    out = book.apply_all(ev)
    assert out.consumed == 3000
    lv = book.levels(1, "S")
    assert lv.size == 3000 and (np.diff(lv["price"]) > 0).all()
    assert book.levels(1, "S", depth=3)["price"].tolist() == [100, 200, 300]
    assert book.check_invariants() == []


def test_short_output_capacity_resumes_exactly() -> None:
    rows = [add(r, 100_000 - 100 * (r % 5), r, side="BS"[r % 2]) for r in range(1, 40)]
    rows += [
        {"msg_type": "E", "order_ref": r, "shares": 1, "ref2": r, "stock_locate": 1}
        for r in range(1, 40, 3)
    ]
    ev = events(*rows)
    whole = small_book(output_capacity=1024).apply_all(ev)
    book = small_book(output_capacity=2)
    res = book.apply(ev)
    assert res.consumed == 2  # stopped early: a 3rd event's worst case would not fit
    # The views belong to reusable buffers: keep copies across the next apply.
    first = {name: getattr(res, name).copy() for name in ("updates", "ticks", "trades")}
    pieces = book.apply_all(ev[res.consumed :])
    for name in ("updates", "ticks", "trades"):
        got = np.concatenate([first[name], getattr(pieces, name)])
        assert got.tobytes() == getattr(whole, name).tobytes(), name


def test_same_inputs_give_bit_identical_outputs_and_state() -> None:
    rng = np.random.default_rng(3)
    rows = [
        add(
            r,
            100_000 + 100 * int(rng.integers(-5, 5)),
            int(rng.integers(1, 500)),
            side="BS"[int(rng.integers(0, 2))],
            loc=int(rng.integers(0, 8)),
        )
        for r in range(1, 300)
    ]
    rows += [
        {"msg_type": "D", "order_ref": int(r), "stock_locate": rows[r - 1]["stock_locate"]}
        for r in rng.permutation(np.arange(1, 300))[:150]
    ]
    ev = events(*rows)
    a, b = small_book(max_orders=512, max_levels=16), small_book(max_orders=512, max_levels=16)
    oa, ob = a.apply_all(ev), b.apply_all(ev)
    for name in ("updates", "ticks", "trades"):
        assert getattr(oa, name).tobytes() == getattr(ob, name).tobytes()
    for name, arr in a.state_arrays().items():
        assert arr.tobytes() == b.state_arrays()[name].tobytes()


@pytest.mark.parametrize("stride", [1, 1 << 16, 1 << 20, 1 << 32, 0x9E3779B97F4A7C15 >> 8])
def test_hash_table_survives_strided_refs_and_churn(stride: int) -> None:
    book = OrderBook(max_instruments=4, max_orders=3000, max_levels=64)
    refs = [(i + 1) * stride % (1 << 63) or 1 for i in range(6000)]
    rng = np.random.default_rng(stride & 0xFFFF)
    live: list[int] = []
    rows: list[dict[str, Any]] = []
    for ref in refs:
        rows.append(add(ref, 100_000 + 100 * int(rng.integers(0, 20)), 10, loc=1))
        live.append(ref)
        if len(live) > 2000:  # keep the table near its limit while deleting at random
            victim = live.pop(int(rng.integers(0, len(live))))
            rows.append({"msg_type": "D", "order_ref": victim, "stock_locate": 1})
    book.apply_all(events(*rows))
    assert book.live_orders == len(live)
    assert all(book.order(r) is not None for r in live)
    assert book.check_invariants() == []
    assert book.counters["order_table_full"] == 0


# ------------------------------------------------------------------ queries and state


def test_top_levels_matrix() -> None:
    book = small_book()
    book.apply(events(add(1, 100, 1), add(2, 200, 2), add(3, 300, 3, side="S", loc=2)))
    px, qty, orders = book.top_levels([1, 2, 0], depth=3)
    assert px.shape == (3, 2, 3)
    assert px[0, 0].tolist() == [200, 100, 0] and qty[0, 0].tolist() == [2, 1, 0]
    assert px[1, 1].tolist() == [300, 0, 0] and orders[1, 1, 0] == 1
    assert not px[2].any()
    with pytest.raises(BookArgumentError):
        book.top_levels([8], 1)
    with pytest.raises(BookArgumentError):
        book.top(8)
    with pytest.raises(BookArgumentError):
        book.levels(1, "Q")


def test_state_round_trip_and_corrupt_state_refused() -> None:
    book = small_book()
    book.apply(events(add(1, 100_000, 100), add(2, 100_100, 10, side="S")))
    state = book.state_arrays()
    twin = OrderBook.from_state_arrays(state)
    assert twin.top(1) == book.top(1) and twin.counters == book.counters
    follow = events({"msg_type": "D", "order_ref": 1, "stock_locate": 1})
    assert twin.apply(follow).updates.tobytes() == book.apply(follow).updates.tobytes()

    bad = {k: v.copy() for k, v in state.items()}
    bad["levels"]["qty"][bad["instruments"][1]["side"][0]["off"]] += 1
    with pytest.raises(BookStateError, match="aggregate"):
        OrderBook.from_state_arrays(bad)
    bad = {k: v.copy() for k, v in state.items()}
    bad["meta"][1] *= 2  # table size no longer matches the orders array
    with pytest.raises(BookStateError):
        OrderBook.from_state_arrays(bad)
    bad = {k: v.copy() for k, v in state.items()}
    bad["orders"] = bad["orders"][:-1]
    with pytest.raises(BookStateError):
        OrderBook.from_state_arrays(bad)
    with pytest.raises(BookStateError):
        OrderBook.from_state_arrays({"meta": state["meta"]})


def test_constructor_validates_capacities() -> None:
    for kw in (
        {"max_levels": 12},
        {"max_levels": 4},
        {"max_instruments": 70_000},
        {"max_orders": 0},
        {"output_capacity": 0},
        {"max_orders": True},
    ):
        with pytest.raises(BookArgumentError):
            small_book(**kw)
    assert len(COUNTER_NAMES) == len(small_book().counters)
    assert small_book().counter_array().flags.writeable is False
