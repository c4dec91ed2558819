"""Cross-host fan-out through a real nats-server: two subscriber processes, each in its own
network namespace ("host"), receive the kill role's command over NATS and ack back; a third
expected subscriber that does not exist is reported missing by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tectra.io.killblock import Scope
from tectra.io.netns import in_namespace
from tectra.kill.engine import Action, ClearRequest, KillEngine, Target, TriggerRequest, open_block
from tectra.kill.fanout import Fanout
from tectra.kill.ledger import KillLedger
from tectra.kill.probe import nats_hosts
from tectra.kill.state import StateStore
from tectra.schema import KillAckStatus

pytestmark = pytest.mark.kernel


def test_cancel_reaches_two_remote_hosts_over_nats_and_both_ack(
    tmp_path: Path, shm_root: Path
) -> None:
    with nats_hosts(("nyc-gw1", "chi-gw1"), open_orders=25) as hosts:
        fanout = Fanout(tmp_path / "run", appliance="ldn1", nats_url=hosts.local_url)
        store = StateStore(tmp_path / "state.json")
        ledger = KillLedger(tmp_path / "ledger.jsonl", "kill")
        block = open_block("kill", shm_root, store)
        engine = KillEngine(
            block,
            ledger,
            store,
            fanout=fanout,
            expected_subscribers=["nyc-gw1", "chi-gw1", "sfo-gw1"],
            ack_timeout_s=1.0,
            ack_retry_s=0.2,
        )
        engine.restore()
        with in_namespace(hosts.hub):  # the NATS loop thread starts (and stays) in the hub
            fanout.start(nats_wait_s=5.0)
        try:
            assert fanout.paths == "local+nats"
            res = engine.trigger(
                TriggerRequest("x-1", Target(Scope.FIRM), Action.CANCEL, "drill", "risk@desk")
            )
            assert res.applied
            by = {a.subscriber: a for a in res.acks}
            assert set(by) == {"nyc-gw1", "chi-gw1"}
            assert all(a.cancels_sent == 25 and a.ok for a in by.values())
            assert all(a.cancels_confirmed == 25 for a in by.values())  # probes confirm at once
            assert res.missing == ("sfo-gw1",)
            assert fanout.stats.nats_sent >= 1
            # a block is acked across hosts too, and the clear goes out
            blk = engine.trigger(
                TriggerRequest("x-2", Target(Scope.VENUE, 4), Action.BLOCK, "venue", "risk")
            )
            assert {a.subscriber for a in blk.acks} == {"nyc-gw1", "chi-gw1"}
            assert all(a.status is KillAckStatus.APPLIED for a in blk.acks)
            assert engine.clear(ClearRequest("", Target(Scope.FIRM), "done", "risk")).ok
            acks = [e for e in ledger.entries() if e.kind == "ack"]
            assert {e.actor for e in acks} == {"nyc-gw1", "chi-gw1"}
        finally:
            fanout.stop()
            ledger.close()
            block.close()
