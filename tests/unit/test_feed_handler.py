"""FeedHandler: packets in, books and schema records out, whatever the batch and buffer sizes."""

from __future__ import annotations

import numpy as np

from adapters import itch
from adapters.moldudp64 import PacketBatch, pack_packets
from tectra.feed.book import OrderBook
from tectra.feed.handler import FeedHandler, FeedLimits
from tectra.schema import BOOK_UPDATE, TICK, TRADE
from tectra.sim.itch_flow import ItchFlow


def _packets(n: int) -> tuple[PacketBatch, np.ndarray]:
    events = ItchFlow(3, symbols=8).next_batch(n)
    batch = pack_packets("TESTSESS01", 1, itch.frame(events), events["raw_len"].astype(np.int64))
    return batch, events


def test_burst_beyond_output_capacity_keeps_schema_dtypes_and_matches_reference() -> None:
    # A tiny output buffer forces the multi-round path; its joined outputs must still be the
    # schema's exact layouts (rings refuse anything else) and the book must match a reference.
    batch, events = _packets(5_000)
    handler = FeedHandler(
        limits=FeedLimits(max_instruments=64, max_orders=1 << 14, output_capacity=16)
    )
    updates = ticks = trades = 0
    for start in range(0, len(batch), 32):
        part = PacketBatch(
            batch.buf, batch.offsets[start : start + 32], batch.lengths[start : start + 32]
        )
        step = handler.step(part, 1_000)
        assert step.updates.dtype == BOOK_UPDATE.dtype
        assert step.ticks.dtype == TICK.dtype
        assert step.trades.dtype == TRADE.dtype
        updates += step.updates.size
        ticks += step.ticks.size
        trades += step.trades.size
    reference = OrderBook(max_instruments=64, max_orders=1 << 14)
    out = reference.apply_all(events)
    assert (updates, ticks, trades) == (out.updates.size, out.ticks.size, out.trades.size)
    assert handler.session.counters.messages == events.size
    assert handler.book is not None
    for instrument in range(1, 9):
        assert handler.book.top(instrument) == reference.top(instrument)


def test_empty_step_at_a_deadline_is_harmless() -> None:
    handler = FeedHandler(limits=FeedLimits(max_instruments=16, max_orders=1024))
    step = handler.step(PacketBatch.empty(), 5)
    assert step.events.size == step.updates.size == step.ticks.size == step.trades.size == 0


def test_outputs_are_bit_identical_across_runs_even_when_joined() -> None:
    # Replay compares raw bytes, padding included: a joined burst must not carry garbage.
    batch, _ = _packets(3_000)

    def run() -> list[bytes]:
        handler = FeedHandler(
            limits=FeedLimits(max_instruments=64, max_orders=1 << 14, output_capacity=8)
        )
        out = []
        for start in range(0, len(batch), 16):
            part = PacketBatch(
                batch.buf, batch.offsets[start : start + 16], batch.lengths[start : start + 16]
            )
            step = handler.step(part, 7)
            out += [step.updates.tobytes(), step.ticks.tobytes(), step.trades.tobytes()]
        return out

    assert run() == run()
