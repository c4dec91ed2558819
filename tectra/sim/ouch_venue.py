"""The venue simulator's order side: OUCH 4.2 over SoupBinTCP, backed by the matching engine.

This module owns the simulated venue's order-entry behaviour:

* `OuchVenue`, a state machine with no sockets: OUCH bytes from a logged-in user and `now_ns`
  (venue clock, ns since midnight) in; OUCH replies appended to each user's SoupBinTCP session
  store (`adapters.soupbintcp.SoupSessionStore`, one sequenced stream per user, so a user's
  reconnect replays exactly its own messages). It applies OUCH semantics (day-unique tokens,
  duplicate tokens and actions on dead tokens silently ignored, Replace/Cancel/Modify rules),
  venue rules (unknown symbol -> Rejected 'S', price outside the symbol's band -> 'X', too many
  shares -> 'Z', closed -> 'C'), and fault injection: random rejects, an acknowledgement delay,
  forced disconnects after every N messages or at random, end of session;
* optional resting liquidity seeded from a seed, owned by the venue itself (its fills produce
  no OUCH messages, but every book change reaches `on_itch`, the feed side's hook);
* `OuchVenueServer`: the asyncio shell (a `SoupServer` plus timers) and the command line:
  `python -m tectra.sim.ouch_venue --port 15000 --symbols AAPL,MSFT --seed 1`; with a
  `VenueFeed` (`--mold-dest HOST:PORT`) every book change, the seeded liquidity included, is
  also published as ITCH 5.0 over MoldUDP64 (tectra/sim/venue_feed.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from adapters import ouch42 as ouch
from adapters.soupbintcp import (
    LoggedIn,
    ServerOutput,
    SoupServer,
    SoupServerConfig,
    SoupServerConnection,
    SoupSessionStore,
    UnsequencedReceived,
)
from tectra.schema import PRICE_SCALE, Side, TimeInForce
from tectra.sim.matching import (
    Accepted,
    Canceled,
    Fill,
    ItchCallback,
    MatchError,
    MatchErrorReason,
    MatchingEngine,
    Modified,
    NewOrder,
    OrderEvent,
    Rejected,
    Replaced,
)
from tectra.sim.venue_feed import VenueFeed, VenueFeedConfig

__all__ = [
    "HOUSE",
    "OuchVenue",
    "OuchVenueServer",
    "VenueConfig",
    "VenueCounters",
    "main",
    "ns_since_midnight",
]

HOUSE: Final[str] = ""
"""Owner of the venue's own seeded liquidity (no OUCH session)."""
NS_PER_DAY: Final[int] = 86_400 * 1_000_000_000

_ENGINE_REJECT: Final[dict[MatchErrorReason, str]] = {
    MatchErrorReason.UNKNOWN_SYMBOL: "S",
    MatchErrorReason.BAD_PRICE: "X",
    MatchErrorReason.BAD_QTY: "Z",
    MatchErrorReason.BAD_SIDE: "O",
    MatchErrorReason.BAD_TIF: "O",
    MatchErrorReason.BOOK_FULL: "O",
}


def ns_since_midnight(realtime_ns: int | None = None) -> int:
    """UTC nanoseconds since midnight: the venue clock (OUCH/ITCH timestamps)."""
    now = time.time_ns() if realtime_ns is None else realtime_ns
    return now % NS_PER_DAY


@dataclass(frozen=True)
class VenueConfig:
    """Venue simulator settings (every field has a test-friendly default).

    symbols: tradable symbols; stock locate codes are 1..n in this order.
    session: SoupBinTCP session name (up to 10 characters) for every user's stream.
    users: username -> password; None accepts any login (a test venue).
    ack_latency_ns: every reply is held this long (venue clock) before it is sequenced.
    reject_probability: chance that a valid Enter Order is rejected anyway (reason 'O').
    price_bands: symbol -> (lowest, highest) accepted limit price, 1e-4 units; outside is 'X'.
    band_pct: when a symbol has no explicit band but seeded liquidity, accept prices within
      this percentage of its reference price (0: no band).
    max_shares: Enter/Replace shares above this are rejected 'Z' (OUCH allows 999,999).
    disconnect_every: force a disconnect of the sending user after every N inbound messages
      (0: never). disconnect_probability: the same, at random per message.
    seed: seeds every random choice (liquidity, rejects, disconnects).
    seed_levels / seed_qty: resting venue liquidity per symbol: this many one-cent levels
      each side of a seeded reference price, `seed_qty` shares each (0 levels: empty book).
    max_orders: bound on resting orders (engine). max_retained: bound on each user's replay
      store.
    """

    symbols: tuple[str, ...] = ("AAPL",)
    session: str = "TECTRA1"
    users: Mapping[str, str] | None = None
    ack_latency_ns: int = 0
    reject_probability: float = 0.0
    price_bands: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    band_pct: float = 0.0
    max_shares: int = ouch.MAX_SHARES
    disconnect_every: int = 0
    disconnect_probability: float = 0.0
    seed: int = 1
    seed_levels: int = 0
    seed_qty: int = 500
    max_orders: int = 1_000_000
    max_retained: int = 1_000_000

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("at least one symbol")
        for name in ("reject_probability", "disconnect_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        for name in ("ack_latency_ns", "disconnect_every", "seed_levels", "max_shares"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.seed_qty <= 0:
            raise ValueError("seed_qty must be > 0")


@dataclass
class VenueCounters:
    """Read at scrape time."""

    messages_in: int = 0
    malformed_in: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # why an inbound message did nothing
    rejects: dict[str, int] = field(default_factory=dict)  # by OUCH reject reason
    messages_out: int = 0
    executions: int = 0
    forced_disconnects: int = 0

    def ignore(self, why: str) -> None:
        self.ignored[why] = self.ignored.get(why, 0) + 1


@dataclass
class _Live:
    """A user's live order: its engine reference and the attributes echoed on Replaced."""

    ref: int
    stock: str
    side: Side
    price: int
    time_in_force: int
    firm: str
    display: str
    capacity: str
    intermarket_sweep: str
    minimum_quantity: int
    cross_type: str


class OuchVenue:
    """The venue as a state machine: `on_message(user, payload, now_ns)`, `poll(now_ns)`,
    `end_session(now_ns)`; replies land in `store_for(user)`.

    Replies are held `ack_latency_ns` and become sequenced in `poll` (call it whenever
    `next_due()` has passed). `take_disconnects()` returns users the fault injector wants cut.
    """

    def __init__(self, config: VenueConfig, *, on_itch: ItchCallback | None = None) -> None:
        self.config = config
        self.engine = MatchingEngine(config.symbols, on_itch=on_itch, max_orders=config.max_orders)
        self.codec = ouch.OuchCodec()
        self.counters = VenueCounters()
        self._rng = random.Random(config.seed)
        self._stores: dict[str, SoupSessionStore] = {}
        self._used_tokens: dict[str, set[str]] = {}
        self._live: dict[tuple[str, str], _Live] = {}
        self._pending: list[tuple[int, int, str, bytes]] = []  # (due, order, user, message)
        self._pending_seq = 0
        self._disconnects: list[str] = []
        self._messages_since_disconnect = 0
        self.ended = False
        self.reference_prices: dict[str, int] = {}
        self._bands: dict[str, tuple[int, int]] = dict(config.price_bands)

    # -- sessions -------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> bool:
        users = self.config.users
        return users is None or users.get(username) == password

    def store_for(self, username: str) -> SoupSessionStore:
        store = self._stores.get(username)
        if store is None:
            store = SoupSessionStore(self.config.session, self.config.max_retained)
            self._stores[username] = store
            self._used_tokens[username] = set()
        return store

    def on_login(self, username: str, now_ns: int) -> None:
        """First login of the day: the user's stream starts with System Event 'S'."""
        store = self.store_for(username)
        if store.next_sequence == 1 and not store.ended:
            store.append(ouch.encode(ouch.SystemEvent(now_ns % NS_PER_DAY, "S")))
            self.counters.messages_out += 1

    def take_disconnects(self) -> list[str]:
        out, self._disconnects = self._disconnects, []
        return out

    # -- liquidity ------------------------------------------------------------------------

    def seed_liquidity(self, now_ns: int) -> None:
        """Rest `seed_levels` venue-owned levels each side of a seeded reference price."""
        for symbol in self.config.symbols:
            # A reference between $20 and $500, on a cent.
            ref = self._rng.randrange(2_000, 50_000) * (PRICE_SCALE // 100)
            self.reference_prices[symbol] = ref
            if self.config.band_pct > 0 and symbol not in self._bands:
                width = int(ref * self.config.band_pct / 100)
                self._bands[symbol] = (max(ref - width, 1), ref + width)
            tick = PRICE_SCALE // 100
            for level in range(1, self.config.seed_levels + 1):
                for side, price in (
                    (Side.BUY, ref - level * tick),
                    (Side.SELL, ref + level * tick),
                ):
                    if price > 0:
                        self.engine.submit(
                            NewOrder(symbol, side, self.config.seed_qty, price, owner=HOUSE),
                            now_ns,
                        )

    # -- outbound -------------------------------------------------------------------------

    def _emit(self, user: str, message: ouch.OutboundMessage, now_ns: int) -> None:
        if user == HOUSE or user not in self._stores:
            return
        data = self.codec.encode(message)
        due = now_ns + self.config.ack_latency_ns
        self._pending_seq += 1
        heapq.heappush(self._pending, (due, self._pending_seq, user, data))

    def next_due(self) -> int | None:
        """Venue time at which the next held reply becomes due (None: nothing held)."""
        return self._pending[0][0] if self._pending else None

    def poll(self, now_ns: int) -> set[str]:
        """Sequence every reply due by `now_ns`; returns the users whose streams grew."""
        touched: set[str] = set()
        while self._pending and self._pending[0][0] <= now_ns:
            _due, _n, user, data = heapq.heappop(self._pending)
            store = self._stores[user]
            if store.ended:
                continue
            store.append(data)
            self.counters.messages_out += 1
            touched.add(user)
        return touched

    def _ts(self, now_ns: int) -> int:
        return now_ns % NS_PER_DAY

    def _emit_events(self, events: Sequence[OrderEvent], now_ns: int) -> None:
        ts = self._ts(now_ns)
        for ev in events:
            if isinstance(ev, Fill):
                self.counters.executions += 1
                if ev.leaves == 0:
                    self._live.pop((ev.owner, ev.token), None)
                msg: ouch.OutboundMessage = ouch.Executed(
                    ts, ev.token, ev.qty, ev.price, ev.liquidity, ev.match_number
                )
                self._emit(ev.owner, msg, now_ns)
            elif isinstance(ev, Canceled):
                if ev.leaves == 0:
                    self._live.pop((ev.owner, ev.token), None)
                self._emit(ev.owner, ouch.Canceled(ts, ev.token, ev.decrement, ev.reason), now_ns)
            elif isinstance(ev, Modified):
                live = self._live.get((ev.owner, ev.token))
                if live is not None:
                    live.side = ev.side
                self._emit(ev.owner, ouch.OrderModified(ts, ev.token, ev.side, ev.qty), now_ns)
            elif isinstance(ev, Rejected):
                reason = _ENGINE_REJECT.get(ev.reason, "O")
                self._reject(ev.owner, ev.token, reason, now_ns)
            # Accepted and Replaced are emitted by their handlers, which know the OUCH fields.

    def _reject(self, user: str, token: str, reason: str, now_ns: int) -> None:
        self.counters.rejects[reason] = self.counters.rejects.get(reason, 0) + 1
        self._emit(user, ouch.Rejected(self._ts(now_ns), token, reason), now_ns)

    # -- inbound --------------------------------------------------------------------------

    def on_message(self, user: str, payload: bytes, now_ns: int) -> None:
        """One OUCH message from logged-in `user` (malformed ones are counted and ignored)."""
        self.counters.messages_in += 1
        try:
            msg = self.codec.decode_inbound(payload)
        except ouch.OuchError:
            self.counters.malformed_in += 1
        else:
            self.store_for(user)
            if isinstance(msg, ouch.EnterOrder):
                self._enter(user, msg, now_ns)
            elif isinstance(msg, ouch.CancelOrder):
                self._cancel(user, msg, now_ns)
            elif isinstance(msg, ouch.ReplaceOrder):
                self._replace(user, msg, now_ns)
            else:
                self._modify(user, msg, now_ns)
        self._maybe_disconnect(user)

    def _maybe_disconnect(self, user: str) -> None:
        self._messages_since_disconnect += 1
        every = self.config.disconnect_every
        hit = every > 0 and self._messages_since_disconnect >= every
        p = self.config.disconnect_probability
        if hit or (p > 0 and self._rng.random() < p):
            self._messages_since_disconnect = 0
            self.counters.forced_disconnects += 1
            self._disconnects.append(user)

    def _price_ok(self, symbol: str, price: int) -> bool:
        band = self._bands.get(symbol)
        return band is None or band[0] <= price <= band[1]

    def _enter(self, user: str, msg: ouch.EnterOrder, now_ns: int) -> None:
        used = self._used_tokens[user]
        if msg.token in used:
            self.counters.ignore("duplicate_token")  # OUCH: a reused token is ignored
            return
        used.add(msg.token)
        market = msg.price == ouch.MARKET_PRICE
        reason = ""
        if self.ended:
            reason = "C"
        elif msg.stock not in self.engine.books:
            reason = "S"
        elif msg.shares > self.config.max_shares:
            reason = "Z"
        elif not market and not self._price_ok(msg.stock, msg.price):
            reason = "X"
        elif msg.cross_type != "N":
            reason = "R"  # the simulator runs no crosses
        elif self.config.reject_probability and self._rng.random() < self.config.reject_probability:
            reason = "O"
        if reason:
            self._reject(user, msg.token, reason, now_ns)
            return
        tif = TimeInForce.IOC if msg.time_in_force == ouch.TIF_IOC else TimeInForce.DAY
        events = self.engine.submit(
            NewOrder(
                msg.stock,
                msg.side,
                msg.shares,
                None if market else msg.price,
                tif,
                owner=user,
                token=msg.token,
                displayed=msg.display != "N",
            ),
            now_ns,
        )
        first = events[0] if events else None
        if isinstance(first, Accepted):
            self._live[(user, msg.token)] = _Live(
                first.ref,
                msg.stock,
                msg.side,
                msg.price,
                msg.time_in_force,
                msg.firm,
                msg.display,
                msg.capacity,
                msg.intermarket_sweep,
                msg.minimum_quantity,
                msg.cross_type,
            )
            accepted = ouch.Accepted(
                self._ts(now_ns),
                msg.token,
                msg.side,
                msg.shares,
                msg.stock,
                msg.price,
                msg.time_in_force,
                msg.firm,
                msg.display,
                first.ref,
                msg.capacity,
                msg.intermarket_sweep,
                msg.minimum_quantity,
                msg.cross_type,
                "L",
            )
            self._emit(user, accepted, now_ns)
        self._emit_events(events[1:] if isinstance(first, Accepted) else events, now_ns)

    def _cancel(self, user: str, msg: ouch.CancelOrder, now_ns: int) -> None:
        live = self._live.get((user, msg.token))
        if live is None:
            self.counters.ignore("cancel_not_live")
            return
        try:
            events = self.engine.cancel(live.ref, now_ns, leave=msg.shares, reason="U")
        except MatchError:
            self.counters.ignore("cancel_not_live")
            return
        if not events:
            self.counters.ignore("cancel_no_reduction")
        self._emit_events(events, now_ns)

    def _replace(self, user: str, msg: ouch.ReplaceOrder, now_ns: int) -> None:
        key = (user, msg.existing_token)
        live = self._live.get(key)
        used = self._used_tokens[user]
        if live is None or msg.replacement_token in used:
            # OUCH: silently ignored, and the replacement token is not consumed.
            self.counters.ignore("replace_ignored")
            return
        valid = (
            not self.ended
            and 0 < msg.shares <= self.config.max_shares
            and msg.price != ouch.MARKET_PRICE
            and self._price_ok(live.stock, msg.price)
        )
        if not valid:
            # OUCH: a live order with invalid replace details is canceled.
            self.counters.ignore("replace_invalid_canceled")
            self._emit_events(self.engine.cancel(live.ref, now_ns, reason="U"), now_ns)
            return
        used.add(msg.replacement_token)
        events = self.engine.replace(
            live.ref, now_ns, qty=msg.shares, price=msg.price, token=msg.replacement_token
        )
        first = events[0]
        assert isinstance(first, Replaced)
        del self._live[key]
        live.ref = first.new_ref
        live.price = msg.price
        live.time_in_force = msg.time_in_force
        live.display = msg.display
        live.intermarket_sweep = msg.intermarket_sweep
        live.minimum_quantity = msg.minimum_quantity
        self._live[(user, msg.replacement_token)] = live
        replaced = ouch.Replaced(
            self._ts(now_ns),
            msg.replacement_token,
            live.side,
            msg.shares,
            live.stock,
            msg.price,
            msg.time_in_force,
            live.firm,
            msg.display,
            first.new_ref,
            live.capacity,
            msg.intermarket_sweep,
            msg.minimum_quantity,
            live.cross_type,
            "L",
            msg.existing_token,
        )
        self._emit(user, replaced, now_ns)
        self._emit_events(events[1:], now_ns)

    def _modify(self, user: str, msg: ouch.ModifyOrder, now_ns: int) -> None:
        live = self._live.get((user, msg.token))
        if live is None:
            self.counters.ignore("modify_not_live")
            return
        try:
            events = self.engine.modify(live.ref, now_ns, qty=msg.shares, side=msg.side)
        except MatchError:
            self.counters.ignore("modify_invalid")
            return
        if msg.shares == 0:
            self._live.pop((user, msg.token), None)
        self._emit_events(events, now_ns)

    # -- end of day -----------------------------------------------------------------------

    def end_session(self, now_ns: int) -> None:
        """Close the day: cancel users' resting orders, System Event 'E' to every user, then
        each stream ends (connections send End of Session once caught up)."""
        if self.ended:
            return
        self.ended = True
        for user in list(self._stores):
            self._emit_events(self.engine.cancel_all(user, now_ns, reason="Z"), now_ns)
            self._emit(user, ouch.SystemEvent(self._ts(now_ns), "E"), now_ns)
        # Whatever is still held goes out now: nothing may follow End of Session.
        self.poll(max([now_ns, *(due for due, *_ in self._pending)]))
        for store in self._stores.values():
            store.end()


class OuchVenueServer:
    """asyncio shell: a SoupServer whose users talk OUCH to an OuchVenue.

    The venue clock is UTC ns since midnight (`venue_clock`), the session clock monotonic;
    both are read here and nowhere below. With a `feed`, the engine's book changes go to it
    (after any `on_itch` the venue already had); it opens before the liquidity is seeded and
    ends its session when the server stops.
    """

    def __init__(
        self,
        venue: OuchVenue,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        soup: SoupServerConfig | None = None,
        venue_clock: Callable[[], int] = ns_since_midnight,
        tick_s: float = 0.05,
        feed: VenueFeed | None = None,
    ) -> None:
        self.venue = venue
        self.feed = feed
        if feed is not None:
            previous = venue.engine.on_itch
            if previous is None:
                venue.engine.on_itch = feed.on_itch
            else:

                def both(events: npt.NDArray[np.void]) -> None:
                    previous(events)
                    feed.on_itch(events)

                venue.engine.on_itch = both
        self._venue_clock = venue_clock
        self.server = SoupServer(
            soup or SoupServerConfig(),
            authenticate=venue.authenticate,
            store_for=venue.store_for,
            on_event=self._on_event,
            host=host,
            port=port,
            tick_s=tick_s,
        )
        self._timer: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self, *, seed_liquidity: bool = True) -> int:
        if self.feed is not None:
            self.feed.open(self._venue_clock())
        if seed_liquidity:
            self.venue.seed_liquidity(self._venue_clock())
        return await self.server.start()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.server.stop()
        if self.feed is not None:
            self.feed.close(self._venue_clock())

    def end_session(self) -> None:
        self.venue.end_session(self._venue_clock())
        self.server.flush()

    def disconnect(self, username: str) -> bool:
        """Fault injection: drop a user's connection now."""
        return self.server.disconnect(username)

    def _on_event(self, conn: SoupServerConnection, event: ServerOutput) -> None:
        now = self._venue_clock()
        if isinstance(event, LoggedIn):
            self.venue.on_login(event.username, now)
            self.server.flush()
        elif isinstance(event, UnsequencedReceived):
            self.venue.on_message(event.username, event.payload, now)
            self._release(now)
            for user in self.venue.take_disconnects():
                self.server.disconnect(user)

    def _release(self, now: int) -> None:
        if self.venue.poll(now):
            self.server.flush()
        due = self.venue.next_due()
        if due is not None and self._timer is None:
            delay = max(due - now, 0) / 1e9
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._release(self._venue_clock())


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_users(text: str) -> dict[str, str] | None:
    if not text:
        return None
    users: dict[str, str] = {}
    for item in text.split(","):
        name, sep, password = item.partition(":")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"user {item!r}: expected name:password")
        users[name] = password
    return users


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tectra.sim.ouch_venue",
        description="OUCH 4.2 / SoupBinTCP venue simulator backed by a matching engine.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=15000)
    p.add_argument("--symbols", default="AAPL", help="comma-separated symbols")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--session", default="TECTRA1", help="SoupBinTCP session name")
    p.add_argument("--users", default="", help="name:password,... (default: accept any)")
    p.add_argument("--levels", type=int, default=5, help="seeded liquidity levels per side")
    p.add_argument("--level-qty", type=int, default=500)
    p.add_argument("--band-pct", type=float, default=10.0, help="price band around reference")
    p.add_argument("--ack-latency-us", type=float, default=0.0)
    p.add_argument("--reject-prob", type=float, default=0.0)
    p.add_argument("--disconnect-every", type=int, default=0)
    p.add_argument("--disconnect-prob", type=float, default=0.0)
    p.add_argument("--session-seconds", type=float, default=0.0, help="end the session after")
    p.add_argument("--heartbeat-timeout", type=float, default=15.0, help="seconds")
    p.add_argument(
        "--mold-dest",
        type=_hostport,
        default=None,
        help="publish the book as ITCH over MoldUDP64 to HOST:PORT (unicast or multicast)",
    )
    p.add_argument("--mold-session", default="TECTRAV001", help="MoldUDP64 session name")
    p.add_argument(
        "--mold-retrans-port", type=int, default=None, help="retransmission server port (0: any)"
    )
    p.add_argument("--mold-retrans-host", default="127.0.0.1")
    p.add_argument("--mold-heartbeat-ms", type=float, default=1000.0)
    p.add_argument("--mold-ttl", type=int, default=1, help="multicast TTL")
    p.add_argument("--mold-if", default=None, help="multicast interface IPv4 address")
    return p


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _feed(args: argparse.Namespace, venue: OuchVenue) -> VenueFeed | None:
    if args.mold_dest is None:
        return None
    retrans = args.mold_retrans_port
    config = VenueFeedConfig(
        dest=args.mold_dest,
        session=args.mold_session,
        retrans_bind=None if retrans is None else (args.mold_retrans_host, retrans),
        heartbeat_s=args.mold_heartbeat_ms / 1000.0,
        multicast_ttl=args.mold_ttl,
        multicast_interface=args.mold_if,
    )
    return VenueFeed(config, venue.engine.symbols)


async def _serve(args: argparse.Namespace) -> int:
    config = VenueConfig(
        symbols=tuple(s for s in args.symbols.split(",") if s),
        session=args.session,
        users=_parse_users(args.users),
        ack_latency_ns=int(args.ack_latency_us * 1000),
        reject_probability=args.reject_prob,
        band_pct=args.band_pct,
        disconnect_every=args.disconnect_every,
        disconnect_probability=args.disconnect_prob,
        seed=args.seed,
        seed_levels=args.levels,
        seed_qty=args.level_qty,
    )
    timeout_ns = int(args.heartbeat_timeout * 1e9)
    soup = SoupServerConfig(client_timeout_ns=timeout_ns, login_timeout_ns=timeout_ns)
    venue = OuchVenue(config)
    feed = _feed(args, venue)
    server = OuchVenueServer(venue, host=args.host, port=args.port, soup=soup, feed=feed)
    port = await server.start()
    ready: dict[str, object] = {
        "listening": f"{args.host}:{port}",
        "session": config.session,
        "symbols": server.venue.engine.symbols,
        "reference_prices": server.venue.reference_prices,
    }
    if feed is not None:
        addr = feed.retrans_address
        ready["mold"] = {
            "dest": f"{args.mold_dest[0]}:{args.mold_dest[1]}",
            "session": feed.config.session,
            "retrans": None if addr is None else f"{addr[0]}:{addr[1]}",
        }
    print(json.dumps(ready), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.session_seconds > 0:
        loop.call_later(args.session_seconds, stop.set)
    await stop.wait()
    # End of session on the way out, so clients see System Event 'E' and End of Session.
    server.end_session()
    await asyncio.sleep(0.2)
    await server.stop()
    if feed is not None:
        print(json.dumps({"event": "stopped", "mold": feed.stats()}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except (ValueError, OSError) as exc:
        print(f"ouch_venue: {exc}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
