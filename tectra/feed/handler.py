"""The feed's hot path as one deterministic step: UDP payloads → MoldUDP64 session → ITCH 5.0
decode → order books → normalised BookUpdate/Tick/Trade records.

`FeedHandler.step(packets, now_ns)` does no I/O and reads no clock: the receive path, the
retransmission socket, the rings and the reference table live in the service shell
(`tectra.feed.service`), so live, replay and tests run exactly this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from adapters.itch import ItchDecoder
from adapters.moldudp64 import MoldUdp64Session, SessionConfig, SessionOutput
from adapters.moldudp64 import PacketBatch as MoldPackets
from tectra.feed.book import OrderBook
from tectra.feed.quality import FeedQuality, SessionEvent
from tectra.io.receive import PacketBatch

Records = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class FeedStep:
    """What one step produced. Arrays may be views of reusable buffers: valid until the next
    step (push or copy them first)."""

    events: Records  # decoded ITCH_EVENT records, in sequence order
    updates: Records  # BOOK_UPDATE
    ticks: Records  # TICK
    trades: Records  # TRADE
    session: SessionOutput  # requests to send, gaps, losses, next deadline


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedLimits:
    """Capacities fixed at start (the book never allocates on the hot path)."""

    max_instruments: int = 16_384
    max_orders: int = 1_000_000
    max_levels: int = 4096
    output_capacity: int = 8192


@dataclass(slots=True)
class FeedHandler:
    """Session, decoder and book for one feed; `step` is the whole interface."""

    limits: FeedLimits = field(default_factory=FeedLimits)
    session_config: SessionConfig = field(default_factory=SessionConfig)
    book: OrderBook | None = None  # a warm start passes the book restored from a snapshot
    session: MoldUdp64Session = field(init=False)
    decoder: ItchDecoder = field(init=False)
    quality: FeedQuality = field(init=False)
    _resends_seen: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.session = MoldUdp64Session(self.session_config)
        self.decoder = ItchDecoder()
        if self.book is None:
            self.book = OrderBook(
                max_instruments=self.limits.max_instruments,
                max_orders=self.limits.max_orders,
                max_levels=self.limits.max_levels,
                output_capacity=self.limits.output_capacity,
            )
        self.quality = FeedQuality(self.limits.max_instruments)

    def step(self, packets: PacketBatch | MoldPackets, now_ns: int) -> FeedStep:
        """Sequence, decode and apply one receive batch (or an empty one at a deadline)."""
        out = self.session.step(_as_mold(packets), now_ns)
        if out.count:
            blocks = out.blocks()
            # Offsets and lengths into out.data are never negative: handing them over as the
            # decoder's uint64 (a view, no copy) spares it a checked conversion.
            events = self.decoder.decode_blocks(
                out.data,
                _u64(blocks.offsets),
                _u64(blocks.lengths),
                blocks.first_seqs,
                blocks.recv_ns,
            )
        else:
            events = _NO_EVENTS
        updates, ticks, trades = self._apply(events)
        self._observe(out, ticks)
        return FeedStep(events, updates, ticks, trades, out)

    def _apply(self, events: Records) -> tuple[Records, Records, Records]:
        book = self.book
        assert book is not None
        if not events.size:
            return _NO_UPDATES, _NO_TICKS, _NO_TRADES
        first = book.apply(events)
        if first.consumed == events.size:  # the common case: one call, views, no copies
            return first.updates, first.ticks, first.trades
        # A burst larger than the output buffers: collect copies round by round.
        parts = [(first.updates.copy(), first.ticks.copy(), first.trades.copy())]
        done = first.consumed
        while done < events.size:
            more = book.apply(events[done:])
            parts.append((more.updates.copy(), more.ticks.copy(), more.trades.copy()))
            done += more.consumed
        return tuple(_join([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    def _observe(self, out: SessionOutput, ticks: Records) -> None:
        if ticks.size:
            self.quality.observe_ticks(ticks)
        if out.gaps:
            self.quality.record_session(SessionEvent.GAPS, sum(n for _, n in out.gaps))
        if out.duplicates or out.malformed:
            self.quality.record_session(SessionEvent.DROPS, out.duplicates + out.malformed)
        filled = self.session.counters.retrans_filled
        if filled != self._resends_seen:
            self.quality.record_session(SessionEvent.RESENDS, filled - self._resends_seen)
            self._resends_seen = filled


def _join(arrays: list[Records]) -> Records:
    """Concatenate record arrays keeping the schema dtype exactly (np.concatenate alone may
    drop the padding of an aligned layout, and rings refuse any other dtype)."""
    out = np.zeros(sum(a.size for a in arrays), dtype=arrays[0].dtype)  # zeroed padding
    np.concatenate(arrays, out=out)
    return out


def _u64(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.uint64)


def _as_mold(packets: PacketBatch | MoldPackets) -> MoldPackets:
    if isinstance(packets, MoldPackets):
        return packets
    return MoldPackets(
        packets.payload,
        packets.offsets.astype(np.int64),
        packets.lengths.astype(np.int64),
        packets.recv_ns,
    )


def _empty(name: str) -> Records:
    from tectra.schema import LAYOUTS

    return np.zeros(0, dtype=LAYOUTS[name].dtype)


_NO_EVENTS = _empty("ITCH_EVENT")
_NO_UPDATES = _empty("BOOK_UPDATE")
_NO_TICKS = _empty("TICK")
_NO_TRADES = _empty("TRADE")
