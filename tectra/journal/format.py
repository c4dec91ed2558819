"""The journal's on-disk format: segment header, record frames, footer and trailer, byte by byte.

This module owns every byte layout of a journal segment file and nothing else: the numpy dtypes
that mirror them (little-endian, explicit offsets, like `tectra.schema`), the record type space
(schema type ids and opaque codes), record kinds and clock domains, frame encoding (batched,
one CRC32C call per frame) and decoding of headers/footers with their checks. Writing files,
scanning them and verifying them live in writer/reader/verify. `docs/journal.md` describes the
same layout in prose; a test keeps the sizes below and that document in step.

A segment file is::

    [segment header: 256 bytes] [frame]* [footer: index entries + 128-byte trailer]

A frame is one journal record::

    [frame header: 48 bytes] [payload] [zero padding] [crc32c: 4 bytes]   (8-byte aligned)

These are file-format layouts, not records: the records carried inside frames are the schema's
(`tectra.schema.LAYOUTS`) or opaque bytes with an opaque type code.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from crc32c import crc32c

from tectra.schema import LAYOUTS, SCHEMA_VERSION, SchemaError, layout_by_type_id

__all__ = [
    "ALIGN",
    "BATCH_HEAD",
    "FOOTER_MAGIC",
    "FORMAT_VERSION",
    "FRAME_HEADER_DTYPE",
    "FRAME_HEADER_SIZE",
    "FRAME_OVERHEAD",
    "INDEX_ENTRY_DTYPE",
    "MAX_PAYLOAD",
    "SEGMENT_HEADER_SIZE",
    "SEGMENT_MAGIC",
    "TRAILER_MAGIC",
    "TRAILER_SIZE",
    "ClockDomain",
    "FormatError",
    "RecordKind",
    "RecordType",
    "SegmentHeader",
    "SegmentTrailer",
    "crc32c",
    "decode_footer",
    "decode_header",
    "decode_record_batch",
    "decode_trailer",
    "encode_footer",
    "encode_frame",
    "encode_frames_fixed",
    "encode_header",
    "encode_record_batch",
    "frame_length",
    "frame_lengths",
    "host_boot_id",
    "is_schema_type",
    "raw_bytes",
    "raw_copy",
    "raw_view",
    "segment_file_name",
    "type_name",
]

FORMAT_VERSION: Final[int] = 1
"""Version of this file format (segment header `format_version`). Readers refuse others."""

ALIGN: Final[int] = 8  # frames start on 8-byte boundaries so int64 payload fields stay aligned
SEGMENT_MAGIC: Final[bytes] = b"TCJSEG\r\n"  # CR LF catch text-mode/line-ending mangling
FOOTER_MAGIC: Final[bytes] = b"TCJFOOT\x00"
TRAILER_MAGIC: Final[bytes] = b"TCJSEAL\n"
SEGMENT_HEADER_SIZE: Final[int] = 256
FRAME_HEADER_SIZE: Final[int] = 48
FRAME_CRC_SIZE: Final[int] = 4
FRAME_OVERHEAD: Final[int] = FRAME_HEADER_SIZE + FRAME_CRC_SIZE
FOOTER_HEAD_SIZE: Final[int] = 16
TRAILER_SIZE: Final[int] = 128
MAX_PAYLOAD: Final[int] = (1 << 31) - 64  # frame_len is u32; stay well clear of the sign bit

_HOST_WIDTH: Final[int] = 64
_JOURNAL_WIDTH: Final[int] = 32


class FormatError(ValueError):
    """Bytes that are not what the format says they must be (bad magic, CRC, length, ...)."""


class RecordKind(enum.IntEnum):
    """What a frame is to replay (frame header `kind`)."""

    EVENT = 0  # captured for the record (raw packets, lifecycle, ring-drained records)
    INPUT = 1  # an input of a component's step(); frames of one step share `step`
    OUTPUT = 2  # an output of that step, in the order step() returned them
    SNAPSHOT = 3  # component state before step `step` (Component.snapshot()); replay may start here


class RecordType(enum.IntEnum):
    """Opaque record type codes (0xF000-0xFFFE). Codes 0x0001-0xEFFF are schema type ids: the
    payload is exactly one record of that layout (`tectra.schema.layout_by_type_id`)."""

    RAW_PACKET = 0xF001  # one network packet payload as received (e.g. a MoldUDP64 datagram)
    FIX_MESSAGE = 0xF002  # one FIX message, SOH-delimited, as sent or received
    VENUE_MESSAGE = 0xF003  # one venue order-entry message (SoupBinTCP/OUCH packet)
    RECORD_BATCH = 0xF004  # N schema records of one layout in one frame (high-rate streams)
    STEP_BLOCK = 0xF005  # many captured steps (inputs and outputs) of one component (stepblock)
    OUTPUT_DIGEST = 0xF006  # in a STEP_BLOCK only: per output (type, records, XXH64), digest mode
    SNAPSHOT_STATE = 0xF010  # a component's serialized state (kind SNAPSHOT)
    TIMER = 0xF011  # empty payload: a step() call that had no inputs, only time
    GAP = 0xF020  # the source reported loss: payload u64 count of records lost before this
    UNKNOWN_RECORD = 0xF021  # a ring slot whose header type_id this build does not know
    NOTE = 0xF030  # UTF-8 JSON annotation (operator note, replay metadata)


SCHEMA_TYPE_MAX: Final[int] = 0xEFFF
OPAQUE_TYPE_MIN: Final[int] = 0xF000


class ClockDomain(enum.IntEnum):
    """Which timeline frame `mono_ns` is on (segment header `clock_domain`)."""

    UNKNOWN = 0
    MONOTONIC = 1  # CLOCK_MONOTONIC of the boot named by the header's boot_id
    VIRTUAL = 2  # a VirtualClock (replay output, backtest, tests)


def is_schema_type(type_code: int) -> bool:
    """True for codes that are schema type ids (payload = one schema record)."""
    return 0 < int(type_code) <= SCHEMA_TYPE_MAX


_NAME_BY_TYPE: Final[dict[int, str]] = {
    **{layout.type_id: layout.name for layout in LAYOUTS.values()},
    **{int(code): code.name for code in RecordType},
}


def type_name(type_code: int) -> str:
    """Human name of a record type code: the layout name, the opaque code name, or hex."""
    return _NAME_BY_TYPE.get(int(type_code), f"0x{int(type_code):04x}")


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------

FRAME_HEADER_DTYPE: Final[np.dtype[np.void]] = np.dtype(
    {
        "names": [
            "frame_len",
            "payload_len",
            "type",
            "kind",
            "component",
            "reserved",
            "seq",
            "mono_ns",
            "real_ns",
            "step",
        ],
        "formats": ["<u4", "<u4", "<u2", "u1", "u1", "<u4", "<u8", "<i8", "<i8", "<u8"],
        "offsets": [0, 4, 8, 10, 11, 12, 16, 24, 32, 40],
        "itemsize": FRAME_HEADER_SIZE,
    }
)
"""Frame header. frame_len counts the whole frame (header, payload, padding, CRC); the CRC32C in
the frame's last 4 bytes covers every byte before it."""

_FRAME_HEADER = struct.Struct("<IIHBBIQqqQ")
assert _FRAME_HEADER.size == FRAME_HEADER_SIZE


def frame_length(payload_len: int) -> int:
    """Bytes a frame with a payload of `payload_len` bytes occupies (a multiple of 8)."""
    return (FRAME_OVERHEAD + payload_len + ALIGN - 1) & ~(ALIGN - 1)


def frame_lengths(payload_lens: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """`frame_length` over an array."""
    return (FRAME_OVERHEAD + payload_lens + ALIGN - 1) & ~np.int64(ALIGN - 1)


def encode_frame(
    payload: bytes | bytearray | memoryview,
    *,
    type_code: int,
    kind: int,
    component: int,
    seq: int,
    mono_ns: int,
    real_ns: int,
    step: int,
) -> bytes:
    """One frame (variable-size payloads: raw packets, FIX messages, snapshots)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise FormatError(f"payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte frame limit")
    flen = frame_length(n)
    buf = bytearray(flen)
    _FRAME_HEADER.pack_into(
        buf, 0, flen, n, type_code, kind, component, 0, seq, mono_ns, real_ns, step
    )
    buf[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + n] = payload
    struct.pack_into("<I", buf, flen - 4, crc32c(memoryview(buf)[: flen - 4]))
    return bytes(buf)


def encode_frames_fixed(
    payloads: npt.NDArray[Any],
    *,
    type_codes: int | npt.NDArray[np.integer[Any]],
    kind: int,
    component: int | npt.NDArray[np.integer[Any]],
    first_seq: int,
    mono_ns: int | npt.NDArray[np.int64],
    real_ns: int,
    step: int | npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint8]:
    """Frames for a batch of equal-size payloads (schema records): the header fields are filled
    with numpy over the whole batch, then one crc32c call per frame. Returns the frames as one
    contiguous uint8 array (len(payloads) * frame_length(itemsize) bytes)."""
    n = int(payloads.shape[0])
    size = int(payloads.dtype.itemsize)
    flen = frame_length(size)
    frame_dtype = np.dtype(
        {
            "names": ["hdr", "payload", "crc"],
            "formats": [FRAME_HEADER_DTYPE, np.dtype((np.void, size)), "<u4"],
            "offsets": [0, FRAME_HEADER_SIZE, flen - 4],
            "itemsize": flen,
        }
    )
    frames = np.zeros(n, dtype=frame_dtype)
    hdr = frames["hdr"]
    hdr["frame_len"] = flen
    hdr["payload_len"] = size
    hdr["type"] = type_codes
    hdr["kind"] = kind
    hdr["component"] = component
    hdr["seq"] = np.arange(first_seq, first_seq + n, dtype=np.uint64)
    hdr["mono_ns"] = mono_ns
    hdr["real_ns"] = real_ns
    hdr["step"] = step
    frames["payload"] = np.ascontiguousarray(raw_view(payloads)).reshape(n)
    raw = frames.view(np.uint8)
    mv = raw.data
    body = flen - 4
    frames["crc"] = [crc32c(mv[i : i + body]) for i in range(0, n * flen, flen)]
    return raw


def raw_view(records: npt.NDArray[Any]) -> npt.NDArray[np.void]:
    """The same records as opaque `itemsize`-byte items. Copying these copies every byte:
    numpy copies padded structured dtypes field by field and leaves the padding undefined,
    which would break bit-for-bit comparisons and CRCs."""
    return records.view(np.dtype((np.void, records.dtype.itemsize)))


def raw_copy(records: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A C-contiguous copy with every byte (padding included) preserved."""
    return raw_view(records).copy().view(records.dtype)


def raw_bytes(records: npt.NDArray[Any]) -> bytes:
    """Every byte of the records, padding included, in order."""
    return raw_view(records).tobytes()


BATCH_HEAD: Final = struct.Struct("<HHI")
"""RECORD_BATCH payload head: record type_id (u16), layout version (u16), record count (u32);
the records follow back to back (8-aligned: frame offset 56)."""


def encode_record_batch(records: npt.NDArray[Any]) -> bytes:
    """The RECORD_BATCH payload for schema records of one layout."""
    n = int(records.shape[0])
    if n == 0:
        raise FormatError("a RECORD_BATCH holds at least one record")
    head = BATCH_HEAD.pack(int(records["type_id"][0]), int(records["version"][0]), n)
    return head + raw_bytes(records)


def decode_record_batch(payload: bytes | memoryview) -> npt.NDArray[np.void]:
    """The records of a RECORD_BATCH payload, as a zero-copy structured array; FormatError or
    SchemaError when it is malformed (length, unknown layout, a record of another type)."""
    if len(payload) < BATCH_HEAD.size:
        raise FormatError("RECORD_BATCH payload shorter than its head")
    type_id, version, count = BATCH_HEAD.unpack_from(payload)
    layout = layout_by_type_id(type_id, version)
    if len(payload) != BATCH_HEAD.size + count * layout.itemsize:
        raise FormatError(
            f"RECORD_BATCH of {count} {layout.name} records must be "
            f"{BATCH_HEAD.size + count * layout.itemsize} bytes, is {len(payload)}"
        )
    records: npt.NDArray[np.void] = np.frombuffer(
        payload, dtype=layout.dtype, count=count, offset=BATCH_HEAD.size
    )
    if count and ((records["type_id"] != type_id) | (records["version"] != version)).any():
        raise SchemaError(f"RECORD_BATCH of {layout.name} holds a record of another type")
    return records


# --------------------------------------------------------------------------------------------
# Segment header
# --------------------------------------------------------------------------------------------

_HEADER = struct.Struct("<8sHHIQqqQIHBB16s32s64s32s")
# magic, format_version, schema_version, header_len, first_seq, created_real_ns,
# created_mono_ns, rng_seed, segment_index, component, clock_domain, reserved, boot_id,
# journal name, host, prev_segment_hash  -> 200 bytes, then zero padding, CRC32C at 252.
assert _HEADER.size == 200


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The first 256 bytes of a segment: who wrote it, when, on which clock, from which seq."""

    first_seq: int
    segment_index: int
    component: int
    journal: str
    host: str
    clock_domain: int
    boot_id: bytes
    rng_seed: int
    created_real_ns: int
    created_mono_ns: int
    prev_segment_hash: bytes  # SHA-256 of the previous sealed segment file; zeros for the first
    schema_version: int = SCHEMA_VERSION
    format_version: int = FORMAT_VERSION


def encode_header(h: SegmentHeader) -> bytes:
    """The 256 header bytes, CRC32C in the last 4."""
    journal = h.journal.encode("utf-8")
    host = h.host.encode("utf-8")
    if len(journal) > _JOURNAL_WIDTH or len(host) > _HOST_WIDTH:
        raise FormatError("journal name or host too long for the segment header")
    if len(h.boot_id) != 16 or len(h.prev_segment_hash) != 32:
        raise FormatError("boot_id must be 16 bytes and prev_segment_hash 32")
    buf = bytearray(SEGMENT_HEADER_SIZE)
    _HEADER.pack_into(
        buf,
        0,
        SEGMENT_MAGIC,
        h.format_version,
        h.schema_version,
        SEGMENT_HEADER_SIZE,
        h.first_seq,
        h.created_real_ns,
        h.created_mono_ns,
        h.rng_seed,
        h.segment_index,
        h.component,
        h.clock_domain,
        0,
        h.boot_id,
        journal,
        host,
        h.prev_segment_hash,
    )
    struct.pack_into("<I", buf, SEGMENT_HEADER_SIZE - 4, crc32c(memoryview(buf)[:-4]))
    return bytes(buf)


def decode_header(data: bytes | memoryview) -> SegmentHeader:
    """Parse and check a segment header (magic, CRC, format version); FormatError if bad.

    A schema version other than this build's is accepted here (the header says what it is);
    readers of schema payloads check record versions themselves.
    """
    if len(data) < SEGMENT_HEADER_SIZE:
        raise FormatError(f"segment header truncated: {len(data)} of {SEGMENT_HEADER_SIZE} bytes")
    raw = bytes(data[:SEGMENT_HEADER_SIZE])
    if raw[:8] != SEGMENT_MAGIC:
        raise FormatError(f"not a journal segment (magic {raw[:8]!r})")
    (stored,) = struct.unpack_from("<I", raw, SEGMENT_HEADER_SIZE - 4)
    if crc32c(raw[:-4]) != stored:
        raise FormatError("segment header CRC32C mismatch")
    f = _HEADER.unpack_from(raw, 0)
    if f[1] != FORMAT_VERSION:
        raise FormatError(f"segment format version {f[1]} (this build reads {FORMAT_VERSION})")
    if f[3] != SEGMENT_HEADER_SIZE:
        raise FormatError(f"segment header length {f[3]} (expected {SEGMENT_HEADER_SIZE})")
    return SegmentHeader(
        first_seq=f[4],
        created_real_ns=f[5],
        created_mono_ns=f[6],
        rng_seed=f[7],
        segment_index=f[8],
        component=f[9],
        clock_domain=f[10],
        boot_id=f[12],
        journal=f[13].rstrip(b"\x00").decode("utf-8", "replace"),
        host=f[14].rstrip(b"\x00").decode("utf-8", "replace"),
        prev_segment_hash=f[15],
        schema_version=f[2],
        format_version=f[1],
    )


# --------------------------------------------------------------------------------------------
# Footer: index + trailer
# --------------------------------------------------------------------------------------------

INDEX_ENTRY_DTYPE: Final[np.dtype[np.void]] = np.dtype([("seq", "<u8"), ("offset", "<u8")])

_TRAILER = struct.Struct("<QQQQqqqq32sQIIII8s")
# first_seq, last_seq, record_count, frames_end, first_mono, last_mono, first_real, last_real,
# merkle_root, footer_offset, index_count, index_stride, reserved, crc32c (of every footer byte
# before it, from the footer magic on), magic
assert _TRAILER.size == TRAILER_SIZE


@dataclass(frozen=True, slots=True)
class SegmentTrailer:
    """What a sealed segment says about itself (the last 128 bytes of the file)."""

    first_seq: int
    last_seq: int  # first_seq - 1 when the segment holds no records
    record_count: int
    frames_end: int  # offset where frames stop and the footer starts
    first_mono_ns: int
    last_mono_ns: int
    first_real_ns: int
    last_real_ns: int
    merkle_root: bytes
    index_count: int


def encode_footer(trailer: SegmentTrailer, index: npt.NDArray[np.void], index_stride: int) -> bytes:
    """Footer bytes: head (magic, count, stride), index entries, trailer (CRC over all before
    it, from the footer magic on)."""
    entries = np.ascontiguousarray(index, dtype=INDEX_ENTRY_DTYPE)
    head = FOOTER_MAGIC + struct.pack("<II", len(entries), index_stride)
    body = head + entries.tobytes()
    fields = (
        trailer.first_seq,
        trailer.last_seq,
        trailer.record_count,
        trailer.frames_end,
        trailer.first_mono_ns,
        trailer.last_mono_ns,
        trailer.first_real_ns,
        trailer.last_real_ns,
        trailer.merkle_root,
        trailer.frames_end,
        len(entries),
        index_stride,
        0,
    )
    partial = struct.pack("<QQQQqqqq32sQIII", *fields)
    crc = crc32c(body + partial)
    return body + partial + struct.pack("<I", crc) + TRAILER_MAGIC


def decode_trailer(tail: bytes | memoryview) -> SegmentTrailer:
    """Parse the last TRAILER_SIZE bytes of a file; FormatError when it is not a trailer (an
    unsealed segment) or is malformed. The CRC is checked by `decode_footer`."""
    if len(tail) < TRAILER_SIZE:
        raise FormatError("file too short for a trailer")
    raw = bytes(tail[-TRAILER_SIZE:])
    f = _TRAILER.unpack(raw)
    if f[14] != TRAILER_MAGIC:
        raise FormatError("no trailer (segment not sealed)")
    if f[3] != f[9]:
        raise FormatError("trailer frames_end and footer_offset disagree")
    return SegmentTrailer(
        first_seq=f[0],
        last_seq=f[1],
        record_count=f[2],
        frames_end=f[3],
        first_mono_ns=f[4],
        last_mono_ns=f[5],
        first_real_ns=f[6],
        last_real_ns=f[7],
        merkle_root=f[8],
        index_count=f[10],
    )


def decode_footer(
    data: bytes | memoryview, file_size: int
) -> tuple[SegmentTrailer, npt.NDArray[np.void], int]:
    """Parse a whole sealed segment's footer from the file bytes `data` (len == file_size):
    returns (trailer, index entries, index stride). FormatError on any inconsistency."""
    trailer = decode_trailer(memoryview(data)[file_size - TRAILER_SIZE : file_size])
    start = trailer.frames_end
    expected = FOOTER_HEAD_SIZE + trailer.index_count * INDEX_ENTRY_DTYPE.itemsize + TRAILER_SIZE
    if start < SEGMENT_HEADER_SIZE or start + expected != file_size:
        raise FormatError(
            f"footer at {start} with {trailer.index_count} index entries does not end the file "
            f"({file_size} bytes)"
        )
    footer = bytes(memoryview(data)[start:file_size])
    if footer[:8] != FOOTER_MAGIC:
        raise FormatError(f"no footer magic at offset {start}")
    (stored,) = struct.unpack_from("<I", footer, len(footer) - 12)
    if crc32c(footer[:-12]) != stored:
        raise FormatError(f"footer CRC32C mismatch (footer at offset {start})")
    count, stride = struct.unpack_from("<II", footer, 8)
    if count != trailer.index_count:
        raise FormatError("footer index count disagrees with the trailer")
    index = np.frombuffer(
        footer, dtype=INDEX_ENTRY_DTYPE, count=count, offset=FOOTER_HEAD_SIZE
    ).copy()
    return trailer, index, stride


# --------------------------------------------------------------------------------------------
# Names and host identity
# --------------------------------------------------------------------------------------------


def segment_file_name(segment_index: int, first_seq: int) -> str:
    """`<index:08d>-<first_seq:020d>.tjs`: sorts in journal order, says where it starts."""
    return f"{segment_index:08d}-{first_seq:020d}.tjs"


def host_boot_id() -> bytes:
    """The kernel's boot id (16 bytes): CLOCK_MONOTONIC stamps compare only within one boot."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        return bytes.fromhex(text)[:16].ljust(16, b"\x00")
    except (OSError, ValueError):
        return bytes(16)


def host_name() -> str:
    """This host's name, cut to the header field."""
    return socket.gethostname().encode("utf-8")[:_HOST_WIDTH].decode("utf-8", "ignore")


def check_schema_payload(type_code: int, payload_len: int) -> None:
    """SchemaError unless a frame of schema type `type_code` may carry `payload_len` bytes."""
    layout = layout_by_type_id(type_code)
    if payload_len != layout.itemsize:
        raise SchemaError(
            f"{layout.name} payload must be {layout.itemsize} bytes, got {payload_len}"
        )


def dtype_for_types(types: Sequence[int]) -> dict[int, np.dtype[np.void]]:
    """Schema dtypes by type code for those of `types` that are schema types this build knows."""
    out: dict[int, np.dtype[np.void]] = {}
    for t in types:
        if is_schema_type(t):
            try:
                out[int(t)] = layout_by_type_id(int(t)).dtype
            except SchemaError:
                continue
    return out
