"""A small deterministic reference component and a synthetic trade source, for replay.

This module owns `VwapComponent`, the smallest honest implementation of the replay contract
(`tectra.journal.capture.Component`): it keeps a running volume-weighted average price per
instrument over TRADE records, in fixed point, and after every step emits one TICK per
instrument the batch touched (last_px = VWAP, last_qty = cumulative volume). Its state is a few
numpy arrays, so snapshot/restore are exact byte copies. The golden replay tests and the replay
benchmark use it until the feed's and gateway's components implement the protocol, and it is
the example they follow: no clock reads (time comes in as `now_ns`), no I/O, no randomness.

`synthetic_trades` makes seeded, bursty TRADE batches (one per "packet") for tests and perf.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.schema import TICK, TRADE, Component, Side, TradeKind, new_records

__all__ = ["VwapComponent", "synthetic_trades"]

_STATE_HEAD: Final = struct.Struct("<IQ")


class VwapComponent:
    """Running VWAP per instrument id (0..instruments-1) over TRADE inputs; TICK outputs."""

    component_id: int = int(Component.STRATEGY)

    def __init__(self, instruments: int = 64) -> None:
        self.instruments = instruments
        self.notional = np.zeros(instruments, dtype=np.int64)  # sum(price * qty), 1e-4 units
        self.volume = np.zeros(instruments, dtype=np.int64)
        self.trades = np.zeros(instruments, dtype=np.uint32)
        self.last_ns = np.zeros(instruments, dtype=np.int64)
        self.out_seq = 0

    def step(self, inputs: Any, now_ns: int) -> npt.NDArray[np.void]:
        trades = np.asarray(inputs)
        if trades.shape[0] == 0:
            return new_records(TICK, 0)
        ids = trades["instrument_id"].astype(np.int64) % self.instruments
        qty = trades["qty"]
        np.add.at(self.notional, ids, trades["price"] * qty)
        np.add.at(self.volume, ids, qty)
        np.add.at(self.trades, ids, 1)
        touched = np.unique(ids)
        self.last_ns[touched] = now_ns
        out = new_records(TICK, touched.shape[0])
        out["seq"] = np.arange(self.out_seq + 1, self.out_seq + 1 + touched.shape[0])
        self.out_seq += int(touched.shape[0])
        out["ts_ns"] = now_ns
        out["instrument_id"] = touched
        vol = self.volume[touched]
        # Integer VWAP, rounded half up: fixed point end to end, no float decides anything.
        out["last_px"] = (self.notional[touched] * 2 + vol) // (2 * np.maximum(vol, 1))
        out["last_qty"] = vol
        out["bid_orders"] = self.trades[touched]
        out["last_update_ns"] = now_ns
        return out

    def snapshot(self) -> bytes:
        return (
            _STATE_HEAD.pack(self.instruments, self.out_seq)
            + self.notional.tobytes()
            + self.volume.tobytes()
            + self.trades.tobytes()
            + self.last_ns.tobytes()
        )

    def restore(self, state: bytes) -> None:
        n, out_seq = _STATE_HEAD.unpack_from(state)
        arrays = np.frombuffer(state, dtype=np.uint8, offset=_STATE_HEAD.size)
        sizes = (8 * n, 8 * n, 4 * n, 8 * n)
        parts = np.split(arrays, np.cumsum(sizes)[:-1])
        self.instruments = n
        self.out_seq = out_seq
        self.notional = parts[0].view(np.int64).copy()
        self.volume = parts[1].view(np.int64).copy()
        self.trades = parts[2].view(np.uint32).copy()
        self.last_ns = parts[3].view(np.int64).copy()


def synthetic_trades(
    seed: int,
    *,
    batches: int,
    mean_batch: int = 8,
    instruments: int = 64,
    start_ns: int = 1_000_000_000,
    mean_gap_ns: int = 1_000_000,
) -> Iterator[tuple[npt.NDArray[np.void], int]]:
    """(TRADE batch, now_ns) pairs: Poisson-ish batch sizes and gaps, seeded, exact ints."""
    rng = np.random.default_rng(seed)
    now = start_ns
    seq = 0
    mid = 1_000_000 + rng.integers(0, 4_000_000, instruments)
    for _ in range(batches):
        n = int(rng.poisson(mean_batch)) + 1
        now += int(rng.exponential(mean_gap_ns)) + 1
        t = new_records(TRADE, n)
        t["seq"] = np.arange(seq + 1, seq + n + 1)
        seq += n
        t["ts_ns"] = now
        ids = rng.integers(0, instruments, n)
        t["instrument_id"] = ids
        t["aggressor_side"] = np.where(rng.random(n) < 0.5, Side.BUY, Side.SELL)
        t["trade_kind"] = TradeKind.EXECUTED
        t["price"] = mid[ids] + rng.integers(-500, 500, n)
        t["qty"] = rng.integers(1, 10, n) * 100
        t["match_number"] = t["seq"]
        t["exch_ts_ns"] = now
        yield t, now
