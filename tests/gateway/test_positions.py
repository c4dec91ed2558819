"""Unit tests of positions and P&L (tectra.gateway.positions)."""

from __future__ import annotations

import numpy as np
import pytest

from tectra.gateway.orders import MAX_PRICE, MAX_QTY, round_div
from tectra.gateway.positions import (
    FeeSchedule,
    PositionBook,
    PositionBookError,
    PositionIssue,
)
from tectra.schema import ExecType, Side
from tests.gateway._helpers import ACC, INSTR, STRAT, VENUE, ack, batch, fill, report

B, S = Side.BUY, Side.SELL


def book_fills(book: PositionBook, *fills: tuple[Side, int, int]) -> None:
    for side, qty, px in fills:
        assert book.book_fill(ACC, STRAT, INSTR, side=side, qty=qty, px=px) is PositionIssue.NONE


def pos(book: PositionBook) -> dict[str, int]:
    return book.position(ACC, STRAT, INSTR)


def test_long_increase_and_reduce() -> None:
    book = PositionBook(4)
    book_fills(book, (B, 100, 100_000), (B, 200, 100_300))
    p = pos(book)
    assert p["net_qty"] == 300 and p["cost"] == 100 * 100_000 + 200 * 100_300
    assert p["avg_open_px"] == 100_200
    book_fills(book, (S, 100, 101_000))
    p = pos(book)
    # removed cost = cost * 100 / 300 = 10_020_000 exactly; realised = 100 * 101000 - that
    assert p["realised_pnl"] == 100 * 101_000 - 10_020_000
    assert p["net_qty"] == 200 and p["avg_open_px"] == 100_200
    book_fills(book, (S, 200, 99_000))
    p = pos(book)
    assert p["net_qty"] == 0 and p["cost"] == 0
    assert p["realised_pnl"] == 300 * -0 + (100 * 101_000 + 200 * 99_000) - (
        100 * 100_000 + 200 * 100_300
    )


def test_short_and_rounding_of_removed_cost() -> None:
    book = PositionBook(4)
    book_fills(book, (S, 1, 100_000), (S, 2, 100_001))  # cost -300_002, net -3
    assert pos(book)["avg_open_px"] == round_div(-300_002, -3) == 100_001
    book_fills(book, (B, 1, 99_000))
    p = pos(book)
    removed = round_div(-300_002 * 1, 3)  # -100_000.67 -> -100_001
    assert removed == -100_001
    assert p["realised_pnl"] == -99_000 - removed == 1_001
    assert p["cost"] == -300_002 - removed


def test_flip_through_zero() -> None:
    book = PositionBook(4)
    book_fills(book, (B, 100, 100_000), (S, 250, 101_000))
    p = pos(book)
    assert p["net_qty"] == -150
    assert p["realised_pnl"] == 100 * 1_000
    assert p["cost"] == -150 * 101_000 and p["avg_open_px"] == 101_000
    book_fills(book, (B, 200, 100_500))
    p = pos(book)
    assert p["net_qty"] == 50 and p["avg_open_px"] == 100_500
    assert p["realised_pnl"] == 100 * 1_000 + 150 * 500


def test_unrealised_with_marks_dict_and_array() -> None:
    book = PositionBook(4)
    book_fills(book, (B, 10, 100_000))
    book.book_fill(ACC, STRAT, INSTR + 1, side=S, qty=5, px=200_000)
    pnl, marked = book.unrealised({INSTR: 100_500})
    assert pnl[:2].tolist() == [10 * 500, 0] and marked[:2].tolist() == [True, False]
    arr = np.zeros(64, dtype=np.int64)
    arr[INSTR], arr[INSTR + 1] = 99_000, 190_000
    pnl, marked = book.unrealised(arr)
    assert pnl[:2].tolist() == [-10 * 1_000, 5 * 10_000] and marked[:2].all()
    assert not marked[2:].any()
    tot = book.totals(arr)
    assert tot["unrealised_pnl"] == -10_000 + 50_000 and tot["unmarked_positions"] == 0


def test_fees_per_venue_and_batch_from_reports() -> None:
    book = PositionBook(4, FeeSchedule(default=30, per_venue={VENUE: 25}))
    reps = batch(
        ack(1),
        fill(1, 100, 100_000, side=B),
        fill(2, 40, 100_100, side=S, venue_id=VENUE + 5),
        report(1, ExecType.CANCELED),
    )
    booked = book.on_reports(reps)
    assert booked.tolist() == [False, True, True, False]
    p = pos(book)
    assert p["fees"] == 100 * 25 + 40 * 30
    assert p["net_qty"] == 60 and p["bought_qty"] == 100 and p["sold_qty"] == 40
    assert book.totals()["net_pnl"] == p["realised_pnl"] - p["fees"]


def test_bust_reverses_fill_and_refunds_fee() -> None:
    book = PositionBook(4, FeeSchedule(default=10))
    book.on_reports(fill(1, 100, 100_000, side=B))
    book.on_reports(report(1, ExecType.TRADE_CANCEL, last_qty=100, last_px=100_000, side=B))
    p = pos(book)
    assert (p["net_qty"], p["cost"], p["fees"], p["realised_pnl"]) == (0, 0, 0, 0)
    book.on_reports(
        report(1, ExecType.TRADE_CANCEL, last_qty=1, last_px=1, side=B, instrument_id=999)
    )
    assert book.issues[PositionIssue.UNKNOWN_BUST] == 1


@pytest.mark.parametrize(
    ("side", "qty", "px"),
    [(B, 0, 1), (B, 1, 0), (B, MAX_QTY + 1, 1), (B, 1, MAX_PRICE + 1), (Side.NONE, 1, 1)],
)
def test_bad_fills_counted_and_ignored(side: Side, qty: int, px: int) -> None:
    book = PositionBook(4)
    booked = book.on_reports(fill(1, qty, px, side=side))
    assert not booked.any()
    assert book.issues[PositionIssue.BAD_FILL] == 1 and len(book) == 0


def test_table_full_and_overflow_guard() -> None:
    book = PositionBook(1)
    book_fills(book, (B, 1, 1))
    assert book.book_fill(ACC, STRAT, INSTR + 1, side=B, qty=1, px=1) is PositionIssue.TABLE_FULL
    big = PositionBook(1)
    issue = PositionIssue.NONE
    for _ in range(10):
        issue = big.book_fill(ACC, STRAT, INSTR, side=B, qty=MAX_QTY, px=MAX_PRICE)
        if issue is not PositionIssue.NONE:
            break
    assert issue is PositionIssue.OVERFLOW
    p = big.position(ACC, STRAT, INSTR)
    assert p["cost"] == p["net_qty"] * MAX_PRICE  # last good state kept


def test_snapshot_roundtrip() -> None:
    book = PositionBook(4, FeeSchedule(default=3, per_venue={2: 1}))
    book_fills(book, (B, 10, 100_000), (S, 3, 100_100))
    clone = PositionBook.from_state_arrays(book.state_arrays())
    for k, v in book.state_arrays().items():
        assert np.array_equal(v, clone.state_arrays()[k])
    assert clone.position(ACC, STRAT, INSTR) == pos(book)
    assert clone.fees == book.fees
    with pytest.raises(PositionBookError):
        PositionBook.from_state_arrays({})
    with pytest.raises(PositionBookError):
        FeeSchedule(default=MAX_PRICE + 1)
