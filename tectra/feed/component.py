"""The feed as a journal `Component`: raw UDP payloads in, BookUpdate/Tick/Trade out.

Live capture (`feed.capture`) steps the handler exactly as `FeedComponent.step` does (on
`stamped_packets`: the receive batch's own bytes, every packet stamped with the step's
`now_ns`) and hands the packets and the records they produced to a
`tectra.journal.shmtap.ShmCaptureTap` in one C call, which copies them into a shared-memory
ring that a writer process journals; replay feeds the recorded packets back through
`FeedComponent.step` (the same `FeedHandler.step`) and diffs the outputs. A
`tectra.journal.capture.Recorder` around this component journals the same steps in-line
(per-step frames), for tests and tools.

Determinism note: a captured step stamps every packet of the batch with the step's `now_ns`
(the journaled time), not its own receive time, so the outputs' header `ts_ns` are a function
of the journaled inputs alone.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.moldudp64 import PacketBatch as MoldPackets
from adapters.moldudp64 import SessionConfig
from tectra.feed.book import OrderBook
from tectra.feed.handler import FeedHandler, FeedLimits, FeedStep
from tectra.io.receive import PacketBatch
from tectra.journal.capture import OpaqueBatch, StepInputs, StepOutputs
from tectra.journal.format import RecordType
from tectra.schema import BOOK_UPDATE, TICK, TRADE, Component


def packets_to_opaque(batch: PacketBatch | MoldPackets) -> OpaqueBatch:
    """A receive batch as one opaque RAW_PACKET batch (payloads back to back), a copy that
    outlives the receiver's buffers. One packet, or packets already back to back (recvmmsg
    into one buffer), is one slice copy; otherwise one fancy-index gather, never a Python loop
    over packets."""
    starts: npt.NDArray[Any]
    lengths: npt.NDArray[Any]
    if isinstance(batch, MoldPackets):
        buf, starts, lengths = batch.buf, batch.offsets, batch.lengths
    else:
        buf, starts, lengths = batch.payload, batch.offsets, batch.lengths
    n = int(lengths.shape[0])
    if n == 0:
        return OpaqueBatch.empty(int(RecordType.RAW_PACKET))
    if n == 1:
        lo, size = int(starts[0]), int(lengths[0])
        return OpaqueBatch(
            int(RecordType.RAW_PACKET),
            buf[lo : lo + size].copy(),
            np.array([0, size], dtype=np.int64),
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    first = int(starts[0])
    if (starts.astype(np.int64) - first == offsets[:-1]).all():
        data = buf[first : first + int(offsets[-1])].copy()
    else:
        index = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(
            starts.astype(np.int64) - offsets[:-1], lengths.astype(np.int64)
        )
        data = buf[index]
    return OpaqueBatch(int(RecordType.RAW_PACKET), data, offsets)


FEED_OUTPUTS = (BOOK_UPDATE, TICK, TRADE)
"""The layouts of `FeedComponent.step`'s outputs, in order (the capture ring's outputs)."""


StampedPackets = tuple[
    MoldPackets, npt.NDArray[np.uint8], npt.NDArray[np.uint32], npt.NDArray[np.uint32]
]
"""(packets to step on, payload, offsets, lengths): see `stamped_packets`."""


def stamped_packets(batch: PacketBatch | MoldPackets, now_ns: int) -> StampedPackets:
    """A receive batch as the captured feed steps on it and journals it, without copying its
    bytes: the MoldUDP64 packets with every packet stamped with the step's `now_ns` (so the
    outputs depend on journaled inputs alone), and the payload buffer with uint32 offsets and
    lengths, which the capture ring copies. Replaying the journaled copy (`opaque_to_packets`)
    gives the handler the same packets, bytes and stamps. A plain tuple: this is per step."""
    if isinstance(batch, MoldPackets):
        payload, offs64, lens64 = batch.buf, batch.offsets, batch.lengths
        offsets = offs64.astype(np.uint32)
        lengths = lens64.astype(np.uint32)
    else:
        payload, offsets, lengths = batch.payload, batch.offsets, batch.lengths
        offs64 = offsets.astype(np.int64)
        lens64 = lengths.astype(np.int64)
    stamps = np.empty(lengths.shape[0], np.int64)
    stamps.fill(now_ns)
    return MoldPackets(payload, offs64, lens64, stamps), payload, offsets, lengths


def opaque_to_packets(inputs: OpaqueBatch, now_ns: int) -> MoldPackets:
    """The packets of a RAW_PACKET batch, every one stamped with the step's `now_ns` (not its
    receive time: the outputs must be a function of the journaled inputs alone). The stamps are
    an explicit array, which is the same to the session as "no stamps, use now_ns" but keeps it
    on its fast in-order path."""
    offsets = inputs.offsets
    n = offsets.shape[0] - 1
    return MoldPackets(inputs.data, offsets[:-1], np.diff(offsets), np.full(n, now_ns, np.int64))


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
        step = self.handler.step(opaque_to_packets(inputs, now_ns), now_ns)
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
