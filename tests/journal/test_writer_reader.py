"""Writer and reader: round trips, rotation, seeking, acknowledgement, crash recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tectra.core.clock import VirtualClock
from tectra.journal.format import SEGMENT_HEADER_SIZE, RecordKind, RecordType
from tectra.journal.manifest import MANIFEST_NAME, load_manifest
from tectra.journal.reader import CorruptFrameError, JournalReader, SegmentReader
from tectra.journal.verify import verify_journal
from tectra.journal.writer import (
    FsyncPolicy,
    JournalCorruptError,
    JournalLockedError,
    JournalWriter,
    WriterOptions,
)
from tectra.schema import TRADE

from .conftest import trades, write_journal


def _all_frames(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    seqs, types = [], []
    for fb in JournalReader(directory).batches(max_frames=37):
        seqs.append(fb.seq.copy())
        types.append(fb.type.copy())
    return np.concatenate(seqs), np.concatenate(types)


def test_round_trip_across_rotations(journal_dir: Path) -> None:
    seqs, types = _all_frames(journal_dir)
    assert np.array_equal(seqs, np.arange(1, 20 * 26 + 1))
    assert (types == TRADE.type_id).sum() == 500
    assert (types == RecordType.FIX_MESSAGE).sum() == 20
    manifest = load_manifest(journal_dir)
    assert manifest is not None and len(manifest.segments) > 5
    assert all(s.bytes <= 16384 + 4096 for s in manifest.segments)
    # Schema records come back as the very records written.
    got = np.concatenate([fb.records(TRADE.type_id) for fb in JournalReader(journal_dir).batches()])
    want = np.concatenate([trades(1 + 25 * b, 25) for b in range(20)])
    assert got.tobytes() == want.tobytes()
    assert verify_journal(journal_dir).ok


def test_seek_by_sequence_uses_the_index(journal_dir: Path) -> None:
    for start in (1, 2, 9, 250, 519, 520):
        batch = next(JournalReader(journal_dir).batches(start_seq=start, end_seq=start + 3))
        assert int(batch.seq[0]) == start
    for path in JournalReader(journal_dir).paths:
        with SegmentReader(path) as seg:
            assert seg.sealed and seg.index.shape[0] > 0
            for seq, offset in seg.index.tolist():
                assert seg.offset_for_seq(seq) == offset
    batches = list(JournalReader(journal_dir).batches(start_seq=100, end_seq=110))
    assert np.concatenate([b.seq for b in batches]).tolist() == list(range(100, 111))


def test_payloads_and_opaque_types(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j", WriterOptions(fsync=FsyncPolicy.NONE)) as w:
        first, last = w.append_payloads([b"", b"x" * 1000, b"abc"], type_code=RecordType.RAW_PACKET)
        assert (first, last) == (1, 3)
        seq = w.append(b"note", type_code=RecordType.NOTE, kind=RecordKind.EVENT, step=5)
        assert seq == 4
    fb = next(JournalReader(tmp_path / "j").batches())
    assert [bytes(fb.payload(i)) for i in range(4)] == [b"", b"x" * 1000, b"abc", b"note"]
    assert int(fb.step[3]) == 5


def test_age_rotation_with_a_virtual_clock(tmp_path: Path) -> None:
    clock = VirtualClock(1)
    w = JournalWriter(
        tmp_path / "j",
        WriterOptions(segment_max_age_s=1.0, fsync=FsyncPolicy.NONE),
        mono_clock=clock,
    )
    w.append_records(trades(1, 3))
    clock.advance(500_000_000)
    w.tick()
    assert w.stats.rotations_age == 0
    clock.advance(600_000_000)
    w.tick()  # idle, but the segment is too old: sealed without waiting for an append
    assert w.stats.rotations_age == 1 and w.segment_path is None
    w.append_records(trades(4, 3))
    w.close()
    assert [s.records for s in w.manifest.segments] == [3, 3]


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_acknowledgement_per_policy(tmp_path: Path, policy: FsyncPolicy) -> None:
    clock = VirtualClock(1)
    w = JournalWriter(
        tmp_path / "j", WriterOptions(fsync=policy, batch_interval_s=0.01), mono_clock=clock
    )
    w.append_records(trades(1, 10))
    assert w.written_seq == 10
    if policy is FsyncPolicy.ALWAYS:
        assert w.durable_seq == 10 and w.stats.fsyncs >= 1
    else:
        assert w.durable_seq == 0
    clock.advance(20_000_000)
    w.tick()
    assert w.durable_seq == (10 if policy is not FsyncPolicy.NONE else 0)
    with w.group():
        w.append_records(trades(11, 5))
        w.append(b"x", type_code=RecordType.NOTE)
        assert w.written_seq == 10  # nothing acknowledged inside a group
    assert w.written_seq == 16
    w.close()
    assert w.durable_seq == (16 if policy is not FsyncPolicy.NONE else 0)


def test_one_writer_per_directory(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path / "j")
    with pytest.raises(JournalLockedError):
        JournalWriter(tmp_path / "j")
    w.close()
    JournalWriter(tmp_path / "j").close()


def test_reopen_continues_the_sequence_and_chain(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, batches=3)
    w = JournalWriter(d, WriterOptions(fsync=FsyncPolicy.NONE))
    assert w.recovery.clean and w.next_seq == 79
    w.append_records(trades(100, 2))
    w.close()
    seqs, _ = _all_frames(d)
    assert np.array_equal(seqs, np.arange(1, 81))
    assert verify_journal(d).ok


def _crashed_journal(d: Path) -> Path:
    """A journal whose writer died with an unsealed last segment; returns that segment."""
    w = write_journal(d, batches=4, close=False, segment_max_bytes=1 << 20)
    path = w.segment_path
    assert path is not None
    w.abandon()
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=1, max_value=183))
def test_torn_last_frame_is_truncated_and_reported(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    d = tmp_path_factory.mktemp("torn")
    seg = _crashed_journal(d)
    data = seg.read_bytes()
    # The last frame is a FIX message; tear the file `cut` bytes before its end.
    with SegmentReader(seg) as reader:
        last_off = int(reader.scan().offsets[-1])
    torn_at = max(last_off, len(data) - cut)
    seg.write_bytes(data[:torn_at])
    w = JournalWriter(d, WriterOptions(fsync=FsyncPolicy.NONE))
    actions = {a.action: a for a in w.recovery.actions}
    if torn_at > last_off:
        assert actions["truncated"].offset == last_off
        assert actions["truncated"].dropped_bytes == torn_at - last_off
    assert "sealed" in actions
    assert w.next_seq == 104  # 4 x (25 + 1) records, the torn one dropped
    w.close()
    report = verify_journal(d)
    assert report.ok, report.format_text()


def test_garbage_tail_and_missing_footer(tmp_path: Path) -> None:
    d = tmp_path / "j"
    seg = _crashed_journal(d)
    with seg.open("ab") as f:
        f.write(b"\x00" * 4096)  # a power loss can leave zeros past the last write
    w = JournalWriter(d, WriterOptions(fsync=FsyncPolicy.NONE))
    assert [a.action for a in w.recovery.actions] == ["truncated", "sealed"]
    assert w.recovery.truncated_bytes == 4096
    assert w.next_seq == 105
    w.close()
    assert verify_journal(d).ok


def test_damage_in_the_middle_is_refused_not_truncated(tmp_path: Path) -> None:
    d = tmp_path / "j"
    seg = _crashed_journal(d)
    data = bytearray(seg.read_bytes())
    data[SEGMENT_HEADER_SIZE + 60] ^= 0x10  # inside the first frame: good frames follow
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="valid frame follows"):
        JournalWriter(d)
    assert seg.read_bytes() == bytes(data)  # nothing was changed


def test_sealed_but_unlisted_segment_is_listed(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, batches=6)
    manifest = json.loads((d / MANIFEST_NAME).read_text())
    # Simulate a crash between sealing the last segment and saving the manifest.
    from tectra.journal.manifest import Manifest, SegmentEntry, save_manifest

    entries = [SegmentEntry(**e) for e in manifest["segments"]]
    save_manifest(
        d, Manifest(manifest["journal"], manifest["component"], manifest["host"], entries[:-1])
    )
    w = JournalWriter(d)
    assert [a.action for a in w.recovery.actions] == ["listed"]
    assert w.manifest.segments[-1] == entries[-1]
    w.close()


def test_empty_segment_after_crash_is_removed(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, batches=2)
    w = JournalWriter(d)
    w.append(b"x", type_code=RecordType.NOTE)
    path = w.segment_path
    assert path is not None
    w.abandon()
    path.write_bytes(path.read_bytes()[: SEGMENT_HEADER_SIZE + 10])
    w = JournalWriter(d)
    assert [a.action for a in w.recovery.actions] == ["removed"]
    assert not path.exists()
    w.close()


def test_reader_raises_at_a_bad_frame(journal_dir: Path) -> None:
    path = JournalReader(journal_dir).paths[1]
    data = bytearray(path.read_bytes())
    data[SEGMENT_HEADER_SIZE + 200] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFrameError) as err:
        for _ in JournalReader(journal_dir).batches():
            pass
    assert err.value.segment == path and err.value.offset == SEGMENT_HEADER_SIZE + 184


@given(st.lists(st.integers(0, 40), min_size=1, max_size=25), st.integers(600, 5000))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_batching_reads_back_identically(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], max_bytes: int
) -> None:
    d = tmp_path_factory.mktemp("prop")
    w = JournalWriter(
        d, WriterOptions(segment_max_bytes=max_bytes, fsync=FsyncPolicy.NONE, index_stride=3)
    )
    seq = 1
    expected: list[bytes] = []
    for n in sizes:
        recs = trades(seq, n)
        w.append_records(recs)
        expected += [recs[i : i + 1].tobytes() for i in range(n)]
        seq += n
        w.append(b"p" * (n % 13), type_code=RecordType.RAW_PACKET)
        expected.append(b"p" * (n % 13))
    w.close()
    got: list[bytes] = []
    for fb in JournalReader(d).batches(max_frames=11):
        got += [bytes(fb.payload(i)) for i in range(len(fb))]
    assert got == expected
    assert verify_journal(d).ok
    assert os.path.exists(d / MANIFEST_NAME)
