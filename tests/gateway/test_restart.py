"""kill -9 of the gateway role process while a client keeps sending: after the restart the
FIX session resumes from its persisted sequence numbers (the client's unsent orders come back
as resends), and at the venue no order is lost or duplicated: every ClOrdID the client sent is
at the venue exactly once or was refused with an answer, and every order the client was told is
New is live there.

With capture on, the restarted gateway rebuilds its order state from its own journal
(`tectra.gateway.recovery`) and resumes the venue session right after the last venue message it
had applied, so even an order whose venue acknowledgement arrived after the kill gets its
ExecutionReport: every order is answered. Without capture it starts empty: such an order is at
the venue but its client gets no report (the test allows a few and names them)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tectra.sim.ouch_venue import OuchVenue, OuchVenueServer, VenueConfig
from tests.fix.fixsupport import FixTestClient, wait_until
from tests.gateway.gateway_env import PASSWORD, REPO, kill_block, write_appliance

pytestmark = pytest.mark.timeout(180)


class InProcessVenue:
    """The OUCH venue simulator on an asyncio loop in a thread, so the test can look inside."""

    def __init__(self) -> None:
        self.venue = OuchVenue(VenueConfig(symbols=("AAPL",), seed_levels=0))
        self.loop = asyncio.new_event_loop()
        self.server = OuchVenueServer(self.venue)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(
            self.server.start(seed_liquidity=False), self.loop
        ).result(10)

    def call(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def live_tokens(self, user: str = "GW1") -> list[str]:
        return self.call(lambda: [tok for (u, tok) in self.venue._live if u == user])

    def entered(self) -> int:
        return int(self.call(lambda: self.venue.counters.messages_in))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tectra", "run", "gateway", "--config", str(config)],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("capture", [False, True], ids=["no-capture", "capture-recovery"])
def test_kill_9_loses_and_duplicates_nothing_at_the_venue(tmp_path: Path, capture: bool) -> None:
    venue = InProcessVenue()
    config, sessions = write_appliance(
        tmp_path, venue.port, sessions=1, static_refs="AAPL=100.00", capture=capture
    )
    block = kill_block(config)
    cfg_path = tmp_path / "tectra.toml"
    log = tmp_path / "gateway.log"
    gw = _start_gateway(cfg_path, log)
    s = sessions[0]
    client = FixTestClient(
        config.gateway.fix_port,
        s["target_comp_id"],
        s["sender_comp_id"],
        tmp_path / "client",
        username="trader",
        password=PASSWORD,
    )
    try:
        client.start()
        client.wait_logged_on(30)
        sent: list[str] = []

        def send(k: int) -> None:
            cl = f"R{k}"
            client.new_order(cl, qty="1", price=f"{99 - (k % 50) * 0.01:.2f}")
            sent.append(cl)

        for k in range(40):
            send(k)
        # kill -9 while orders are in flight, keep sending while it is dead.
        os.kill(gw.pid, signal.SIGKILL)
        gw.wait(10)
        wait_until(lambda: not client.logged_on(), 15, "client sees the drop")
        for k in range(40, 60):
            send(k)  # stored by quickfix, resent after the restart
        gw = _start_gateway(cfg_path, log)
        client.wait_logged_on(30)
        for k in range(60, 80):
            send(k)

        def settled() -> bool:
            # Everything sent after the restart is answered; without recovery what was in
            # flight at the kill may not be.
            return all(client.reports(cl) for cl in (sent if capture else sent[40:]))

        wait_until(settled, 30, "an ExecutionReport for every order sent after the kill")
        time.sleep(0.5)
        live = venue.live_tokens()
        # The gateway's durable ClOrdID log maps each venue token back to its ClOrdID.
        by_token: dict[str, str] = {}
        for log_file in (tmp_path / "state" / "gateway" / "tokens").glob("clordid-*.log"):
            for line in log_file.read_text().splitlines():
                cl, token, _crc = line.split("\t")
                by_token[token] = cl
        at_venue = [by_token[t] for t in live]  # KeyError: a token the gateway never issued
        assert len(at_venue) == len(set(at_venue)), "a ClOrdID entered twice at the venue"
        news = {cl for cl in sent if any(m[150] == "0" for m in client.reports(cl))}
        rejected = {cl for cl in sent if any(m[150] == "8" for m in client.reports(cl))}
        assert news <= set(at_venue), "told New but not at the venue"
        # Nothing lost: each order is at the venue or was refused with an answer.
        assert set(at_venue) | rejected == set(sent)
        unanswered = set(at_venue) - news
        if capture:
            assert not unanswered, sorted(unanswered)
            assert "gateway state recovered from its capture" in log.read_text()
        else:
            assert unanswered <= set(sent[:40]) and len(unanswered) <= 5, sorted(unanswered)
    finally:
        client.stop()
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
        block.close()
        venue.close()
