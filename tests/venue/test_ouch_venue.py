"""Venue simulator: OUCH semantics and fault injection on the state machine (virtual time), then
end to end over loopback: a SoupBinTCP client enters orders in OUCH, gets Accepted / Executed /
Canceled, the ITCH callback sees the matching book events, and a forced disconnect is followed
by a replay without gaps or duplicates. Last, the command-line venue as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters import ouch42 as o
from adapters.soupbintcp import (
    ClientOutput,
    Delivered,
    LoggedIn,
    SessionEnded,
    SoupClient,
    SoupClientConfig,
    SoupServerConfig,
)
from tectra.schema import Side
from tectra.sim.ouch_venue import OuchVenue, OuchVenueServer, VenueConfig

REPO = Path(__file__).resolve().parents[2]
DAY = o.TIF_MARKET_HOURS


def replies(venue: OuchVenue, user: str) -> list[o.OutboundMessage]:
    store = venue.store_for(user)
    out = []
    for seq in range(store.first_sequence, store.next_sequence):
        data = store.get(seq)
        assert data is not None
        out.append(o.decode_outbound(data))
    return out


def enter(token: str, side: Side, qty: int, price: int, tif: int = DAY, **kw: Any) -> bytes:
    return o.encode(o.EnterOrder(token, side, qty, "AAPL", price, tif, **kw))


@pytest.fixture
def venue() -> OuchVenue:
    v = OuchVenue(VenueConfig(symbols=("AAPL", "MSFT"), price_bands={"AAPL": (100, 2_000_000)}))
    for user in ("alice", "bob"):
        v.on_login(user, 1)
    return v


def test_accept_execute_both_sides_and_cancel(venue: OuchVenue) -> None:
    venue.on_message("alice", enter("A1", Side.SELL, 300, 1_000_000), 10)
    venue.on_message("bob", enter("B1", Side.BUY, 100, 1_000_000), 20)
    venue.on_message("alice", o.encode(o.CancelOrder("A1", 50)), 30)
    venue.on_message("alice", o.encode(o.CancelOrder("A1", 0)), 40)
    venue.poll(40)
    a = replies(venue, "alice")
    b = replies(venue, "bob")
    assert [type(m).__name__ for m in a] == [
        "SystemEvent",
        "Accepted",
        "Executed",
        "Canceled",
        "Canceled",
    ]
    assert [type(m).__name__ for m in b] == ["SystemEvent", "Accepted", "Executed"]
    ea, eb = a[2], b[2]
    assert isinstance(ea, o.Executed) and isinstance(eb, o.Executed)
    assert ea.match_number == eb.match_number
    assert (ea.executed_shares, ea.execution_price, ea.liquidity_flag) == (100, 1_000_000, "A")
    assert (eb.liquidity_flag, eb.timestamp) == ("R", 20)
    c1, c2 = a[3], a[4]
    assert isinstance(c1, o.Canceled) and (c1.decrement_shares, c1.reason) == (150, "U")
    assert isinstance(c2, o.Canceled) and c2.decrement_shares == 50
    acc = a[1]
    assert isinstance(acc, o.Accepted) and acc.order_state == "L" and acc.order_ref > 0


def test_venue_rejects_and_ignores(venue: OuchVenue) -> None:
    venue.on_message("alice", o.encode(o.EnterOrder("R1", Side.BUY, 1, "ZZZZ", 100, DAY)), 1)
    venue.on_message("alice", enter("R2", Side.BUY, 1, 3_000_000), 1)  # outside the band
    venue.on_message("alice", enter("R3", Side.BUY, 1, 1_000_000, cross_type="O"), 1)
    venue.on_message("alice", enter("R1", Side.BUY, 1, 1_000_000), 1)  # duplicate token
    venue.on_message("alice", o.encode(o.CancelOrder("NOPE", 0)), 1)
    venue.on_message("alice", b"garbage", 1)
    venue.poll(1)
    rejected = [m for m in replies(venue, "alice") if isinstance(m, o.Rejected)]
    assert [(m.token, m.reason) for m in rejected] == [("R1", "S"), ("R2", "X"), ("R3", "R")]
    assert venue.counters.ignored == {"duplicate_token": 1, "cancel_not_live": 1}
    assert venue.counters.malformed_in == 1
    assert venue.codec.counters.errors == {o.OuchErrorReason.UNKNOWN_TYPE: 1}


def test_replace_modify_and_ioc(venue: OuchVenue) -> None:
    venue.on_message("alice", enter("A1", Side.BUY, 100, 1_000_000), 1)
    venue.on_message("alice", o.encode(o.ReplaceOrder("A1", "A2", 200, 1_000_100, DAY)), 2)
    venue.on_message("alice", o.encode(o.ReplaceOrder("A1", "A3", 200, 1_000_100, DAY)), 3)
    venue.on_message("bob", enter("B1", Side.SELL, 50, 1_000_000, o.TIF_IOC), 4)
    venue.on_message("bob", enter("B2", Side.SELL, 500, 1_000_200, o.TIF_IOC), 5)
    venue.on_message("bob", enter("B3", Side.SELL, 10, 1_500_000), 6)
    venue.on_message("bob", o.encode(o.ModifyOrder("B3", Side.SELL_SHORT, 5)), 7)
    venue.poll(7)
    a = replies(venue, "alice")
    rep = a[2]
    assert isinstance(rep, o.Replaced)
    assert (rep.token, rep.previous_token, rep.shares, rep.price) == ("A2", "A1", 200, 1_000_100)
    assert venue.counters.ignored["replace_ignored"] == 1  # A1 is no longer live
    assert isinstance(a[3], o.Executed) and a[3].token == "A2"
    assert (a[3].executed_shares, a[3].execution_price) == (50, 1_000_100)  # maker's price
    b = replies(venue, "bob")
    kinds = [(type(m).__name__, getattr(m, "token", "")) for m in b[1:]]
    assert kinds == [
        ("Accepted", "B1"),
        ("Executed", "B1"),
        ("Accepted", "B2"),
        ("Canceled", "B2"),
        ("Accepted", "B3"),
        ("OrderModified", "B3"),
    ]
    assert isinstance(b[4], o.Canceled) and b[4].reason == "I"
    mod = b[6]
    assert isinstance(mod, o.OrderModified) and (mod.side, mod.shares) == (Side.SELL_SHORT, 5)


def test_invalid_replace_cancels_the_live_order(venue: OuchVenue) -> None:
    venue.on_message("alice", enter("A1", Side.BUY, 100, 1_000_000), 1)
    venue.on_message("alice", o.encode(o.ReplaceOrder("A1", "A2", 100, 9_000_000, DAY)), 2)
    venue.poll(2)
    last = replies(venue, "alice")[-1]
    assert isinstance(last, o.Canceled) and last.token == "A1"


def test_ack_latency_holds_replies() -> None:
    v = OuchVenue(VenueConfig(ack_latency_ns=5_000))
    v.on_login("alice", 0)
    v.on_message("alice", enter("A1", Side.BUY, 1, 1_000_000), 100)
    assert v.poll(5_099) == set() and v.next_due() == 5_100
    assert v.poll(5_100) == {"alice"}
    assert isinstance(replies(v, "alice")[-1], o.Accepted)


def test_reject_probability_and_disconnects_are_seeded() -> None:
    def run(seed: int) -> tuple[list[str], int]:
        v = OuchVenue(VenueConfig(seed=seed, reject_probability=0.5, disconnect_probability=0.2))
        v.on_login("u", 0)
        for i in range(40):
            v.on_message("u", enter(f"T{i}", Side.BUY, 1, 1_000_000), i)
        v.poll(100)
        kinds = [type(m).__name__ for m in replies(v, "u")]
        return kinds, v.counters.forced_disconnects

    assert run(7) == run(7)
    kinds, cuts = run(7)
    assert 5 < kinds.count("Rejected") < 35 and 0 < cuts < 40
    v = OuchVenue(VenueConfig(disconnect_every=3))
    v.on_login("u", 0)
    for i in range(7):
        v.on_message("u", enter(f"T{i}", Side.BUY, 1, 1_000_000), i)
    assert v.take_disconnects() == ["u", "u"]


def test_seeded_liquidity_and_end_of_session() -> None:
    events: list[Any] = []
    v = OuchVenue(
        VenueConfig(symbols=("AAPL", "MSFT"), seed=3, seed_levels=3, band_pct=10),
        on_itch=events.append,
    )
    v.seed_liquidity(0)
    again = OuchVenue(VenueConfig(symbols=("AAPL", "MSFT"), seed=3, seed_levels=3))
    again.seed_liquidity(0)
    assert v.reference_prices == again.reference_prices
    book = v.engine.book("AAPL")
    assert len(book.depth(Side.BUY)) == 3 and len(book.depth(Side.SELL)) == 3
    assert sum(len(b) for b in events) == 12
    v.on_login("alice", 0)
    ref = v.reference_prices["AAPL"]
    v.on_message("alice", enter("A1", Side.BUY, 10, ref - 5_000), 1)
    v.end_session(2)
    msgs = replies(v, "alice")
    assert isinstance(msgs[-2], o.Canceled) and msgs[-2].reason == "Z"
    assert isinstance(msgs[-1], o.SystemEvent) and msgs[-1].event_code == "E"
    assert v.store_for("alice").ended


# -- end to end over loopback ---------------------------------------------------------------


async def next_message(client: SoupClient, timeout: float = 3.0) -> tuple[int, Any]:
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, Delivered):
            return ev.sequence, o.decode_outbound(ev.payload)


async def wait_for(client: SoupClient, kind: type, timeout: float = 3.0) -> ClientOutput:
    while True:
        ev = await asyncio.wait_for(client.events.get(), timeout)
        if isinstance(ev, kind):
            return ev


def test_end_to_end_orders_fills_cancels_and_itch() -> None:
    async def scenario() -> None:
        itch: list[Any] = []
        venue = OuchVenue(VenueConfig(symbols=("AAPL",), users={"alice": "pw", "bob": "pw"}))
        server = OuchVenueServer(venue, tick_s=0.02)
        port = await server.start(seed_liquidity=False)
        venue.engine.on_itch = itch.append
        alice = SoupClient("127.0.0.1", port, SoupClientConfig("alice", "pw"), tick_s=0.02)
        bob = SoupClient("127.0.0.1", port, SoupClientConfig("bob", "pw"), tick_s=0.02)
        try:
            await alice.start()
            await bob.start()
            await wait_for(alice, LoggedIn)
            await wait_for(bob, LoggedIn)
            assert isinstance((await next_message(alice))[1], o.SystemEvent)
            assert isinstance((await next_message(bob))[1], o.SystemEvent)

            assert await alice.send(enter("ALICE1", Side.SELL, 300, 1_000_000))
            _, acc = await next_message(alice)
            assert isinstance(acc, o.Accepted) and acc.token == "ALICE1"

            assert await bob.send(enter("BOB1", Side.BUY, 100, 1_000_000))
            _, bacc = await next_message(bob)
            _, bexe = await next_message(bob)
            _, aexe = await next_message(alice)
            assert isinstance(bacc, o.Accepted)
            assert isinstance(bexe, o.Executed) and isinstance(aexe, o.Executed)
            assert bexe.match_number == aexe.match_number and aexe.executed_shares == 100

            assert await alice.send(o.encode(o.CancelOrder("ALICE1", 0)))
            seq, can = await next_message(alice)
            assert isinstance(can, o.Canceled) and can.decrement_shares == 200
            assert seq == 4  # S, A, E, C: sequenced without gaps

            # The feed side saw the book: add, execute, delete of alice's order.
            rows = [r for batch in itch for r in batch]
            assert [chr(r["msg_type"]) for r in rows] == ["A", "E", "D"]
            assert {int(r["order_ref"]) for r in rows} == {acc.order_ref}
            assert int(rows[1]["ref2"]) == aexe.match_number and int(rows[1]["shares"]) == 100

            await alice.logout()
            await bob.logout()
            await asyncio.sleep(0.1)
        finally:
            await alice.close()
            await bob.close()
            await server.stop()

    asyncio.run(scenario())


def test_forced_disconnect_then_replay_without_gaps_or_duplicates() -> None:
    async def scenario() -> None:
        venue = OuchVenue(VenueConfig(symbols=("AAPL",), disconnect_every=4))
        server = OuchVenueServer(venue, tick_s=0.02)
        port = await server.start(seed_liquidity=False)
        config = SoupClientConfig("carol", "x", reconnect_delay_ns=50_000_000)
        client = SoupClient("127.0.0.1", port, config, tick_s=0.02)
        orders = {f"C{i}": enter(f"C{i}", Side.BUY, 1, 1_000_000 + i) for i in range(10)}
        accepted: list[str] = []
        seen: list[int] = []
        try:
            await client.start()
            while len(accepted) < len(orders):
                ev = await asyncio.wait_for(client.events.get(), 5)
                if isinstance(ev, LoggedIn):
                    # Unsequenced data may die with a connection; OUCH makes resending safe
                    # (a token already used is ignored), so resend whatever is not accepted.
                    for token, data in orders.items():
                        if token not in accepted:
                            await client.send(data)
                            await asyncio.sleep(0.01)
                elif isinstance(ev, Delivered):
                    seen.append(ev.sequence)
                    msg = o.decode_outbound(ev.payload)
                    if isinstance(msg, o.Accepted):
                        accepted.append(msg.token)
            assert seen == list(range(1, 12))  # System Event + 10 Accepted, no gap, no repeat
            assert sorted(accepted) == sorted(orders)
            assert client.counters.reconnects >= 2
            assert venue.counters.forced_disconnects >= 2
        finally:
            await client.close()
            await server.stop()

    asyncio.run(scenario())


def test_server_stall_heartbeat_timeout_reconnect_and_replay() -> None:
    async def scenario() -> None:
        venue = OuchVenue(VenueConfig(symbols=("AAPL",)))
        soup = SoupServerConfig(heartbeat_interval_ns=50_000_000)
        server = OuchVenueServer(venue, soup=soup, tick_s=0.02)
        port = await server.start(seed_liquidity=False)
        config = SoupClientConfig(
            "dave",
            "x",
            heartbeat_interval_ns=50_000_000,
            server_timeout_ns=300_000_000,
            reconnect_delay_ns=50_000_000,
        )
        client = SoupClient("127.0.0.1", port, config, tick_s=0.02)
        try:
            await client.start()
            await wait_for(client, LoggedIn)
            await next_message(client)  # System Event
            await client.send(enter("D1", Side.BUY, 1, 1_000_000))
            assert (await next_message(client))[0] == 2
            # The server goes silent on this connection; the venue keeps sequencing messages.
            assert server.server.stall("dave")
            venue.on_message("dave", enter("D2", Side.BUY, 1, 1_000_000), 0)
            venue.on_message("dave", enter("D3", Side.BUY, 1, 1_000_000), 0)
            venue.poll(0)
            login = await wait_for(client, LoggedIn, timeout=5)
            assert isinstance(login, LoggedIn) and login.sequence == 3
            assert client.counters.timeouts == 1
            got = [await next_message(client) for _ in range(2)]
            assert [s for s, _ in got] == [3, 4]
            assert [m.token for _, m in got] == ["D2", "D3"]
            server.end_session()
            assert isinstance(await wait_for(client, SessionEnded), SessionEnded)
        finally:
            await client.close()
            await server.stop()

    asyncio.run(scenario())


def test_command_line_venue_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tectra.sim.ouch_venue",
            "--port",
            "0",
            "--symbols",
            "AAPL,MSFT",
            "--seed",
            "1",
            "--levels",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        port = int(info["listening"].rsplit(":", 1)[1])
        ref = info["reference_prices"]["MSFT"]
        assert info["symbols"] == {"AAPL": 1, "MSFT": 2}

        async def trade() -> list[Any]:
            client = SoupClient("127.0.0.1", port, SoupClientConfig("eve", "x"), tick_s=0.02)
            try:
                await client.start()
                await wait_for(client, LoggedIn)
                await next_message(client)
                order = o.EnterOrder("E1", Side.BUY, 100, "MSFT", ref + 100, o.TIF_IOC)
                await client.send(o.encode(order))
                return [(await next_message(client))[1] for _ in range(2)]
            finally:
                await client.close()

        acc, exe = asyncio.run(trade())
        assert isinstance(acc, o.Accepted) and isinstance(exe, o.Executed)
        assert exe.execution_price == ref + 100  # the seeded best ask, one cent up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
