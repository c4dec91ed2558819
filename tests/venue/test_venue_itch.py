"""The venue simulator publishes its book as ITCH 5.0 over MoldUDP64: a real UDP socket on
loopback receives the packets, the repo's own decoders (MoldUdp64Session, the ITCH reference
decoder, the feed's C order book) turn them back into the seeded levels and then a SoupBinTCP
user's order as an Add, its execution and its cancel. Idle heartbeats, retransmission, the
command line, and a destination that refuses every send (the venue keeps trading, errors are
counted)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters import itch
from adapters import ouch42 as o
from adapters.moldudp64 import (
    MoldUdp64Session,
    PacketBatch,
    SessionConfig,
    encode_request,
    frame_messages,
)
from adapters.soupbintcp import Delivered, LoggedIn, SoupClient, SoupClientConfig
from tectra.feed.book import OrderBook
from tectra.schema import ITCH_EVENT, Side, new_records
from tectra.sim.ouch_venue import OuchVenue, OuchVenueServer, VenueConfig
from tectra.sim.venue_feed import VenueFeed, VenueFeedConfig

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
CENT = 100  # 1e-4 units
DAY = o.TIF_MARKET_HOURS


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def drain(sock: socket.socket, quiet_s: float = 0.3) -> list[bytes]:
    """Every datagram until the socket stays quiet for `quiet_s`."""
    out: list[bytes] = []
    sock.settimeout(quiet_s)
    while True:
        try:
            out.append(sock.recv(65_536))
        except TimeoutError:
            return out


def decode(packets: list[bytes]) -> tuple[np.ndarray, Any]:
    """MoldUDP64 -> messages in sequence (no gaps) -> ITCH_EVENT records."""
    session = MoldUdp64Session(SessionConfig())
    out = session.step(PacketBatch.from_packets(packets), time.monotonic_ns())
    assert not out.gaps and not out.lost and out.malformed == 0
    assert [int(s) for s in out.seqs] == list(range(1, out.count + 1))
    framed, _ = frame_messages(out.messages())
    return itch.decode_reference(framed, 1), out


def types(events: np.ndarray) -> str:
    return "".join(chr(int(t)) for t in events["msg_type"])


async def next_ouch(client: SoupClient, timeout: float = 3.0) -> Any:
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, Delivered):
            return o.decode_outbound(ev.payload)


async def logged_in(client: SoupClient) -> None:
    while not isinstance(await asyncio.wait_for(client.events.get(), 3.0), LoggedIn):
        pass


def test_seeded_book_then_a_users_add_execution_and_cancel_over_moldudp64(
    udp: socket.socket,
) -> None:
    dest = udp.getsockname()
    venue = OuchVenue(VenueConfig(symbols=("AAPL", "MSFT"), seed=3, seed_levels=2, seed_qty=100))
    feed = VenueFeed(
        VenueFeedConfig(dest=dest, retrans_bind=("127.0.0.1", 0), heartbeat_s=0.05),
        venue.engine.symbols,
    )
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        server = OuchVenueServer(venue, tick_s=0.02, feed=feed)
        port = await server.start()
        ref = venue.reference_prices["AAPL"]
        alice = SoupClient("127.0.0.1", port, SoupClientConfig("alice", "x"), tick_s=0.02)
        bob = SoupClient("127.0.0.1", port, SoupClientConfig("bob", "x"), tick_s=0.02)
        try:
            await alice.start()
            await bob.start()
            await logged_in(alice)
            await logged_in(bob)
            assert isinstance(await next_ouch(alice), o.SystemEvent)
            assert isinstance(await next_ouch(bob), o.SystemEvent)
            # alice rests a sell above the seeded asks; bob sweeps both seeded ask levels and
            # 50 of alice's 300; alice cancels the rest.
            sell = o.EnterOrder("AL1", Side.SELL, 300, "AAPL", ref + 5 * CENT, DAY)
            assert await alice.send(o.encode(sell))
            acc = await next_ouch(alice)
            assert isinstance(acc, o.Accepted)
            buy = o.EnterOrder("BO1", Side.BUY, 250, "AAPL", ref + 5 * CENT, DAY)
            assert await bob.send(o.encode(buy))
            assert isinstance(await next_ouch(bob), o.Accepted)
            exe = await next_ouch(alice)
            assert isinstance(exe, o.Executed) and exe.executed_shares == 50
            await asyncio.sleep(0.25)  # idle: heartbeats
            assert await alice.send(o.encode(o.CancelOrder("AL1", 0)))
            can = await next_ouch(alice)
            assert isinstance(can, o.Canceled) and can.decrement_shares == 250
            seen.update(ref=ref, order_ref=acc.order_ref, match=exe.match_number)
            await asyncio.sleep(0.1)
            # Retransmission: the first five messages again, from the request server.
            addr = feed.retrans_address
            assert addr is not None
            udp.sendto(encode_request(feed.config.session, 1, 5), addr)
            await asyncio.sleep(0.1)
        finally:
            await alice.close()
            await bob.close()
            await server.stop()  # ends the feed's session

    asyncio.run(scenario())
    packets = drain(udp)
    stats = feed.stats()
    assert stats["send_errors"] == 0 and stats["publish_errors"] == 0
    assert stats["heartbeats"] >= 2 and stats["end_of_session"] == 3

    # The retransmitted packet is messages 1..5 again; the session dedupes it.
    retrans = [p for p in packets if p[10:18] == (1).to_bytes(8, "big") and p[18:20] != b"\0\0"]
    assert len(retrans) == 2 and retrans[1][18:20] == (5).to_bytes(2, "big")
    assert retrans[1][20:].startswith(retrans[0][20:])  # the live packet's 3, then 2 more
    events, out = decode(packets)
    assert out.duplicates >= 5 and out.heartbeats >= 2 and out.end_of_session

    locate = venue.engine.symbols["AAPL"]
    # Opening: system event, stock directory, then the seeded liquidity: 2 levels x 2 sides
    # x 2 symbols, one Add each; the session closes with system event 'C'.
    assert types(events[:3]) == "SRR" and types(events[3:11]) == "A" * 8
    assert types(events[-1:]) == "S"
    symbols = {int(r["stock_locate"]): bytes(r["raw"][11:19]).strip() for r in events[1:3]}
    assert symbols == {1: b"AAPL", 2: b"MSFT"}
    # alice's order: an Add with the venue's order reference, then E (bob's match), D.
    mine = events[events["order_ref"] == seen["order_ref"]]
    assert types(mine) == "AED"
    add, execd = mine[0], mine[1]
    assert chr(int(add["side"])) == "S" and int(add["shares"]) == 300
    assert int(add["price"]) == seen["ref"] + 5 * CENT and int(add["stock_locate"]) == locate
    assert int(execd["shares"]) == 50 and int(execd["ref2"]) == seen["match"]

    # The feed's own book: bids as seeded, the asks swept, alice's order gone.
    book = OrderBook(max_instruments=8, max_orders=1024, max_levels=64)
    book.apply_all(np.ascontiguousarray(events))
    bids = book.levels(locate, "B")
    assert [int(p) for p in bids["price"]] == [seen["ref"] - CENT, seen["ref"] - 2 * CENT]
    assert [int(q) for q in bids["qty"]] == [100, 100]
    assert book.levels(locate, "S").size == 0
    assert book.order(seen["order_ref"]) is None
    msft = book.levels(venue.engine.symbols["MSFT"], "S")
    assert [int(q) for q in msft["qty"]] == [100, 100]


def test_a_destination_refusing_every_send_is_counted_and_the_venue_keeps_trading() -> None:
    # Broadcast without SO_BROADCAST: every sendto fails with EACCES.
    venue = OuchVenue(VenueConfig(symbols=("AAPL",), seed_levels=1, seed_qty=100))
    feed = VenueFeed(VenueFeedConfig(dest=("255.255.255.255", 9)), venue.engine.symbols)
    venue.engine.on_itch = feed.on_itch
    try:
        feed.open(1)
        venue.seed_liquidity(2)
        venue.on_login("u", 3)
        ref = venue.reference_prices["AAPL"]
        order = o.EnterOrder("T1", Side.BUY, 150, "AAPL", ref + CENT, DAY)
        venue.on_message("u", o.encode(order), 4)
        venue.poll(4)
        store = venue.store_for("u")
        got = [o.decode_outbound(store.get(s) or b"") for s in range(1, store.next_sequence)]
        assert [type(m).__name__ for m in got] == ["SystemEvent", "Accepted", "Executed"]
        stats = feed.stats()
        assert stats["send_errors"] >= 4 and stats["packets"] == 0
        assert stats["batches"] == 4 and stats["publish_errors"] == 0
    finally:
        feed.close(5)


def test_a_batch_the_publisher_refuses_is_counted_not_raised(udp: socket.socket) -> None:
    feed = VenueFeed(VenueFeedConfig(dest=udp.getsockname()), {"AAPL": 1})
    try:
        feed.open(1)
        bad = new_records(ITCH_EVENT, 1)
        bad["msg_type"] = ord("R")  # a directory record without its raw bytes: unpackable
        feed.on_itch(bad)
        assert feed.stats()["publish_errors"] == 1
        feed.close(2)
        feed.on_itch(bad)  # after the session: ignored
        assert feed.stats()["publish_errors"] == 1
    finally:
        feed.close()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="port"):
        VenueFeedConfig(dest=("127.0.0.1", 0))
    with pytest.raises(ValueError):
        VenueFeedConfig(dest=("127.0.0.1", 9), session="WAY-TOO-LONG-NAME")
    with pytest.raises(ValueError, match="symbol"):
        VenueFeed(VenueFeedConfig(dest=("127.0.0.1", 9)), {})


def test_command_line_publishes_the_seeded_book(udp: socket.socket) -> None:
    host, port = udp.getsockname()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tectra.sim.ouch_venue",
            "--port",
            "0",
            "--symbols",
            "AAPL",
            "--levels",
            "3",
            "--level-qty",
            "200",
            "--session-seconds",
            "0.5",
            "--mold-dest",
            f"{host}:{port}",
            "--mold-retrans-port",
            "0",
            "--mold-heartbeat-ms",
            "100",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[0]["mold"]["dest"] == f"{host}:{port}" and lines[0]["mold"]["retrans"]
    assert lines[-1]["mold"]["send_errors"] == 0
    events, out = decode(drain(udp))
    assert out.end_of_session and out.heartbeats >= 1
    adds = events[events["msg_type"] == ord("A")]
    ref = lines[0]["reference_prices"]["AAPL"]
    assert sorted(int(p) for p in adds["price"]) == [ref + k * CENT for k in (-3, -2, -1, 1, 2, 3)]
    assert {int(q) for q in adds["shares"]} == {200}


def test_command_line_rejects_a_bad_destination() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tectra.sim.ouch_venue", "--port", "0", "--mold-dest", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr
