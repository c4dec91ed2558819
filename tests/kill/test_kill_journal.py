"""Kill capture in the journal: every command sent, ack received and ledger record lands in
STATE_DIR/journal/kill; `tectra journal verify` passes on it and `tectra journal export` gives
the KILL_COMMAND / KILL_ACK records and the ledger NOTEs in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tectra.io.killblock import Scope
from tectra.journal.writer import FsyncPolicy, WriterOptions
from tectra.kill.engine import Action, ClearRequest, Target, TriggerRequest
from tectra.kill.journal import KillJournal
from tectra.kill.ledger import LedgerEntry
from tectra.kill.wire import kill_id_u64
from tectra.schema import KillAction

from .conftest import FakeGateway, Rig, make_rig
from .test_fanout_local import subscribers, wait_for

REPO = Path(__file__).resolve().parents[2]


def _tectra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tectra", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_triggers_actions_acks_and_clears_are_journaled(shm_root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    jdir = state / "journal" / "kill"
    journal = KillJournal(jdir, WriterOptions(fsync=FsyncPolicy.ALWAYS))
    journal.start()
    rig = make_rig(
        shm_root, state, fanout=True, ack_timeout_s=1.0, confirm_timeout_s=0.5, journal=journal
    )
    rig.engine.restore()
    gw = FakeGateway(open=4)
    try:
        with subscribers(rig.run_dir, gw_a=gw):
            res = rig.engine.trigger(
                TriggerRequest("j-1", Target(Scope.VENUE, 1), Action.CANCEL, "drill", "ops")
            )
            assert res.applied and [a.cancels_sent for a in res.acks] == [4]
            gw.confirm(kill_id_u64("j-1"), 4)
            assert wait_for(lambda: bool(_final_acks(rig)), 3.0)  # the progress ack arrived
            assert rig.engine.clear(ClearRequest("j-1", Target(Scope.VENUE, 1), "done", "risk")).ok
            assert wait_for(lambda: journal.stats.acks >= 3, 2.0)  # cancel x2, clear
    finally:
        journal.close()
        rig.close()
    assert journal.stats.dropped == 0 and journal.stats.errors == 0

    verify = _tectra("journal", "verify", str(jdir), "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    out = tmp_path / "export"
    export = _tectra("journal", "export", str(jdir), str(out))
    assert export.returncode == 0, export.stdout + export.stderr
    tables = {p.stem: pq.read_table(p).to_pydict() for p in out.glob("*.parquet")}
    assert {"KILL_COMMAND", "KILL_ACK"} <= set(tables), sorted(tables)
    cmds = tables["KILL_COMMAND"]
    assert cmds["kill_id"] == [kill_id_u64("j-1")] * 2
    assert cmds["action"] == [int(KillAction.CANCEL_ALL), int(KillAction.CLEAR)]
    acks = tables["KILL_ACK"]
    rows = zip(acks["action"], acks["cancels_sent"], acks["cancels_confirmed"], strict=True)
    cancel_acks = [(s, c) for a, s, c in rows if a == int(KillAction.CANCEL_ALL)]
    assert cancel_acks[0] == (4, 0) and cancel_acks[-1] == (4, 4)
    # Every ledger record, in ledger order, as a NOTE.
    note = next(k for k in tables if k not in {"KILL_COMMAND", "KILL_ACK"})
    notes = [json.loads(bytes(p))["ledger"] for p in tables[note]["payload"]]
    ledger = [e.to_dict() for e in rig.ledger.entries()]
    assert notes == ledger
    assert [n["kind"] for n in notes][:2] == ["trigger", "action"]
    assert {"ack", "clear"} <= {n["kind"] for n in notes}
    assert any(n["kind"] == "ack" and n["payload"].get("final") for n in notes)


def _final_acks(rig: Rig) -> list[LedgerEntry]:
    rig.engine.tick()
    return [e for e in rig.ledger.entries() if e.kind == "ack" and e.payload.get("final")]
