"""The journal writer: appends frames to segments, rotates, seals, and recovers after a crash.

This module owns the write side of a journal directory:

* **append** — schema records in batches (`append_records`: frame headers filled with numpy, one
  CRC32C call per frame), opaque payloads (`append_payloads`, `append`), or verbatim frames
  copied from another journal (`append_frames`, used by cut). Every call (or every `group()`)
  is one `writev(2)`.
* **acknowledgement** — an append returns once its frames are in the kernel (`write` returned):
  they survive the process being killed. Under ``fsync = always`` it returns only after
  `fdatasync(2)` as well (and the segment's directory entry was fsynced when the segment was
  created): they survive power loss. Under ``batch`` the writer fsyncs when an append or
  `tick()` finds the last fsync older than `batch_interval_s`, and at every seal and close;
  under ``none`` it never fsyncs (the page cache decides). `durable_seq` is the last sequence
  known to be on stable storage.
* **rotation** — a segment is sealed (footer with index, Merkle root; then fsync, file hash,
  manifest entry) when the next frames would take it past `segment_max_bytes`, when it is older
  than `segment_max_age_s`, and on close.
* **recovery** — on open, segments the manifest does not list yet are examined: a torn or
  half-written last frame (or a missing footer) is truncated to the last good frame, the
  segment is sealed and listed, and every action is returned in `recovery` and logged. Damage
  that a crash cannot explain (a bad frame followed by good ones, a broken sequence or hash
  chain) raises `JournalCorruptError` instead: recovery never drops good data silently.

One writer owns a directory at a time (an exclusive `flock` on ``.lock``); a `JournalWriter`
object is used from one thread.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra.core.clock import Clock, MonotonicClock, RealtimeClock
from tectra.core.config import JournalConfig
from tectra.core.log import get_logger
from tectra.journal.format import (
    SEGMENT_HEADER_SIZE,
    ClockDomain,
    FormatError,
    RecordKind,
    RecordType,
    SegmentHeader,
    SegmentTrailer,
    decode_header,
    encode_footer,
    encode_frame,
    encode_frames_fixed,
    encode_header,
    encode_record_batch,
    host_boot_id,
    host_name,
    is_schema_type,
    segment_file_name,
)
from tectra.journal.manifest import (
    Manifest,
    ManifestError,
    SegmentEntry,
    fsync_dir,
    load_manifest,
    save_manifest,
)
from tectra.journal.merkle import MerkleBuilder
from tectra.journal.reader import FrameBatch, SegmentReader, find_next_frame
from tectra.schema import Component, SchemaError, layout_by_type_id

__all__ = [
    "FsyncPolicy",
    "JournalCorruptError",
    "JournalLockedError",
    "JournalWriter",
    "RecoveryAction",
    "RecoveryReport",
    "WriterOptions",
    "WriterStats",
]

_log = get_logger("journal")
_ZERO_HASH: Final = bytes(32)
_IOV_MAX: Final = 512


class FsyncPolicy(enum.StrEnum):
    """What an acknowledged append promises (see the module docstring and docs/journal.md)."""

    ALWAYS = "always"
    BATCH = "batch"
    NONE = "none"


class JournalCorruptError(FormatError):
    """Damage recovery must not repair on its own: run `tectra journal verify` and decide."""


class JournalLockedError(RuntimeError):
    """Another writer holds the journal directory."""


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How a writer names, rotates and syncs its journal.

    `journal` (≤ 32 bytes UTF-8) names the stream; `component` (schema `Component`) is the
    default frame component; `rng_seed` is recorded in every segment header so a replay can
    reseed exactly; `first_seq` applies only when the directory holds no journal yet.
    """

    journal: str = "journal"
    component: int = int(Component.NONE)
    segment_max_bytes: int = 64 << 20
    segment_max_age_s: float = 3600.0
    fsync: FsyncPolicy = FsyncPolicy.BATCH
    batch_interval_s: float = 0.01
    index_stride: int = 1024
    clock_domain: int = int(ClockDomain.MONOTONIC)
    rng_seed: int = 0
    host: str = field(default_factory=host_name)
    first_seq: int = 1

    def __post_init__(self) -> None:
        if self.segment_max_bytes < SEGMENT_HEADER_SIZE + 256:
            raise ValueError(f"segment_max_bytes {self.segment_max_bytes} is too small")
        if self.index_stride < 1:
            raise ValueError("index_stride must be >= 1")
        if self.first_seq < 1:
            raise ValueError("first_seq must be >= 1 (0 means 'none' in the format)")
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))

    @classmethod
    def from_config(cls, config: JournalConfig, **overrides: Any) -> WriterOptions:
        """Options from the ``[journal]`` config section (plus explicit overrides)."""
        base: dict[str, Any] = {
            "segment_max_bytes": config.segment_max_bytes,
            "segment_max_age_s": config.segment_max_age_s,
            "fsync": FsyncPolicy(config.fsync),
            "batch_interval_s": config.batch_interval_s,
        }
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True, slots=True)
class RecoveryAction:
    """One thing recovery did to one segment, and why."""

    segment: str
    action: str  # "truncated", "sealed", "removed", "listed"
    detail: str
    offset: int | None = None
    dropped_bytes: int = 0


@dataclass(slots=True)
class RecoveryReport:
    """What opening the journal found and repaired (empty when it was closed cleanly)."""

    directory: Path
    actions: list[RecoveryAction] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.actions

    @property
    def truncated_bytes(self) -> int:
        return sum(a.dropped_bytes for a in self.actions)

    def __str__(self) -> str:
        if self.clean:
            return f"{self.directory}: clean"
        lines = [f"{self.directory}: recovered"]
        for a in self.actions:
            at = f" at offset {a.offset}" if a.offset is not None else ""
            lines.append(f"  {a.segment}: {a.action}{at}: {a.detail}")
        return "\n".join(lines)


@dataclass(slots=True)
class WriterStats:
    """Counters a metrics scrape reads (plain ints, written by the writer's thread only)."""

    records: int = 0
    bytes: int = 0
    writes: int = 0
    fsyncs: int = 0
    segments_sealed: int = 0
    rotations_size: int = 0
    rotations_age: int = 0
    recovered_bytes_dropped: int = 0


class _Segment:
    """The active segment's running state."""

    __slots__ = (
        "created_mono_ns",
        "fd",
        "first_mono_ns",
        "first_real_ns",
        "first_seq",
        "hasher",
        "header",
        "index_offsets",
        "index_seqs",
        "last_mono_ns",
        "last_real_ns",
        "merkle",
        "path",
        "records",
        "size",
    )

    def __init__(self, path: Path, fd: int, header: SegmentHeader, created_mono_ns: int) -> None:
        self.path = path
        self.fd = fd
        self.header = header
        self.first_seq = header.first_seq
        self.created_mono_ns = created_mono_ns
        self.size = 0
        self.records = 0
        self.hasher = hashlib.sha256()
        self.merkle = MerkleBuilder()
        self.index_seqs: list[int] = []
        self.index_offsets: list[int] = []
        self.first_mono_ns = self.last_mono_ns = 0
        self.first_real_ns = self.last_real_ns = 0


def _write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> int:
    """writev every chunk, resuming after short writes; returns bytes written."""
    pending = [memoryview(c).cast("B") for c in chunks if len(c)]
    total = 0
    while pending:
        n = os.writev(fd, pending[:_IOV_MAX])
        total += n
        while n and pending:
            head = pending[0]
            if n >= len(head):
                n -= len(head)
                pending.pop(0)
            else:
                pending[0] = head[n:]
                n = 0
    return total


def _footer_for(seg: _Segment, stride: int) -> bytes:
    index = np.zeros(len(seg.index_seqs), dtype=[("seq", "<u8"), ("offset", "<u8")])
    index["seq"] = seg.index_seqs
    index["offset"] = seg.index_offsets
    trailer = SegmentTrailer(
        first_seq=seg.first_seq,
        last_seq=seg.first_seq + seg.records - 1,
        record_count=seg.records,
        frames_end=seg.size,
        first_mono_ns=seg.first_mono_ns,
        last_mono_ns=seg.last_mono_ns,
        first_real_ns=seg.first_real_ns,
        last_real_ns=seg.last_real_ns,
        merkle_root=seg.merkle.root(),
        index_count=len(seg.index_seqs),
    )
    return encode_footer(trailer, index, stride)


def _account(
    seg: _Segment,
    chunk: memoryview,
    lens: list[int],
    *,
    first_seq: int,
    monos: tuple[int, int],
    reals: tuple[int, int],
    stride: int,
) -> None:
    """Fold frames about to be written into the segment's hash, Merkle tree, index, ranges.

    Plain Python over ints: batches here are small (one step, one ring pop), where numpy's
    per-call overhead would cost more than the loop it replaces.
    """
    seg.merkle.add_data(chunk, lens)
    record = seg.records
    # Index entries: every `stride`-th record of the segment (positions 0, stride, ...).
    first_pick = -record % stride
    if first_pick < len(lens):
        offsets = [0]
        for flen in lens[:-1]:
            offsets.append(offsets[-1] + flen)
        for i in range(first_pick, len(lens), stride):
            seg.index_seqs.append(first_seq + i)
            seg.index_offsets.append(seg.size + offsets[i])
    record += len(lens)
    seg.hasher.update(chunk)
    if seg.records == 0:
        seg.first_mono_ns = monos[0]
        seg.first_real_ns = reals[0]
    seg.last_mono_ns = monos[1]
    seg.last_real_ns = reals[1]
    seg.size += len(chunk)
    seg.records = record


class JournalWriter:
    """Appends to the journal in `directory` (created if missing), recovering it first."""

    def __init__(
        self,
        directory: Path | str,
        options: WriterOptions | None = None,
        *,
        mono_clock: Clock | None = None,
        real_clock: Clock | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.options = options if options is not None else WriterOptions()
        self._mono = mono_clock if mono_clock is not None else MonotonicClock()
        self._real = real_clock if real_clock is not None else RealtimeClock()
        self.stats = WriterStats()
        self._boot_id = host_boot_id()
        self._segment: _Segment | None = None
        self._pending: list[bytes | memoryview] = []
        self._pending_last_seq = 0
        self._group_depth = 0
        self._last_sync_ns = self._mono.now_ns()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalLockedError(f"journal {self.directory} has another writer") from None
            raise
        try:
            self.manifest, self.recovery = self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.stats.recovered_bytes_dropped = self.recovery.truncated_bytes
        self._next_seq = (
            self.manifest.next_seq if self.manifest.segments else (self.options.first_seq)
        )
        self.written_seq = self._next_seq - 1
        self.durable_seq = self.written_seq
        if not self.recovery.clean:
            _log.warning(
                "journal recovered",
                directory=str(self.directory),
                actions=[f"{a.segment}: {a.action} ({a.detail})" for a in self.recovery.actions],
                dropped_bytes=self.recovery.truncated_bytes,
            )

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> tuple[Manifest, RecoveryReport]:
        report = RecoveryReport(self.directory)
        try:
            manifest = load_manifest(self.directory)
        except ManifestError as exc:
            raise JournalCorruptError(f"cannot append: {exc}") from exc
        opts = self.options
        if manifest is None:
            manifest = Manifest(journal=opts.journal, component=opts.component, host=opts.host)
        for entry in manifest.segments:
            path = self.directory / entry.file
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise JournalCorruptError(
                    f"manifest lists {entry.file}, which is missing"
                ) from None
            if size != entry.bytes:
                raise JournalCorruptError(
                    f"{entry.file} is {size} bytes, the manifest says {entry.bytes}"
                )
        listed = {e.file for e in manifest.segments}
        last_index = manifest.segments[-1].index if manifest.segments else -1
        durable = opts.fsync is not FsyncPolicy.NONE
        changed = False
        for path in sorted(self.directory.glob("*.tjs")):
            if path.name in listed:
                continue
            try:
                index = int(path.name.split("-", 1)[0])
            except ValueError:
                continue
            if index <= last_index:
                raise JournalCorruptError(
                    f"{path.name} is not in the manifest but precedes its last segment"
                )
            recovered = self._recover_segment(path, manifest, report)
            if recovered is not None:
                manifest.segments.append(recovered)
                last_index = recovered.index
            changed = True
        if changed:
            save_manifest(self.directory, manifest, durable=durable)
        return manifest, report

    def _recover_segment(
        self, path: Path, manifest: Manifest, report: RecoveryReport
    ) -> SegmentEntry | None:
        prev_hash = bytes.fromhex(manifest.segments[-1].sha256) if manifest.segments else _ZERO_HASH
        size = path.stat().st_size
        try:
            header = decode_header(path.read_bytes()[:SEGMENT_HEADER_SIZE])
        except FormatError as exc:
            if size <= SEGMENT_HEADER_SIZE:
                # A crash while creating the segment: its header never fully reached the disk
                # and no frame can follow a header that was not written.
                path.unlink()
                report.actions.append(
                    RecoveryAction(path.name, "removed", f"torn segment header ({exc})", 0, size)
                )
                return None
            raise JournalCorruptError(f"{path.name}: damaged header ({exc})") from exc
        if header.first_seq != manifest.next_seq and manifest.segments:
            raise JournalCorruptError(
                f"{path.name} starts at seq {header.first_seq}, the journal continues at "
                f"{manifest.next_seq}"
            )
        if header.prev_segment_hash != prev_hash:
            raise JournalCorruptError(f"{path.name}: previous-segment hash does not chain")
        reader = SegmentReader(path)
        try:
            result = reader.scan()
            stop = result.stop
            if result.problem is not None:
                # A sealed segment was whole when sealed: any bad frame in it is damage. In an
                # unsealed one, a bad frame is a torn write only if nothing valid follows it.
                nxt = find_next_frame(reader.data, result.stop + 8, reader.frames_end)
                if reader.sealed or nxt is not None:
                    after = f"; a valid frame follows at {nxt}" if nxt is not None else ""
                    raise JournalCorruptError(
                        f"{path.name}: {result.problem} at offset {result.stop}{after}: "
                        "damage, not a torn write"
                    )
            batch = FrameBatch(path, reader.data, result.offsets)
            seqs = batch.seq
            n = len(batch)
            if n and (
                int(seqs[0]) != header.first_seq
                or (n > 1 and not (np.diff(seqs.astype(np.int64)) == 1).all())
            ):
                raise JournalCorruptError(f"{path.name}: frame sequence numbers are not contiguous")
            seg = _Segment(path, -1, header, 0)
            seg.size = SEGMENT_HEADER_SIZE
            seg.hasher.update(reader.data[:SEGMENT_HEADER_SIZE].tobytes())
            if n:
                lens = batch.frame_len.astype(np.int64)
                chunk = reader.data.data[SEGMENT_HEADER_SIZE:stop]
                mono, real = batch.mono_ns, batch.real_ns
                _account(
                    seg,
                    chunk,
                    lens.tolist(),
                    first_seq=header.first_seq,
                    monos=(int(mono[0]), int(mono[-1])),
                    reals=(int(real[0]), int(real[-1])),
                    stride=self.options.index_stride,
                )
            if reader.sealed:
                assert reader.trailer is not None
                if reader.trailer.merkle_root != seg.merkle.root() or (
                    reader.trailer.record_count != n
                ):
                    raise JournalCorruptError(f"{path.name}: footer disagrees with its frames")
                file_hash = hashlib.sha256(reader.data.tobytes()).hexdigest()
                report.actions.append(
                    RecoveryAction(path.name, "listed", "sealed before the crash; now listed")
                )
                entry = self._entry_for(seg, header, file_hash, reader.size, prev_hash)
                return entry
        finally:
            reader.close()
        if n == 0:
            path.unlink()
            report.actions.append(
                RecoveryAction(
                    path.name,
                    "removed",
                    f"no complete frame ({result.problem or 'empty'})",
                    SEGMENT_HEADER_SIZE,
                    size - SEGMENT_HEADER_SIZE,
                )
            )
            return None
        durable = self.options.fsync is not FsyncPolicy.NONE
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if stop < size:
                reason = result.problem or "footer"
                what = (
                    "torn or damaged footer"
                    if result.problem is None
                    else f"{reason} in the last frame (torn write)"
                )
                os.ftruncate(fd, stop)
                report.actions.append(
                    RecoveryAction(path.name, "truncated", what, stop, size - stop)
                )
            footer = _footer_for(seg, self.options.index_stride)
            os.pwrite(fd, footer, stop)
            if durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        seg.hasher.update(footer)
        report.actions.append(
            RecoveryAction(path.name, "sealed", f"{n} records, seq {seqs[0]}..{seqs[-1]}")
        )
        return self._entry_for(seg, header, seg.hasher.hexdigest(), stop + len(footer), prev_hash)

    def _entry_for(
        self, seg: _Segment, header: SegmentHeader, sha: str, nbytes: int, prev: bytes
    ) -> SegmentEntry:
        return SegmentEntry(
            index=header.segment_index,
            file=seg.path.name,
            first_seq=seg.first_seq,
            last_seq=seg.first_seq + seg.records - 1,
            records=seg.records,
            bytes=nbytes,
            sha256=sha,
            merkle_root=seg.merkle.root().hex(),
            prev_sha256=prev.hex(),
            first_mono_ns=seg.first_mono_ns,
            last_mono_ns=seg.last_mono_ns,
            first_real_ns=seg.first_real_ns,
            last_real_ns=seg.last_real_ns,
        )

    # ------------------------------------------------------------------ segments

    def _open_segment(self, first_seq: int) -> _Segment:
        index = self.manifest.segments[-1].index + 1 if self.manifest.segments else 0
        prev = (
            bytes.fromhex(self.manifest.segments[-1].sha256)
            if self.manifest.segments
            else (_ZERO_HASH)
        )
        header = SegmentHeader(
            first_seq=first_seq,
            segment_index=index,
            component=self.options.component,
            journal=self.options.journal,
            host=self.options.host,
            clock_domain=self.options.clock_domain,
            boot_id=self._boot_id,
            rng_seed=self.options.rng_seed,
            created_real_ns=self._real.now_ns(),
            created_mono_ns=self._mono.now_ns(),
            prev_segment_hash=prev,
        )
        path = self.directory / segment_file_name(index, first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        raw = encode_header(header)
        try:
            _write_all(fd, [raw])
            if self.options.fsync is not FsyncPolicy.NONE:
                # The directory entry must be durable before any frame in it is acknowledged.
                os.fdatasync(fd)
                fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        seg = _Segment(path, fd, header, self._mono.now_ns())
        seg.size = len(raw)
        seg.hasher.update(raw)
        return seg

    def _seal(self, *, reason: str = "close") -> None:
        seg = self._segment
        if seg is None:
            return
        self._flush()
        footer = _footer_for(seg, self.options.index_stride)
        durable = self.options.fsync is not FsyncPolicy.NONE
        _write_all(seg.fd, [footer])
        if durable:
            os.fdatasync(seg.fd)
            self.stats.fsyncs += 1
        os.close(seg.fd)
        seg.hasher.update(footer)
        prev = seg.header.prev_segment_hash
        entry = self._entry_for(
            seg, seg.header, seg.hasher.hexdigest(), seg.size + len(footer), prev
        )
        self.manifest.segments.append(entry)
        save_manifest(self.directory, self.manifest, durable=durable)
        self._segment = None
        self.stats.segments_sealed += 1
        if durable:
            self.durable_seq = self.written_seq
            self._last_sync_ns = self._mono.now_ns()
        if reason == "size":
            self.stats.rotations_size += 1
        elif reason == "age":
            self.stats.rotations_age += 1

    def _age_due(self, seg: _Segment, now_ns: int) -> bool:
        max_age = self.options.segment_max_age_s
        return bool(max_age) and seg.records > 0 and now_ns - seg.created_mono_ns >= max_age * 1e9

    # ------------------------------------------------------------------ write path

    def _add(
        self,
        raw: memoryview,
        lens: list[int],
        first_seq: int,
        monos: list[int],
        reals: list[int],
    ) -> None:
        """Queue frames (raw = their bytes, lens = each frame's length) for the active segment,
        rotating by size/age on the way; writes them unless inside group()."""
        n = len(lens)
        if n == 0:
            return
        if self._closed:
            raise ValueError(f"journal writer for {self.directory} is closed")
        seg = self._segment
        if seg is not None and self._age_due(seg, self._mono.now_ns()):
            self._seal(reason="age")
        done = pos = 0
        max_bytes = self.options.segment_max_bytes
        stride = self.options.index_stride
        while done < n:
            if self._segment is None:
                self._segment = self._open_segment(first_seq + done)
            seg = self._segment
            room = max_bytes - seg.size
            fit = 0
            used = 0
            for flen in lens[done:]:
                if used + flen > room:
                    break
                used += flen
                fit += 1
            if fit == 0:
                if seg.records:
                    self._seal(reason="size")
                    continue
                fit, used = 1, lens[done]  # a frame larger than a segment still goes: alone
            chunk = raw[pos : pos + used]
            last = done + fit - 1
            _account(
                seg,
                chunk,
                lens[done : done + fit],
                first_seq=first_seq + done,
                monos=(monos[done], monos[last]),
                reals=(reals[done], reals[last]),
                stride=stride,
            )
            self._pending.append(chunk)
            self._pending_last_seq = first_seq + last
            done += fit
            pos += used
        if self._group_depth == 0:
            self._commit()

    def _flush(self) -> None:
        seg = self._segment
        if not self._pending or seg is None:
            self._pending.clear()
            return
        written = _write_all(seg.fd, self._pending)
        self._pending.clear()
        self.stats.writes += 1
        self.stats.bytes += written
        self.written_seq = self._pending_last_seq

    def _commit(self) -> None:
        self._flush()
        policy = self.options.fsync
        if self.written_seq == self.durable_seq or self._segment is None:
            return
        if policy is FsyncPolicy.ALWAYS:
            self._sync()
        elif policy is FsyncPolicy.BATCH:
            now = self._mono.now_ns()
            if now - self._last_sync_ns >= self.options.batch_interval_s * 1e9:
                self._sync()

    def _sync(self) -> None:
        seg = self._segment
        if seg is not None:
            os.fdatasync(seg.fd)
            self.stats.fsyncs += 1
        self.durable_seq = self.written_seq
        self._last_sync_ns = self._mono.now_ns()

    def _take_seqs(self, n: int) -> int:
        first = self._next_seq
        self._next_seq += n
        self.stats.records += n
        return first

    # ------------------------------------------------------------------ public API

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended frame gets."""
        return self._next_seq

    @property
    def segment_path(self) -> Path | None:
        """The active (unsealed) segment, if one is open."""
        return self._segment.path if self._segment is not None else None

    def append_records(
        self,
        records: npt.NDArray[np.void],
        *,
        kind: int = RecordKind.EVENT,
        component: int | npt.NDArray[np.integer[Any]] | None = None,
        mono_ns: int | npt.NDArray[np.int64] | None = None,
        real_ns: int | None = None,
        step: int = 0,
    ) -> tuple[int, int]:
        """Append schema records of one layout (a structured array); returns (first, last) seq.

        The frame type is each record's header type_id (all must be the layout's); `mono_ns`
        defaults to each record's header ts_ns, `real_ns` to the realtime clock now.
        """
        n = int(records.shape[0])
        if n == 0:
            return self._next_seq, self._next_seq - 1
        names = records.dtype.names or ()
        if "type_id" not in names:
            raise SchemaError("append_records takes schema records (a structured array)")
        type_id = int(records["type_id"][0])
        layout = layout_by_type_id(type_id, int(records["version"][0]))
        if records.dtype != layout.dtype:
            raise SchemaError(f"records are not {layout.name} records")
        if n > 1 and (records["type_id"] != type_id).any():
            raise SchemaError("append_records takes records of one layout per call")
        monos = records["ts_ns"].astype(np.int64) if mono_ns is None else mono_ns
        real = self._real.now_ns() if real_ns is None else real_ns
        first = self._take_seqs(n)
        frames = encode_frames_fixed(
            records,
            type_codes=type_id,
            kind=int(kind),
            component=self.options.component if component is None else component,
            first_seq=first,
            mono_ns=monos,
            real_ns=real,
            step=step,
        )
        flen = frames.shape[0] // n
        if isinstance(monos, int):
            mono_ends = [monos] * n
        else:
            mono_ends = np.broadcast_to(np.asarray(monos, dtype=np.int64), (n,)).tolist()
        self._add(frames.data, [flen] * n, first, mono_ends, [real] * n)
        return first, first + n - 1

    def append_batch(
        self,
        records: npt.NDArray[np.void],
        *,
        kind: int = RecordKind.EVENT,
        component: int | None = None,
        mono_ns: int | None = None,
        real_ns: int | None = None,
        step: int = 0,
    ) -> int:
        """Append schema records of one layout as one RECORD_BATCH frame (several when they
        would fill more than a quarter of a segment); returns the last frame's seq.

        For high-rate streams (market data, a whole ring pop, a step's outputs): the per-frame
        costs (CRC call, Merkle leaf, header) are paid once per batch instead of per record,
        at the price of integrity and seeking at batch rather than record granularity.
        `mono_ns` defaults to the first record's header ts_ns.
        """
        if records.shape[0] == 0:
            raise FormatError("append_batch needs at least one record")
        layout = layout_by_type_id(int(records["type_id"][0]), int(records["version"][0]))
        if records.dtype != layout.dtype or (records["type_id"] != layout.type_id).any():
            raise SchemaError(f"append_batch takes records of one layout ({layout.name})")
        # A frame never takes more than a quarter of a segment, so segments keep their size.
        per_frame = max(1, self.options.segment_max_bytes // 4 // layout.itemsize)
        chunks = [records[i : i + per_frame] for i in range(0, records.shape[0], per_frame)]
        seq = 0
        with self.group():
            for chunk in chunks:
                seq = self.append(
                    encode_record_batch(chunk),
                    type_code=RecordType.RECORD_BATCH,
                    kind=kind,
                    component=component,
                    mono_ns=int(chunk["ts_ns"][0]) if mono_ns is None else mono_ns,
                    real_ns=real_ns,
                    step=step,
                )
        return seq

    def append_payloads(
        self,
        payloads: Sequence[bytes | bytearray | memoryview],
        *,
        type_code: int,
        kind: int = RecordKind.EVENT,
        component: int | None = None,
        mono_ns: int | None = None,
        real_ns: int | None = None,
        step: int = 0,
    ) -> tuple[int, int]:
        """Append opaque payloads (raw packets, FIX messages, snapshots) of one type code."""
        n = len(payloads)
        if n == 0:
            return self._next_seq, self._next_seq - 1
        if not 0 < type_code <= 0xFFFF:
            raise FormatError(f"type code {type_code} outside 1..65535")
        if is_schema_type(type_code):
            size = layout_by_type_id(type_code).itemsize
            if any(len(p) != size for p in payloads):
                raise SchemaError(f"schema type {type_code} payloads must be {size} bytes")
        mono = self._mono.now_ns() if mono_ns is None else mono_ns
        real = self._real.now_ns() if real_ns is None else real_ns
        comp = self.options.component if component is None else component
        first = self._take_seqs(n)
        frames = [
            encode_frame(
                p,
                type_code=type_code,
                kind=int(kind),
                component=comp,
                seq=first + i,
                mono_ns=mono,
                real_ns=real,
                step=step,
            )
            for i, p in enumerate(payloads)
        ]
        raw = b"".join(frames)
        self._add(memoryview(raw), [len(f) for f in frames], first, [mono] * n, [real] * n)
        return first, first + n - 1

    def append(
        self,
        payload: bytes | bytearray | memoryview,
        *,
        type_code: int,
        kind: int = RecordKind.EVENT,
        component: int | None = None,
        mono_ns: int | None = None,
        real_ns: int | None = None,
        step: int = 0,
    ) -> int:
        """Append one payload; returns its sequence number once acknowledged (see module doc)."""
        return self.append_payloads(
            [payload],
            type_code=type_code,
            kind=kind,
            component=component,
            mono_ns=mono_ns,
            real_ns=real_ns,
            step=step,
        )[0]

    def append_frames(self, batch: FrameBatch) -> tuple[int, int]:
        """Copy frames verbatim (same seq, times, CRC) from another journal; their sequence
        numbers must continue this journal's exactly (cut writes windows this way)."""
        n = len(batch)
        if n == 0:
            return self._next_seq, self._next_seq - 1
        seqs = batch.seq.astype(np.int64)
        if int(seqs[0]) != self._next_seq or (n > 1 and (np.diff(seqs) != 1).any()):
            raise FormatError(
                f"frames seq {int(seqs[0])}.. do not continue this journal at {self._next_seq}"
            )
        raw = batch.frames_bytes()
        first = self._take_seqs(n)
        self._add(
            memoryview(raw),
            batch.frame_len.tolist(),
            first,
            batch.mono_ns.tolist(),
            batch.real_ns.tolist(),
        )
        return first, first + n - 1

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Appends inside the block go out in one writev (and one fsync under `always`) at its
        end; they are acknowledged when the block exits, not before."""
        self._group_depth += 1
        try:
            yield
        finally:
            self._group_depth -= 1
            if self._group_depth == 0 and not self._closed:
                self._commit()

    def sync(self) -> None:
        """Write anything pending and fdatasync now (any policy)."""
        self._flush()
        if self.written_seq != self.durable_seq:
            self._sync()

    def tick(self) -> None:
        """Periodic duties for an idle or busy writer: the `batch` fsync when due, and sealing
        a segment past its maximum age. The journal role calls it every loop iteration."""
        if self._closed:
            return
        now = self._mono.now_ns()
        if (
            self.options.fsync is FsyncPolicy.BATCH
            and self.written_seq != self.durable_seq
            and now - self._last_sync_ns >= self.options.batch_interval_s * 1e9
        ):
            self._flush()
            self._sync()
        seg = self._segment
        if seg is not None and self._age_due(seg, now):
            self._seal(reason="age")

    def rotate(self) -> None:
        """Seal the active segment now (the next append opens a new one)."""
        self._seal(reason="manual")

    def close(self) -> None:
        """Write what is pending, seal the active segment, release the directory."""
        if self._closed:
            return
        try:
            self._flush()
            self._seal()
        finally:
            self._closed = True
            os.close(self._lock_fd)

    def abandon(self) -> None:
        """Drop the writer without sealing (tests: what a crash leaves behind)."""
        if self._closed:
            return
        self._closed = True
        if self._segment is not None:
            os.close(self._segment.fd)
            self._segment = None
        os.close(self._lock_fd)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
