"""Warm start: a feed stopped mid-stream comes back from its latest book snapshot, asks the
venue's retransmission server for everything it missed, and ends with books identical to an
uninterrupted run's. Loopback sockets only, so it runs without root."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

from adapters.moldudp64 import SessionConfig
from tectra.feed.book import OrderBook
from tectra.feed.handler import FeedHandler, FeedLimits
from tectra.feed.service import FeedLoop
from tectra.feed.snapshot import SnapshotWriter, warm_start
from tectra.io.receive import open_receiver
from tectra.sim.itch_flow import ItchFlow
from tectra.sim.mold_publisher import MoldPublisher, PublisherConfig

LIMITS = FeedLimits(max_instruments=64, max_orders=1 << 15)
SEED, SYMBOLS = 21, 12
BEFORE, WHILE_DOWN, AFTER = 6_000, 4_000, 5_000


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _feed(handler: FeedHandler, port: int, retrans_port: int) -> tuple[FeedLoop, socket.socket]:
    receiver = open_receiver("socket", bind_address="127.0.0.1", port=port)
    requests = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    requests.setblocking(False)
    return FeedLoop(handler, receiver, requests, ("127.0.0.1", retrans_port)), requests


def _drain_until(loop: FeedLoop, messages: int, seconds: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    session = loop.handler.session
    while time.monotonic() < deadline:
        loop.poll(64, 2_000_000)
        if session.counters.messages >= messages and not session.missing:
            return
    raise AssertionError(f"feed stuck at {session.counters.messages} of {messages}")


def test_warm_start_from_snapshot_catches_up_by_retransmission(tmp_path: Path) -> None:
    port, retrans_port = _free_udp_port(), _free_udp_port()
    flow = ItchFlow(SEED, symbols=SYMBOLS)
    config = PublisherConfig(
        dest=("127.0.0.1", port), retrans_bind=("127.0.0.1", retrans_port), heartbeat_s=0.05
    )
    with MoldPublisher(config, symbols=flow.symbols) as venue:
        first = FeedHandler(limits=LIMITS)
        loop, requests = _feed(first, port, retrans_port)
        venue.run(flow, messages=BEFORE, end=False)
        _drain_until(loop, BEFORE)
        assert first.book is not None
        SnapshotWriter(tmp_path, every_events=1).write(first.book)
        loop.receiver.close()
        requests.close()

        venue.run(flow, messages=WHILE_DOWN, end=False)  # nobody listening: all missed

        restored = warm_start(tmp_path, output_capacity=4096)
        assert restored is not None
        book, info, skipped = restored
        assert info.last_seq == BEFORE and not skipped
        second = FeedHandler(
            limits=LIMITS, session_config=SessionConfig(start_seq=info.last_seq + 1), book=book
        )
        loop, requests = _feed(second, port, retrans_port)
        venue.run(flow, messages=AFTER, end=False)
        _drain_until(loop, WHILE_DOWN + AFTER)
        loop.receiver.close()
        requests.close()

    counters = second.session.counters
    assert counters.retrans_filled == WHILE_DOWN and counters.lost == 0
    reference = OrderBook(max_instruments=64, max_orders=1 << 15)
    reference.apply_all(ItchFlow(SEED, symbols=SYMBOLS).next_batch(BEFORE + WHILE_DOWN + AFTER))
    assert second.book is not None
    for instrument in range(1, SYMBOLS + 1):
        assert second.book.top(instrument) == reference.top(instrument)
        for side in ("B", "S"):
            assert np.array_equal(
                second.book.levels(instrument, side), reference.levels(instrument, side)
            )
    assert second.book.check_invariants() == []
