"""NASDAQ binary ITCH 5.0 files: read and write streams of 2-byte-length-prefixed messages.

This module owns the file format of NASDAQ's published TotalView-ITCH 5.0 sample files (and of
Tectra's own captures): a bare sequence of messages, each preceded by its length as a 2-byte
big-endian integer, no file header, optionally gzip-compressed (detected from the gzip magic
bytes, whatever the file name). It reads files in bounded chunks (plain files memory-mapped,
gzip'd ones streamed), decoding each chunk with one `ItchDecoder` call and yielding ITCH_EVENT
batches; message i of the file (counting messages of unknown types) gets header seq i + 1.

Corrupt data never raises: it is counted in `ItchFileReader.stats`. A bad length prefix ends
the read (length-prefixed framing cannot resynchronise after one); the reader then reports
where in `stopped_at` and `complete` stays False.

Imports `adapters.itch` (and through it `tectra.schema`) only.
"""

from __future__ import annotations

import gzip
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import numpy as np
import numpy.typing as npt

from adapters.itch import (
    EVENT_DTYPE,
    MAX_MESSAGE_LENGTH,
    BufferLike,
    ItchArgumentError,
    ItchDecoder,
    ItchError,
    frame,
)

__all__ = [
    "DEFAULT_CHUNK",
    "GZIP_MAGIC",
    "ItchFileError",
    "ItchFileReader",
    "ItchFileWriter",
    "is_gzip",
    "read_all",
    "read_file",
    "write_file",
]

Records = npt.NDArray[np.void]
PathLike = str | os.PathLike[str]

GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
DEFAULT_CHUNK: Final[int] = 1 << 20
"""Bytes decoded per call: ~33k messages, a 4 MiB output batch."""
_MIN_CHUNK: Final[int] = 2 + MAX_MESSAGE_LENGTH  # a window must hold any one valid message


class ItchFileError(ItchError):
    """The file cannot be opened or written, or an argument is wrong (never for bad content)."""


def is_gzip(path: PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_MAGIC
    except OSError as exc:
        raise ItchFileError(f"cannot read {path}: {exc}") from exc


class ItchFileReader:
    """Iterate a NASDAQ binary ITCH file as ITCH_EVENT batches.

    Each batch is a fresh array (`copy=True`) or, with `copy=False`, a view of the decoder's
    output valid until the next batch is requested. `stats` are the decoder's counters for this
    file; `messages` counts framed messages walked (seq of the last one). A message cut by
    the end of the file counts as `truncated`.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        recv_ns: int = 0,
        record_flags: int = 0,
        copy: bool = True,
    ) -> None:
        if chunk_size < _MIN_CHUNK:
            raise ItchFileError(f"chunk_size must be >= {_MIN_CHUNK} bytes")
        self.path = Path(path)
        self._chunk = int(chunk_size)
        self._recv_ns = int(recv_ns)
        self._copy = copy
        self._decoder = ItchDecoder(self._chunk // 14 + 1, record_flags=record_flags)
        self._gzip = is_gzip(self.path)
        self._file: IO[bytes] | gzip.GzipFile | None = None
        self._map: mmap.mmap | None = None
        self.next_seq = 1
        self.bytes_read = 0
        self.complete = False
        self.stopped_at: int | None = None
        """Uncompressed file offset where reading stopped early (bad length prefix, damaged
        gzip stream), or None."""
        self.error: str | None = None
        self._started = False

    @property
    def stats(self) -> dict[str, int]:
        return self._decoder.stats

    @property
    def type_counts(self) -> dict[str, int]:
        return self._decoder.type_counts

    @property
    def messages(self) -> int:
        return self.next_seq - 1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __iter__(self) -> Iterator[Records]:
        if self._started:
            raise ItchFileError("an ItchFileReader is iterated once; open a new one")
        self._started = True
        try:
            if self._gzip:
                yield from self._read_stream()
            else:
                yield from self._read_mapped()
        finally:
            self.close()

    def _decode(self, window: BufferLike, offset: int, final: bool) -> tuple[Records, int, bool]:
        """Decode one window at file offset `offset`; return (batch, bytes consumed, stop)."""
        before = self._decoder.stats
        batch = self._decoder.decode(window, self.next_seq, self._recv_ns, partial_tail=not final)
        after = self._decoder.stats
        self.next_seq = self._decoder.next_seq
        if after["bad_length"] != before["bad_length"]:
            # Bytes decoded or skipped in this window end exactly at the bad prefix.
            walked = after["bytes"] - before["bytes"]
            walked += after["bytes_skipped"] - before["bytes_skipped"]
            self.stopped_at = offset + walked
            return batch, self._decoder.consumed, True
        return batch, self._decoder.consumed, False

    def _emit(self, batch: Records) -> Records:
        return batch.copy() if self._copy else batch

    def _read_mapped(self) -> Iterator[Records]:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise ItchFileError(f"cannot open {self.path}: {exc}") from exc
        if size == 0:
            self._decode(b"", 0, True)
            self.complete = True
            return
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(self._map)
        try:
            pos = 0
            want = self._chunk
            while pos < size:
                end = min(size, pos + want)
                final = end == size
                batch, consumed, stop = self._decode(view[pos:end], pos, final)
                pos += consumed
                self.bytes_read = pos
                if batch.size:
                    yield self._emit(batch)
                if stop:
                    self.error = f"bad length prefix at offset {self.stopped_at}"
                    return
                # A framed message longer than the window (an unknown type may be up to 64 KiB):
                # widen the window until it fits.
                want = want * 2 if consumed == 0 else self._chunk
            self.complete = True
        finally:
            view.release()

    def _read_stream(self) -> Iterator[Records]:
        try:
            stream = gzip.GzipFile(self.path, "rb")
        except OSError as exc:
            raise ItchFileError(f"cannot open {self.path}: {exc}") from exc
        self._file = stream
        pending = b""
        offset = 0  # uncompressed file offset of pending[0]
        while True:
            try:
                chunk = stream.read(self._chunk)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                # A damaged or cut gzip stream ends the data: decode what we have, count the
                # cut message as truncated, and report the file incomplete.
                chunk = b""
                self.stopped_at = offset + len(pending)
                self.error = f"damaged gzip stream: {exc}"
            final = not chunk
            window = pending + chunk
            batch, consumed, stop = self._decode(window, offset, final)
            offset += consumed
            self.bytes_read = offset
            pending = window[consumed:]
            if batch.size:
                yield self._emit(batch)
            if stop:
                self.error = f"bad length prefix at offset {self.stopped_at}"
            if stop or final:
                self.complete = self.stopped_at is None
                return


def read_file(
    path: PathLike, *, chunk_size: int = DEFAULT_CHUNK, recv_ns: int = 0, record_flags: int = 0
) -> Iterator[Records]:
    """Yield the ITCH_EVENT batches of a NASDAQ binary ITCH file (plain or gzip'd)."""
    with ItchFileReader(
        path, chunk_size=chunk_size, recv_ns=recv_ns, record_flags=record_flags
    ) as reader:
        yield from reader


def read_all(path: PathLike, *, recv_ns: int = 0, record_flags: int = 0) -> Records:
    """Every message of a file as one ITCH_EVENT array (small files and tests)."""
    batches = list(read_file(path, recv_ns=recv_ns, record_flags=record_flags))
    if not batches:
        return np.zeros(0, dtype=EVENT_DTYPE)
    out: Records = np.concatenate(batches)
    return out


class ItchFileWriter:
    """Write ITCH messages as a NASDAQ binary file, gzip'd when `compress` (default: when the
    name ends in .gz). Written to `<path>.partial` and renamed into place on a clean close, so
    a reader never sees a half-written file under the final name."""

    def __init__(
        self, path: PathLike, *, compress: bool | None = None, compresslevel: int = 6
    ) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._compress = self.path.suffix == ".gz" if compress is None else compress
        try:
            raw = open(self._tmp, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ItchFileError(f"cannot create {self._tmp}: {exc}") from exc
        self._raw: IO[bytes] = raw
        # No name, mtime 0: the same messages always give the same bytes (reproducible).
        self._out: IO[bytes] | gzip.GzipFile = (
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0)
            if self._compress
            else raw
        )
        self.messages_written = 0
        self.bytes_written = 0
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(discard=exc_type is not None)

    def write(self, events: Records) -> int:
        """Frame and append ITCH_EVENT records (their raw bytes); returns bytes written."""
        return self._put(frame(events), int(np.asarray(events).size))

    def write_framed(self, data: BufferLike, messages: int = 0) -> int:
        """Append bytes that are already length-prefixed messages (e.g. MoldUDP64 message
        blocks); `messages` only feeds `messages_written`."""
        return self._put(data, messages)

    def _put(self, data: Any, messages: int) -> int:
        if self._closed:
            raise ItchFileError("write on a closed ItchFileWriter")
        if isinstance(data, np.ndarray):
            buf = np.ascontiguousarray(data).view(np.uint8).reshape(-1).data
        else:
            buf = memoryview(data)
        try:
            self._out.write(buf.cast("B"))
        except OSError as exc:
            raise ItchFileError(f"cannot write {self._tmp}: {exc}") from exc
        self.messages_written += messages
        self.bytes_written += buf.nbytes
        return buf.nbytes

    def close(self, *, discard: bool = False) -> None:
        """Flush and move the file into place (or delete it when `discard`)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._out.close()
            if self._raw is not self._out:
                self._raw.close()
            if discard:
                self._tmp.unlink(missing_ok=True)
            else:
                os.replace(self._tmp, self.path)
        except OSError as exc:
            raise ItchFileError(f"cannot finish {self.path}: {exc}") from exc


def write_file(path: PathLike, events: Records, *, compress: bool | None = None) -> int:
    """Write ITCH_EVENT records as a NASDAQ binary file; returns bytes written (uncompressed)."""
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise ItchArgumentError("write_file: expected ITCH_EVENT records")
    with ItchFileWriter(path, compress=compress) as writer:
        return writer.write(events)
