"""kill_block: trigger -> a gateway process on the host rejecting new orders.

A separate process (pinned to its own CPU) spins on `GatewayView.check()` — what the gateway
does per order — and reports the CLOCK_MONOTONIC time it first sees BLOCKED. The bench process
stamps CLOCK_MONOTONIC just before `KillEngine.trigger(...)` (firm BLOCK, a fresh kill id each
time) is called; the latency is seen - stamped (one host clock). After each sample the kill is
cleared and the spinner must see OK again before the next trigger. The engine runs as in the
kill role: real control block in /dev/shm, state file and ledger with fsync (both after the
block write, so they do not delay the effect). Also reported: the engine's own
trigger_to_block_ns (trigger entry to the control-block write returned).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import latency_summary
from tectra.io.killblock import Scope, Verdict, open_gateway_view
from tectra.kill.engine import Action, ClearRequest, KillEngine, Target, TriggerRequest, open_block
from tectra.kill.ledger import KillLedger
from tectra.kill.state import StateStore

CTX = mp.get_context("fork")
TRIGGER_CPU, GATEWAY_CPU = 0, min(1, (os.cpu_count() or 1) - 1)


def _gateway(root: str, conn: Connection) -> None:
    os.sched_setaffinity(0, {GATEWAY_CPU})
    view = open_gateway_view("kill", root)
    check = view.check
    clock = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC
    conn.send("ready")
    blocked = False
    while True:
        v = check(1, 2, 3, 4).verdict
        if v is Verdict.BLOCKED and not blocked:
            conn.send(clock(mono))
            blocked = True
        elif v is Verdict.OK and blocked:
            blocked = False
            if conn.poll() and conn.recv() == "stop":
                return
            conn.send("ok")


def run(quick: bool = False) -> dict[str, Any]:
    n = 200 if quick else 2000
    warm = 20
    os.sched_setaffinity(0, {TRIGGER_CPU})
    with (
        tempfile.TemporaryDirectory(prefix="tectra-kb-", dir="/dev/shm") as root,
        tempfile.TemporaryDirectory(prefix="tectra-kb-state-") as state,
    ):
        store = StateStore(Path(state) / "state.json")
        ledger = KillLedger(Path(state) / "ledger.jsonl", "kill")
        block = open_block("kill", root, store)
        engine = KillEngine(block, ledger, store)
        engine.restore()
        parent, child = CTX.Pipe()
        proc = CTX.Process(target=_gateway, args=(root, child))
        proc.start()
        assert parent.recv() == "ready"
        samples = []
        internal = []
        clock, mono = time.clock_gettime_ns, time.CLOCK_MONOTONIC
        for i in range(n + warm):
            req = TriggerRequest(f"b{i}", Target(Scope.FIRM), Action.BLOCK, "bench", "perf")
            t0 = clock(mono)
            res = engine.trigger(req)
            seen = parent.recv()
            if i >= warm:
                samples.append(seen - t0)
                internal.append(res.trigger_to_block_ns)
            engine.clear(ClearRequest(f"b{i}", Target(Scope.FIRM), "bench", "perf"))
            assert parent.recv() == "ok"
        parent.send("stop")
        engine.trigger(TriggerRequest("end", Target(Scope.FIRM), Action.BLOCK, "bench", "perf"))
        parent.recv()  # the spinner saw the block; it reads "stop" when the block is lifted
        engine.clear(ClearRequest("end", Target(Scope.FIRM), "bench", "perf"))
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join()
        ledger.close()
        block.close()
    lat = np.array(samples, dtype=np.int64)
    summary = latency_summary(lat)
    return {
        "trigger_to_gateway_blocked": summary,
        "engine_trigger_to_block": latency_summary(np.array(internal, dtype=np.int64)),
        "target_p99_ns": 100_000,
        "meets_target": bool(summary["p99_ns"] < 100_000),
        "gateway_check": "GatewayView.check in a separate process, pinned",
    }
