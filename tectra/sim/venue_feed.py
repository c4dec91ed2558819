"""The venue simulator's own market-data feed: its book as ITCH 5.0 over MoldUDP64.

This module owns the link between the order side of the venue simulator and the wire: a
`VenueFeed` receives the matching engine's ITCH_EVENT batches (`MatchingEngine(on_itch=...)`,
one batch per book change: the venue's seeded liquidity and every user's orders, executions,
cancels and replaces) and publishes each through a `MoldPublisher` (MoldUDP64 downstream
packets to a unicast or multicast destination, idle heartbeats from the publisher's thread, an
optional retransmission request server). So the gateway's own orders appear in the ITCH feed
that the feed handler (`tectra run feed`) decodes into books.

The stream opens with System Event 'O' and one Stock Directory 'R' per symbol (stock locate =
the engine's code), so a receiver that starts with the session can name every book. A send
that fails (unreachable destination, no route) is counted by the publisher (`send_errors`);
anything else the publisher refuses is counted here (`publish_errors`): the venue keeps
matching whatever happens to its feed. Usage: `OuchVenueServer(venue, feed=VenueFeed(...))`,
or `python -m tectra.sim.ouch_venue --mold-dest 127.0.0.1:26400` (docs/venue-simulator.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from adapters import itch
from adapters.moldudp64 import encode_session
from tectra.sim.mold_publisher import MoldPublisher, PublisherConfig

__all__ = ["VenueFeed", "VenueFeedConfig"]

_log = logging.getLogger(__name__)

Records = npt.NDArray[np.void]

_PUBLISH_ERRORS: Final = (OSError, ValueError, RuntimeError)


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueFeedConfig:
    """Where the venue's ITCH feed goes.

    dest: UDP destination (HOST, PORT), unicast or a multicast group.
    session: MoldUDP64 session name (up to 10 characters).
    retrans_bind: address of the retransmission request server (None: no server).
    heartbeat_s: heartbeat after this long without a packet.
    max_packet: largest UDP payload.
    multicast_ttl / multicast_interface: as `PublisherConfig`.
    """

    dest: tuple[str, int]
    session: str = "TECTRAV001"
    retrans_bind: tuple[str, int] | None = None
    heartbeat_s: float = 1.0
    max_packet: int = 1400
    multicast_ttl: int = 1
    multicast_interface: str | None = None

    def __post_init__(self) -> None:
        encode_session(self.session)
        if not 0 < self.dest[1] < 65_536:
            raise ValueError(f"mold destination port must be 1..65535, got {self.dest[1]}")
        if self.heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be > 0")


class VenueFeed:
    """Publishes the venue's book changes. `on_itch` is the engine's callback; `open` sends
    the session's start (system event, stock directory), `close` ends the session."""

    def __init__(self, config: VenueFeedConfig, symbols: Mapping[str, int]) -> None:
        if not symbols:
            raise ValueError("a venue feed needs at least one symbol")
        self.config = config
        self.symbols = dict(symbols)  # symbol -> stock locate
        self.table = itch.symbol_table({loc: sym for sym, loc in self.symbols.items()})
        self.publisher = MoldPublisher(
            PublisherConfig(
                dest=config.dest,
                session=config.session,
                max_packet=config.max_packet,
                heartbeat_s=config.heartbeat_s,
                multicast_ttl=config.multicast_ttl,
                multicast_interface=config.multicast_interface,
                retrans_bind=config.retrans_bind,
            ),
            symbols=self.table,
        )
        self.publish_errors = 0
        self.batches = 0
        self._open = False
        self._closed = False

    @property
    def retrans_address(self) -> tuple[str, int] | None:
        return self.publisher.retrans_address

    def open(self, now_ns: int) -> None:
        """Start heartbeats (and the request server); publish System Event 'O' and the stock
        directory, stamped `now_ns` (venue clock, ns since midnight)."""
        if self._open:
            return
        self._open = True
        self.publisher.start()
        locates = sorted(self.symbols.values())
        names = [self.table[loc] for loc in locates]
        opening = np.concatenate(
            [
                itch.system_event(now_ns, "O"),
                itch.stock_directory([now_ns] * len(locates), locates, names),
            ]
        )
        self._publish(opening)

    def on_itch(self, events: Records) -> None:
        """The engine's callback: one batch of ITCH_EVENT records per book change."""
        if self._closed:
            return
        if not self._open:
            self.open(int(events["exch_ts_ns"][0]) if events.size else 0)
        self._publish(events)

    def _publish(self, events: Records) -> None:
        try:
            self.publisher.publish(events)
        except _PUBLISH_ERRORS as exc:
            # The feed is a side channel: the venue keeps matching (docs/venue-simulator.md).
            self.publish_errors += 1
            if self.publish_errors == 1:
                _log.warning("venue feed: publish failed: %s", exc)
        else:
            self.batches += 1

    def close(self, now_ns: int | None = None) -> None:
        """System Event 'C' (when `now_ns` is given), end of session, stop the threads."""
        if self._closed:
            return
        if self._open and now_ns is not None:
            self._publish(itch.system_event(now_ns, "C"))
        self._closed = True
        if self._open:
            try:
                self.publisher.end_session()
            except OSError:
                self.publish_errors += 1
        self.publisher.close()

    def stats(self) -> dict[str, int]:
        """Publisher counters (packets, messages, heartbeats, send_errors, ...) plus ours."""
        out = dict(self.publisher.stats)
        out["batches"] = self.batches
        out["publish_errors"] = self.publish_errors
        out["next_seq"] = self.publisher.next_seq
        return out
