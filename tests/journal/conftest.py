"""Shared helpers for journal tests: small journals written with known content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tectra.journal.format import RecordType
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions
from tectra.schema import TRADE, new_records


def trades(first_seq: int, n: int) -> np.ndarray:
    recs = new_records(TRADE, n)
    recs["seq"] = np.arange(first_seq, first_seq + n)
    recs["ts_ns"] = 1_000_000 + recs["seq"].astype(np.int64) * 1000
    recs["instrument_id"] = recs["seq"] % 7
    recs["price"] = 1_000_000 + recs["seq"].astype(np.int64)
    recs["qty"] = 100
    return recs


def write_journal(
    directory: Path,
    *,
    batches: int = 20,
    per_batch: int = 25,
    segment_max_bytes: int = 16384,
    close: bool = True,
    fsync: FsyncPolicy = FsyncPolicy.NONE,
) -> JournalWriter:
    """A journal of TRADE batches with a FIX message after every batch."""
    writer = JournalWriter(
        directory, WriterOptions(segment_max_bytes=segment_max_bytes, fsync=fsync, index_stride=8)
    )
    seq = 1
    for b in range(batches):
        writer.append_records(trades(seq, per_batch))
        seq += per_batch
        writer.append(
            f"8=FIX.4.4\x0135=D\x0111=ORD{b}\x01".encode(), type_code=RecordType.FIX_MESSAGE
        )
    if close:
        writer.close()
    return writer


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    d = tmp_path / "journal"
    write_journal(d)
    return d
