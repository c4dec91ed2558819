"""Top-of-book reference table in shared memory, for the risk engine's price bands and
staleness checks (`/dev/shm/tectra/<name>`).

This module owns the table's file layout and its two faces: the feed's single writer
(`RefTable.create`, `update(ticks)` per batch, `touch(now_ns)`) and any number of readers in
other processes (`RefTable.attach`, `read`, `read_many`, `is_stale`).

Layout (little-endian, all offsets 64-byte aligned):

    [0, 256)                 header (`REF_HEADER_DTYPE`): magic "TECTRARF", layout version,
                             TICK record size and dtype fingerprint, capacity, offsets,
                             writer heartbeat (ns) and rows-written counter
    [gens_offset, +8*N)      one u64 seqlock generation per instrument: 0 = never written,
                             odd = write in progress, even = stable
    [rows_offset, +128*N)    one TICK record per instrument id (the latest TICK seen)

Rows are written and read in C (`bk_ref_write` / `bk_ref_read` in csrc/book.c) with C11
atomics and fences, so a reader never returns a torn row. The time of the last update of an
instrument is its row's header `ts_ns`: the receive time of the event behind that TICK (the
book reads no clock), so staleness is judged against the same CLOCK_MONOTONIC.
A missing, never-written or unreadable row is reported as None / stale: callers fail closed.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from tectra._book import ffi, lib
from tectra.io.shm import DEFAULT_ROOT, dtype_fingerprint
from tectra.schema import TICK

__all__ = [
    "REF_HEADER_DTYPE",
    "REF_LAYOUT_VERSION",
    "RefTable",
    "RefTableArgumentError",
    "RefTableError",
    "RefTableExistsError",
    "RefTableFormatError",
    "RefTableNotFoundError",
]

REF_MAGIC: Final[int] = int.from_bytes(b"TECTRARF", "little")
REF_LAYOUT_VERSION: Final[int] = 1
_HEADER_SIZE: Final[int] = 256
_MAX_SPINS: Final[int] = 100_000  # a reader gives up only if a writer died mid-row

REF_HEADER_DTYPE: Final = np.dtype(
    {
        "names": [
            "magic",
            "layout_version",
            "header_size",
            "record_size",
            "max_instruments",
            "fingerprint",
            "created_ns",
            "gens_offset",
            "rows_offset",
            "total_bytes",
            "heartbeat_ns",
            "rows_written",
            "writer_pid",
        ],
        "formats": [
            "<u8",
            "<u4",
            "<u4",
            "<u4",
            "<u8",
            "<u8",
            "<i8",
            "<u8",
            "<u8",
            "<u8",
            "<i8",
            "<u8",
            "<u8",
        ],
        "offsets": [0, 8, 12, 16, 24, 32, 40, 48, 56, 64, 128, 136, 144],
        "itemsize": _HEADER_SIZE,
    }
)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class RefTableError(Exception):
    """Base of every reference table error."""


class RefTableArgumentError(RefTableError, ValueError):
    """Bad name, capacity, instrument id or array."""


class RefTableNotFoundError(RefTableError):
    """No table of that name under the root."""


class RefTableExistsError(RefTableError):
    """`create` found a table of that name (and exist_ok was false)."""


class RefTableFormatError(RefTableError):
    """The file is not a reference table of this layout version and TICK dtype."""


def _align(n: int) -> int:
    return (n + 63) & ~63


def _sizes(max_instruments: int) -> tuple[int, int, int]:
    gens = _HEADER_SIZE
    rows = _align(gens + 8 * max_instruments)
    return gens, rows, rows + TICK.itemsize * max_instruments


def _path(root: str | os.PathLike[str], name: str) -> Path:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise RefTableArgumentError(f"table name must match {_NAME_RE.pattern}, got {name!r}")
    return Path(root) / name


class RefTable:
    """A mapped reference table: the writer (from `create`) or a reader (from `attach`)."""

    __slots__ = (
        "_closed",
        "_gens",
        "_gens_p",
        "_header",
        "_mm",
        "_n",
        "_name",
        "_out",
        "_out_p",
        "_path",
        "_rows",
        "_rows_p",
        "_writer",
    )

    def __init__(self, name: str, path: Path, mm: mmap.mmap, *, writer: bool) -> None:
        """Private: use `RefTable.create` or `RefTable.attach`."""
        # Validate a copy: a view would pin the mapping if we raise (mm.close -> BufferError).
        h = np.frombuffer(mm, dtype=REF_HEADER_DTYPE, count=1).copy()[0]
        size = len(mm)
        n = int(h["max_instruments"])
        if int(h["magic"]) != REF_MAGIC:
            raise RefTableFormatError(f"{path} is not a reference table")
        if int(h["layout_version"]) != REF_LAYOUT_VERSION:
            raise RefTableFormatError(
                f"{path} has layout version {int(h['layout_version'])}, not {REF_LAYOUT_VERSION}"
            )
        if int(h["record_size"]) != TICK.itemsize or int(h["fingerprint"]) != dtype_fingerprint(
            TICK.dtype
        ):
            raise RefTableFormatError(f"{path} holds rows of another TICK layout")
        gens_off, rows_off, total = _sizes(n)
        if (int(h["gens_offset"]), int(h["rows_offset"]), int(h["total_bytes"])) != (
            gens_off,
            rows_off,
            total,
        ) or size < total:
            raise RefTableFormatError(f"{path}: header offsets/size inconsistent ({size} bytes)")
        self._name = name
        self._path = path
        self._mm: mmap.mmap | None = mm
        self._writer = writer
        self._n = n
        self._header = np.frombuffer(mm, dtype=REF_HEADER_DTYPE, count=1)
        self._gens = np.frombuffer(mm, dtype="<u8", count=n, offset=gens_off)
        self._rows = np.frombuffer(mm, dtype=TICK.dtype, count=n, offset=rows_off)
        self._gens_p = ffi.from_buffer("uint64_t[]", self._gens, require_writable=False)
        self._rows_p = ffi.from_buffer("uint64_t[]", self._rows, require_writable=False)
        self._out = np.zeros(1, dtype=TICK.dtype)
        self._out_p = ffi.from_buffer(self._out)
        self._closed = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        name: str,
        max_instruments: int,
        *,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        exist_ok: bool = False,
        now_ns: int = 0,
    ) -> Self:
        """Create (formatted under a temporary name, then linked into place, so no reader
        sees a half-initialised table) and open it as the writer. With exist_ok an existing
        table of the same capacity is reopened as the writer, rows kept (feed restart)."""
        path = _path(root, name)
        if isinstance(max_instruments, bool) or not 0 < int(max_instruments) <= 65536:
            raise RefTableArgumentError(
                f"max_instruments must be in 1..65536, got {max_instruments}"
            )
        n = int(max_instruments)
        gens_off, rows_off, total = _sizes(n)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            raise RefTableError(f"cannot create reference table {name!r}: {exc}") from exc
        try:
            try:
                os.posix_fallocate(fd, 0, total)
                mm = mmap.mmap(fd, total, flags=mmap.MAP_SHARED)
            except OSError as exc:
                raise RefTableError(f"cannot reserve {total} bytes for {name!r}: {exc}") from exc
            header = np.frombuffer(mm, dtype=REF_HEADER_DTYPE, count=1)
            header[0] = (
                REF_MAGIC, REF_LAYOUT_VERSION, _HEADER_SIZE, TICK.itemsize, n,
                dtype_fingerprint(TICK.dtype), now_ns, gens_off, rows_off, total, 0, 0,
                os.getpid(),
            )  # fmt: skip
            del header
            try:
                os.link(tmp, path)
            except FileExistsError:
                mm.close()
                if not exist_ok:
                    raise RefTableExistsError(f"reference table {name!r} exists") from None
                table = cls._open(name, path, writer=True)
                if table.max_instruments != n:
                    table.close()
                    raise RefTableFormatError(
                        f"reference table {name!r} exists with {table.max_instruments} rows, "
                        f"not {n}"
                    ) from None
                table._header["writer_pid"] = os.getpid()
                return table
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return cls(name, path, mm, writer=True)

    @classmethod
    def _open(cls, name: str, path: Path, *, writer: bool) -> Self:
        try:
            fd = os.open(path, (os.O_RDWR if writer else os.O_RDONLY) | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RefTableNotFoundError(f"no reference table {name!r} in {path.parent}") from None
        except OSError as exc:
            raise RefTableError(f"cannot open reference table {name!r}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER_SIZE:
                raise RefTableFormatError(f"{path} is {size} bytes: not a reference table")
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writer else 0)
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=prot)
        finally:
            os.close(fd)
        try:
            return cls(name, path, mm, writer=writer)
        except RefTableError:
            with contextlib.suppress(BufferError):
                mm.close()
            raise

    @classmethod
    def attach(cls, name: str, *, root: str | os.PathLike[str] = DEFAULT_ROOT) -> Self:
        """Open an existing table read-only (a reader in any process)."""
        return cls._open(name, _path(root, name), writer=False)

    # ------------------------------------------------------------------ writer

    def update(self, ticks: npt.NDArray[np.void]) -> int:
        """Publish a batch of TICK records (in order: the last one per instrument wins);
        returns rows written. Ticks with an id >= max_instruments are skipped."""
        self._check_open()
        if not self._writer:
            raise RefTableError(f"reference table {self._name!r} was attached read-only")
        if (
            not isinstance(ticks, np.ndarray)
            or ticks.dtype != TICK.dtype
            or ticks.ndim != 1
            or not ticks.flags.c_contiguous
        ):
            raise RefTableArgumentError("ticks must be a 1-D C-contiguous array of TICK records")
        if not ticks.shape[0]:
            return 0
        n: int = lib.bk_ref_write(
            self._gens_p, self._rows_p, self._n, ffi.from_buffer(ticks), ticks.shape[0]
        )
        self._header["rows_written"] += n
        return n

    def touch(self, now_ns: int) -> None:
        """Record the writer's heartbeat (feed alive even when every instrument is quiet)."""
        self._check_open()
        if not self._writer:
            raise RefTableError(f"reference table {self._name!r} was attached read-only")
        self._header["heartbeat_ns"] = now_ns

    # ------------------------------------------------------------------ readers

    def _index(self, instrument: int) -> int:
        if isinstance(instrument, bool) or not isinstance(instrument, int | np.integer):
            raise RefTableArgumentError(f"instrument must be an int, got {instrument!r}")
        return int(instrument)

    def read(self, instrument: int) -> np.void | None:
        """A consistent copy of the instrument's latest TICK, or None if it was never written,
        is out of range, or stayed torn (its writer died mid-write)."""
        self._check_open()
        i = self._index(instrument)
        if not 0 <= i < self._n:
            return None
        rc = lib.bk_ref_read(self._gens_p, self._rows_p, self._n, i, self._out_p, _MAX_SPINS)
        if rc != 1:
            return None
        row: np.void = self._out[0].copy()
        return row

    def read_many(
        self, instruments: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.bool_]]:
        """(rows, valid) for many instruments: TICK records (zero where not valid)."""
        self._check_open()
        ids = np.asarray(instruments, dtype=np.int64).reshape(-1)
        rows = np.zeros(ids.shape[0], dtype=TICK.dtype)
        valid = np.zeros(ids.shape[0], dtype=bool)
        for k, i in enumerate(ids.tolist()):
            if 0 <= i < self._n:
                rc = lib.bk_ref_read(
                    self._gens_p,
                    self._rows_p,
                    self._n,
                    i,
                    ffi.from_buffer(rows[k : k + 1]),
                    _MAX_SPINS,
                )
                valid[k] = rc == 1
        return rows, valid

    def last_update_ns(self, instrument: int) -> int | None:
        """Header ts_ns of the instrument's latest row, or None if it has none."""
        row = self.read(instrument)
        return None if row is None else int(row["ts_ns"])

    def is_stale(self, instrument: int, now_ns: int, stale_after_ns: int) -> bool:
        """True unless the instrument has a row updated within stale_after_ns of now_ns
        (missing and unreadable rows are stale: fail closed)."""
        last = self.last_update_ns(instrument)
        return last is None or now_ns - last > stale_after_ns

    # ------------------------------------------------------------------ introspection

    @property
    def heartbeat_ns(self) -> int:
        self._check_open()
        return int(self._header[0]["heartbeat_ns"])

    @property
    def rows_written(self) -> int:
        self._check_open()
        return int(self._header[0]["rows_written"])

    @property
    def max_instruments(self) -> int:
        return self._n

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    def generations(self) -> npt.NDArray[np.uint64]:
        """Read-only view of the per-row seqlock words (for tests and diagnostics)."""
        view = self._gens.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ lifetime

    def _check_open(self) -> None:
        if self._closed:
            raise RefTableError(f"reference table {self._name!r} is closed")

    def close(self) -> None:
        """Unmap (idempotent); the file stays, see unlink()."""
        if self._closed:
            return
        self._closed = True
        for p in (self._gens_p, self._rows_p, self._out_p):
            ffi.release(p)
        empty_u8: Any = np.zeros(0, dtype="<u8")
        self._gens = empty_u8
        self._rows = np.zeros(0, dtype=TICK.dtype)
        self._header = np.zeros(1, dtype=REF_HEADER_DTYPE)
        mm, self._mm = self._mm, None
        if mm is not None:
            with contextlib.suppress(BufferError):
                mm.close()

    def unlink(self) -> None:
        """Remove the table's name; processes still attached keep their mapping."""
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            raise RefTableNotFoundError(f"reference table {self._name!r} is gone") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "writer" if self._writer else "reader"
        return f"RefTable({self._name!r}, {role}, max_instruments={self._n})"
