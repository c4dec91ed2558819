"""Durable order book snapshots: periodic, atomic, verified on load; the base of a warm start.

This module owns the snapshot file format and its life cycle:

* `write_snapshot(book, path)`: every state array of the book plus its last applied input
  sequence number, written to a temporary file in the same directory, fsynced, renamed into
  place and the directory fsynced, so a crash leaves either the old file or the new one;
* `read_snapshot` / `load_snapshot`: the SHA-256 trailer is checked over the whole file
  before anything is parsed, then the header, then the arrays, then the book's invariants;
  any failure raises a typed `SnapshotError` and no book is returned (never a half-loaded
  one);
* `SnapshotWriter`: periodic snapshots keyed on inputs (events applied / venue time), never a
  clock, so a replay snapshots at the same points; keeps the newest few;
* `warm_start(directory)`: the newest snapshot that verifies, falling back to older ones.
  The caller then replays (or requests retransmission of) events with seq > `last_seq`.

Format (version 1), little-endian:

    [0, 8)     magic b"TECTRASN"
    [8, 12)    u32 format version
    [12, 16)   u32 length L of the JSON header
    [16, 16+L) JSON header: book layout version, schema version, last_seq, out_seq, events,
               written_ns, and per array: name, dtype fingerprint, count, offset, nbytes
    ...        arrays, each at a 64-byte aligned offset (raw bytes of the numpy arrays)
    [-32, end) SHA-256 of every byte before it
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tectra._book import lib
from tectra.feed.book import STATE_ARRAY_NAMES, STATE_DTYPES, BookStateError, OrderBook
from tectra.schema import SCHEMA_VERSION, dtype_fingerprint

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "SnapshotChecksumError",
    "SnapshotError",
    "SnapshotFormatError",
    "SnapshotInfo",
    "SnapshotWriter",
    "latest_snapshots",
    "load_snapshot",
    "read_snapshot",
    "warm_start",
    "write_snapshot",
]

SNAPSHOT_MAGIC: Final[bytes] = b"TECTRASN"
SNAPSHOT_FORMAT_VERSION: Final[int] = 1
_PREFIX: Final = struct.Struct("<8sII")
_DIGEST_SIZE: Final[int] = 32
_NAME_RE: Final = re.compile(r"book-(\d{20})\.snap")


class SnapshotError(Exception):
    """Base of every snapshot error."""


class SnapshotFormatError(SnapshotError):
    """Not a snapshot, another format/layout version, or an inconsistent header or book."""


class SnapshotChecksumError(SnapshotError):
    """The file's SHA-256 trailer does not match its contents (torn or corrupted)."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot's header says."""

    path: Path
    last_seq: int  # header seq of the last event applied before the snapshot
    out_seq: int  # last output sequence number written
    events: int  # input records consumed
    written_ns: int  # caller-supplied time (0 if none): metadata only
    nbytes: int


def _align(n: int) -> int:
    return (n + 63) & ~63


def write_snapshot(
    book: OrderBook, path: str | os.PathLike[str], *, written_ns: int = 0, fsync: bool = True
) -> SnapshotInfo:
    """Write `book` atomically to `path` (tmp file, fsync, rename, fsync of the directory)."""
    path = Path(path)
    arrays = book.state_arrays(copy=False)
    entries: list[dict[str, Any]] = []
    header: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT_VERSION,
        "book_layout": int(lib.BK_LAYOUT_VERSION),
        "schema_version": SCHEMA_VERSION,
        "last_seq": book.last_seq,
        "out_seq": book.out_seq,
        "events": book.counters["events"],
        "written_ns": int(written_ns),
        "arrays": entries,
    }
    # Offsets depend on the header's length, which depends on the offsets: lay out with a
    # fixed-width placeholder first (offsets are written zero-padded to 20 digits).
    for name in STATE_ARRAY_NAMES:
        arr = arrays[name]
        entries.append(
            {
                "name": name,
                "dtype": dtype_fingerprint(arr.dtype),
                "count": int(arr.shape[0]),
                "nbytes": int(arr.nbytes),
                "offset": 0,
            }
        )

    def encode() -> bytes:
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()

    start = _align(_PREFIX.size + len(encode()) + 20 * len(entries))
    pos = start
    for entry in entries:
        entry["offset"] = pos
        pos = _align(pos + entry["nbytes"])
    blob = encode()
    if _PREFIX.size + len(blob) > start:  # cannot happen: offsets have at most 20 digits
        raise SnapshotError("snapshot header outgrew its reserved space")
    head = _PREFIX.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, len(blob)) + blob
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise SnapshotError(f"cannot create {tmp}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:

            def put(data: bytes | memoryview) -> None:
                digest.update(data)
                f.write(data)

            put(head.ljust(start, b"\0"))
            written = start
            for entry in entries:
                # numpy's stubs do not declare ndarray a Buffer; it is one (zero-copy).
                raw: Any = np.ascontiguousarray(arrays[entry["name"]])
                data = memoryview(raw).cast("B")
                put(data)
                written += len(data)
                pad = _align(written) - written
                put(b"\0" * pad)
                written += pad
            f.write(digest.digest())
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SnapshotError(f"cannot write snapshot {path}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SnapshotInfo(
        path=path,
        last_seq=header["last_seq"],
        out_seq=header["out_seq"],
        events=header["events"],
        written_ns=header["written_ns"],
        nbytes=written + _DIGEST_SIZE,
    )


def read_snapshot(
    path: str | os.PathLike[str],
) -> tuple[dict[str, npt.NDArray[Any]], SnapshotInfo]:
    """The verified state arrays (fresh, writable) and header of a snapshot file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    if len(data) < _PREFIX.size + _DIGEST_SIZE:
        raise SnapshotFormatError(f"{path}: {len(data)} bytes is too short for a snapshot")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotFormatError(f"{path}: not a book snapshot (magic {magic!r})")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise SnapshotFormatError(f"{path}: snapshot format {version}, this build reads 1")
    body = memoryview(data)[: len(data) - _DIGEST_SIZE]
    if hashlib.sha256(body).digest() != data[len(data) - _DIGEST_SIZE :]:
        raise SnapshotChecksumError(f"{path}: checksum mismatch (torn or corrupted file)")
    try:
        header = json.loads(bytes(body[_PREFIX.size : _PREFIX.size + hlen]))
        if header["book_layout"] != lib.BK_LAYOUT_VERSION:
            raise SnapshotFormatError(
                f"{path}: book layout {header['book_layout']}, this build has "
                f"{lib.BK_LAYOUT_VERSION}"
            )
        entries = {e["name"]: e for e in header["arrays"]}
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name in STATE_ARRAY_NAMES:
            entry = entries[name]
            dt = STATE_DTYPES[name]
            if entry["dtype"] != dtype_fingerprint(dt):
                raise SnapshotFormatError(f"{path}: array {name!r} has another dtype")
            count, offset, nbytes = int(entry["count"]), int(entry["offset"]), int(entry["nbytes"])
            if nbytes != count * dt.itemsize or offset < 0 or offset + nbytes > len(body):
                raise SnapshotFormatError(f"{path}: array {name!r} lies outside the file")
            arrays[name] = np.frombuffer(body, dtype=dt, count=count, offset=offset).copy()
        info = SnapshotInfo(
            path=path,
            last_seq=int(header["last_seq"]),
            out_seq=int(header["out_seq"]),
            events=int(header["events"]),
            written_ns=int(header["written_ns"]),
            nbytes=len(data),
        )
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotFormatError(f"{path}: malformed snapshot header: {exc!r}") from exc
    return arrays, info


def load_snapshot(
    path: str | os.PathLike[str], *, output_capacity: int = 4096, verify: bool = True
) -> tuple[OrderBook, SnapshotInfo]:
    """A new OrderBook from a verified snapshot, and its header. With verify (default) the
    book's invariants are checked too; any failure raises a SnapshotError subclass."""
    arrays, info = read_snapshot(path)
    if int(arrays["meta"][lib.BK_M_LAST_SEQ]) != info.last_seq:
        raise SnapshotFormatError(f"{path}: header last_seq disagrees with the book")
    try:
        book = OrderBook.from_state_arrays(
            arrays, output_capacity=output_capacity, copy=False, verify=verify
        )
    except BookStateError as exc:
        raise SnapshotFormatError(f"{path}: {exc}") from exc
    return book, info


def snapshot_name(last_seq: int) -> str:
    """File name of the snapshot taken after input sequence `last_seq` (sorts by it)."""
    return f"book-{last_seq:020d}.snap"


def latest_snapshots(directory: str | os.PathLike[str]) -> list[Path]:
    """Snapshot files in `directory`, newest (highest last_seq) first."""
    found = [p for p in Path(directory).glob("book-*.snap") if _NAME_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def warm_start(
    directory: str | os.PathLike[str], *, output_capacity: int = 4096
) -> tuple[OrderBook, SnapshotInfo, list[tuple[Path, SnapshotError]]] | None:
    """The newest snapshot that loads and verifies, with the ones skipped on the way (and why);
    None when there is none. Replay events with seq > info.last_seq next."""
    skipped: list[tuple[Path, SnapshotError]] = []
    for path in latest_snapshots(directory):
        try:
            book, info = load_snapshot(path, output_capacity=output_capacity)
        except SnapshotError as exc:
            skipped.append((path, exc))
            continue
        return book, info, skipped
    return None


class SnapshotWriter:
    """Periodic snapshots into one directory, triggered by inputs only (events applied since
    the last snapshot, or venue time elapsed), keeping the newest `keep` files."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every_events: int | None = None,
        every_exch_ns: int | None = None,
        keep: int = 3,
        fsync: bool = True,
    ) -> None:
        if every_events is None and every_exch_ns is None:
            raise ValueError("give every_events and/or every_exch_ns")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.every_events = every_events
        self.every_exch_ns = every_exch_ns
        self.keep = keep
        self.fsync = fsync
        self._last_events: int | None = None
        self._last_exch_ns: int | None = None

    def due(self, book: OrderBook) -> bool:
        """Whether `maybe_write` would write now."""
        events = book.counters["events"]
        if self._last_events is None or self._last_exch_ns is None:
            self._last_events, self._last_exch_ns = events, book.last_exch_ts_ns
            return False
        if self.every_events is not None and events - self._last_events >= self.every_events:
            return True
        return (
            self.every_exch_ns is not None
            and book.last_exch_ts_ns - self._last_exch_ns >= self.every_exch_ns
        )

    def maybe_write(self, book: OrderBook, *, written_ns: int = 0) -> SnapshotInfo | None:
        """Snapshot if due (call between batches); returns what was written."""
        return self.write(book, written_ns=written_ns) if self.due(book) else None

    def write(self, book: OrderBook, *, written_ns: int = 0) -> SnapshotInfo:
        """Snapshot now and prune old files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        info = write_snapshot(
            book,
            self.directory / snapshot_name(book.last_seq),
            written_ns=written_ns,
            fsync=self.fsync,
        )
        self._last_events = book.counters["events"]
        self._last_exch_ns = book.last_exch_ts_ns
        for old in latest_snapshots(self.directory)[self.keep :]:
            old.unlink(missing_ok=True)
        return info
