"""verify names each kind of damage, with the segment and byte offset where it is."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tectra.journal.format import SEGMENT_HEADER_SIZE, RecordType, encode_frame
from tectra.journal.manifest import MANIFEST_NAME, load_manifest, save_manifest
from tectra.journal.reader import JournalReader, SegmentReader
from tectra.journal.verify import Finding, FindingKind, Severity, verify_journal
from tectra.journal.writer import FsyncPolicy, JournalWriter, WriterOptions

from .conftest import write_journal

FRAME = 184  # a TRADE frame: 48 + 128 + 4 -> 180 -> 184


def _segments(d: Path) -> list[Path]:
    return JournalReader(d).paths


def _kinds(d: Path) -> dict[FindingKind, list[Finding]]:
    out: dict[FindingKind, list[Finding]] = {}
    for f in verify_journal(d).findings:
        out.setdefault(f.kind, []).append(f)
    return out


def test_a_clean_journal_verifies(journal_dir: Path) -> None:
    report = verify_journal(journal_dir)
    assert report.ok and not report.findings
    assert report.records_verified == 520
    assert report.journal_root == load_manifest(journal_dir).journal_root  # type: ignore[union-attr]
    assert "OK" in report.format_text()
    json.dumps(report.to_dict())


def test_bit_flip_in_a_payload(journal_dir: Path) -> None:
    seg = _segments(journal_dir)[2]
    data = bytearray(seg.read_bytes())
    data[SEGMENT_HEADER_SIZE + 3 * FRAME + 70] ^= 0x04
    seg.write_bytes(bytes(data))
    kinds = _kinds(journal_dir)
    crc = kinds[FindingKind.CRC_MISMATCH]
    assert len(crc) == 1
    assert crc[0].segment == seg.name and crc[0].offset == SEGMENT_HEADER_SIZE + 3 * FRAME
    assert FindingKind.MERKLE_ROOT in kinds and FindingKind.SEGMENT_HASH in kinds


def test_truncated_segment(journal_dir: Path) -> None:
    seg = _segments(journal_dir)[1]
    data = seg.read_bytes()
    seg.write_bytes(data[: SEGMENT_HEADER_SIZE + 10 * FRAME + 33])
    trunc = _kinds(journal_dir)[FindingKind.TRUNCATED]
    offsets = {f.offset for f in trunc if f.segment == seg.name}
    assert SEGMENT_HEADER_SIZE + 10 * FRAME in offsets  # the last whole frame ends here


def test_missing_records_are_a_gap(tmp_path: Path) -> None:
    d = tmp_path / "j"
    w = JournalWriter(d, WriterOptions(fsync=FsyncPolicy.NONE))
    w.append(b"a", type_code=RecordType.NOTE)
    w.abandon()
    seg = _segments(d)[0]
    # Append frames by hand with seq 2 and then 5: records 3 and 4 are missing.
    with seg.open("ab") as f:
        for seq in (2, 5):
            f.write(
                encode_frame(
                    b"b",
                    type_code=RecordType.NOTE,
                    kind=0,
                    component=0,
                    seq=seq,
                    mono_ns=0,
                    real_ns=0,
                    step=0,
                )
            )
    gap = _kinds(d)[FindingKind.SEQ_GAP]
    assert gap[0].seq == 5 and "2 records missing" in gap[0].detail


def test_reordered_records(tmp_path: Path) -> None:
    d = tmp_path / "j"
    w = JournalWriter(d, WriterOptions(fsync=FsyncPolicy.NONE))
    w.append(b"a", type_code=RecordType.NOTE)
    w.abandon()
    seg = _segments(d)[0]
    with seg.open("ab") as f:
        for seq in (3, 2):
            f.write(
                encode_frame(
                    b"b",
                    type_code=RecordType.NOTE,
                    kind=0,
                    component=0,
                    seq=seq,
                    mono_ns=0,
                    real_ns=0,
                    step=0,
                )
            )
    kinds = _kinds(d)
    assert kinds[FindingKind.SEQ_GAP][0].seq == 3
    assert kinds[FindingKind.SEQ_REORDER][0].seq == 2


def _edit_manifest(d: Path, edit: Callable[[list[object]], list[object]]) -> None:
    manifest = load_manifest(d)
    assert manifest is not None
    manifest.segments = edit(manifest.segments)  # type: ignore[assignment, arg-type]
    save_manifest(d, manifest)  # re-checksummed: only the cross-checks can catch it


def test_removed_segment(journal_dir: Path) -> None:
    victim = _segments(journal_dir)[3]
    os.unlink(victim)
    missing = _kinds(journal_dir)[FindingKind.SEGMENT_MISSING]
    assert missing[0].segment == victim.name


def test_removed_segment_and_manifest_entry(journal_dir: Path) -> None:
    victim = _segments(journal_dir)[3]
    os.unlink(victim)
    _edit_manifest(journal_dir, lambda segs: [s for s in segs if s.file != victim.name])  # type: ignore[attr-defined]
    kinds = _kinds(journal_dir)
    assert FindingKind.HASH_CHAIN in kinds and FindingKind.SEQ_GAP in kinds


def test_reordered_segments(journal_dir: Path) -> None:
    a, b = _segments(journal_dir)[1:3]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    kinds = _kinds(journal_dir)
    assert {FindingKind.SEGMENT_ORDER, FindingKind.SEGMENT_HASH, FindingKind.HASH_CHAIN} <= set(
        kinds
    )


def test_changed_segment_with_recomputed_crc(journal_dir: Path) -> None:
    """A deliberate edit that fixes up the frame CRC is still caught by the hashes."""
    seg = _segments(journal_dir)[0]
    with SegmentReader(seg) as r:
        off = int(r.scan().offsets[2])
    data = bytearray(seg.read_bytes())
    frame = bytes(data[off : off + FRAME])
    payload = bytearray(frame[48 : 48 + 128])
    payload[40] ^= 1  # the price
    data[off : off + FRAME] = encode_frame(
        bytes(payload),
        type_code=18,
        kind=0,
        component=0,
        seq=3,
        mono_ns=int.from_bytes(frame[24:32], "little", signed=True),
        real_ns=int.from_bytes(frame[32:40], "little", signed=True),
        step=0,
    )
    seg.write_bytes(bytes(data))
    kinds = _kinds(journal_dir)
    assert FindingKind.CRC_MISMATCH not in kinds
    assert FindingKind.MERKLE_ROOT in kinds and FindingKind.SEGMENT_HASH in kinds


def test_tampered_manifest(journal_dir: Path) -> None:
    path = journal_dir / MANIFEST_NAME
    doc = json.loads(path.read_text())
    doc["segments"][1]["records"] += 1
    path.write_text(json.dumps(doc))
    assert FindingKind.MANIFEST_DAMAGED in _kinds(journal_dir)


def test_manifest_root_edited_and_rechecksummed(journal_dir: Path) -> None:
    import dataclasses

    _edit_manifest(
        journal_dir,
        lambda segs: [dataclasses.replace(segs[0], merkle_root="00" * 32), *segs[1:]],  # type: ignore[misc, type-var]
    )
    roots = _kinds(journal_dir)[FindingKind.MERKLE_ROOT]
    assert roots[0].segment == _segments(journal_dir)[0].name


def test_unsealed_tail_is_info_but_unsealed_middle_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "j"
    w = write_journal(d, batches=4, close=False)
    w.abandon()
    report = verify_journal(d)
    assert report.ok
    assert [f.severity for f in report.findings if f.kind is FindingKind.UNSEALED] == [
        Severity.INFO
    ]
    first = _segments(d)[0]
    first.write_bytes(first.read_bytes()[:-10])  # footer torn off a sealed segment
    kinds = _kinds(d)
    assert any(f.severity is Severity.ERROR for f in kinds[FindingKind.UNSEALED])


@pytest.mark.parametrize("where", [3, 20, 120])
def test_header_damage(journal_dir: Path, where: int) -> None:
    seg = _segments(journal_dir)[1]
    data = bytearray(seg.read_bytes())
    data[where] ^= 0xFF
    seg.write_bytes(bytes(data))
    bad = _kinds(journal_dir)[FindingKind.BAD_HEADER]
    assert bad[0].segment == seg.name and bad[0].offset == 0


def test_copy_of_a_journal_verifies(journal_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(journal_dir, copy)
    assert verify_journal(copy).ok
