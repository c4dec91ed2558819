"""verify: journal verification throughput in MB/s.

A journal of ITCH_EVENT records and FIX-sized opaque frames is written to disk in 16 MiB
segments, once with one frame per record (184-byte frames) and once with one RECORD_BATCH
frame per 4096 records (the journal role's market-data framing). `verify_journal` then checks
all it checks in production: every frame's CRC32C and sequence, the RFC 6962 Merkle root of
every segment against footer and manifest, every file's SHA-256, the footer index, the hash
chain, the schema payloads. Reported: MB/s and frames/s of that full verification (median of
runs; the first run may read from disk, later ones from the page cache; both reported).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benches._stats import median
from tectra.journal.format import RecordType
from tectra.journal.verify import verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import ITCH_EVENT, new_records

DISK_TMP = "/var/tmp"


def _verify_rate(quick: bool, batch_frames: bool) -> dict[str, Any]:
    target_bytes = (32 if quick else 256) << 20
    directory = Path(tempfile.mkdtemp(prefix="tectra-bench-verify-", dir=DISK_TMP))
    try:
        writer = JournalWriter(
            directory, WriterOptions(fsync=FsyncPolicy.NONE, segment_max_bytes=16 << 20)
        )
        recs = new_records(ITCH_EVENT, 4096)
        recs["seq"] = np.arange(4096)
        fix = [b"8=FIX.4.4\x019=178\x0135=D\x01" + bytes(150)] * 64
        while writer.stats.bytes < target_bytes:
            if batch_frames:
                writer.append_batch(recs)
            else:
                writer.append_records(recs)
            writer.append_payloads(fix, type_code=RecordType.FIX_MESSAGE)
        writer.close()
        runs = []
        for _ in range(1 if quick else 3):
            started = time.perf_counter()
            report = verify_journal(directory)
            seconds = time.perf_counter() - started
            assert report.ok, report.format_text()
            runs.append((report.bytes_verified / seconds / 1e6, report.records_verified / seconds))
        return {
            "journal_bytes": report.bytes_verified,
            "frames": report.records_verified,
            "segments": len(report.segments),
            "mb_per_s": round(median([r[0] for r in runs]), 1),
            "frames_per_s": round(median([r[1] for r in runs])),
            "first_run_mb_per_s": round(runs[0][0], 1),
            "runs_mb_per_s": [round(r[0], 1) for r in runs],
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(quick: bool = False) -> dict[str, Any]:
    return {
        "record_frames": _verify_rate(quick, batch_frames=False),
        "batch_frames": _verify_rate(quick, batch_frames=True),
    }
