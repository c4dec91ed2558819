"""Byte layout of segments and frames: sizes, round trips, CRCs, and the doc's numbers."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from tectra.journal import format as fmt
from tectra.journal.format import (
    FRAME_HEADER_DTYPE,
    FormatError,
    SegmentHeader,
    SegmentTrailer,
    crc32c,
    decode_footer,
    decode_header,
    encode_footer,
    encode_frame,
    encode_frames_fixed,
    encode_header,
    frame_length,
    raw_bytes,
    raw_copy,
)
from tectra.schema import TRADE, new_records

ROOT = Path(__file__).resolve().parents[2]


def _header(**kw: object) -> SegmentHeader:
    base: dict[str, object] = {
        "first_seq": 42,
        "segment_index": 3,
        "component": 1,
        "journal": "md",
        "host": "host-a",
        "clock_domain": 1,
        "boot_id": bytes(range(16)),
        "rng_seed": 7,
        "created_real_ns": 1_700_000_000_000_000_000,
        "created_mono_ns": 123,
        "prev_segment_hash": bytes(range(32)),
    }
    base.update(kw)
    return SegmentHeader(**base)  # type: ignore[arg-type]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value


def test_header_round_trip_and_crc() -> None:
    h = _header()
    raw = encode_header(h)
    assert len(raw) == fmt.SEGMENT_HEADER_SIZE
    assert decode_header(raw) == h
    for i in (0, 9, 17, 100, 251):  # magic, version, first_seq, host, reserved
        bad = bytearray(raw)
        bad[i] ^= 1
        with pytest.raises(FormatError):
            decode_header(bytes(bad))


def test_frame_layout_matches_the_spec() -> None:
    payload = b"hello"
    frame = encode_frame(
        payload, type_code=0xF002, kind=1, component=2, seq=9, mono_ns=-5, real_ns=6, step=77
    )
    assert len(frame) == frame_length(5) == 64  # 48 + 5 + 4 -> 57 -> 64
    hdr = np.frombuffer(frame[:48], dtype=FRAME_HEADER_DTYPE)[0]
    assert (int(hdr["frame_len"]), int(hdr["payload_len"]), int(hdr["type"])) == (64, 5, 0xF002)
    assert (int(hdr["kind"]), int(hdr["component"]), int(hdr["seq"])) == (1, 2, 9)
    assert (int(hdr["mono_ns"]), int(hdr["real_ns"]), int(hdr["step"])) == (-5, 6, 77)
    assert frame[48:53] == payload and frame[53:60] == bytes(7)
    assert struct.unpack("<I", frame[-4:])[0] == crc32c(frame[:-4])


def test_fixed_frames_equal_single_frames() -> None:
    recs = new_records(TRADE, 5)
    recs["seq"] = np.arange(5)
    recs["price"] = [5, 4, 3, 2, 1]
    batch = encode_frames_fixed(
        recs,
        type_codes=TRADE.type_id,
        kind=0,
        component=1,
        first_seq=10,
        mono_ns=3,
        real_ns=4,
        step=0,
    ).tobytes()
    singles = b"".join(
        encode_frame(
            raw_bytes(recs[i : i + 1]),
            type_code=TRADE.type_id,
            kind=0,
            component=1,
            seq=10 + i,
            mono_ns=3,
            real_ns=4,
            step=0,
        )
        for i in range(5)
    )
    assert batch == singles


def test_raw_copy_keeps_padding_bytes() -> None:
    raw = np.arange(256, dtype=np.uint8)
    recs = raw[:256].view(TRADE.dtype)
    strided = np.lib.stride_tricks.as_strided(recs, shape=(1,), strides=(128,))
    assert raw_bytes(raw_copy(strided)) == raw[:128].tobytes()


def test_footer_round_trip() -> None:
    index = np.zeros(3, dtype=fmt.INDEX_ENTRY_DTYPE)
    index["seq"] = [1, 9, 17]
    index["offset"] = [256, 1000, 2000]
    trailer = SegmentTrailer(1, 20, 20, 3000, 5, 6, 7, 8, bytes(range(32)), 3)
    footer = encode_footer(trailer, index, 8)
    data = bytes(3000) + footer
    got, got_index, stride = decode_footer(data, len(data))
    assert got == trailer and stride == 8
    assert np.array_equal(got_index, index)
    bad = bytearray(data)
    bad[3000 + 20] ^= 1
    with pytest.raises(FormatError):
        decode_footer(bytes(bad), len(bad))


def test_docs_state_the_sizes_in_this_module() -> None:
    doc = (ROOT / "docs" / "journal.md").read_text()
    for name, value in (
        ("SEGMENT_HEADER_SIZE", fmt.SEGMENT_HEADER_SIZE),
        ("FRAME_HEADER_SIZE", fmt.FRAME_HEADER_SIZE),
        ("TRAILER_SIZE", fmt.TRAILER_SIZE),
    ):
        assert re.search(rf"`{name}` = {value}\b", doc), (
            f"docs/journal.md must say {name} = {value}"
        )
    assert "TCJSEG" in doc and "TCJFOOT" in doc and "TCJSEAL" in doc
    for code in fmt.RecordType:
        assert f"0x{int(code):04X}" in doc and code.name in doc


def test_record_batch_round_trip_and_checks() -> None:
    recs = new_records(TRADE, 3)
    recs["price"] = [7, 8, 9]
    payload = fmt.encode_record_batch(recs)
    assert len(payload) == fmt.BATCH_HEAD.size + 3 * TRADE.itemsize
    back = fmt.decode_record_batch(payload)
    assert raw_bytes(back) == raw_bytes(recs)
    with pytest.raises(FormatError):
        fmt.decode_record_batch(payload[:-1])
    bad = bytearray(payload)
    bad[fmt.BATCH_HEAD.size + TRADE.itemsize] = 0x11  # second record claims another type
    with pytest.raises(ValueError):
        fmt.decode_record_batch(bytes(bad))
