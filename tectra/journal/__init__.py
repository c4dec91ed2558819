"""Journals: checksummed append-only segments, Merkle roots, crash recovery, deterministic replay.

This package owns everything the appliance records and how it is replayed:

* `format` — the segment file layout byte by byte (header, frames, footer) and the type space;
* `writer` — `JournalWriter`: batched appends, rotation, fsync policies, crash recovery;
* `reader` — `JournalReader` / `SegmentReader`: frames in numpy batches, seek by sequence;
* `merkle` — RFC 6962 hashing, roots and inclusion proofs; `manifest` — the segment list;
* `verify`, `cut`, `export` — operator tools; `cli` — `tectra journal ...`;
* `capture` — the `Component` protocol and the live `Recorder`; `replay` — the replay engine
  and diff report; `reference` — a small reference component used by tests and benchmarks;
* `service` — the `journal` role (`tectra run journal`).

`docs/journal.md` is the specification.
"""

from __future__ import annotations

from tectra.journal.capture import Component, OpaqueBatch, Recorder
from tectra.journal.format import FORMAT_VERSION, ClockDomain, RecordKind, RecordType
from tectra.journal.reader import FrameBatch, JournalReader, SegmentReader
from tectra.journal.replay import DiffReport, ReplayEngine, ReplayMode, ReplayOptions
from tectra.journal.verify import VerifyReport, verify_journal
from tectra.journal.writer import (
    FsyncPolicy,
    JournalCorruptError,
    JournalWriter,
    RecoveryReport,
    WriterOptions,
)

__all__ = [
    "FORMAT_VERSION",
    "ClockDomain",
    "Component",
    "DiffReport",
    "FrameBatch",
    "FsyncPolicy",
    "JournalCorruptError",
    "JournalReader",
    "JournalWriter",
    "OpaqueBatch",
    "RecordKind",
    "RecordType",
    "Recorder",
    "RecoveryReport",
    "ReplayEngine",
    "ReplayMode",
    "ReplayOptions",
    "SegmentReader",
    "VerifyReport",
    "WriterOptions",
    "verify_journal",
]
