"""The gateway against a venue that keeps cutting the SoupBinTCP connection and acks late: the
venue link reconnects and resumes from its next sequence number (the venue replays what was
missed), every client order gets an answer, and afterwards the gateway's open orders are exactly
the venue's live orders for it — no fill or cancel lost across the reconnects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tectra.gateway.service import GatewayService
from tectra.sim.ouch_venue import VenueConfig
from tests.fix.fixsupport import FixTestClient, wait_until
from tests.gateway.gateway_env import PASSWORD, kill_block, write_appliance
from tests.gateway.test_restart import InProcessVenue

pytestmark = pytest.mark.timeout(120)


class FaultyVenue(InProcessVenue):
    def __init__(self) -> None:
        super().__init__()
        self.call(lambda: setattr(self.venue, "config", _faulty(self.venue.config)))


def _faulty(config: VenueConfig) -> VenueConfig:
    from dataclasses import replace

    return replace(config, disconnect_every=9, ack_latency_ns=2_000_000)


def test_reconnects_lose_nothing(tmp_path: Path) -> None:
    venue = FaultyVenue()
    config, sessions = write_appliance(tmp_path, venue.port, sessions=1, static_refs="AAPL=100.00")
    block = kill_block(config)
    gw = GatewayService(config)
    gw.start()
    s = sessions[0]
    client = FixTestClient(
        config.gateway.fix_port, s["target_comp_id"], s["sender_comp_id"], tmp_path / "cli",
        username="trader", password=PASSWORD,
    )  # fmt: skip
    try:
        client.start()
        client.wait_logged_on()
        sent = []
        for k in range(40):
            wait_until(lambda: gw.venue_up, 10, "venue link up")
            cl = f"F{k}"
            if k % 4 == 3:
                client.cancel(cl, f"F{k - 1}")
            else:
                client.new_order(cl, qty="1", price=f"{99 - (k % 20) * 0.01:.2f}")
            sent.append(cl)
            wait_until(lambda cl=cl: bool(client.reports(cl)) or _cxl_rejected(client, cl), 10,
                       f"an answer to {cl}")  # fmt: skip
        wait_until(lambda: gw.venue_up, 10, "venue link up at the end")
        assert gw.venue.counters.connects >= 3  # the venue really did cut it
        assert gw.venue.counters.sequence_gaps == 0

        def consistent() -> bool:
            return gw.open_orders() == len(venue.live_tokens())

        wait_until(consistent, 10, "gateway open orders == venue live orders")
        assert gw.core.store.counters()["report_ignored_unknown_order"] == 0
    finally:
        client.stop()
        gw.stop()
        block.close()
        venue.close()


def _cxl_rejected(client: FixTestClient, cl: str) -> bool:
    return any(m.get(35) == "9" and m.get(11) == cl for m in client.app_in)
