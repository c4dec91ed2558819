"""The gateway end to end on one host: real quickfix clients -> GatewayService (FIX acceptor,
kill check, risk, order state) -> SoupBinTCP/OUCH 4.2 -> the venue simulator process, and the
execution reports back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tectra.gateway.service import GatewayService, GatewayServiceError, parse_static_references
from tectra.io.killblock import Flag, Scope
from tests.fix.fixsupport import FixTestClient, wait_until
from tests.gateway.gateway_env import (
    PASSWORD,
    kill_block,
    venue_process,
    write_appliance,
)

pytestmark = pytest.mark.timeout(120)


class Env:
    def __init__(self, root: Path, venue: dict[str, Any], **kw: Any) -> None:
        self.root = root
        self.venue = venue
        self.config, self.sessions = write_appliance(root, venue["port"], **kw)
        self.block = kill_block(self.config)
        self.gw = GatewayService(self.config)
        self.gw.start()
        self.clients: list[FixTestClient] = []
        wait_until(lambda: self.gw.venue_up, 10, "venue login")

    def client(self, i: int = 0) -> FixTestClient:
        s = self.sessions[i]
        c = FixTestClient(
            self.config.gateway.fix_port,
            s["target_comp_id"],
            s["sender_comp_id"],
            self.root / f"cli{i}-{len(self.clients)}",
            username="trader",
            password=PASSWORD,
        )
        self.clients.append(c)
        c.start()
        c.wait_logged_on()
        return c

    def ref(self, symbol: str) -> str:
        px = self.venue["reference_prices"][symbol]
        return f"{px / 10_000:.2f}"

    def close(self) -> None:
        for c in self.clients:
            c.stop()
        self.gw.stop()
        self.block.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with venue_process() as venue:
        refs = ",".join(f"{s}={px / 10_000:.2f}" for s, px in venue["reference_prices"].items())
        e = Env(tmp_path, venue, static_refs=refs)
        try:
            yield e
        finally:
            e.close()


def report(c: FixTestClient, cl: str, exec_type: str) -> dict[int, str]:
    return c.wait_app(lambda m: m.get(11) == cl and m.get(150) == exec_type)


def test_orders_fill_reject_cancel_and_positions(env: Env) -> None:
    c = env.client()
    ask = float(env.ref("AAPL")) + 0.02
    c.new_order("B1", qty="150", price=f"{ask:.2f}")  # sweeps two 100-share ask levels
    fill = c.wait_app(lambda m: m.get(11) == "B1" and m.get(39) == "2")
    assert fill[14] == "150" and fill[151] == "0"
    assert next(m[150] for m in c.reports("B1")) == "0"  # New first: the venue's ack
    c.new_order("B2", qty="50000", price=env.ref("AAPL"))  # over max_qty
    rej = report(c, "B2", "8")
    assert rej[103] == "3" or "MAX_SIZE" in rej.get(58, "")
    c.new_order("R1", qty="10", price=f"{float(env.ref('AAPL')) - 1:.2f}")
    report(c, "R1", "0")
    c.cancel("C1", "R1")
    canceled = report(c, "C1", "4")
    assert canceled[41] == "R1"
    pos = {p["symbol"]: p for p in env.gw.positions()}
    assert pos["AAPL"]["net_qty"] == 150 and pos["AAPL"]["marked"]
    assert env.gw.orders_summary()["rejects_by_reason"] == {"MAX_SIZE": 1}
    assert env.gw.fix_to_venue.count >= 2


def test_kill_block_takes_effect_on_the_next_order_and_cancels_still_pass(env: Env) -> None:
    c = env.client()
    low = f"{float(env.ref('AAPL')) - 1:.2f}"
    c.new_order("K1", qty="10", price=low)
    report(c, "K1", "0")
    env.block.set(Flag.BLOCK, Scope.FIRM, kill_id=9)
    c.new_order("K2", qty="10", price=low)
    rej = report(c, "K2", "8")
    assert "HALTED" in rej.get(58, "") or rej.get(103) == "99"
    c.cancel("K3", "K1")
    report(c, "K3", "4")
    env.block.clear(Flag.BLOCK, Scope.FIRM, kill_id=10)
    c.new_order("K4", qty="10", price=low)
    report(c, "K4", "0")


def test_mass_cancel_in_scope_and_confirmations(env: Env) -> None:
    a, b = env.client(0), env.client(1)
    low = f"{float(env.ref('AAPL')) - 1:.2f}"
    for i in range(5):
        a.new_order(f"A{i}", qty="10", price=low)
        b.new_order(f"B{i}", qty="10", price=low)
    wait_until(lambda: env.gw.open_orders() == 10, 10, "10 open orders")
    sent = env.gw.cancel_scope(int(Scope.ACCOUNT), 1, kill_id=77)  # session 1 trades ACC1
    assert sent == 5
    wait_until(lambda: env.gw.cancels_confirmed(77) == 5, 10, "5 confirmations")
    assert env.gw.open_orders() == 5
    report(a, "A4", "4")


def test_cancel_on_disconnect(env: Env) -> None:
    a = env.client(0)
    low = f"{float(env.ref('AAPL')) - 1:.2f}"
    for i in range(3):
        a.new_order(f"D{i}", qty="10", price=low)
    wait_until(lambda: env.gw.open_orders() == 3, 10, "3 open orders")
    a.stop()
    wait_until(lambda: env.gw.open_orders() == 0, 10, "cancel-on-disconnect")


def test_limits_reload_is_atomic_and_bad_limits_change_nothing(env: Env) -> None:
    c = env.client()
    version, doc = env.gw.limits_document()
    doc["defaults"]["max_qty"] = 5
    new = env.gw.load_limits(doc, source="test", dry_run=False)
    assert new == version + 1
    c.new_order("L1", qty="6", price=f"{float(env.ref('AAPL')) - 1:.2f}")
    report(c, "L1", "8")
    doc["defaults"]["max_qty"] = -1
    with pytest.raises(ValueError, match=r"defaults\.max_qty"):
        env.gw.load_limits(doc, source="test", dry_run=False)
    assert env.gw.limits_document()[0] == new


def test_venue_down_refuses_with_a_reason_instead_of_leaving_orders_pending(env: Env) -> None:
    c = env.client()
    low = f"{float(env.ref('AAPL')) - 1:.2f}"
    c.new_order("V0", qty="10", price=low)
    report(c, "V0", "0")
    env.venue["proc"].terminate()
    env.venue["proc"].wait(10)
    wait_until(lambda: not env.gw.venue_up, 10, "venue link down")
    c.new_order("V1", qty="10", price=low)
    rej = report(c, "V1", "8")
    assert "VENUE" in rej.get(58, "").upper()
    c.cancel("V2", "V0")
    c.wait_app(lambda m: m.get(35) == "9" and m.get(11) == "V2")  # OrderCancelReject
    assert env.gw.orders_summary()["rejects_by_reason"]["VENUE_REJECT"] == 2


def test_config_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(GatewayServiceError, match="static_references"):
        parse_static_references("AAPL=abc")
    assert parse_static_references("AAPL=1.5, MSFT=2") == {"AAPL": 15000, "MSFT": 20000}
    config, _ = write_appliance(tmp_path, 1, extra="")
    bad = tmp_path / "tectra.toml"
    bad.write_text(bad.read_text().replace('fix_sessions = "', 'fix_sessions_x = "'))
    with pytest.raises(Exception, match="fix_sessions_x"):
        from tectra.core.config import load_config

        load_config(bad)
    assert json.dumps(config.gateway.venue_port)


def test_metrics_are_exported(env: Env) -> None:
    text = env.gw.metrics.exposition().decode()
    for name in (
        "tectra_gateway_venue_up 1.0",
        "tectra_gateway_open_orders 0.0",
        "tectra_gateway_limits_version 1.0",
        "tectra_gateway_kill_view_available 1.0",
        "tectra_gateway_fix_to_venue_ns",
        'tectra_risk_rule_total{rule="max_qty",what="evaluated"}',
        'tectra_gateway_send_failures_total{cause="client_report"} 0.0',
    ):
        assert name in text, name
    assert "tectra_metrics_callback_errors" not in text or "} 0.0" in text


def test_risk_observations_for_the_kill_switch(env: Env) -> None:
    c = env.client()
    c.new_order("O1", qty="100", price=f"{float(env.ref('AAPL')) + 0.02:.2f}")
    c.wait_app(lambda m: m.get(11) == "O1" and m.get(39) == "2")
    obs = env.gw.risk_observations(take_latencies=True)
    assert obs["venue_up"] and obs["venue_id"] == 1
    assert len(obs["recent_step_ns"]) == 1 and obs["recent_step_ns"][0] > 0
    assert obs["exposure_by_account"][1] > 0  # ACC1 traded 100 shares
    assert 1 in obs["pnl_by_account"]
    assert env.gw.risk_observations(take_latencies=True)["recent_step_ns"] == []


def test_order_status_request_is_answered_from_the_order_store(env: Env) -> None:
    c = env.client()
    c.new_order("Q1", qty="10", price=f"{float(env.ref('AAPL')) - 1:.2f}")
    report(c, "Q1", "0")
    c.send("H", [(11, "Q1"), (54, "1"), (55, "AAPL")])
    status = report(c, "Q1", "I")
    assert status[39] == "0" and status[151] == "10" and status[14] == "0"
    c.send("H", [(11, "NOPE"), (54, "1"), (55, "AAPL")])
    unknown = report(c, "NOPE", "I")
    assert unknown[39] == "8"  # unknown order: status Rejected, the session stays up
