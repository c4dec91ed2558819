"""kill_nats: trigger -> ack from a gateway on another network namespace via NATS.

Root only. A hub namespace runs nats-server; a "remote host" namespace, joined to it by a veth,
runs a probe subscriber process (`tectra.kill.probe`: a KillSubscriber in front of a synthetic
gateway). The kill engine runs in the bench process with its NATS connection in the hub.
Each sample: `KillEngine.trigger` (firm BLOCK, fresh kill id); the latency is the engine's
trigger entry (CLOCK_MONOTONIC) to the remote ack's arrival in the engine's ack handler
(the same clock, same process), i.e. command publish -> nats-server -> veth -> subscriber
-> ack publish -> nats-server -> engine. Each kill is cleared before the next trigger.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import latency_summary
from tectra.io.killblock import Scope
from tectra.io.netns import in_namespace
from tectra.kill.engine import Action, ClearRequest, KillEngine, Target, TriggerRequest, open_block
from tectra.kill.fanout import Fanout
from tectra.kill.ledger import KillLedger
from tectra.kill.probe import nats_hosts
from tectra.kill.state import StateStore


def run(quick: bool = False) -> dict[str, Any]:
    n = 200 if quick else 1000
    warm = 20
    with (
        nats_hosts(("remote-gw",)) as hosts,
        tempfile.TemporaryDirectory(prefix="tectra-kn-", dir="/dev/shm") as root,
        tempfile.TemporaryDirectory(prefix="tectra-kn-state-") as state,
    ):
        fanout = Fanout(Path(state) / "run", appliance="bench", nats_url=hosts.local_url)
        store = StateStore(Path(state) / "state.json")
        ledger = KillLedger(Path(state) / "ledger.jsonl", "kill")
        block = open_block("kill", root, store)
        engine = KillEngine(
            block,
            ledger,
            store,
            fanout=fanout,
            expected_subscribers=["remote-gw"],
            ack_timeout_s=1.0,
            ack_retry_s=0.0,
        )
        engine.restore()
        with in_namespace(hosts.hub):
            fanout.start(nats_wait_s=5.0)
        samples: list[int] = []
        missing = 0
        try:
            for i in range(n + warm):
                res = engine.trigger(
                    TriggerRequest(f"n{i}", Target(Scope.FIRM), Action.BLOCK, "bench", "perf")
                )
                if res.missing:
                    missing += 1
                elif i >= warm:
                    samples.append(res.acks[0].latency_ns)
                engine.clear(ClearRequest(f"n{i}", Target(Scope.FIRM), "bench", "perf"))
        finally:
            fanout.stop()
            ledger.close()
            block.close()
    summary = latency_summary(np.array(samples, dtype=np.int64))
    return {
        "trigger_to_remote_ack": summary,
        "missing_acks": missing,
        "target_p99_ns": 2_000_000,
        "meets_target": bool(summary["p99_ns"] < 2_000_000),
        "path": "nats-server in a hub netns, subscriber process in another netns over a veth",
    }
