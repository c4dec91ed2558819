"""The feed as a journal `Component`: raw UDP payloads in, BookUpdate/Tick/Trade out.

Live capture wraps it in a `tectra.journal.capture.Recorder`, so every receive batch (as a
RAW_PACKET opaque batch) and the records it produced are journaled step by step; replay feeds
the recorded packets back through the same `FeedHandler.step` and diffs the outputs.

Determinism note: a captured step stamps every packet of the batch with the step's `now_ns`
(the journaled time), not its own receive time, so the outputs' header `ts_ns` are a function
of the journaled inputs alone.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from adapters.moldudp64 import PacketBatch as MoldPackets
from adapters.moldudp64 import SessionConfig
from tectra.feed.book import OrderBook
from tectra.feed.handler import FeedHandler, FeedLimits, FeedStep
from tectra.io.receive import PacketBatch
from tectra.journal.capture import OpaqueBatch, StepInputs, StepOutputs
from tectra.journal.format import RecordType
from tectra.schema import Component


def packets_to_opaque(batch: PacketBatch) -> OpaqueBatch:
    """A receive batch as one opaque RAW_PACKET batch (payloads back to back), gathered with
    one fancy index instead of a Python loop over packets."""
    lengths = batch.lengths.astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = batch.offsets.astype(np.int64)
    index = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return OpaqueBatch(int(RecordType.RAW_PACKET), batch.payload[index], offsets)


class FeedComponent:
    """FeedHandler behind the journal's Component protocol."""

    component_id = int(Component.FEED)

    def __init__(
        self,
        limits: FeedLimits | None = None,
        session_config: SessionConfig | None = None,
        book: OrderBook | None = None,
    ) -> None:
        self.limits = limits or FeedLimits()
        self.handler = FeedHandler(
            limits=self.limits, session_config=session_config or SessionConfig(), book=book
        )
        self.last_step: FeedStep | None = None

    def step(self, inputs: StepInputs, now_ns: int) -> StepOutputs:
        if not isinstance(inputs, OpaqueBatch):
            raise TypeError("the feed steps on RAW_PACKET opaque batches")
        offsets = inputs.offsets
        packets = MoldPackets(inputs.data, offsets[:-1], np.diff(offsets), None)
        step = self.handler.step(packets, now_ns)
        self.last_step = step
        return [step.updates, step.ticks, step.trades]

    def snapshot(self) -> bytes:
        book = self.handler.book
        assert book is not None
        state: dict[str, Any] = {
            "book": book.state_arrays(),
            "session": self.handler.session,
            "quality": self.handler.quality,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, state: bytes) -> None:
        saved = pickle.loads(state)  # our own journal: CRC- and hash-checked before replay
        self.handler.book = OrderBook.from_state_arrays(
            saved["book"], output_capacity=self.limits.output_capacity
        )
        self.handler.session = saved["session"]
        self.handler.quality = saved["quality"]
