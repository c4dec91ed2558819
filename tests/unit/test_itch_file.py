"""NASDAQ binary ITCH files (adapters/itch_file.py): write -> read round trips, plain and gzip'd,
chunk boundaries through messages, seq numbering from 1, and damaged files (cut message, bad
length prefix, cut gzip stream) counted and reported, never raised."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from adapters import itch
from adapters.itch import frame
from adapters.itch_file import (
    ItchFileError,
    ItchFileReader,
    ItchFileWriter,
    is_gzip,
    read_all,
    read_file,
    write_file,
)
from tectra.schema import ITCH_EVENT, RecordFlag

PAYLOAD = [n for n in ITCH_EVENT.dtype.names or () if n not in ("seq", "ts_ns", "flags")]


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return itch.synthetic_mix(5_000, seed=4)


def same_messages(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(np.array_equal(got[PAYLOAD], want[PAYLOAD]))


@pytest.mark.parametrize("name", ["day.itch", "day.itch.gz"])
def test_write_then_read_round_trips(tmp_path: Path, events: np.ndarray, name: str) -> None:
    path = tmp_path / name
    written = write_file(path, events)
    assert written == frame(events).size
    assert is_gzip(path) == name.endswith(".gz")
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()) == frame(events).tobytes()
    else:
        assert path.read_bytes() == frame(events).tobytes()
    with ItchFileReader(path) as reader:
        got = np.concatenate(list(reader))
        assert reader.complete and reader.error is None and reader.stopped_at is None
        assert reader.messages == events.size
        assert reader.stats["messages"] == events.size
        assert reader.stats["bytes"] == written == reader.bytes_read
    assert same_messages(got, events)
    assert list(got["seq"]) == list(range(1, events.size + 1))
    assert not (tmp_path / (name + ".partial")).exists()


@pytest.mark.parametrize("chunk", [52, 53, 100, 4096])
@pytest.mark.parametrize("compress", [False, True])
def test_chunk_boundaries_inside_messages_change_nothing(
    tmp_path: Path, events: np.ndarray, chunk: int, compress: bool
) -> None:
    path = tmp_path / "f.itch"
    write_file(path, events[:800], compress=compress)
    with ItchFileReader(path, chunk_size=chunk) as reader:
        batches = list(reader)
        assert reader.stats["truncated"] == 0 and reader.complete
    assert len(batches) > 1
    got = np.concatenate(batches)
    assert same_messages(got, events[:800])
    assert list(got["seq"]) == list(range(1, 801))


def test_views_flags_and_recv_time(tmp_path: Path, events: np.ndarray) -> None:
    path = tmp_path / "f.itch"
    write_file(path, events[:300])
    reader = ItchFileReader(
        path, chunk_size=600, copy=False, recv_ns=99, record_flags=RecordFlag.REPLAY
    )
    seen = 0
    for batch in reader:
        assert (batch["ts_ns"] == 99).all() and (batch["flags"] == RecordFlag.REPLAY).all()
        assert same_messages(batch, events[seen : seen + batch.size])
        seen += batch.size
    assert seen == 300
    with pytest.raises(ItchFileError, match="iterated once"):
        list(reader)


def test_unknown_types_keep_their_seq_and_long_ones_span_chunks(tmp_path: Path) -> None:
    a = itch.build("A", 1, order_ref=1, side="B", shares=1, stock="A", price=1)
    d = itch.build("D", 2, order_ref=1)
    long_unknown = b"z" + bytes(700)  # longer than the chunk: the window must widen
    data = frame(a).tobytes() + struct.pack(">H", len(long_unknown)) + long_unknown
    data += frame(d).tobytes()
    path = tmp_path / "u.itch"
    path.write_bytes(data)
    with ItchFileReader(path, chunk_size=64) as reader:
        got = np.concatenate(list(reader))
        assert reader.stats["unknown_type"] == 1 and reader.complete
    assert list(got["seq"]) == [1, 3]
    assert [chr(t) for t in got["msg_type"]] == ["A", "D"]


@pytest.mark.parametrize("compress", [False, True])
def test_a_message_cut_by_the_end_of_the_file_is_counted(
    tmp_path: Path, events: np.ndarray, compress: bool
) -> None:
    data = frame(events[:100]).tobytes()[:-7]
    path = tmp_path / "cut.itch"
    path.write_bytes(gzip.compress(data) if compress else data)
    with ItchFileReader(path, chunk_size=256) as reader:
        got = np.concatenate(list(reader))
        assert reader.stats["truncated"] == 1
        assert reader.stats["bytes_dropped"] == 2 + int(events["raw_len"][99]) - 7
    assert same_messages(got, events[:99])


@pytest.mark.parametrize("compress", [False, True])
def test_a_bad_length_prefix_ends_the_read_and_says_where(
    tmp_path: Path, events: np.ndarray, compress: bool
) -> None:
    good = frame(events[:50]).tobytes()
    bad_at = len(good)
    data = good + struct.pack(">H", 35) + b"A" + bytes(34) + frame(events[50:60]).tobytes()
    path = tmp_path / "bad.itch"
    path.write_bytes(gzip.compress(data) if compress else data)
    with ItchFileReader(path, chunk_size=128) as reader:
        got = np.concatenate(list(reader))
        assert reader.stats["bad_length"] == 1
        assert reader.stopped_at == bad_at and not reader.complete
        assert reader.error is not None and str(bad_at) in reader.error
    assert same_messages(got, events[:50])


def test_a_cut_gzip_stream_keeps_what_was_readable(tmp_path: Path, events: np.ndarray) -> None:
    path = tmp_path / "cut.itch.gz"
    write_file(path, events)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with ItchFileReader(path, chunk_size=4096) as reader:
        batches = list(reader)
        assert not reader.complete and reader.error is not None
        assert "gzip" in reader.error
    got = np.concatenate(batches)
    assert 0 < got.size < events.size
    assert same_messages(got, events[: got.size])


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.itch"
    path.write_bytes(b"")
    assert read_all(path).size == 0
    with ItchFileReader(path) as reader:
        assert list(reader) == [] and reader.complete


def test_writer_appends_and_moves_into_place_only_on_success(
    tmp_path: Path, events: np.ndarray
) -> None:
    path = tmp_path / "w.itch.gz"
    with ItchFileWriter(path) as w:
        w.write(events[:10])
        w.write_framed(frame(events[10:20]), messages=10)
        w.write_framed(frame(events[20:30]).tobytes())
        assert not path.exists()
        assert w.messages_written == 20 and w.bytes_written == frame(events[:30]).size
    assert same_messages(read_all(path), events[:30])
    # The same messages give the same bytes (mtime 0): reproducible captures.
    again = tmp_path / "again.itch.gz"
    write_file(again, events[:30])
    assert again.read_bytes() == path.read_bytes()

    failed = tmp_path / "failed.itch"
    with pytest.raises(RuntimeError), ItchFileWriter(failed) as w:
        w.write(events[:5])
        raise RuntimeError("boom")
    assert not failed.exists() and not (tmp_path / "failed.itch.partial").exists()
    with pytest.raises(ItchFileError, match="closed"):
        w.write(events[:1])


def test_read_file_generator_and_misuse(tmp_path: Path, events: np.ndarray) -> None:
    path = tmp_path / "g.itch"
    write_file(path, events[:100])
    assert sum(b.size for b in read_file(path, chunk_size=512)) == 100
    with pytest.raises(ItchFileError, match="chunk_size"):
        ItchFileReader(path, chunk_size=10)
    with pytest.raises(ItchFileError, match="cannot read"):
        ItchFileReader(tmp_path / "missing.itch")
    with pytest.raises(itch.ItchArgumentError):
        write_file(path, np.zeros(3, np.uint8))
