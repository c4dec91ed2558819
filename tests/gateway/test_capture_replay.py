"""Golden replay of a captured gateway session: real FIX clients, the venue simulator process,
fills, rejects, cancels, replaces, a kill block and a mass cancel, a limits reload and a
disconnect, all journaled live; replayed from the start snapshot, the outputs are bit-for-bit
the recorded ones, and a changed output is reported as the first divergence."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tectra.gateway.core import GatewayCore
from tectra.gateway.replay import replay_component
from tectra.gateway.service import GatewayService
from tectra.io.killblock import Flag, Scope
from tectra.journal.format import RecordType
from tectra.journal.reader import JournalReader
from tectra.journal.replay import ReplayOptions, replay_journal
from tectra.journal.verify import verify_journal
from tests.fix.fixsupport import wait_until
from tests.gateway.gateway_env import venue_process
from tests.gateway.test_service import Env, report

pytestmark = pytest.mark.timeout(120)


def _session(tmp_path: Path) -> Path:
    with venue_process() as venue:
        refs = ",".join(f"{s}={px / 10_000:.2f}" for s, px in venue["reference_prices"].items())
        env = Env(tmp_path, venue, static_refs=refs, capture=True)
        try:
            a, b = env.client(0), env.client(1)
            ref = float(env.ref("AAPL"))
            a.new_order("F1", qty="150", price=f"{ref + 0.02:.2f}")  # fills
            a.new_order("X1", qty="50000", price=f"{ref:.2f}")  # MAX_SIZE
            a.new_order("R1", qty="10", price=f"{ref - 1:.2f}")
            b.new_order("S1", qty="10", price=f"{ref + 1:.2f}", side="2")
            report(a, "R1", "0")
            a.replace("R2", "R1", qty="20", price=f"{ref - 0.5:.2f}")
            report(a, "R2", "5")
            a.cancel("C2", "R2")
            report(a, "C2", "4")
            for i in range(4):
                b.new_order(f"M{i}", qty="5", price=f"{ref + 2:.2f}", side="2")
            wait_until(lambda: env.gw.open_orders() >= 5, 10, "open orders")
            env.block.set(Flag.BLOCK, Scope.FIRM, kill_id=5)
            a.new_order("H1", qty="1", price=f"{ref - 1:.2f}")
            report(a, "H1", "8")
            env.gw.cancel_scope(int(Scope.ACCOUNT), 2, kill_id=5)
            wait_until(lambda: env.gw.cancels_confirmed(5) >= 5, 10, "mass cancel confirmed")
            env.block.clear(Flag.BLOCK, Scope.FIRM, kill_id=6)
            _version, doc = env.gw.limits_document()
            doc["defaults"]["max_qty"] = 7
            env.gw.load_limits(doc, source="test", dry_run=False)
            a.new_order("Q1", qty="8", price=f"{ref - 1:.2f}")
            report(a, "Q1", "8")
            a.new_order("Q2", qty="7", price=f"{ref - 1:.2f}")
            report(a, "Q2", "0")
            a.stop()  # cancel-on-disconnect for Q2
            wait_until(lambda: env.gw.open_orders(Scope.ACCOUNT, 1) == 0, 10, "COD")
        finally:
            env.close()
        return Path(env.config.appliance.state_dir) / "journal" / "gateway"


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _session(tmp_path_factory.mktemp("capture"))


def test_capture_verifies(journal: Path) -> None:
    report = verify_journal(journal)
    assert report.ok, report.format_text()


def test_raw_fix_messages_are_journaled_both_ways(journal: Path) -> None:
    texts = []
    for fb in JournalReader(journal).batches():
        for i in np.flatnonzero(fb.type == RecordType.FIX_MESSAGE).tolist():
            texts.append(bytes(fb.payload(i)).decode())
    ins = [t for t in texts if t.startswith("in ")]
    outs = [t for t in texts if t.startswith("out ")]
    assert any("\x0135=D\x01" in t and "\x0111=F1\x01" in t for t in ins)
    assert any("\x0135=8\x01" in t and "\x0111=F1\x01" in t for t in outs)
    assert any("\x0135=F\x01" in t for t in ins) and any("\x0135=G\x01" in t for t in ins)


def test_replay_is_bit_for_bit(journal: Path) -> None:
    diff = replay_journal(journal, replay_component(), options=ReplayOptions(from_snapshot=True))
    assert diff.zero, diff.format_text()
    assert diff.steps >= 20


class _Drifting(GatewayCore):
    """The same core, except its 12th step's first client report says one more share filled:
    what a code change that miscounts would look like."""

    calls = 0

    def step(self, inputs: Any, now_ns: int) -> list[Any]:
        out = super().step(inputs, now_ns)
        type(self).calls += 1
        reports = out[1] if out else None
        if type(self).calls >= 12 and reports is not None and len(reports):
            reports["cum_qty"][0] += np.int64(1)
            type(self).calls = -(10**9)
        return out


def test_a_changed_output_is_the_first_divergence(journal: Path) -> None:
    comp = replay_component()
    comp.__class__ = _Drifting
    diff = replay_journal(journal, comp, options=ReplayOptions(from_snapshot=True))
    assert not diff.zero
    first = diff.first
    assert first is not None and "cum_qty" in first.format_text()


def test_periodic_snapshots_let_replay_start_later(tmp_path: Path) -> None:
    with venue_process() as venue:
        refs = ",".join(f"{s}={px / 10_000:.2f}" for s, px in venue["reference_prices"].items())
        env = Env(
            tmp_path, venue, static_refs=refs, capture=True, extra="snapshot_interval_s = 0.2"
        )
        try:
            c = env.client(0)
            low = f"{float(env.ref('AAPL')) - 1:.2f}"
            for i in range(6):
                c.new_order(f"P{i}", qty="10", price=low)
                report(c, f"P{i}", "0")
                time.sleep(0.25)
                env.gw.housekeeping()
        finally:
            env.close()
    journal = Path(env.config.appliance.state_dir) / "journal" / "gateway"
    diff = replay_journal(journal, replay_component(), options=ReplayOptions(from_snapshot=True))
    assert diff.zero, diff.format_text()
    assert diff.snapshot_steps["GATEWAY"] > 2  # started from a later snapshot, not the first


def test_a_restarted_gateway_recovers_its_state_from_the_capture(tmp_path: Path) -> None:
    with venue_process() as venue:
        refs = ",".join(f"{s}={px / 10_000:.2f}" for s, px in venue["reference_prices"].items())
        env = Env(tmp_path, venue, static_refs=refs, capture=True)
        try:
            c = env.client(0)
            low = f"{float(env.ref('AAPL')) - 1:.2f}"
            for i in range(4):
                c.new_order(f"S{i}", qty="10", price=low)
                report(c, f"S{i}", "0")
            c.new_order("S9", qty="100", price=f"{float(env.ref('AAPL')) + 0.02:.2f}")
            c.wait_app(lambda m: m.get(11) == "S9" and m.get(39) == "2")
            assert env.gw.open_orders() >= 4
        finally:
            env.gw.stop()  # a clean stop: sessions log out, cancel-on-disconnect runs
        before = (env.gw.positions(), env.gw.core.next_order_id, env.gw.core.counters)
        seen = env.gw.core.counters["venue_messages_in"]
        # A new gateway process on the same state: the orders, positions and ids are back.
        env.gw = GatewayService(env.config)
        assert env.gw.recovered is not None and env.gw.recovered.divergences == 0
        assert (env.gw.positions(), env.gw.core.next_order_id) == before[:2]
        assert env.gw.core.counters == before[2]
        # The venue session resumes right after the last venue message the old run applied.
        assert env.gw.venue.session.next_sequence == 1 + seen
        env.gw.start()
        try:
            wait_until(lambda: env.gw.venue_up, 10, "venue login")
            assert env.gw.core.store.counters()["report_ignored_unknown_order"] == 0
        finally:
            env.close()
    diff = replay_journal(
        Path(env.config.appliance.state_dir) / "journal" / "gateway",
        replay_component(),
        options=ReplayOptions(from_snapshot=True),
    )
    assert diff.zero, diff.format_text()
