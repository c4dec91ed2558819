"""Journal verification: every check the format allows, each damage named with where it is.

This module owns `verify_journal` (a directory) and `verify_segment` (one file). They report,
as `Finding`s with the exact segment and byte offset:

* truncation (a segment ending inside a frame, a file shorter than the manifest says), torn or
  missing footers (an unsealed segment that is not the active tail);
* bit flips: a frame whose CRC32C does not match, a frame length that cannot be, a damaged
  segment header or footer;
* missing records (a sequence gap, within a segment or between segments) and reordered or
  duplicated ones (a sequence going backwards);
* schema payloads that are not one record of their type;
* segments changed, removed, added or reordered: the manifest's checksum, each file's SHA-256
  against the manifest, each header's position and previous-segment hash (a chain), the Merkle
  root recomputed from the frames against both the footer and the manifest, and the footer's
  index and counts against the frames.

Verification only reads. `VerifyReport.ok` is False when any finding is an error.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tectra.journal.format import (
    SEGMENT_HEADER_SIZE,
    FormatError,
    RecordType,
    decode_header,
    decode_record_batch,
    is_schema_type,
)
from tectra.journal.manifest import Manifest, ManifestError, SegmentEntry, load_manifest
from tectra.journal.merkle import MerkleBuilder
from tectra.journal.reader import FrameBatch, SegmentReader, find_next_frame, scan_frames
from tectra.journal.stepblock import decode_step_block
from tectra.schema import Component, SchemaError, layout_by_type_id

__all__ = [
    "Finding",
    "FindingKind",
    "SegmentSummary",
    "Severity",
    "VerifyReport",
    "verify_journal",
    "verify_segment",
]


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FindingKind(enum.StrEnum):
    MANIFEST_DAMAGED = "manifest_damaged"
    SEGMENT_MISSING = "segment_missing"
    SEGMENT_UNLISTED = "segment_unlisted"
    SEGMENT_ORDER = "segment_order"
    SEGMENT_SIZE = "segment_size"
    SEGMENT_HASH = "segment_hash"
    HASH_CHAIN = "hash_chain"
    MERKLE_ROOT = "merkle_root"
    BAD_HEADER = "bad_header"
    BAD_FOOTER = "bad_footer"
    UNSEALED = "unsealed"
    TRUNCATED = "truncated"
    CRC_MISMATCH = "crc_mismatch"
    BAD_FRAME = "bad_frame"
    SEQ_GAP = "seq_gap"
    SEQ_REORDER = "seq_reorder"
    INDEX_MISMATCH = "index_mismatch"
    COUNT_MISMATCH = "count_mismatch"
    SCHEMA_PAYLOAD = "schema_payload"
    SOURCE_GAP = "source_gap"  # a GAP frame: the producer lost records/steps (not damage)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or notable fact), located as precisely as the format allows."""

    kind: FindingKind
    severity: Severity
    segment: str | None
    detail: str
    offset: int | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = self.segment or "journal"
        if self.offset is not None:
            where += f" @ byte {self.offset}"
        if self.seq is not None:
            where += f" (seq {self.seq})"
        return f"{self.severity.value.upper():7} {self.kind.value:16} {where}: {self.detail}"


@dataclass(slots=True)
class SegmentSummary:
    """What verification computed for one segment."""

    file: str
    bytes: int
    records: int
    first_seq: int | None
    last_seq: int | None
    sealed: bool
    sha256: str
    merkle_root: str


@dataclass(slots=True)
class VerifyReport:
    """All findings for a journal directory, plus what was read."""

    directory: Path
    findings: list[Finding] = field(default_factory=list)
    segments: list[SegmentSummary] = field(default_factory=list)
    journal_root: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def bytes_verified(self) -> int:
        return sum(s.bytes for s in self.segments)

    @property
    def records_verified(self) -> int:
        return sum(s.records for s in self.segments)

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "ok": self.ok,
            "journal_root": self.journal_root,
            "records": self.records_verified,
            "bytes": self.bytes_verified,
            "segments": [asdict(s) for s in self.segments],
            "findings": [
                {**asdict(f), "kind": f.kind.value, "severity": f.severity.value}
                for f in self.findings
            ],
        }

    def format_text(self) -> str:
        lines = [
            f"journal {self.directory}: {'OK' if self.ok else 'DAMAGED'} — "
            f"{len(self.segments)} segments, {self.records_verified} records, "
            f"{self.bytes_verified} bytes"
        ]
        if self.journal_root:
            lines.append(f"journal root {self.journal_root}")
        for s in self.segments:
            span = f"seq {s.first_seq}..{s.last_seq}" if s.records else "no records"
            state = "sealed" if s.sealed else "unsealed"
            lines.append(
                f"  {s.file}: {span}, {s.records} records, {state}, merkle {s.merkle_root}"
            )
        lines.extend(f"  {f}" for f in self.findings)
        return "\n".join(lines)


def _check_record_batches(batch: FrameBatch, name: str, out: list[Finding]) -> None:
    for i in np.flatnonzero(batch.type == RecordType.RECORD_BATCH).tolist():
        try:
            decode_record_batch(batch.payload(i))
        except (FormatError, SchemaError) as exc:
            out.append(
                Finding(
                    FindingKind.SCHEMA_PAYLOAD,
                    Severity.ERROR,
                    name,
                    f"RECORD_BATCH: {exc}",
                    int(batch.offset[i]),
                    int(batch.seq[i]),
                )
            )


def _check_step_blocks_and_gaps(batch: FrameBatch, name: str, out: list[Finding]) -> None:
    """STEP_BLOCK payloads must decode; GAP frames (the source lost records or steps) are
    reported as warnings: the journal is intact, the recording is not complete."""
    types = batch.type
    for i in np.flatnonzero(types == RecordType.STEP_BLOCK).tolist():
        try:
            decode_step_block(batch.payload(i))
        except (FormatError, SchemaError) as exc:
            out.append(
                Finding(
                    FindingKind.SCHEMA_PAYLOAD,
                    Severity.ERROR,
                    name,
                    f"STEP_BLOCK: {exc}",
                    int(batch.offset[i]),
                    int(batch.seq[i]),
                )
            )
    for i in np.flatnonzero(types == RecordType.GAP).tolist():
        payload = bytes(batch.payload(i))
        lost = int.from_bytes(payload[:8], "little") if len(payload) >= 8 else None
        step = int(batch.step[i])
        out.append(
            Finding(
                FindingKind.SOURCE_GAP,
                Severity.WARNING,
                name,
                f"{_component_name(int(batch.component[i]))} lost {lost} "
                + (f"steps before step {step}" if step else "records before this point"),
                int(batch.offset[i]),
                int(batch.seq[i]),
            )
        )


def _component_name(cid: int) -> str:
    try:
        return Component(cid).name.lower()
    except ValueError:
        return f"component {cid}"


def _check_schema_payloads(batch: FrameBatch, name: str, out: list[Finding]) -> None:
    _check_record_batches(batch, name, out)
    _check_step_blocks_and_gaps(batch, name, out)
    types = batch.type
    for t in np.unique(types).tolist():
        if not is_schema_type(t):
            continue
        pick = np.flatnonzero(types == t)
        try:
            layout = layout_by_type_id(t)
        except SchemaError:
            i = int(pick[0])
            out.append(
                Finding(
                    FindingKind.SCHEMA_PAYLOAD,
                    Severity.WARNING,
                    name,
                    f"{pick.size} frames of type {t}, unknown to this build",
                    int(batch.offset[i]),
                    int(batch.seq[i]),
                )
            )
            continue
        wrong_len = np.flatnonzero(batch.payload_len[pick] != layout.itemsize)
        if wrong_len.size:
            i = int(pick[int(wrong_len[0])])
            out.append(
                Finding(
                    FindingKind.SCHEMA_PAYLOAD,
                    Severity.ERROR,
                    name,
                    f"{wrong_len.size} {layout.name} frames whose payload is not one "
                    f"{layout.itemsize}-byte record",
                    int(batch.offset[i]),
                    int(batch.seq[i]),
                )
            )
            continue
        recs = batch.select(pick).records(t)
        bad = np.flatnonzero(recs["type_id"] != t)
        if bad.size:
            i = int(pick[int(bad[0])])
            out.append(
                Finding(
                    FindingKind.SCHEMA_PAYLOAD,
                    Severity.ERROR,
                    name,
                    f"{bad.size} {layout.name} frames whose record header has another type_id",
                    int(batch.offset[i]),
                    int(batch.seq[i]),
                )
            )


def verify_segment(
    path: Path,
    *,
    entry: SegmentEntry | None = None,
    expected_first_seq: int | None = None,
    expected_prev_hash: str | None = None,
    expected_index: int | None = None,
    is_tail: bool = False,
) -> tuple[SegmentSummary, list[Finding]]:
    """Verify one segment file; `entry` (the manifest's) and the expectations add cross-checks.

    `is_tail` marks the journal's last file, which may legitimately be unsealed (active).
    """
    name = path.name
    out: list[Finding] = []
    raw_bytes = path.read_bytes()
    sha = hashlib.sha256(raw_bytes).hexdigest()
    size = len(raw_bytes)
    summary = SegmentSummary(name, size, 0, None, None, False, sha, "")
    if entry is not None:
        if size != entry.bytes:
            kind = FindingKind.TRUNCATED if size < entry.bytes else FindingKind.SEGMENT_SIZE
            out.append(
                Finding(
                    kind,
                    Severity.ERROR,
                    name,
                    f"file is {size} bytes, the manifest says {entry.bytes}",
                    min(size, entry.bytes),
                )
            )
        if sha != entry.sha256:
            out.append(
                Finding(
                    FindingKind.SEGMENT_HASH,
                    Severity.ERROR,
                    name,
                    f"SHA-256 {sha[:16]}… differs from the manifest's {entry.sha256[:16]}…",
                )
            )
    try:
        header = decode_header(raw_bytes)
    except FormatError as exc:
        out.append(Finding(FindingKind.BAD_HEADER, Severity.ERROR, name, str(exc), 0))
        return summary, out
    if expected_index is not None and header.segment_index != expected_index:
        out.append(
            Finding(
                FindingKind.SEGMENT_ORDER,
                Severity.ERROR,
                name,
                f"header says segment {header.segment_index}, its place is {expected_index}",
                0,
            )
        )
    if expected_prev_hash is not None and header.prev_segment_hash.hex() != expected_prev_hash:
        out.append(
            Finding(
                FindingKind.HASH_CHAIN,
                Severity.ERROR,
                name,
                "header's previous-segment hash is not the previous segment's SHA-256 "
                "(a segment before it was changed, removed or reordered)",
                0,
            )
        )
    reader = SegmentReader(path)
    try:
        trailer = reader.trailer
        summary.sealed = trailer is not None
        if trailer is None:
            sev = Severity.INFO if is_tail else Severity.ERROR
            what = "active segment (no footer yet)" if is_tail else "no valid footer"
            out.append(
                Finding(
                    FindingKind.UNSEALED, sev, name, f"{what}: {reader.footer_error}", reader.size
                )
            )
        data = reader.data
        end = reader.frames_end
        pos = SEGMENT_HEADER_SIZE
        merkle = MerkleBuilder()
        damaged = False
        expected = header.first_seq if expected_first_seq is None else expected_first_seq
        if header.first_seq != expected:
            out.append(
                Finding(
                    FindingKind.SEQ_GAP if header.first_seq > expected else FindingKind.SEQ_REORDER,
                    Severity.ERROR,
                    name,
                    f"segment starts at seq {header.first_seq}, expected {expected}",
                    0,
                    header.first_seq,
                )
            )
            expected = header.first_seq
        next_seq: int | None = expected
        all_offsets: list[np.ndarray] = []
        all_seqs: list[np.ndarray] = []
        while pos < end:
            result = scan_frames(data, pos, end, limit=65536)
            batch = FrameBatch(path, data, result.offsets)
            n = len(batch)
            if n:
                seqs = batch.seq.astype(np.int64)
                all_offsets.append(batch.offset)
                all_seqs.append(seqs)
                want = np.empty(n, dtype=np.int64)
                want[0] = seqs[0] if next_seq is None else next_seq
                want[1:] = seqs[:-1] + 1
                off = np.flatnonzero(seqs != want)
                for i in off[:20].tolist():
                    got, exp = int(seqs[i]), int(want[i])
                    kind = FindingKind.SEQ_GAP if got > exp else FindingKind.SEQ_REORDER
                    what = (
                        f"seq {got} follows {exp - 1}: {got - exp} records missing"
                        if got > exp
                        else f"seq {got} after {exp - 1}: out of order or duplicated"
                    )
                    out.append(Finding(kind, Severity.ERROR, name, what, int(batch.offset[i]), got))
                next_seq = int(seqs[-1]) + 1
                # Frames of one scan are back to back: hash them as one run.
                lens = batch.frame_len.tolist()
                first_off = int(batch.offset[0])
                merkle.add_data(data.data[first_off : first_off + sum(lens)], lens)
                _check_schema_payloads(batch, name, out)
            if result.problem is None:
                pos = result.stop
                continue
            damaged = True
            nxt = find_next_frame(data, result.stop + 8, end)
            stop = result.stop
            if result.problem == "crc mismatch":
                out.append(
                    Finding(
                        FindingKind.CRC_MISMATCH,
                        Severity.ERROR,
                        name,
                        "frame CRC32C mismatch (bytes changed after they were written)",
                        stop,
                        int(np.frombuffer(data[stop + 16 : stop + 24].tobytes(), "<u8")[0]),
                    )
                )
            elif nxt is None and result.problem == "truncated":
                out.append(
                    Finding(
                        FindingKind.TRUNCATED,
                        Severity.ERROR,
                        name,
                        f"segment ends inside a frame: {end - stop} bytes after the last whole "
                        "frame",
                        stop,
                        next_seq,
                    )
                )
            elif nxt is None and trailer is None:
                out.append(
                    Finding(
                        FindingKind.TRUNCATED,
                        Severity.ERROR,
                        name,
                        f"torn tail: {end - stop} bytes after the last whole frame are not a "
                        f"frame ({result.problem})",
                        stop,
                        next_seq,
                    )
                )
            else:
                out.append(
                    Finding(
                        FindingKind.BAD_FRAME,
                        Severity.ERROR,
                        name,
                        f"{result.problem}: frame header damaged",
                        stop,
                    )
                )
            if nxt is None:
                break
            next_seq = None  # resynchronised: the damaged frames' sequence is unknown
            pos = nxt
        offsets = np.concatenate(all_offsets) if all_offsets else np.zeros(0, np.int64)
        seqs_all = np.concatenate(all_seqs) if all_seqs else np.zeros(0, np.int64)
        summary.records = int(offsets.shape[0])
        if summary.records:
            summary.first_seq = int(seqs_all[0])
            summary.last_seq = int(seqs_all[-1])
        root = merkle.root().hex()
        summary.merkle_root = root
        if trailer is not None:
            if trailer.merkle_root.hex() != root:
                out.append(
                    Finding(
                        FindingKind.MERKLE_ROOT,
                        Severity.ERROR,
                        name,
                        f"Merkle root over the frames {root[:16]}… differs from the footer's "
                        f"{trailer.merkle_root.hex()[:16]}…"
                        + (" (frames damaged)" if damaged else ""),
                        trailer.frames_end,
                    )
                )
            if trailer.record_count != summary.records or (
                summary.records
                and (trailer.first_seq, trailer.last_seq) != (summary.first_seq, summary.last_seq)
            ):
                out.append(
                    Finding(
                        FindingKind.COUNT_MISMATCH,
                        Severity.ERROR,
                        name,
                        f"footer says {trailer.record_count} records seq {trailer.first_seq}.."
                        f"{trailer.last_seq}; the frames are {summary.records} records "
                        f"seq {summary.first_seq}..{summary.last_seq}",
                        trailer.frames_end,
                    )
                )
            if reader.index.shape[0]:
                idx_off = reader.index["offset"].astype(np.int64)
                pos_in = np.searchsorted(offsets, idx_off)
                pos_in = np.minimum(pos_in, max(offsets.shape[0] - 1, 0))
                ok = (
                    (offsets.shape[0] > 0)
                    & (offsets[pos_in] == idx_off)
                    & (seqs_all[pos_in] == reader.index["seq"].astype(np.int64))
                )
                bad = np.flatnonzero(~ok)
                if bad.size and not damaged:
                    i = int(bad[0])
                    out.append(
                        Finding(
                            FindingKind.INDEX_MISMATCH,
                            Severity.ERROR,
                            name,
                            f"{bad.size} footer index entries do not point at their frame",
                            int(idx_off[i]),
                            int(reader.index["seq"][i]),
                        )
                    )
        if entry is not None:
            if entry.merkle_root != root:
                out.append(
                    Finding(
                        FindingKind.MERKLE_ROOT,
                        Severity.ERROR,
                        name,
                        f"Merkle root over the frames {root[:16]}… differs from the manifest's "
                        f"{entry.merkle_root[:16]}…",
                    )
                )
            if (entry.records, entry.first_seq, entry.last_seq) != (
                summary.records,
                summary.first_seq if summary.records else entry.first_seq,
                summary.last_seq if summary.records else entry.last_seq,
            ):
                out.append(
                    Finding(
                        FindingKind.COUNT_MISMATCH,
                        Severity.ERROR,
                        name,
                        f"manifest says {entry.records} records seq {entry.first_seq}.."
                        f"{entry.last_seq}; the file holds {summary.records} "
                        f"seq {summary.first_seq}..{summary.last_seq}",
                    )
                )
    finally:
        reader.close()
    return summary, out


def verify_journal(directory: Path | str) -> VerifyReport:
    """Verify a journal directory: manifest, every segment, and how they chain."""
    directory = Path(directory)
    report = VerifyReport(directory)
    manifest: Manifest | None = None
    try:
        manifest = load_manifest(directory)
    except ManifestError as exc:
        report.findings.append(
            Finding(FindingKind.MANIFEST_DAMAGED, Severity.ERROR, "manifest.json", str(exc))
        )
    entries = manifest.segments if manifest is not None else []
    if manifest is not None:
        report.journal_root = manifest.journal_root
    on_disk = sorted(p.name for p in directory.glob("*.tjs"))
    listed = {e.file for e in entries}
    last_listed = entries[-1].file if entries else ""
    # Segments in journal order: the manifest's, then unlisted files after its last one.
    plan: list[tuple[str, SegmentEntry | None]] = [(e.file, e) for e in entries]
    for fname in on_disk:
        if fname in listed:
            continue
        if manifest is not None and fname < last_listed:
            report.findings.append(
                Finding(
                    FindingKind.SEGMENT_UNLISTED,
                    Severity.ERROR,
                    fname,
                    "segment file not in the manifest, before its last segment",
                )
            )
            continue
        plan.append((fname, None))
    if manifest is None and not on_disk:
        # An empty directory is an empty journal (a writer that never appended); a path that
        # does not exist is a mistake worth failing on.
        exists = directory.is_dir()
        report.findings.append(
            Finding(
                FindingKind.SEGMENT_MISSING,
                Severity.INFO if exists else Severity.ERROR,
                None,
                "empty journal (no segments yet)" if exists else f"no directory {directory}",
            )
        )
    prev_entry: SegmentEntry | None = None
    prev_hash: str | None = None
    next_seq: int | None = None
    expected_index: int | None = None
    for i, (fname, entry) in enumerate(plan):
        path = directory / fname
        if entry is not None:
            if prev_entry is not None:
                if entry.index <= prev_entry.index:
                    report.findings.append(
                        Finding(
                            FindingKind.SEGMENT_ORDER,
                            Severity.ERROR,
                            fname,
                            f"manifest lists segment {entry.index} after {prev_entry.index}",
                        )
                    )
                if entry.prev_sha256 != prev_entry.sha256:
                    report.findings.append(
                        Finding(
                            FindingKind.HASH_CHAIN,
                            Severity.ERROR,
                            fname,
                            "manifest entry does not chain to the previous segment's hash",
                        )
                    )
            if not path.exists():
                report.findings.append(
                    Finding(
                        FindingKind.SEGMENT_MISSING,
                        Severity.ERROR,
                        fname,
                        f"listed (seq {entry.first_seq}..{entry.last_seq}, {entry.records} "
                        "records) but the file is missing",
                        seq=entry.first_seq,
                    )
                )
                prev_entry, prev_hash = entry, entry.sha256
                next_seq = entry.last_seq + 1
                expected_index = entry.index + 1
                continue
        summary, findings = verify_segment(
            path,
            entry=entry,
            expected_first_seq=next_seq,
            expected_prev_hash=prev_hash if prev_hash is not None else "00" * 32,
            expected_index=expected_index if expected_index is not None else 0,
            is_tail=i == len(plan) - 1,
        )
        if entry is None and summary.sealed and i != len(plan) - 1:
            findings.append(
                Finding(
                    FindingKind.SEGMENT_UNLISTED,
                    Severity.WARNING,
                    fname,
                    "sealed but not yet in the manifest (the writer lists it when it reopens)",
                )
            )
        report.segments.append(summary)
        report.findings.extend(findings)
        prev_entry = entry if entry is not None else prev_entry
        prev_hash = entry.sha256 if entry is not None else summary.sha256
        if summary.last_seq is not None:
            next_seq = summary.last_seq + 1
        elif entry is not None:
            next_seq = entry.last_seq + 1
        expected_index = (entry.index if entry is not None else (expected_index or 0)) + 1
    return report
