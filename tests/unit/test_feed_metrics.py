"""Tests of tectra.feed.metrics: tick metrics, running VWAP, book pressure and OHLCV bars against
brute-force Python on the same records, bar emission timing and late trades."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tectra.feed.book import OrderBook
from tectra.feed.metrics import (
    BAR_DTYPE,
    BarBuilder,
    FeedMetrics,
    VwapTracker,
    book_pressure,
    tick_metrics,
)
from tectra.feed.quality import FeedQuality, SessionEvent
from tectra.schema import TradeKind, TradingState, new_records

SEC = 1_000_000_000


def ticks_of(rows: list[tuple[int, int, int, int]]) -> npt.NDArray[np.void]:
    t = new_records("TICK", len(rows))
    for i, (bp, bq, ap, aq) in enumerate(rows):
        t[i]["bid_px"], t[i]["bid_qty"], t[i]["ask_px"], t[i]["ask_qty"] = bp, bq, ap, aq
        t[i]["seq"] = i + 1
        t[i]["instrument_id"] = i
    return t


def trades_of(
    rows: list[tuple[int, int, int, int]], kind: int = TradeKind.EXECUTED
) -> npt.NDArray[np.void]:
    """(instrument, exch_ts_ns, price, qty) rows."""
    t = new_records("TRADE", len(rows))
    for i, (ins, ts, px, qty) in enumerate(rows):
        t[i]["instrument_id"], t[i]["exch_ts_ns"], t[i]["price"], t[i]["qty"] = ins, ts, px, qty
        t[i]["trade_kind"] = kind
    return t


def test_tick_metrics_values() -> None:
    m = tick_metrics(ticks_of([(100_000, 300, 100_200, 100), (100_000, 50, 0, 0), (0, 0, 0, 0)]))
    assert m["two_sided"].tolist() == [True, False, False]
    assert m["spread"].tolist() == [200, 0, 0]
    assert m["mid"][0] == 100_100.0 and math.isnan(m["mid"][1])
    assert m["imbalance"][0] == pytest.approx(0.5) and m["imbalance"][1] == 1.0
    assert math.isnan(m["imbalance"][2])
    # Microprice leans towards the thin side: the ask, here.
    assert m["microprice"][0] == pytest.approx((100_000 * 100 + 100_200 * 300) / 400)
    assert m["seq"].tolist() == [1, 2, 3]
    assert tick_metrics(ticks_of([])).size == 0


def test_vwap_running_across_batches_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    rows = [
        (int(rng.integers(0, 4)), i, int(rng.integers(1000, 2000)), int(rng.integers(1, 500)))
        for i in range(400)
    ]
    tracker = VwapTracker(4)
    got: list[float] = []
    for lo in range(0, 400, 37):
        got += tracker.update(trades_of(rows[lo : lo + 37])).tolist()
    sums: dict[int, list[int]] = {}
    want = []
    for ins, _ts, px, qty in rows:
        s = sums.setdefault(ins, [0, 0])
        s[0] += px * qty
        s[1] += qty
        want.append(s[0] / s[1])
    assert got == pytest.approx(want)
    assert tracker.vwap([0])[0] == pytest.approx(sums[0][0] / sums[0][1])
    broken = trades_of([(0, 1, 0, 0)], kind=TradeKind.BROKEN)
    assert math.isnan(tracker.update(broken)[0])
    assert math.isnan(VwapTracker(2).vwap()[1])


def test_book_pressure_weights_top_levels() -> None:
    book = OrderBook(max_instruments=3, max_orders=64, max_levels=8)
    ev = new_records("ITCH_EVENT", 4)
    ev["msg_type"] = ord("A")
    ev["stock_locate"] = 1
    ev["order_ref"] = [1, 2, 3, 4]
    ev["side"] = [ord("B"), ord("B"), ord("S"), ord("S")]
    ev["price"] = [100, 99, 101, 102]
    ev["shares"] = [100, 100, 300, 600]
    book.apply(ev)
    p = book_pressure(book, [1, 2], depth=2)
    bid, ask = 100 + 100 / 2, 300 + 600 / 2
    assert p[0] == pytest.approx((bid - ask) / (bid + ask))
    assert math.isnan(p[1])


def brute_bars(rows: list[tuple[int, int, int, int]], interval: int) -> list[tuple[int, ...]]:
    bars: dict[tuple[int, int], list[int]] = {}
    for ins, ts, px, qty in rows:
        key = (ins, ts - ts % interval)
        b = bars.get(key)
        if b is None:
            bars[key] = [px, px, px, px, qty, px * qty, 1]
        else:
            b[1], b[2], b[3] = max(b[1], px), min(b[2], px), px
            b[4] += qty
            b[5] += px * qty
            b[6] += 1
    return sorted((ins, start, *vals) for (ins, start), vals in bars.items())


def as_rows(bars: npt.NDArray[np.void], interval: int) -> list[tuple[int, ...]]:
    sel = bars[bars["interval_ns"] == interval]
    return sorted(
        (
            int(b["instrument_id"]),
            int(b["start_ns"]),
            int(b["open"]),
            int(b["high"]),
            int(b["low"]),
            int(b["close"]),
            int(b["volume"]),
            int(b["notional"]),
            int(b["trades"]),
        )
        for b in sel
    )


@pytest.mark.parametrize("batch", [1, 7, 50, 1000])
def test_bars_equal_brute_force_for_any_batching(batch: int) -> None:
    rng = np.random.default_rng(batch)
    ts = np.sort(rng.integers(34_200 * SEC, 34_200 * SEC + 150 * SEC, 600))
    rows = [
        (int(rng.integers(0, 3)), int(t), int(rng.integers(1000, 1100)), int(rng.integers(1, 300)))
        for t in ts
    ]
    builder = BarBuilder(3)
    emitted: list[npt.NDArray[np.void]] = []
    for lo in range(0, len(rows), batch):
        out = builder.update(trades_of(rows[lo : lo + batch]))
        # Everything emitted is closed: its bucket ended by the current watermark.
        assert (out["start_ns"] + out["interval_ns"] <= builder.watermark_ns).all()
        emitted.append(out)
    emitted.append(builder.flush())
    bars = np.concatenate(emitted)
    assert bars.dtype == BAR_DTYPE
    for interval in (SEC, 5 * SEC, 60 * SEC):
        assert as_rows(bars, interval) == brute_bars(rows, interval)
    assert builder.late == 0


def test_bar_closes_on_watermark_and_late_trades_are_counted() -> None:
    builder = BarBuilder(2, intervals_ns=(SEC,))
    t0 = 10 * SEC
    assert builder.update(trades_of([(0, t0 + 5, 100, 1), (0, t0 + 9, 105, 2)])).size == 0
    # Another instrument's trade (or the book's venue time) moves the clock past the bucket.
    assert builder.update(trades_of([]), watermark_ns=t0 + SEC - 1).size == 0
    out = builder.update(trades_of([(1, t0 + SEC, 7, 1)]))
    assert out[
        ["instrument_id", "start_ns", "open", "high", "low", "close", "volume"]
    ].tolist() == [(0, t0, 100, 105, 100, 105, 3)]
    out = builder.update(trades_of([(0, t0 + 3, 1, 1)]))  # bucket [t0, t0+1s) already closed
    assert out.size == 0 and builder.late == 1
    # Zero-quantity and broken trades are ignored.
    builder.update(trades_of([(1, t0 + SEC + 1, 1, 0)]))
    builder.update(trades_of([(1, t0 + SEC + 2, 0, 0)], kind=TradeKind.BROKEN))
    assert builder.flush()[["instrument_id", "volume", "trades"]].tolist() == [(1, 1, 1)]
    with pytest.raises(ValueError):
        BarBuilder(2, intervals_ns=(0,))


def test_feed_metrics_over_book_outputs() -> None:
    book = OrderBook(max_instruments=4, max_orders=64, max_levels=8)
    ev = new_records("ITCH_EVENT", 4)
    rows: list[dict[str, Any]] = [
        {"msg_type": ord("A"), "order_ref": 1, "side": ord("B"), "price": 1000, "shares": 100},
        {"msg_type": ord("A"), "order_ref": 2, "side": ord("S"), "price": 1010, "shares": 100},
        {"msg_type": ord("E"), "order_ref": 1, "shares": 40, "ref2": 1},
        {"msg_type": ord("E"), "order_ref": 2, "shares": 10, "ref2": 2},
    ]
    for i, row in enumerate(rows):
        for k, v in row.items():
            ev[i][k] = v
    ev["stock_locate"] = 2
    ev["exch_ts_ns"] = [SEC, SEC + 1, 2 * SEC + 5, 2 * SEC + 6]
    fm = FeedMetrics(4, bar_intervals_ns=(SEC,))
    out = book.apply(ev)
    m = fm.update(out, book)
    assert m.ticks.shape[0] == out.ticks.shape[0]
    assert m.trade_vwap == pytest.approx([1000.0, (1000 * 40 + 1010 * 10) / 50])
    assert m.pressure_instruments.tolist() == [2]
    assert m.pressure[0] == pytest.approx((60 - 90) / 150)
    assert m.bars.size == 0  # bucket [2s, 3s) still open at venue time 2s + 6
    later = fm.update(book.apply(new_records("ITCH_EVENT", 0)), book, exch_now_ns=3 * SEC)
    assert later.bars[["open", "close", "volume"]].tolist() == [(1000, 1010, 50)]


# ------------------------------------------------------------------ data quality


def test_quality_counts_crossed_and_locked_episodes_across_batches() -> None:
    q = FeedQuality(4)
    t = ticks_of([(101, 1, 100, 1), (101, 1, 100, 1), (100, 1, 101, 1), (100, 1, 100, 1)])
    t["instrument_id"] = [2, 2, 2, 2]
    q.observe_ticks(t[:2])  # crossed, still crossed: one episode
    q.observe_ticks(t[2:3])  # uncrossed
    q.observe_ticks(t[:1])  # crossed again: second episode
    q.observe_ticks(t[3:])  # locked
    a = q.arrays()
    assert a["crossed"].tolist() == [0, 0, 2, 0]
    assert a["locked"].tolist() == [0, 0, 1, 0]
    assert a["crossed_now"].tolist() == [False] * 4 and a["locked_now"][2]
    one_sided = ticks_of([(101, 1, 0, 0)])
    one_sided["instrument_id"] = 1
    q.observe_ticks(one_sided)
    assert q.arrays()["crossed"][1] == 0
    assert not a["crossed"].flags.writeable
    assert q.totals()["crossed"] == 2


def test_quality_stale_detection_skips_halted_and_unseen() -> None:
    q = FeedQuality(4)
    t = ticks_of([(1, 1, 2, 1), (1, 1, 2, 1), (1, 1, 2, 1)])
    t["instrument_id"] = [0, 1, 2]
    t["ts_ns"] = [1_000, 5_000, 1_000]
    t["trading_state"] = [TradingState.TRADING, TradingState.TRADING, TradingState.HALTED]
    q.observe_ticks(t)
    assert q.check_stale(now_ns=3_000, stale_after_ns=1_500).tolist() == [0]
    assert q.check_stale(now_ns=3_100, stale_after_ns=1_500).tolist() == []  # same episode
    assert q.arrays()["stale"].tolist() == [1, 0, 0, 0]
    t2 = t[:1].copy()
    t2["ts_ns"] = 3_200
    q.observe_ticks(t2)  # fresh again
    assert not q.stale_now[0]
    assert q.check_stale(now_ns=9_000, stale_after_ns=1_500).tolist() == [0, 1]
    assert q.arrays()["stale"].tolist() == [2, 1, 0, 0]
    assert q.summary()["stale_now"] == 2


def test_quality_session_events() -> None:
    q = FeedQuality(3)
    q.record_session(SessionEvent.GAPS, 5)
    q.record_session(SessionEvent.RESENDS, instruments=[1, 1, 2, 9])
    q.record_session(SessionEvent.DROPS, instruments=np.array([0]))
    assert q.arrays()["resends"].tolist() == [0, 2, 1]
    assert q.arrays()["drops"].tolist() == [1, 0, 0]
    assert q.totals()["gaps"] == 5 and q.totals()["resends"] == 3
    assert q.summary()["gaps_total"] == 5
    with pytest.raises(ValueError):
        q.record_session(SessionEvent.GAPS, -1)
