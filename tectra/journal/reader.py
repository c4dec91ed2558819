"""Reading journals: segments mapped read-only, frames parsed in batches, CRCs checked.

This module owns the read side of the format: opening a segment (header, and footer when
sealed), walking its frames into `FrameBatch` columns with numpy (a run of equal-size frames,
the common case for schema records, is parsed with a handful of array operations, not a Python
loop per frame), checking each frame's CRC32C, seeking by sequence through the footer index,
and presenting a whole journal directory (manifest order, then any unsealed tail) as one
stream. Schema records come out as numpy structured arrays: zero-copy strided views when the
frames are evenly spaced, a gathered copy otherwise.

Damage is never skipped silently: a frame that does not parse raises `CorruptFrameError`
naming the segment and byte offset. `scan_frames` is the primitive the writer's recovery and
`tectra.journal.verify` use to find out exactly where a segment stops being valid.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.journal.format import (
    FRAME_HEADER_DTYPE,
    FRAME_HEADER_SIZE,
    FRAME_OVERHEAD,
    INDEX_ENTRY_DTYPE,
    MAX_PAYLOAD,
    SEGMENT_HEADER_SIZE,
    FormatError,
    RecordType,
    SegmentHeader,
    SegmentTrailer,
    crc32c,
    decode_footer,
    decode_header,
    decode_record_batch,
    frame_length,
    frame_lengths,
    is_schema_type,
    type_name,
)
from tectra.journal.manifest import load_manifest
from tectra.schema import layout_by_type_id

__all__ = [
    "CorruptFrameError",
    "FrameBatch",
    "JournalReader",
    "ScanResult",
    "SegmentReader",
    "find_next_frame",
    "journal_segment_paths",
    "scan_frames",
]

MIN_FRAME: Final[int] = frame_length(0)
_RUN_PROBE: Final[int] = 4096
_U32: Final = struct.Struct("<I")
_HDR_WORDS: Final = np.arange(FRAME_HEADER_SIZE // 8, dtype=np.int64)


def _u32_at(
    data: npt.NDArray[np.uint8], positions: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint32]:
    """Little-endian u32 at each (4-aligned) position: one gather over a u32 view."""
    words = data[: data.shape[0] // 4 * 4].view("<u4")
    out: npt.NDArray[np.uint32] = words[positions // 4]
    return out


class CorruptFrameError(FormatError):
    """A frame that is torn, has an impossible length, or fails its CRC32C."""

    def __init__(self, segment: Path, offset: int, reason: str) -> None:
        self.segment = segment
        self.offset = offset
        self.reason = reason
        super().__init__(f"{segment.name}: {reason} at byte offset {offset}")


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Where the valid frames of [start, end) are and where (and why) they stop.

    `problem` is None when every byte up to `end` is whole, valid frames; otherwise frames stop
    at `stop` and `problem` says why: "truncated" (a frame runs past the end: a torn write),
    "bad length" (an impossible frame_len) or "crc mismatch" (the bytes changed after writing).
    """

    offsets: npt.NDArray[np.int64]
    stop: int
    problem: str | None


def _frame_problem(view: memoryview, pos: int, end: int) -> tuple[int, str | None]:
    """(frame_len, None) when a plausible frame starts at pos, else (0, reason)."""
    if end - pos < MIN_FRAME:
        return 0, "truncated"
    (flen,) = _U32.unpack_from(view, pos)
    if flen < MIN_FRAME or flen % 8 or flen > MAX_PAYLOAD + FRAME_OVERHEAD + 8:
        return 0, "bad length"
    (plen,) = _U32.unpack_from(view, pos + 4)
    if frame_length(plen) != flen:
        return 0, "bad length"
    if pos + flen > end:
        return 0, "truncated"
    return flen, None


def _walk(
    data: npt.NDArray[np.uint8], start: int, end: int, limit: int
) -> tuple[npt.NDArray[np.int64], int, str | None]:
    """Offsets of up to `limit` plausibly-framed frames from `start` (lengths only, no CRC)."""
    view = data.data
    pos = start
    parts: list[npt.NDArray[np.int64]] = []
    singles: list[int] = []
    count = 0
    problem: str | None = None
    while pos < end and count < limit:
        flen, problem = _frame_problem(view, pos, end)
        if problem is not None:
            break
        nxt = pos + flen
        if nxt + MIN_FRAME <= end and _U32.unpack_from(view, nxt)[0] == flen:
            # A run of equal-size frames: confirm the whole run with one strided read.
            # Probe at most _RUN_PROBE frames ahead: a short run must not cost a scan of the
            # whole rest of the segment.
            k_max = min((end - pos) // flen, limit - count, _RUN_PROBE)
            lens = np.ndarray((k_max,), dtype="<u4", buffer=data, offset=pos, strides=(flen,))
            bad = np.flatnonzero(lens != flen)
            k = int(bad[0]) if bad.size else k_max
            if k > 1:
                # Also check each payload_len, so a run never hides a malformed frame.
                plens = np.ndarray((k,), dtype="<u4", buffer=data, offset=pos + 4, strides=(flen,))
                wrong = np.flatnonzero(frame_lengths(plens.astype(np.int64)) != flen)
                k = int(wrong[0]) if wrong.size else k
            if k > 1:
                if singles:
                    parts.append(np.array(singles, dtype=np.int64))
                    singles = []
                parts.append(pos + np.arange(k, dtype=np.int64) * flen)
                count += k
                pos += k * flen
                continue
        singles.append(pos)
        count += 1
        pos = nxt
    if singles:
        parts.append(np.array(singles, dtype=np.int64))
    offsets = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return offsets, pos, problem


def _gather_headers(data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64]) -> Any:
    n = offsets.shape[0]
    if n == 0:
        return np.zeros(0, dtype=FRAME_HEADER_DTYPE)
    if n > 1:
        steps = np.diff(offsets)
        if (steps == steps[0]).all():
            # Evenly spaced (fixed-size records): a strided view, no copy.
            return np.ndarray(
                (n,),
                dtype=FRAME_HEADER_DTYPE,
                buffer=data,
                offset=int(offsets[0]),
                strides=(int(steps[0]),),
            )
    # Frames start 8-byte aligned: gather 6 words per header rather than 48 bytes.
    words = data[: data.shape[0] // 8 * 8].view("<u8")
    return words[(offsets // 8)[:, None] + _HDR_WORDS].view(FRAME_HEADER_DTYPE).reshape(n)


def _crc_failures(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], lens: npt.NDArray[Any]
) -> int:
    """Index of the first frame whose CRC32C does not match, or -1."""
    if offsets.shape[0] == 0:
        return -1
    ends = offsets + lens.astype(np.int64) - 4
    stored = _u32_at(data, ends)
    view = data.data
    computed = np.fromiter(
        (crc32c(view[o:e]) for o, e in zip(offsets.tolist(), ends.tolist(), strict=True)),
        dtype=np.uint32,
        count=offsets.shape[0],
    )
    bad = np.flatnonzero(computed != stored)
    return int(bad[0]) if bad.size else -1


def scan_frames(
    data: npt.NDArray[np.uint8],
    start: int,
    end: int,
    *,
    verify_crc: bool = True,
    limit: int = 1 << 62,
) -> ScanResult:
    """Valid frames of data[start:end] from the start until the end or the first bad frame."""
    offsets, stop, problem = _walk(data, start, end, limit)
    if verify_crc and offsets.shape[0]:
        lens = _u32_at(data, offsets)
        bad = _crc_failures(data, offsets, lens)
        if bad >= 0:
            return ScanResult(offsets[:bad], int(offsets[bad]), "crc mismatch")
    return ScanResult(offsets, stop, problem)


def find_next_frame(data: npt.NDArray[np.uint8], start: int, end: int) -> int | None:
    """Offset of the first whole frame with a good CRC at an 8-aligned offset >= start, if any.

    Used after damage: a good frame further on means the damage is in the middle of the
    segment (corruption), none means everything from the damage on is a torn tail.
    """
    first = (start + 7) & ~7
    if end - first < MIN_FRAME:
        return None
    count = (end - first) // 8
    lens = np.ndarray((count,), dtype="<u4", buffer=data, offset=first, strides=(8,))
    positions = first + np.arange(count, dtype=np.int64) * 8
    plausible = (lens >= MIN_FRAME) & (lens % 8 == 0) & (positions + lens.astype(np.int64) <= end)
    view = data.data
    for pos in positions[plausible].tolist():
        flen, problem = _frame_problem(view, pos, end)
        if (
            problem is None
            and crc32c(view[pos : pos + flen - 4]) == _U32.unpack_from(view, pos + flen - 4)[0]
        ):
            return int(pos)
    return None


class FrameBatch:
    """Consecutive frames of one segment, as columns over the mapped segment bytes.

    Columns (numpy arrays, one entry per frame): `offset`, `frame_len`, `payload_len`, `type`,
    `kind`, `component`, `seq`, `mono_ns`, `real_ns`, `step`. Payloads are read through
    `payload(i)` (a memoryview) or `records(type)` (schema records as a structured array).
    """

    __slots__ = ("_data", "_hdr", "offset", "segment")

    def __init__(
        self,
        segment: Path,
        data: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.int64],
        headers: Any = None,
    ) -> None:
        self.segment = segment
        self._data = data
        self.offset = offsets
        self._hdr = _gather_headers(data, offsets) if headers is None else headers

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    # Columns (views into the header array: cheap, read-only by convention).
    @property
    def frame_len(self) -> npt.NDArray[np.uint32]:
        return np.asarray(self._hdr["frame_len"])

    @property
    def payload_len(self) -> npt.NDArray[np.uint32]:
        return np.asarray(self._hdr["payload_len"])

    @property
    def type(self) -> npt.NDArray[np.uint16]:
        return np.asarray(self._hdr["type"])

    @property
    def kind(self) -> npt.NDArray[np.uint8]:
        return np.asarray(self._hdr["kind"])

    @property
    def component(self) -> npt.NDArray[np.uint8]:
        return np.asarray(self._hdr["component"])

    @property
    def seq(self) -> npt.NDArray[np.uint64]:
        return np.asarray(self._hdr["seq"])

    @property
    def mono_ns(self) -> npt.NDArray[np.int64]:
        return np.asarray(self._hdr["mono_ns"])

    @property
    def real_ns(self) -> npt.NDArray[np.int64]:
        return np.asarray(self._hdr["real_ns"])

    @property
    def step(self) -> npt.NDArray[np.uint64]:
        return np.asarray(self._hdr["step"])

    @property
    def data(self) -> npt.NDArray[np.uint8]:
        """The whole mapped segment the offsets point into (read-only)."""
        return self._data

    @property
    def headers(self) -> Any:
        """The frame headers as a FRAME_HEADER_DTYPE array."""
        return self._hdr

    def payload(self, i: int) -> memoryview:
        start = int(self.offset[i]) + FRAME_HEADER_SIZE
        return self._data.data[start : start + int(self._hdr["payload_len"][i])]

    def frame(self, i: int) -> memoryview:
        """The whole frame i as stored (what its Merkle leaf hashes)."""
        start = int(self.offset[i])
        return self._data.data[start : start + int(self._hdr["frame_len"][i])]

    def frames_bytes(self) -> bytes:
        """All frames of the batch, concatenated as stored."""
        if len(self) == 0:
            return b""
        start = int(self.offset[0])
        end = int(self.offset[-1]) + int(self._hdr["frame_len"][-1])
        if end - start == int(self._hdr["frame_len"].sum()):
            return bytes(self._data.data[start:end])
        return b"".join(bytes(self.frame(i)) for i in range(len(self)))

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> FrameBatch:
        """The frames picked by a boolean mask or index array, in order."""
        offsets = self.offset[mask]
        return FrameBatch(self.segment, self._data, offsets, np.asarray(self._hdr)[mask])

    def records(self, type_code: int | None = None) -> npt.NDArray[np.void]:
        """Schema records of one type as a structured array (all frames must be that type when
        `type_code` is None). Evenly spaced frames give a zero-copy strided view."""
        types = self.type
        if type_code is None:
            if len(self) == 0:
                raise FormatError("records() of an empty batch needs a type_code")
            type_code = int(types[0])
        if not is_schema_type(type_code):
            raise FormatError(f"{type_name(type_code)} frames are opaque, not schema records")
        layout = layout_by_type_id(type_code)
        pick = types == type_code
        offsets = self.offset if pick.all() else self.offset[pick]
        n = offsets.shape[0]
        if n and (self.payload_len[pick] != layout.itemsize).any():
            raise FormatError(f"{layout.name} frame with a payload that is not one record")
        if n == 0:
            return np.zeros(0, dtype=layout.dtype)
        starts = offsets + FRAME_HEADER_SIZE
        if n == 1 or (np.diff(starts) == starts[1] - starts[0]).all():
            stride = int(starts[1] - starts[0]) if n > 1 else layout.itemsize
            view: npt.NDArray[np.void] = np.ndarray(
                (n,),
                dtype=layout.dtype,
                buffer=self._data,
                offset=int(starts[0]),
                strides=(stride,),
            )
            return view
        idx = starts[:, None] + np.arange(layout.itemsize, dtype=np.int64)
        gathered: npt.NDArray[np.void] = self._data[idx].view(layout.dtype).reshape(n)
        return gathered


def _map_file(path: Path) -> tuple[npt.NDArray[np.uint8], mmap.mmap | None]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return np.zeros(0, dtype=np.uint8), None
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    with contextlib.suppress(AttributeError, OSError):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return np.frombuffer(mm, dtype=np.uint8), mm


class SegmentReader:
    """One segment file, mapped read-only.

    `header` is always parsed (FormatError if it is damaged). A sealed segment also has
    `trailer` and `index` (the footer); an unsealed one (the active segment, or one left by a
    crash) has `trailer = None` and its frames run to the end of the file.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.data, self._mm = _map_file(self.path)
        self.size = int(self.data.shape[0])
        self.header: SegmentHeader = decode_header(self.data.data)
        self.trailer: SegmentTrailer | None = None
        self.index: npt.NDArray[np.void] = np.zeros(0, dtype=INDEX_ENTRY_DTYPE)
        self.index_stride = 0
        self.footer_error: str | None = None
        try:
            self.trailer, self.index, self.index_stride = decode_footer(self.data.data, self.size)
        except FormatError as exc:
            self.footer_error = str(exc)

    @property
    def sealed(self) -> bool:
        return self.trailer is not None

    @property
    def frames_end(self) -> int:
        return self.trailer.frames_end if self.trailer is not None else self.size

    def scan(self, *, verify_crc: bool = True) -> ScanResult:
        return scan_frames(self.data, SEGMENT_HEADER_SIZE, self.frames_end, verify_crc=verify_crc)

    def offset_for_seq(self, seq: int) -> int:
        """Offset of the frame with sequence `seq`, found through the footer index and a short
        walk (or a walk from the start in an unsealed segment); KeyError if not here."""
        start = SEGMENT_HEADER_SIZE
        if self.index.shape[0]:
            i = int(np.searchsorted(self.index["seq"], np.uint64(seq), side="right")) - 1
            if i >= 0:
                start = int(self.index["offset"][i])
        end = self.frames_end
        while start < end:
            offsets, stop, problem = _walk(self.data, start, end, 4096)
            if offsets.shape[0] == 0:
                break
            seqs = _gather_headers(self.data, offsets)["seq"]
            hit = np.flatnonzero(seqs == np.uint64(seq))
            if hit.size:
                return int(offsets[int(hit[0])])
            if int(seqs[-1]) > seq or problem is not None:
                break
            start = stop
        raise KeyError(f"seq {seq} is not in {self.path.name}")

    def batches(
        self,
        *,
        max_frames: int = 8192,
        start_seq: int | None = None,
        verify_crc: bool = True,
    ) -> Iterator[FrameBatch]:
        """Frames in order, `max_frames` at a time, from `start_seq` (or the first frame).

        Raises CorruptFrameError at the first frame that is torn, malformed or fails its CRC.
        """
        pos = SEGMENT_HEADER_SIZE
        if start_seq is not None:
            try:
                pos = self.offset_for_seq(start_seq)
            except KeyError:
                if self.trailer is not None and start_seq > self.trailer.last_seq:
                    return
        end = self.frames_end
        while pos < end:
            result = scan_frames(self.data, pos, end, verify_crc=verify_crc, limit=max_frames)
            if result.offsets.shape[0]:
                batch = FrameBatch(self.path, self.data, result.offsets)
                if start_seq is not None and int(batch.seq[0]) < start_seq:
                    batch = batch.select(batch.seq >= np.uint64(start_seq))
                if len(batch):
                    yield batch
            if result.problem is not None:
                raise CorruptFrameError(self.path, result.stop, result.problem)
            pos = result.stop

    def close(self) -> None:
        """Unmap (deferred until the last view of the data is gone)."""
        mm, self._mm = self._mm, None
        self.data = np.zeros(0, dtype=np.uint8)
        if mm is not None:
            with contextlib.suppress(BufferError):
                mm.close()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def journal_segment_paths(directory: Path) -> list[Path]:
    """Segments of a journal in order: the manifest's sealed ones, then any later files (the
    active segment, or one a crash left unsealed), sorted by name (= by segment index)."""
    manifest = load_manifest(directory)
    listed = [directory / s.file for s in manifest.segments] if manifest else []
    known = {p.name for p in listed}
    rest = sorted(p for p in directory.glob("*.tjs") if p.name not in known)
    last_listed = listed[-1].name if listed else ""
    return listed + [p for p in rest if p.name > last_listed]


class JournalReader:
    """A journal directory read as one stream of frame batches, in sequence order."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.manifest = load_manifest(self.directory)
        self.paths = journal_segment_paths(self.directory)

    def batches(
        self,
        *,
        max_frames: int = 8192,
        start_seq: int | None = None,
        end_seq: int | None = None,
        verify_crc: bool = True,
    ) -> Iterator[FrameBatch]:
        """Every frame with start_seq <= seq <= end_seq, in order, in batches."""
        ranges = {
            s.file: (s.first_seq, s.last_seq)
            for s in (self.manifest.segments if self.manifest else [])
        }
        for path in self.paths:
            span = ranges.get(path.name)
            if span is not None:
                if start_seq is not None and span[1] < start_seq:
                    continue
                if end_seq is not None and span[0] > end_seq:
                    return
            reader = SegmentReader(path)
            try:
                for batch in reader.batches(
                    max_frames=max_frames, start_seq=start_seq, verify_crc=verify_crc
                ):
                    if end_seq is not None and int(batch.seq[-1]) > end_seq:
                        head = batch.select(batch.seq <= np.uint64(end_seq))
                        if len(head):
                            yield head
                        return
                    yield batch
            finally:
                reader.close()

    def records(
        self, type_code: int, *, start_seq: int | None = None, end_seq: int | None = None
    ) -> Iterator[npt.NDArray[np.void]]:
        """Schema records of one type in journal order, whether journaled one per frame or in
        RECORD_BATCH frames (expanded), as structured arrays (views into the segments)."""
        for fb in self.batches(start_seq=start_seq, end_seq=end_seq):
            types = fb.type
            single = types == type_code
            batched = types == RecordType.RECORD_BATCH
            if not batched.any():
                if single.any():
                    yield fb.records(type_code)
                continue
            for i in np.flatnonzero(single | batched).tolist():
                if types[i] == type_code:
                    yield fb.select(np.array([i])).records(type_code)
                    continue
                recs = decode_record_batch(fb.payload(i))
                if recs.shape[0] and int(recs["type_id"][0]) == type_code:
                    yield recs
