"""Lifecycle transitions in the journal format: round trip, verify, export, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tectra.cli import main as tectra_main
from tectra.core.clock import VirtualClock
from tectra.core.lifecycle import Lifecycle, MemoryTransitionJournal, TransitionEvent
from tectra.journal.lifecycle import (
    JournalTransitionJournal,
    decode_transitions,
    encode_transition,
    lifecycle_journal_directory,
    read_lifecycle_journal,
)
from tectra.journal.reader import JournalReader
from tectra.journal.verify import verify_journal
from tectra.schema import LIFECYCLE_EVENT, Component
from tectra.schema import LifecycleState as S


def run_some(lc: Lifecycle) -> None:
    lc.transition(S.WARMUP, "start")
    lc.transition(S.READY, "warm")
    lc.transition(S.DEGRADED, "feed silent")
    lc.transition(S.READY, "stream whole again")
    lc.transition(S.HALTED, "kill switch: all")


def test_transitions_round_trip_and_verify(tmp_path: Path) -> None:
    directory = lifecycle_journal_directory(tmp_path, "gateway")
    mem = MemoryTransitionJournal()
    with JournalTransitionJournal(directory, "gateway") as journal:
        run_some(Lifecycle("gateway", journal, VirtualClock(5), realtime=VirtualClock(7)))
        run_some(Lifecycle("gateway", mem, VirtualClock(5), realtime=VirtualClock(7)))
        assert journal.writer.options.fsync == "always"
        assert journal.writer.durable_seq == journal.writer.written_seq == 5
    assert read_lifecycle_journal(directory) == mem.events
    report = verify_journal(directory)
    assert report.ok and report.records_verified == 5
    frames = next(JournalReader(directory).batches())
    assert (frames.type == LIFECYCLE_EVENT.type_id).all()
    assert (frames.component == int(Component.GATEWAY)).all()


def test_a_role_without_a_component_code_keeps_its_name(tmp_path: Path) -> None:
    directory = lifecycle_journal_directory(tmp_path, "consumer")
    with JournalTransitionJournal(directory, "consumer") as journal:
        Lifecycle("consumer", journal, VirtualClock()).transition(S.WARMUP, "start")
        # Readable while the segment is still active (no manifest yet).
        assert [e.component for e in journal.read_all()] == ["consumer"]
    assert [e.component for e in read_lifecycle_journal(directory)] == ["consumer"]


def test_restarts_append_to_the_same_journal(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    for _run in range(3):
        with JournalTransitionJournal(directory, "feed") as journal:
            lc = Lifecycle("feed", journal, VirtualClock())
            lc.transition(S.WARMUP, "start")
            lc.transition(S.READY, "warm")
    events = read_lifecycle_journal(directory)
    assert [e.seq for e in events] == [1, 2] * 3
    assert verify_journal(directory).ok


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_any_reason_is_kept_as_its_escaped_ascii_prefix(reason: str) -> None:
    event = TransitionEvent("kill", S.READY, S.HALTED, reason, 11, 22, 3)
    rec = encode_transition(event, pid=99)
    (back,) = decode_transitions(rec, np.array([22]), "kill")
    escaped = reason.encode("ascii", "backslashreplace")[:80].rstrip(b"\0").decode()
    assert back.reason == escaped
    assert (back.from_state, back.to_state, back.seq, back.mono_ns, back.real_ns) == (
        S.READY,
        S.HALTED,
        3,
        11,
        22,
    )
    assert int(rec["pid"][0]) == 99 and int(rec["component"][0]) == int(Component.KILL)


def test_closed_journal_refuses_and_the_state_does_not_change(tmp_path: Path) -> None:
    journal = JournalTransitionJournal(tmp_path / "j", "feed")
    journal.close()
    lc = Lifecycle("feed", journal, VirtualClock())
    with pytest.raises(ValueError, match="closed"):
        lc.transition(S.WARMUP, "start")
    assert lc.state is S.INIT


def test_export_writes_parquet(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    with JournalTransitionJournal(directory, "feed") as journal:
        run_some(Lifecycle("feed", journal, VirtualClock(1), realtime=VirtualClock(2)))
    assert tectra_main(["journal", "verify", str(directory)]) == 0
    assert tectra_main(["journal", "export", str(directory), str(tmp_path / "out")]) == 0
    (path,) = (tmp_path / "out").glob("*.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 5
    assert table.column("to_state").to_pylist() == [
        int(s) for s in (S.WARMUP, S.READY, S.DEGRADED, S.READY, S.HALTED)
    ]


_CHILD = textwrap.dedent(
    """
    import sys
    from tectra.core.clock import MonotonicClock
    from tectra.core.lifecycle import Lifecycle
    from tectra.journal.lifecycle import JournalTransitionJournal
    from tectra.schema import LifecycleState as S

    journal = JournalTransitionJournal(sys.argv[1], "feed")
    lc = Lifecycle("feed", journal, MonotonicClock())
    lc.transition(S.WARMUP, "start")
    lc.transition(S.READY, "warm")
    n = 0
    while True:
        lc.transition(S.DEGRADED if n % 2 == 0 else S.READY, f"flap {n}")
        n += 1
        print(lc.seq, flush=True)  # acknowledged: append returned after fdatasync
    """
)


@pytest.mark.parametrize("torn_bytes", [0, 13, 100])
def test_kill_9_then_reopen_truncates_the_torn_tail_and_keeps_every_acked_transition(
    tmp_path: Path, torn_bytes: int
) -> None:
    directory = tmp_path / "lifecycle-feed"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = 0
    for line in proc.stdout:
        acked = int(line)
        if acked >= 20:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (active,) = directory.glob("*.tjs")  # the crash left it unsealed
    if torn_bytes:
        # What a crash inside write(2) leaves: the start of a frame that never completed.
        with active.open("ab") as f:
            f.write(bytes(active.read_bytes()[256 : 256 + torn_bytes]))
    with JournalTransitionJournal(directory, "feed") as journal:
        actions = {a.action for a in journal.recovery.actions}
        assert "sealed" in actions
        assert ("truncated" in actions) == bool(torn_bytes)
        assert journal.recovery.truncated_bytes == torn_bytes
        events = journal.read_all()
        Lifecycle("feed", journal, VirtualClock()).transition(S.WARMUP, "restarted")
    seqs = [e.seq for e in events]
    assert seqs[:acked] == list(range(1, acked + 1))  # nothing acknowledged is lost
    assert seqs == list(range(1, len(seqs) + 1))
    assert read_lifecycle_journal(directory)[-1].reason == "restarted"
    assert verify_journal(directory).ok
