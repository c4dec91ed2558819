"""The feed end to end on a real link: the venue simulator publishes a seeded ITCH day over
MoldUDP64 in the `venue` namespace (dropping and corrupting some packets on purpose); the feed
receives it in the `appliance` namespace on each receive path, recovers every gap from the
simulator's retransmission server, and ends with books identical to a reference built
in-process from the same stream."""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from multiprocessing.connection import Connection

import numpy as np
import pytest

from tectra.feed.book import OrderBook
from tectra.feed.handler import FeedHandler, FeedLimits
from tectra.feed.service import FeedLoop
from tectra.io.netns import in_namespace
from tectra.io.receive import open_receiver
from tectra.sim.itch_flow import ItchFlow
from tests.kernel.conftest import VethPair

CTX = mp.get_context("fork")
FEED_PORT, RETRANS_PORT = 26400, 26401
SEED, SYMBOLS, MESSAGES = 7, 24, 40_000


def _publish(pair: VethPair, go: Connection, done: Connection) -> None:
    from pyroute2 import netns

    from tectra.sim.mold_publisher import FaultPlan, MoldPublisher, PublisherConfig

    netns.setns(pair.venue_ns)
    config = PublisherConfig(
        dest=(pair.appliance_ip, FEED_PORT),
        retrans_bind=(pair.venue_ip, RETRANS_PORT),
        rate=200_000.0,
        heartbeat_s=0.05,
        faults=FaultPlan(seed=3, drop=0.02, corrupt=0.01),
    )
    flow = ItchFlow(SEED, symbols=SYMBOLS)
    with MoldPublisher(config, symbols=flow.symbols) as publisher:
        go.recv()
        sent = publisher.run(flow, messages=MESSAGES)
        done.send((sent, dict(publisher.stats)))
        go.recv()  # keep answering retransmission requests until the feed has everything


def _levels(book: OrderBook, instrument: int) -> tuple[list[tuple[int, ...]], ...]:
    return tuple(
        [tuple(int(x) for x in row) for row in book.levels(instrument, side).tolist()]
        for side in ("B", "S")
    )


@pytest.mark.kernel
@pytest.mark.parametrize("io", ["xdp", "uring", "socket"])
def test_feed_recovers_gaps_and_matches_reference_books(veth_pair: VethPair, io: str) -> None:
    receiver = open_receiver(
        io,  # type: ignore[arg-type]
        interface=veth_pair.appliance_if,
        netns=veth_pair.appliance_ns,
        port=FEED_PORT,
    )
    assert receiver.io_path == io
    with in_namespace(veth_pair.appliance_ns):
        requests = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    requests.setblocking(False)
    handler = FeedHandler(limits=FeedLimits(max_instruments=256, max_orders=1 << 16))
    loop = FeedLoop(handler, receiver, requests, (veth_pair.venue_ip, RETRANS_PORT))
    go_rx, go_tx = CTX.Pipe(duplex=False)
    done_rx, done_tx = CTX.Pipe(duplex=False)
    publisher = CTX.Process(target=_publish, args=(veth_pair, go_rx, done_tx))
    publisher.start()
    try:
        go_tx.send(True)
        sent: int | None = None
        stats: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            loop.poll(64, 5_000_000)
            if sent is None and done_rx.poll():
                sent, stats = done_rx.recv()
            counters = handler.session.counters
            if sent is not None and counters.messages >= sent and not handler.session.missing:
                break
        go_tx.send(True)
    finally:
        publisher.join(30)
        if publisher.is_alive():
            publisher.kill()
        receiver.close()
        requests.close()
    assert sent is not None, "publisher never finished"
    counters = handler.session.counters
    # The faults really happened, and the session recovered all of it from the server.
    assert stats["dropped"] > 0 and stats["corrupted"] > 0
    assert counters.malformed > 0 and counters.retrans_filled > 0
    assert counters.lost == 0
    assert counters.messages == sent

    reference = OrderBook(max_instruments=256, max_orders=1 << 16)
    reference.apply_all(ItchFlow(SEED, symbols=SYMBOLS).next_batch(sent))
    assert handler.book is not None
    assert handler.book.check_invariants() == []
    for instrument in range(1, SYMBOLS + 1):
        assert handler.book.top(instrument) == reference.top(instrument)
        assert _levels(handler.book, instrument) == _levels(reference, instrument)
    assert handler.book.counters == reference.counters
    _ = np  # arrays compared above via tolist()
