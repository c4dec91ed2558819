"""Restart recovery: rebuild the gateway core's state from its own capture.

With `gateway.capture = true` the journal under STATE_DIR/journal/gateway holds a snapshot of
the core (at start and every `snapshot_interval_s`) and every step's inputs after it. A gateway
that restarts (a clean stop, or `kill -9`) feeds those recorded inputs through the same step
function from the latest snapshot — exactly what `tectra journal replay` does, outputs compared
and nothing sent — and takes the resulting state as its own: its open orders, positions, risk
exposure, references and OUCH tokens are back, the venue session resumes at the first venue
message the old process had not applied (the core counts them), and reports the venue sends
for orders placed just before the crash reach their clients.

The journal's writer truncates a torn last record when it is opened (a `kill -9` mid-append),
so recovery reads only whole steps. A divergence between the replayed and recorded outputs
means the code changed between the two runs: recovery still takes the replayed state (it is
what this code would have done with those inputs) and reports the divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tectra.gateway.replay import replay_component
from tectra.journal.replay import DiffReport, ReplayError, ReplayOptions, replay_journal

__all__ = ["Recovered", "last_step", "recover_core_state"]


@dataclass(frozen=True)
class Recovered:
    """The core state rebuilt from a capture, and what the replay found."""

    snapshot: bytes
    steps: int
    divergences: int
    report: DiffReport


def last_step(journal_dir: Path, component: int) -> int:
    """The highest step number `component` journaled in `journal_dir` (0 when none): a
    restarted recorder continues after it, so step numbers stay unique in the journal."""
    from tectra.journal.reader import JournalReader

    if not journal_dir.is_dir():
        return 0
    best = 0
    for fb in JournalReader(journal_dir).batches(verify_crc=False):
        mine = fb.component == component
        if mine.any():
            best = max(best, int(fb.step[mine].max()))
    return best


def recover_core_state(journal_dir: Path) -> Recovered | None:
    """The core's state at the end of the capture in `journal_dir`, or None when there is no
    capture with a snapshot to start from (first start, or capture was off)."""
    if not journal_dir.is_dir() or not any(journal_dir.iterdir()):
        return None
    core = replay_component()
    try:
        report = replay_journal(journal_dir, core, options=ReplayOptions(from_snapshot=True))
    except ReplayError:
        return None  # no snapshot in the journal: nothing to start from
    if not report.snapshot_steps:
        return None
    return Recovered(core.snapshot(), report.steps, report.divergences, report)
