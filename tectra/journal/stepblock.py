"""STEP_BLOCK frames: many captured steps of one component in one journal frame.

This module owns the byte layout of a STEP_BLOCK payload (`RecordType.STEP_BLOCK`) and its
encoding and decoding. The lighter capture path (`tectra.journal.tap`) writes one such frame per
writer wake-up instead of a frame per input and output of every step, so the per-frame work
(frame header, CRC32C call, Merkle leaf, Python bookkeeping) is paid per block: the writer then
costs the captured process little CPU, and — being a thread of that process — little GIL.
Integrity and sequencing are per block; replay expands a block into the same step calls the
per-step layout gives (`tectra.journal.replay.iter_steps`).

Payload (little-endian, every table and chunk 8-byte aligned)::

    head    8 bytes      u32 n_steps, u32 n_chunks
    steps   24 × n_steps u64 step, i64 now_ns, u32 first_chunk, u32 chunk_count
    chunks  16 × n_chunks u16 type, u8 kind (1 INPUT, 2 OUTPUT), u8 reserved, u32 count,
                          u64 offset (from the start of the data area)
    data    the chunks' bytes, each padded to 8

A schema chunk (type ≤ 0xEFFF) is `count` records of that type's layout back to back; an opaque
chunk is `count + 1` i64 payload offsets then the payloads (an `OpaqueBatch`). A step's input is
its one INPUT chunk (count 0 for an empty batch: a timer step); its OUTPUT chunks follow in the
order the step returned them, empty outputs omitted (as in the per-step layout).

Digest mode (`tectra.journal.shmtap`, `CaptureMode.DIGEST`): instead of the output records a
step has one OUTPUT chunk of type OUTPUT_DIGEST (0xF006): `count` entries of 16 bytes
(`DIGEST_DTYPE`: u16 type, u16 reserved, u32 records, u64 XXH64 of the records' bytes), one
per non-empty output in step order. Decoded as a `DIGEST_DTYPE` array.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.journal.capture import OpaqueBatch
from tectra.journal.format import FormatError, RecordKind, RecordType, is_schema_type, raw_bytes
from tectra.schema import SchemaError, layout_by_type_id

__all__ = [
    "DIGEST_DTYPE",
    "CapturedStep",
    "Chunk",
    "decode_step_block",
    "encode_step_block",
    "is_digest",
]

_HEAD: Final = struct.Struct("<II")
STEP_DTYPE: Final = np.dtype(
    [("step", "<u8"), ("now_ns", "<i8"), ("first_chunk", "<u4"), ("chunk_count", "<u4")]
)
CHUNK_DTYPE: Final = np.dtype(
    [("type", "<u2"), ("kind", "u1"), ("reserved", "u1"), ("count", "<u4"), ("offset", "<u8")]
)
DIGEST_DTYPE: Final = np.dtype(
    [("type", "<u2"), ("reserved", "<u2"), ("count", "<u4"), ("digest", "<u8")]
)
assert STEP_DTYPE.itemsize == 24 and CHUNK_DTYPE.itemsize == 16 and DIGEST_DTYPE.itemsize == 16

Chunk = npt.NDArray[Any] | OpaqueBatch
"""One input or output batch: schema records, or an opaque batch."""


@dataclass(frozen=True, slots=True)
class CapturedStep:
    """One step as a block holds it (decoded, or handed to the encoder)."""

    step: int
    now_ns: int
    inputs: Chunk
    input_type: int
    outputs: Sequence[Chunk]


def _pad(n: int) -> int:
    return -n % 8


def _chunk_parts(chunk: Chunk) -> tuple[int, list[bytes | memoryview], int]:
    """(count, byte parts, total bytes) of a chunk."""
    if isinstance(chunk, OpaqueBatch):
        base = int(chunk.offsets[0])
        offsets = np.ascontiguousarray(chunk.offsets - base, dtype="<i8")
        data = np.ascontiguousarray(chunk.data[base : base + int(offsets[-1])])
        return len(chunk), [offsets.data, data.data], offsets.nbytes + data.nbytes
    raw = raw_bytes(chunk)
    return int(chunk.shape[0]), [raw], len(raw)


def encode_step_block(steps: Sequence[CapturedStep]) -> bytes:
    """The STEP_BLOCK payload of `steps`."""
    table = np.zeros(len(steps), dtype=STEP_DTYPE)
    types: list[int] = []
    kinds: list[int] = []
    counts: list[int] = []
    offsets: list[int] = []
    parts: list[bytes | memoryview] = []
    pos = 0
    zeros = bytes(8)
    firsts: list[int] = []
    for st in steps:
        firsts.append(len(types))
        chunks = [(st.input_type, int(RecordKind.INPUT), st.inputs)]
        chunks += [(_type_of(o), int(RecordKind.OUTPUT), o) for o in st.outputs if len(o)]
        for type_code, kind, chunk in chunks:
            count, data, nbytes = _chunk_parts(chunk)
            types.append(type_code)
            kinds.append(kind)
            counts.append(count)
            offsets.append(pos)
            parts.extend(data)
            pad = _pad(nbytes)
            if pad:
                parts.append(zeros[:pad])
            pos += nbytes + pad
    n_chunks = len(types)
    table["step"] = [st.step for st in steps]
    table["now_ns"] = [st.now_ns for st in steps]
    table["first_chunk"] = firsts
    table["chunk_count"] = np.diff(np.asarray([*firsts, n_chunks], dtype=np.int64))
    chunk_table = np.zeros(n_chunks, dtype=CHUNK_DTYPE)
    chunk_table["type"] = types
    chunk_table["kind"] = kinds
    chunk_table["count"] = counts
    chunk_table["offset"] = offsets
    head = [_HEAD.pack(len(steps), n_chunks), table.tobytes(), chunk_table.tobytes()]
    return b"".join([*head, *parts])


def is_digest(chunk: Chunk) -> bool:
    """True for an OUTPUT_DIGEST table (digest mode) rather than records or payloads."""
    return not isinstance(chunk, OpaqueBatch) and chunk.dtype == DIGEST_DTYPE


def _type_of(chunk: Chunk) -> int:
    if isinstance(chunk, OpaqueBatch):
        return chunk.type_code
    if is_digest(chunk):
        return int(RecordType.OUTPUT_DIGEST)
    return int(chunk["type_id"][0])


def decode_step_block(payload: bytes | memoryview) -> list[CapturedStep]:
    """The steps of a STEP_BLOCK payload (arrays are views into `payload`); FormatError or
    SchemaError when it is malformed."""
    buf = memoryview(payload).cast("B")
    if len(buf) < _HEAD.size:
        raise FormatError("STEP_BLOCK payload shorter than its head")
    n_steps, n_chunks = _HEAD.unpack_from(buf)
    tables_end = _HEAD.size + n_steps * STEP_DTYPE.itemsize + n_chunks * CHUNK_DTYPE.itemsize
    if tables_end > len(buf):
        raise FormatError(f"STEP_BLOCK tables ({n_steps} steps, {n_chunks} chunks) overrun it")
    table = np.frombuffer(buf, STEP_DTYPE, n_steps, _HEAD.size)
    chunks = np.frombuffer(buf, CHUNK_DTYPE, n_chunks, _HEAD.size + table.nbytes)
    data = buf[tables_end:]
    decoded: list[tuple[int, int, Chunk]] = []
    for type_code, kind, count, offset in zip(
        chunks["type"].tolist(),
        chunks["kind"].tolist(),
        chunks["count"].tolist(),
        chunks["offset"].tolist(),
        strict=True,
    ):
        decoded.append((type_code, kind, _decode_chunk(data, type_code, count, offset)))
    steps: list[CapturedStep] = []
    for step, now_ns, first, n in table.tolist():
        if n < 1 or first + n > n_chunks:
            raise FormatError(f"STEP_BLOCK step {step}: chunks {first}+{n} of {n_chunks}")
        (in_type, in_kind, inputs), *outs = decoded[first : first + n]
        if in_kind != RecordKind.INPUT or any(k != RecordKind.OUTPUT for _, k, _c in outs):
            raise FormatError(f"STEP_BLOCK step {step}: chunk kinds out of order")
        steps.append(CapturedStep(step, now_ns, inputs, in_type, [c for _t, _k, c in outs]))
    return steps


def _decode_chunk(data: memoryview, type_code: int, count: int, offset: int) -> Chunk:
    if type_code == RecordType.OUTPUT_DIGEST:
        end = offset + count * DIGEST_DTYPE.itemsize
        if end > len(data) or count == 0:
            raise FormatError("STEP_BLOCK OUTPUT_DIGEST chunk runs past the block (or is empty)")
        return np.frombuffer(data, DIGEST_DTYPE, count, offset)
    if is_schema_type(type_code):
        layout = layout_by_type_id(type_code)
        end = offset + count * layout.itemsize
        if end > len(data):
            raise FormatError(f"STEP_BLOCK chunk of {count} {layout.name} runs past the block")
        recs: npt.NDArray[np.void] = np.frombuffer(data, layout.dtype, count, offset)
        if count and (recs["type_id"] != type_code).any():
            raise SchemaError(f"STEP_BLOCK chunk of {layout.name} holds another record type")
        return recs
    head = offset + 8 * (count + 1)
    if head > len(data):
        raise FormatError("STEP_BLOCK opaque chunk offsets run past the block")
    offs = np.frombuffer(data, "<i8", count + 1, offset)
    size = int(offs[-1])
    if int(offs[0]) != 0 or head + size > len(data) or (count and (np.diff(offs) < 0).any()):
        raise FormatError("STEP_BLOCK opaque chunk has bad payload offsets")
    payload = np.frombuffer(data, np.uint8, size, head)
    return OpaqueBatch(type_code, payload, offs.astype(np.int64))
