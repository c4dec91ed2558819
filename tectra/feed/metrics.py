"""Derived market-data analytics over the book's normalised outputs, vectorised per batch.

This module owns:

* per-TICK metrics (`tick_metrics`): spread (int64, 1e-4 units: exact), mid, imbalance and
  microprice (float64);
* running per-instrument VWAP from TRADE records (`VwapTracker`);
* depth-weighted book pressure over the top N levels (`book_pressure`);
* OHLCV bars at 1 s / 5 s / 1 min (`BarBuilder`), bucketed by the venue timestamp and emitted
  when a bucket closes;
* `FeedMetrics`, which runs all of the above over one `BookOutputs` batch.

Number types: prices and quantities that could decide anything (spread, OHLC, volume,
notional) stay int64 fixed point (1e-4 units, `tectra.schema.PRICE_SCALE`). mid, imbalance,
microprice, VWAP and pressure are float64 analytics in the same 1e-4 price units (divide by
PRICE_SCALE for currency) and never feed the order path. These arrays are local analytics
dtypes, not ring records: a layout that crosses a ring belongs in tectra.schema.

Trades that carry no volume are left out of VWAP and bars: TradeKind.BROKEN (ITCH B gives only
the match number; the broken trade's volume stays counted, see docs/books.md) and 0-quantity
records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import TradeKind

if TYPE_CHECKING:
    from tectra.feed.book import BookOutputs, OrderBook

__all__ = [
    "BAR_DTYPE",
    "DEFAULT_BAR_INTERVALS_NS",
    "TICK_METRICS_DTYPE",
    "BarBuilder",
    "FeedMetrics",
    "MetricsBatch",
    "VwapTracker",
    "book_pressure",
    "tick_metrics",
]

Records = npt.NDArray[np.void]
FloatArray = npt.NDArray[np.float64]

DEFAULT_BAR_INTERVALS_NS: Final[tuple[int, ...]] = (1_000_000_000, 5_000_000_000, 60_000_000_000)

TICK_METRICS_DTYPE: Final = np.dtype(
    [
        ("seq", "<u8"),  # the TICK's output sequence number
        ("ts_ns", "<i8"),  # the TICK's receive time
        ("instrument_id", "<u4"),
        ("two_sided", "?"),  # both sides have a level (else spread/mid/microprice are 0/NaN)
        ("spread", "<i8"),  # ask_px - bid_px, 1e-4 units; 0 unless two-sided
        ("mid", "<f8"),  # (bid_px + ask_px) / 2, 1e-4 units
        ("imbalance", "<f8"),  # (bid_qty - ask_qty) / (bid_qty + ask_qty), in [-1, 1]
        ("microprice", "<f8"),  # (bid_px * ask_qty + ask_px * bid_qty) / (bid_qty + ask_qty)
    ]
)

BAR_DTYPE: Final = np.dtype(
    [
        ("instrument_id", "<u4"),
        ("trades", "<u4"),
        ("interval_ns", "<i8"),
        ("start_ns", "<i8"),  # bucket start, venue time (ITCH: ns since midnight)
        ("open", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("volume", "<i8"),
        ("notional", "<i8"),  # sum(price * qty), 1e-4 units
    ]
)


def _counted_trades(trades: Records) -> Records:
    keep = (trades["qty"] > 0) & (trades["trade_kind"] != TradeKind.BROKEN)
    return trades if keep.all() else trades[keep]


def tick_metrics(ticks: Records) -> npt.NDArray[np.void]:
    """One TICK_METRICS_DTYPE row per TICK record, in the same order."""
    out = np.zeros(ticks.shape[0], dtype=TICK_METRICS_DTYPE)
    if not ticks.shape[0]:
        return out
    bp = ticks["bid_px"].astype(np.int64)
    ap = ticks["ask_px"].astype(np.int64)
    bq = ticks["bid_qty"].astype(np.float64)
    aq = ticks["ask_qty"].astype(np.float64)
    two = (ticks["bid_qty"] > 0) & (ticks["ask_qty"] > 0)
    out["seq"] = ticks["seq"]
    out["ts_ns"] = ticks["ts_ns"]
    out["instrument_id"] = ticks["instrument_id"]
    out["two_sided"] = two
    out["spread"] = np.where(two, ap - bp, 0)
    depth = bq + aq
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mid"] = np.where(two, (bp + ap) / 2.0, np.nan)
        out["imbalance"] = np.where(depth > 0, (bq - aq) / depth, np.nan)
        out["microprice"] = np.where(two, (bp * aq + ap * bq) / depth, np.nan)
    return out


def book_pressure(book: OrderBook, instruments: npt.ArrayLike, depth: int = 5) -> FloatArray:
    """Depth-weighted order-book pressure per instrument, in [-1, 1] (NaN for an empty book):
    (sum_k w_k bid_qty_k - sum_k w_k ask_qty_k) / (sum of both), w_k = 1 / (k + 1) over the
    best `depth` levels, so the top counts most and deep liquidity still leans the figure."""
    _px, qty, _orders = book.top_levels(instruments, depth)
    weights = 1.0 / np.arange(1, depth + 1, dtype=np.float64)
    bid = (qty[:, 0, :] * weights).sum(axis=1)
    ask = (qty[:, 1, :] * weights).sum(axis=1)
    total = bid + ask
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = np.where(total > 0, (bid - ask) / total, np.nan)
    return result


class VwapTracker:
    """Running per-instrument VWAP since the last `reset` (start of day), from TRADE records.

    Sums are int64: notional in 1e-4 units * shares, which holds ~9.2e18, four orders of
    magnitude above a very busy US equity day (a $500 stock trading 1e8 shares is 5e14).
    """

    def __init__(self, max_instruments: int) -> None:
        self.notional = np.zeros(max_instruments, dtype=np.int64)
        self.volume = np.zeros(max_instruments, dtype=np.int64)

    def reset(self) -> None:
        self.notional[:] = 0
        self.volume[:] = 0

    def update(self, trades: Records) -> FloatArray:
        """Fold a batch in; returns the instrument's VWAP after each trade (NaN for trades
        that carry no volume), in the batch's order."""
        result = np.full(trades.shape[0], np.nan, dtype=np.float64)
        keep = np.flatnonzero((trades["qty"] > 0) & (trades["trade_kind"] != TradeKind.BROKEN))
        if not keep.size:
            return result
        t = trades[keep]
        ids = t["instrument_id"].astype(np.int64)
        qty = t["qty"].astype(np.int64)
        notional = t["price"].astype(np.int64) * qty
        # Running sums per instrument inside the batch: stable sort by instrument, cumsum,
        # subtract each group's starting offset, add the totals carried from earlier batches.
        order = np.argsort(ids, kind="stable")
        sid = ids[order]
        cum_n = np.cumsum(notional[order])
        cum_q = np.cumsum(qty[order])
        first = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
        group = np.cumsum(np.concatenate(([False], sid[1:] != sid[:-1])))
        base_n = np.concatenate(([0], cum_n[first[1:] - 1]))[group]
        base_q = np.concatenate(([0], cum_q[first[1:] - 1]))[group]
        run_n = cum_n - base_n + self.notional[sid]
        run_q = cum_q - base_q + self.volume[sid]
        vw = np.empty(keep.size, dtype=np.float64)
        vw[order] = run_n / run_q
        result[keep] = vw
        np.add.at(self.notional, ids, notional)
        np.add.at(self.volume, ids, qty)
        return result

    def vwap(self, instruments: npt.ArrayLike | None = None) -> FloatArray:
        """Current VWAP (NaN before the first trade) of the given instruments (default all)."""
        n = self.notional if instruments is None else self.notional[np.asarray(instruments)]
        q = self.volume if instruments is None else self.volume[np.asarray(instruments)]
        with np.errstate(invalid="ignore", divide="ignore"):
            result: FloatArray = np.where(q > 0, n / np.maximum(q, 1), np.nan)
        return result


class _IntervalBars:
    """Open bars of one interval: at most one per instrument (the latest bucket)."""

    def __init__(self, max_instruments: int, interval_ns: int) -> None:
        self.interval = interval_ns
        self.start = np.full(max_instruments, -1, dtype=np.int64)  # -1: no open bar
        self.ohlc = np.zeros((max_instruments, 4), dtype=np.int64)
        self.volume = np.zeros(max_instruments, dtype=np.int64)
        self.notional = np.zeros(max_instruments, dtype=np.int64)
        self.trades = np.zeros(max_instruments, dtype=np.int64)

    def fold(
        self,
        ids: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        px: npt.NDArray[np.int64],
        qty: npt.NDArray[np.int64],
        watermark: int,
        *,
        close_all: bool = False,
    ) -> npt.NDArray[np.void]:
        """Merge trades (time-ordered per instrument, none late) with the open bars; return
        the bars that closed (bucket end <= watermark, or all with close_all)."""
        interval = self.interval
        open_ids = np.flatnonzero(self.start >= 0)
        # Candidates: open bars first (src 0), then the new trades one row each (src 1).
        c_id = np.concatenate((open_ids, ids))
        c_start = np.concatenate((self.start[open_ids], ts - ts % interval))
        c_src = np.concatenate(
            (np.zeros(open_ids.size, np.int64), 1 + np.arange(ids.size, dtype=np.int64))
        )
        c_o = np.concatenate((self.ohlc[open_ids, 0], px))
        c_h = np.concatenate((self.ohlc[open_ids, 1], px))
        c_l = np.concatenate((self.ohlc[open_ids, 2], px))
        c_c = np.concatenate((self.ohlc[open_ids, 3], px))
        c_v = np.concatenate((self.volume[open_ids], qty))
        c_n = np.concatenate((self.notional[open_ids], px * qty))
        c_t = np.concatenate((self.trades[open_ids], np.ones(ids.size, np.int64)))
        self.start[open_ids] = -1
        if not c_id.size:
            return np.zeros(0, dtype=BAR_DTYPE)
        order = np.lexsort((c_src, c_start, c_id))
        g_id, g_start = c_id[order], c_start[order]
        heads = np.flatnonzero(
            np.concatenate(([True], (g_id[1:] != g_id[:-1]) | (g_start[1:] != g_start[:-1])))
        )
        tails = np.concatenate((heads[1:], [order.size])) - 1
        bars = np.zeros(heads.size, dtype=BAR_DTYPE)
        bars["instrument_id"] = g_id[heads]
        bars["interval_ns"] = interval
        bars["start_ns"] = g_start[heads]
        bars["open"] = c_o[order][heads]
        bars["close"] = c_c[order][tails]
        bars["high"] = np.maximum.reduceat(c_h[order], heads)
        bars["low"] = np.minimum.reduceat(c_l[order], heads)
        bars["volume"] = np.add.reduceat(c_v[order], heads)
        bars["notional"] = np.add.reduceat(c_n[order], heads)
        bars["trades"] = np.add.reduceat(c_t[order], heads)
        closed = (
            np.ones(heads.size, dtype=bool)
            if close_all
            else (bars["start_ns"] + interval <= watermark)
        )
        still = bars[~closed]
        sid = still["instrument_id"].astype(np.int64)
        self.start[sid] = still["start_ns"]
        self.ohlc[sid] = np.stack(
            (still["open"], still["high"], still["low"], still["close"]), axis=1
        )
        self.volume[sid] = still["volume"]
        self.notional[sid] = still["notional"]
        self.trades[sid] = still["trades"]
        done = bars[closed]
        return done[np.lexsort((done["instrument_id"], done["start_ns"]))]


class BarBuilder:
    """OHLCV bars per instrument for each interval, bucketed by venue timestamp (buckets are
    aligned to the venue's midnight, ITCH's time origin).

    The venue clock is the watermark: the latest exch_ts_ns seen (from trades, or passed in,
    e.g. `OrderBook.last_exch_ts_ns`, so quiet instruments' bars still close). A bar is
    emitted once the watermark reaches its bucket end; a trade for an already-closed bucket
    is left out of that interval's bars and counted once in `late` (ITCH timestamps do not go
    backwards, so this flags bad input). Bars with no trades are not emitted.
    """

    def __init__(
        self, max_instruments: int, intervals_ns: Sequence[int] = DEFAULT_BAR_INTERVALS_NS
    ) -> None:
        if not intervals_ns or any(int(i) <= 0 for i in intervals_ns):
            raise ValueError(f"intervals must be positive ns, got {intervals_ns!r}")
        self.intervals = tuple(int(i) for i in intervals_ns)
        self._bars = [_IntervalBars(max_instruments, i) for i in self.intervals]
        self.watermark_ns = -1
        self.late = 0

    def update(self, trades: Records, watermark_ns: int | None = None) -> npt.NDArray[np.void]:
        """Fold a batch of TRADE records in; returns the bars closed by it (BAR_DTYPE),
        ordered by interval, bucket start and instrument."""
        t = _counted_trades(trades)
        ts = t["exch_ts_ns"].astype(np.int64)
        ids = t["instrument_id"].astype(np.int64)
        px = t["price"].astype(np.int64)
        qty = t["qty"].astype(np.int64)
        old = self.watermark_ns
        new = max(
            old,
            int(ts.max()) if ts.size else old,
            -1 if watermark_ns is None else int(watermark_ns),
        )
        if ts.size:
            # Late for the shortest interval = dropped from at least one interval's bars.
            shortest = min(self.intervals)
            self.late += int(((ts - ts % shortest) + shortest <= old).sum())
        out: list[npt.NDArray[np.void]] = []
        for bars in self._bars:
            late = (ts - ts % bars.interval) + bars.interval <= old
            keep = ~late
            out.append(bars.fold(ids[keep], ts[keep], px[keep], qty[keep], new))
        self.watermark_ns = new
        return np.concatenate(out)

    def flush(self) -> npt.NDArray[np.void]:
        """Close and return every open bar (end of session)."""
        empty = np.zeros(0, dtype=np.int64)
        return np.concatenate(
            [
                b.fold(empty, empty, empty, empty, self.watermark_ns, close_all=True)
                for b in self._bars
            ]
        )


@dataclass(frozen=True, slots=True)
class MetricsBatch:
    """Analytics of one book batch."""

    ticks: npt.NDArray[np.void]  # TICK_METRICS_DTYPE, one per TICK
    trade_vwap: FloatArray  # running VWAP after each TRADE (NaN for broken / 0-qty)
    pressure_instruments: npt.NDArray[np.uint32]  # instruments whose top changed
    pressure: FloatArray  # their book pressure after the batch
    bars: npt.NDArray[np.void]  # BAR_DTYPE bars closed by this batch


class FeedMetrics:
    """All derived metrics for a stream of `BookOutputs`."""

    def __init__(
        self,
        max_instruments: int,
        *,
        bar_intervals_ns: Sequence[int] = DEFAULT_BAR_INTERVALS_NS,
        pressure_depth: int = 5,
    ) -> None:
        self.vwap = VwapTracker(max_instruments)
        self.bars = BarBuilder(max_instruments, bar_intervals_ns)
        self.pressure_depth = pressure_depth

    def update(
        self,
        outputs: BookOutputs,
        book: OrderBook | None = None,
        exch_now_ns: int | None = None,
    ) -> MetricsBatch:
        """Metrics for one batch. Pressure needs `book` (the state after the batch); bars
        close on `exch_now_ns` (default: the book's last venue time, else the trades')."""
        if exch_now_ns is None and book is not None:
            exch_now_ns = book.last_exch_ts_ns
        instruments = np.unique(outputs.ticks["instrument_id"]).astype(np.uint32)
        pressure = (
            book_pressure(book, instruments, self.pressure_depth)
            if book is not None
            else np.full(instruments.size, np.nan)
        )
        return MetricsBatch(
            ticks=tick_metrics(outputs.ticks),
            trade_vwap=self.vwap.update(outputs.trades),
            pressure_instruments=instruments,
            pressure=pressure,
            bars=self.bars.update(outputs.trades, exch_now_ns),
        )
