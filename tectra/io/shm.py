"""Shared-memory rings: fixed-size records between processes through `/dev/shm/tectra/<name>`.

This module owns the Python face of `csrc/ring.c`: creating and attaching rings by name,
refusing an attacher whose record layout differs (the dtype fingerprint), mapping C's `-errno`
codes to a small set of typed errors, and thin batch wrappers (one C call per batch, no
per-record Python). The byte layout and the four algorithms (SPSC/MPMC x backpressure/overwrite)
live in `csrc/ring.h` and are described in `docs/rings.md`.

A `ShmRing` object's push/pop/peek calls belong to one thread at a time (it caches indices and
owns scratch out-parameters); another thread or process attaches its own `ShmRing` to the same
name. `stats()`, `depth` and `close()` may be called from any thread (e.g. a metrics scrape).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import mmap
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import numpy as np
import numpy.typing as npt

from tectra._ring import ffi, lib
from tectra.schema import dtype_fingerprint as schema_fingerprint

__all__ = [
    "DEFAULT_ROOT",
    "RingArgumentError",
    "RingClosedError",
    "RingError",
    "RingExistsError",
    "RingFormatError",
    "RingKind",
    "RingNotFoundError",
    "RingPolicy",
    "RingStats",
    "ShmRing",
    "dtype_fingerprint",
]

DEFAULT_ROOT = Path("/dev/shm/tectra")

# Ring names become file names: no separators, no leading dot (creation uses hidden temp names).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Populate page tables at map time so the first lap does not page-fault on the hot path.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_PROT = mmap.PROT_READ | mmap.PROT_WRITE


class RingError(Exception):
    """Base of every ring error; also raised for operations a ring variant does not support."""


class RingFormatError(RingError):
    """The file is not a ring, is another layout version, or holds records of another dtype."""


class RingExistsError(RingError):
    """`create` found a ring of that name (and `exist_ok` was false)."""


class RingNotFoundError(RingError):
    """No ring of that name under the root."""


class RingArgumentError(RingError, ValueError):
    """A bad argument at the boundary: name, dtype, capacity, array shape or layout."""


class RingClosedError(RingError):
    """The `ShmRing` was closed."""


class RingKind(enum.IntEnum):
    SPSC = 0  # one producer, one consumer
    MPMC = 1  # many producers, many consumers sharing one read cursor


class RingPolicy(enum.IntEnum):
    BACKPRESSURE = 0  # orders: push refuses what does not fit; nothing is lost
    OVERWRITE = 1  # market data: push never fails; a lagging consumer is told what it lost


@dataclass(frozen=True, slots=True)
class RingStats:
    """Counters read from the ring header (shared by every process attached to the ring)."""

    capacity: int
    depth: int  # records readable now (capped at capacity under overwrite)
    pushed: int  # records accepted by push
    popped: int  # records delivered by pop (and released after peek)
    overruns: int  # records consumers lost to the producer (overwrite)
    full: int  # records refused by push because the ring was full (backpressure)


def dtype_fingerprint(dtype: npt.DTypeLike) -> int:
    """The 64-bit form of tectra.schema.dtype_fingerprint (its first 16 hex digits), so the
    ring header and the schema agree on one definition of "the same layout"."""
    return int(schema_fingerprint(np.dtype(dtype))[:16], 16)


def _check_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise RingArgumentError(f"not a numpy dtype: {dtype!r}") from exc
    if dt.hasobject:
        raise RingArgumentError(f"dtype {dt} holds Python objects; rings carry raw bytes")
    if dt.itemsize == 0 or dt.itemsize % 8 != 0:
        raise RingArgumentError(f"record size must be a positive multiple of 8, got {dt.itemsize}")
    return dt


def _ring_path(root: str | os.PathLike[str], name: str) -> Path:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise RingArgumentError(
            f"ring name must match {_NAME_RE.pattern} (it becomes a file name), got {name!r}"
        )
    return Path(root) / name


def _raise_for(rc: int, what: str) -> NoReturn:
    code = -rc
    if code == errno.EBADF:
        raise RingClosedError(f"{what}: ring is closed")
    if code == errno.EINVAL:
        raise RingArgumentError(f"{what}: invalid argument")
    if code == errno.EBADMSG:
        raise RingFormatError(f"{what}: not a ring, or its header is inconsistent")
    if code == errno.EPROTONOSUPPORT:
        raise RingFormatError(f"{what}: ring layout version is not {lib.TR_LAYOUT_VERSION}")
    if code == errno.EAGAIN:
        raise RingFormatError(f"{what}: ring header is not initialized")
    if code == errno.EOPNOTSUPP:
        raise RingError(f"{what}: not supported by this ring variant")
    raise RingError(f"{what}: {os.strerror(code)} (errno {code})")


def _map(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=_PROT)


def _bind(mm: mmap.mmap, size: int, what: str) -> tuple[Any, Any]:
    """Open a C handle over a mapped region; on failure unmap and raise a typed error."""
    base = ffi.from_buffer(mm, require_writable=True)
    handle = ffi.new("tr_ring_t *")
    rc = lib.tr_ring_open(handle, base, size)
    if rc < 0:
        ffi.release(base)
        mm.close()
        _raise_for(rc, what)
    return base, handle


class ShmRing:
    """A ring of fixed-size records in shared memory, attached by name from any process."""

    __slots__ = (
        "_base",
        "_capacity",
        "_closed",
        "_dtype",
        "_from_buffer",
        "_h",
        "_kind",
        "_lock",
        "_lost",
        "_mm",
        "_name",
        "_null",
        "_path",
        "_policy",
        "_pop_c",
        "_push_c",
        "_records",
        "_slot",
    )

    def __init__(
        self,
        name: str,
        *,
        path: Path,
        dtype: np.dtype[Any],
        mm: mmap.mmap,
        base: Any,
        handle: Any,
    ) -> None:
        """Private: use `ShmRing.create` or `ShmRing.attach`."""
        info = ffi.new("tr_info_t *")
        rc = lib.tr_ring_info(handle, info)
        if rc < 0:
            _raise_for(rc, f"ring {name!r}")
        self._name = name
        self._path = path
        self._dtype = dtype
        self._mm: mmap.mmap | None = mm
        self._base = base  # keeps the buffer export (and so the mapping) alive for C
        self._h = handle
        self._capacity = int(info.capacity)
        self._kind = RingKind(info.kind)
        self._policy = RingPolicy(info.policy)
        self._closed = False
        # Preallocated out-parameters and bound C entry points keep push/pop thin.
        self._lost = ffi.new("uint64_t *")
        self._slot = ffi.new("uint64_t *")
        # Serializes stats() (any thread) against close(), which unmaps the ring.
        self._lock = threading.Lock()
        self._push_c = lib.tr_push
        self._pop_c = lib.tr_pop
        self._from_buffer = ffi.from_buffer
        self._null = ffi.NULL
        # Read-only view of the record array, sliced by peek() (zero-copy, SPSC backpressure).
        records = np.frombuffer(
            mm, dtype=dtype, count=self._capacity, offset=int(info.records_offset)
        )
        records.flags.writeable = False
        self._records = records

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        name: str,
        dtype: npt.DTypeLike,
        capacity: int,
        kind: RingKind = RingKind.SPSC,
        policy: RingPolicy = RingPolicy.BACKPRESSURE,
        *,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        exist_ok: bool = False,
    ) -> Self:
        """Create ring `root/name` (root created if missing) and attach to it.

        The file is formatted under a hidden temporary name and then hard-linked into place, so
        no process can ever attach to a half-initialized ring. With `exist_ok`, an existing ring
        of the same dtype, capacity, kind and policy is attached instead (contents kept); one of
        another shape raises RingFormatError.
        """
        dt = _check_dtype(dtype)
        path = _ring_path(root, name)
        try:
            kind = RingKind(kind)
            policy = RingPolicy(policy)
        except ValueError as exc:
            raise RingArgumentError(str(exc)) from exc
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise RingArgumentError(f"capacity must be an int, got {capacity!r}")
        capacity = int(capacity)
        if capacity & (capacity - 1) or not lib.TR_MIN_CAPACITY <= capacity <= lib.TR_MAX_CAPACITY:
            raise RingArgumentError(
                f"capacity must be a power of two in [{lib.TR_MIN_CAPACITY}, "
                f"{lib.TR_MAX_CAPACITY}], got {capacity}"
            )
        size = int(lib.tr_ring_bytes(capacity, dt.itemsize))
        if size == 0:
            raise RingArgumentError(f"ring of {capacity} x {dt.itemsize}-byte records is too big")
        fingerprint = dtype_fingerprint(dt)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            raise RingError(f"cannot create ring {name!r} in {path.parent}: {exc}") from exc
        try:
            try:
                # fallocate, not ftruncate: a full tmpfs fails here, not with SIGBUS later.
                os.posix_fallocate(fd, 0, size)
                mm = _map(fd, size)
            except OSError as exc:
                raise RingError(f"cannot reserve {size} bytes for ring {name!r}: {exc}") from exc
            base = ffi.from_buffer(mm, require_writable=True)
            rc = lib.tr_ring_init(
                base, size, dt.itemsize, capacity, kind, policy, fingerprint, time.time_ns()
            )
            ffi.release(base)
            if rc < 0:
                mm.close()
                _raise_for(rc, f"create ring {name!r}")
            try:
                os.link(tmp, path)
            except FileExistsError:
                mm.close()
                if not exist_ok:
                    raise RingExistsError(
                        f"ring {name!r} already exists in {path.parent}"
                    ) from None
                ring = cls.attach(name, dt, root=root)
                if (ring.capacity, ring.kind, ring.policy) != (capacity, kind, policy):
                    found = (ring.capacity, ring.kind.name, ring.policy.name)
                    ring.close()
                    raise RingFormatError(
                        f"ring {name!r} exists as (capacity, kind, policy) = {found}, "
                        f"not {(capacity, kind.name, policy.name)}"
                    ) from None
                return ring
            except OSError as exc:
                mm.close()
                raise RingError(f"cannot publish ring {name!r} at {path}: {exc}") from exc
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        base, handle = _bind(mm, size, f"ring {name!r}")
        return cls(name, path=path, dtype=dt, mm=mm, base=base, handle=handle)

    @classmethod
    def attach(
        cls, name: str, dtype: npt.DTypeLike, *, root: str | os.PathLike[str] = DEFAULT_ROOT
    ) -> Self:
        """Attach to an existing ring; its dtype fingerprint must match `dtype`'s."""
        dt = _check_dtype(dtype)
        path = _ring_path(root, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingNotFoundError(f"no ring {name!r} in {path.parent}") from None
        except OSError as exc:
            raise RingError(f"cannot open ring {name!r}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < lib.TR_HEADER_SIZE:
                raise RingFormatError(f"{path} is {size} bytes, smaller than a ring header")
            mm = _map(fd, size)
        except OSError as exc:
            raise RingError(f"cannot map ring {name!r}: {exc}") from exc
        finally:
            os.close(fd)
        base, handle = _bind(mm, size, f"attach ring {name!r}")
        info = ffi.new("tr_info_t *")
        lib.tr_ring_info(handle, info)
        fingerprint = dtype_fingerprint(dt)
        if info.record_size != dt.itemsize or info.fingerprint != fingerprint:
            ffi.release(base)
            mm.close()
            raise RingFormatError(
                f"ring {name!r} holds {info.record_size}-byte records with dtype fingerprint "
                f"{info.fingerprint:#018x}; this dtype is {dt.itemsize} bytes, "
                f"fingerprint {fingerprint:#018x}"
            )
        return cls(name, path=path, dtype=dt, mm=mm, base=base, handle=handle)

    # ------------------------------------------------------------------ hot path

    def _reject(self, arr: Any, what: str, *, writable: bool = False) -> NoReturn:
        if self._closed:
            raise RingClosedError(f"ring {self._name!r} is closed")
        if not isinstance(arr, np.ndarray):
            raise RingArgumentError(f"{what} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != self._dtype:
            raise RingArgumentError(f"{what} has dtype {arr.dtype}, ring carries {self._dtype}")
        if arr.ndim != 1 or not arr.flags.c_contiguous:
            raise RingArgumentError(f"{what} must be a 1-D C-contiguous array")
        if writable and not arr.flags.carray:
            raise RingArgumentError(f"{what} must be writable and aligned")
        raise RingArgumentError(f"{what} rejected")

    def push(self, records: npt.NDArray[Any]) -> int:
        """Push a batch; returns how many were accepted (a prefix; all of them under overwrite).

        Under backpressure the refused rest is counted in `stats().full`; push it again later.
        """
        if (
            not isinstance(records, np.ndarray)
            or records.dtype != self._dtype
            or records.ndim != 1
            or not records.flags.c_contiguous
        ):
            self._reject(records, "records")
        n: int = self._push_c(self._h, self._from_buffer(records), records.shape[0])
        if n < 0:
            _raise_for(n, f"push to ring {self._name!r}")
        return n

    def _seqs_ptr(self, seqs: npt.NDArray[np.uint64] | None, n_max: int) -> Any:
        if seqs is None:
            return self._null
        if (
            not isinstance(seqs, np.ndarray)
            or seqs.dtype != np.uint64
            or seqs.ndim != 1
            or not seqs.flags.c_contiguous
            or not seqs.flags.writeable
            or seqs.shape[0] < n_max
        ):
            raise RingArgumentError(
                "seqs must be a writable 1-D C-contiguous uint64 array at least as long as out"
            )
        return self._from_buffer("uint64_t[]", seqs, require_writable=True)

    def pop_into(
        self, out: npt.NDArray[Any], seqs: npt.NDArray[np.uint64] | None = None
    ) -> tuple[int, int]:
        """Copy up to len(out) records into out; returns (copied, lost since the last pop).

        `lost` is non-zero only under overwrite: those records were overwritten before this
        consumer read them, and they precede the copied ones. `seqs`, if given, receives each
        copied record's ring sequence number (its position in the stream, from 0).
        """
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != self._dtype
            or out.ndim != 1
            or not out.flags.carray  # C-contiguous, aligned and writable in one flag
        ):
            self._reject(out, "out", writable=True)
        n_max = out.shape[0]
        sp = self._null if seqs is None else self._seqs_ptr(seqs, n_max)
        n: int = self._pop_c(self._h, self._from_buffer(out), n_max, sp, self._lost)
        if n < 0:
            _raise_for(n, f"pop from ring {self._name!r}")
        lost: int = self._lost[0]
        return n, lost

    def pop(self, max_records: int) -> npt.NDArray[Any]:
        """Allocating convenience over pop_into (losses are still counted in stats().overruns)."""
        if max_records < 0:
            raise RingArgumentError(f"max_records must be >= 0, got {max_records}")
        out = np.empty(max_records, dtype=self._dtype)
        n, _ = self.pop_into(out)
        return out[:n]

    def pop_wait_into(
        self,
        out: npt.NDArray[Any],
        timeout_ns: int,
        seqs: npt.NDArray[np.uint64] | None = None,
    ) -> tuple[int, int]:
        """As pop_into, but spins in C until at least one record arrives or timeout_ns passes.

        For latency-critical consumers pinned to their own core: it burns the CPU while waiting
        (the GIL is released meanwhile). Returns (0, lost) on timeout.
        """
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != self._dtype
            or out.ndim != 1
            or not out.flags.carray  # C-contiguous, aligned and writable in one flag
        ):
            self._reject(out, "out", writable=True)
        if timeout_ns < 0:
            raise RingArgumentError(f"timeout_ns must be >= 0, got {timeout_ns}")
        n_max = out.shape[0]
        sp = self._null if seqs is None else self._seqs_ptr(seqs, n_max)
        n: int = lib.tr_pop_wait(
            self._h,
            self._from_buffer(out),
            n_max,
            sp,
            self._lost,
            timeout_ns,
        )
        if n < 0:
            _raise_for(n, f"pop from ring {self._name!r}")
        lost: int = self._lost[0]
        return n, lost

    def peek(self, max_records: int) -> npt.NDArray[Any]:
        """Zero-copy read-only view of up to max_records records (SPSC backpressure only).

        The view is contiguous, so it stops at the wrap; call again after release() for the
        rest. The records stay valid until release(); reading them after that races the
        producer.
        """
        if self._kind is not RingKind.SPSC or self._policy is not RingPolicy.BACKPRESSURE:
            raise RingError(
                f"peek is zero-copy and only safe on SPSC BACKPRESSURE rings; ring {self._name!r}"
                f" is {self._kind.name} {self._policy.name} (use pop_into)"
            )
        if max_records < 0:
            raise RingArgumentError(f"max_records must be >= 0, got {max_records}")
        n: int = lib.tr_peek(self._h, max_records, self._slot)
        if n < 0:
            _raise_for(n, f"peek ring {self._name!r}")
        slot: int = self._slot[0]
        return self._records[slot : slot + n]

    def release(self, n: int) -> None:
        """Hand n peeked records back to the producer (SPSC backpressure only)."""
        if self._kind is not RingKind.SPSC or self._policy is not RingPolicy.BACKPRESSURE:
            raise RingError(f"release pairs with peek; ring {self._name!r} has no peek")
        if n < 0:
            raise RingArgumentError(f"cannot release {n} records")
        rc = lib.tr_release(self._h, n)
        if rc < 0:
            if rc == -errno.EINVAL:
                raise RingArgumentError(f"cannot release {n} records: fewer are readable")
            _raise_for(rc, f"release ring {self._name!r}")

    # ------------------------------------------------------------------ introspection

    def stats(self) -> RingStats:
        """The shared counters; safe to call from any thread, also while another one pushes."""
        s = ffi.new("tr_stats_t *")
        with self._lock:
            rc = lib.tr_ring_stats(self._h, s)
        if rc < 0:
            _raise_for(rc, f"stats of ring {self._name!r}")
        return RingStats(
            capacity=int(s.capacity),
            depth=int(s.depth),
            pushed=int(s.pushed),
            popped=int(s.popped),
            overruns=int(s.overruns),
            full=int(s.full),
        )

    @property
    def depth(self) -> int:
        """Records readable now (overwrite: at most capacity, older ones are already lost)."""
        return self.stats().depth

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def kind(self) -> RingKind:
        return self._kind

    @property
    def policy(self) -> RingPolicy:
        return self._policy

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Detach this process (idempotent). The ring file stays; see unlink().

        If peek() views are still alive the mapping is kept until they are garbage-collected,
        so a view never points at unmapped memory.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lib.tr_ring_close(self._h)  # from now on every C call returns -EBADF
            ffi.release(self._base)
            self._records = np.empty(0, dtype=self._dtype)
            mm, self._mm = self._mm, None
        if mm is not None:
            # peek() views may still export the buffer; then it unmaps when they go.
            with contextlib.suppress(BufferError):
                mm.close()

    def unlink(self) -> None:
        """Remove the ring's name; processes still attached keep their mapping."""
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            raise RingNotFoundError(f"ring {self._name!r} is already unlinked") from None
        except OSError as exc:
            raise RingError(f"cannot unlink ring {self._name!r}: {exc}") from exc

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
        state = "closed" if self._closed else f"depth={self.depth}"
        return (
            f"ShmRing({self._name!r}, {self._kind.name}, {self._policy.name}, "
            f"capacity={self._capacity}, record_size={self._dtype.itemsize}, {state})"
        )
