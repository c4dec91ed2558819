"""Cutting a window out of a journal into a journal of its own.

This module owns `cut_journal`: the frames of a sequence window, or of a time window (on the
monotonic or the realtime stamps), copied verbatim (same sequence numbers, timestamps and
CRCs) into new segments with their own manifest, footers and Merkle roots. A time window maps
to the sequence window from the first frame stamped at or after its start to the last frame
stamped at or before its end, so the cut is always a contiguous run of the original journal and
verifies on its own. The source's identity (journal name, component, host, clock domain, RNG
seed) is carried into the new segment headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tectra.journal.format import ClockDomain
from tectra.journal.reader import JournalReader, SegmentReader
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions

__all__ = ["CutError", "CutResult", "cut_journal"]


class CutError(ValueError):
    """The window is empty or malformed, or the destination is not empty."""


@dataclass(frozen=True, slots=True)
class CutResult:
    directory: Path
    first_seq: int
    last_seq: int
    records: int
    segments: int
    journal_root: str


def _seq_window_for_time(
    source: Path, start_ns: int | None, end_ns: int | None, clock: str
) -> tuple[int, int]:
    first: int | None = None
    last: int | None = None
    for fb in JournalReader(source).batches():
        t = fb.mono_ns if clock == "mono" else fb.real_ns
        inside = np.ones(len(fb), dtype=bool)
        if start_ns is not None:
            inside &= t >= start_ns
        if end_ns is not None:
            inside &= t <= end_ns
        hits = np.flatnonzero(inside)
        if hits.size:
            if first is None:
                first = int(fb.seq[int(hits[0])])
            last = int(fb.seq[int(hits[-1])])
    if first is None or last is None:
        raise CutError("no frame inside the time window")
    return first, last


def cut_journal(
    source: Path | str,
    destination: Path | str,
    *,
    start_seq: int | None = None,
    end_seq: int | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    clock: Literal["mono", "real"] = "mono",
    segment_max_bytes: int = 64 << 20,
    fsync: FsyncPolicy = FsyncPolicy.BATCH,
) -> CutResult:
    """Copy the window [start, end] (inclusive; open ends allowed) of `source` to `destination`
    (created; must not hold a journal). Give a sequence window or a time window, not both."""
    src, dst = Path(source), Path(destination)
    by_time = start_ns is not None or end_ns is not None
    if by_time and (start_seq is not None or end_seq is not None):
        raise CutError("give a sequence window or a time window, not both")
    if clock not in ("mono", "real"):
        raise CutError(f"clock must be mono or real, got {clock!r}")
    if dst.exists() and any(dst.iterdir()):
        raise CutError(f"{dst} is not empty")
    reader = JournalReader(src)
    if not reader.paths:
        raise CutError(f"{src} holds no journal segments")
    if by_time:
        start_seq, end_seq = _seq_window_for_time(src, start_ns, end_ns, clock)
    if start_seq is not None and end_seq is not None and end_seq < start_seq:
        raise CutError(f"empty window: seq {start_seq}..{end_seq}")
    with SegmentReader(reader.paths[0]) as first_segment:
        header = first_segment.header
    writer: JournalWriter | None = None
    records = 0
    try:
        for batch in reader.batches(start_seq=start_seq, end_seq=end_seq):
            if writer is None:
                # Opened at the first frame of the window, so the cut starts at its real seq
                # even when the window begins before the journal does.
                writer = JournalWriter(
                    dst,
                    WriterOptions(
                        journal=header.journal,
                        component=header.component,
                        host=header.host,
                        clock_domain=header.clock_domain or int(ClockDomain.MONOTONIC),
                        rng_seed=header.rng_seed,
                        segment_max_bytes=segment_max_bytes,
                        segment_max_age_s=0.0,
                        fsync=fsync,
                        first_seq=int(batch.seq[0]),
                    ),
                )
            writer.append_frames(batch)
            records += len(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None or records == 0:
        raise CutError(f"no frame with seq in {start_seq}..{end_seq}")
    manifest = writer.manifest
    return CutResult(
        directory=dst,
        first_seq=manifest.segments[0].first_seq,
        last_seq=manifest.segments[-1].last_seq,
        records=records,
        segments=len(manifest.segments),
        journal_root=manifest.journal_root,
    )
