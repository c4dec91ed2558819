"""replay: replaying one hour of recorded trading as a multiple of real time, zero diffs.

A synthetic capture spanning one hour of (virtual) time is recorded live through the same
path a service uses: `Recorder` around the reference component (`VwapComponent`: running VWAP
per instrument over TRADE inputs, TICK outputs), journaling every step's inputs and outputs.
The stream is bursty (Poisson batch sizes and gaps): 100 steps/s on average with ~10 trades
each, i.e. ~1,000 trade inputs and ~900 outputs per second, 64 instruments. The capture is then
replayed instantly (and again from the snapshot taken half way) through a fresh component;
the bench asserts zero diffs and reports the recorded span over the replay's wall time (the
real-time multiple). The hour is captured with one frame per step's inputs and one per its
outputs (`Recorder(batch_frames=True)`, the framing for high-rate components); a ten-minute
capture with one frame per record is replayed too. `--quick` records a tenth of each.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tectra.journal.capture import Recorder
from tectra.journal.reference import VwapComponent, synthetic_trades
from tectra.journal.replay import ReplayOptions, replay_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions

DISK_TMP = "/var/tmp"
MEAN_GAP_NS = 10_000_000  # 100 steps/s
MEAN_BATCH = 10


def _capture_and_replay(span_s: int, batch_frames: bool) -> dict[str, Any]:
    steps = span_s * 1_000_000_000 // MEAN_GAP_NS
    directory = Path(tempfile.mkdtemp(prefix="tectra-bench-replay-", dir=DISK_TMP))
    try:
        writer = JournalWriter(
            directory / "live",
            WriterOptions(fsync=FsyncPolicy.NONE, segment_max_bytes=64 << 20),
        )
        recorder = Recorder(VwapComponent(), writer, batch_frames=batch_frames)
        started = time.perf_counter()
        snapshot_at = steps // 2
        for i, (batch, now) in enumerate(
            synthetic_trades(11, batches=steps, mean_batch=MEAN_BATCH, mean_gap_ns=MEAN_GAP_NS)
        ):
            if i == snapshot_at:
                recorder.snapshot(now)
            recorder.step(batch, now)
        writer.close()
        record_s = time.perf_counter() - started
        journal_bytes = sum(s.bytes for s in writer.manifest.segments)
        report = replay_journal(directory / "live", VwapComponent())
        assert report.zero, report.format_text()
        half = replay_journal(
            directory / "live", VwapComponent(), options=ReplayOptions(from_snapshot=True)
        )
        assert half.zero, half.format_text()
        return {
            "capture": {
                "span_s": round(report.span_s, 1),
                "steps": report.steps,
                "input_records": report.inputs,
                "output_records": report.expected_outputs,
                "inputs_per_s_recorded": round(report.inputs / report.span_s),
                "frames": writer.stats.records,
                "journal_bytes": journal_bytes,
                "segments": len(writer.manifest.segments),
                "record_wall_s": round(record_s, 2),
            },
            "instant": {
                "wall_s": round(report.elapsed_s, 2),
                "realtime_multiple_ratio": round(report.realtime_multiple, 1),
                "steps_per_s": round(report.steps / report.elapsed_s),
                "records_per_s": round((report.inputs + report.actual_outputs) / report.elapsed_s),
                "divergences": report.divergences,
            },
            "from_snapshot": {
                "steps": half.steps,
                "wall_s": round(half.elapsed_s, 2),
                "realtime_multiple_ratio": round(half.realtime_multiple, 1),
                "divergences": half.divergences,
            },
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "one_hour_batch_frames": _capture_and_replay(360 if quick else 3600, batch_frames=True),
        "record_frames": _capture_and_replay(60 if quick else 600, batch_frames=False),
    }
