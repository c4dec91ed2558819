"""The shared-memory capture path: one C call per step on the hot thread, journaling elsewhere.

This module owns the Python face of `csrc/capture.c` (`CaptureRing`), its consumer
(`CaptureDrain`: ring → STEP_BLOCK frames → `JournalWriter`) and the producer face a service
holds (`ShmCaptureTap`). It replaces the queue + writer-thread `CaptureTap` on the feed:

* **hot thread** — `record_packets(...)` (the feed) or `record(...)` (any component) is one
  C call that copies the step's input batch and its outputs into a record of a byte ring in
  shared memory (the GIL is released during the call; no Python object per record, no lock,
  no syscall). In **digest** mode the outputs are reduced in C to one XXH64 per output array.
* **writer** — `CaptureDrain`, by default in a **child process** (`python -m
  tectra.journal.shmtap`, CPU affinity away from the hot thread's CPUs), so its Python work
  (frame headers, CRC32C, Merkle leaves, writes) never holds the hot process's GIL. One C call
  turns up to `block_steps` ring records into a ready STEP_BLOCK payload; the drain appends it
  as one frame. `writer="thread"` runs the same drain on a thread (tests, tools).

Never blocking: a full ring, a step too big for it (over a quarter of the ring) or a failed
writer turns the step into a counted drop; the next recorded step carries the number lost and
the drain journals a GAP frame before it (frame `step` = the first step after the gap). Steps
dropped after the last recorded one are journaled as a GAP at close (frame `step` = the step
after the last). `tectra journal verify` lists GAPs; replay reports them and stops there.

Modes (`CaptureMode`): FULL journals every output record, so a replay divergence is named
record by record; DIGEST journals per output array (type, record count, XXH64 of its bytes),
so a divergence is named per step and array (replay reports the replayed records of that
step as context). See docs/journal.md ("Capture modes") for the trade-off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from tectra._capture import ffi, lib
from tectra.core.log import get_logger
from tectra.journal.capture import OpaqueBatch, StepInputs, input_type_of
from tectra.journal.format import FRAME_OVERHEAD, RecordKind, RecordType, raw_view
from tectra.journal.tap import TapCounters
from tectra.journal.writer import JournalWriter, WriterOptions
from tectra.schema import RecordLayout

__all__ = [
    "CaptureDrain",
    "CaptureInputError",
    "CaptureMode",
    "CaptureRing",
    "CaptureRingError",
    "CaptureStats",
    "ShmCaptureTap",
    "output_digest",
]

_log = get_logger("journal.shmtap")
_GAP: Final = struct.Struct("<Q")
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_NULL = ffi.NULL
DEFAULT_RING_BYTES: Final = 64 << 20


class CaptureMode(enum.StrEnum):
    FULL = "full"  # every output record journaled: diffs name the record
    DIGEST = "digest"  # per output array: type, count, XXH64 — diffs name the step and array


class CaptureRingError(Exception):
    """The capture ring cannot be created, attached or used (closed, corrupt, bad shape)."""


class CaptureInputError(CaptureRingError, ValueError):
    """A step handed to the ring had arrays of the wrong size or packets outside the buffer."""


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureStats:
    """The ring header's counters (both sides'), read in one C call."""

    capacity: int
    mode: CaptureMode
    component: int
    steps: int
    recorded: int
    dropped: int
    gaps: int
    lost_pending: int
    last_now_ns: int
    closed: bool
    written: int
    blocks: int
    error: int  # 0, or -errno of the writer failure
    attached: bool  # the consumer is ready
    queued_bytes: int


def _raise(rc: int, what: str) -> NoReturn:
    code = -rc
    if code == errno.EINVAL:
        raise CaptureInputError(f"{what}: invalid argument (array size or packet bounds)")
    if code == errno.EBADF:
        raise CaptureRingError(f"{what}: capture ring is closed")
    if code == errno.EBADMSG:
        raise CaptureRingError(f"{what}: not a capture ring, or a record in it is corrupt")
    if code == errno.EPROTONOSUPPORT:
        raise CaptureRingError(f"{what}: capture ring layout is not {lib.CAP_LAYOUT_VERSION}")
    raise CaptureRingError(f"{what}: {os.strerror(code)} (errno {code})")


def output_digest(records: npt.NDArray[Any]) -> int:
    """XXH64 (seed 0) of every byte of `records` — what DIGEST mode journals per output."""
    view = np.ascontiguousarray(raw_view(records))
    return (
        int(lib.cap_xxh64(ffi.from_buffer(view), view.nbytes, 0))
        if view.nbytes
        else int(lib.cap_xxh64(_NULL, 0, 0))
    )


class CaptureRing:
    """A capture ring mapped from a file (under /dev/shm); one producer, one consumer."""

    def __init__(self, path: Path, mm: mmap.mmap, *, owner: bool) -> None:
        """Private: use `create` or `attach`."""
        self.path = path
        self.owner = owner
        self._mm = mm
        self._base = ffi.from_buffer(mm, require_writable=True)
        self._h = ffi.new("cap_ring_t *")
        rc = lib.cap_open(self._h, self._base, len(mm))
        if rc < 0:
            ffi.release(self._base)
            mm.close()
            _raise(rc, f"attach {path}")
        self._stats = ffi.new("cap_stats_t *")
        self._info = ffi.new("cap_block_t *")
        self._lock = threading.Lock()  # stats/close from any thread
        self.closed = False
        st = self.stats()
        self.mode = st.mode
        self.component = st.component
        self.capacity = st.capacity

    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        capacity: int = DEFAULT_RING_BYTES,
        mode: CaptureMode | str = CaptureMode.FULL,
        component: int = 0,
        outputs: Sequence[RecordLayout] = (),
    ) -> CaptureRing:
        """A fresh ring of `capacity` data bytes (a power of two) at `path` (must not exist).
        `outputs`: the layouts of the component's output arrays, in step order
        (`record_packets` relies on them)."""
        path = Path(path)
        size = int(lib.cap_region_bytes(capacity))
        if size == 0:
            raise CaptureInputError(
                f"capacity must be a power of two in [{lib.CAP_MIN_CAPACITY}, "
                f"{lib.CAP_MAX_CAPACITY}], got {capacity}"
            )
        if len(outputs) > lib.CAP_MAX_OUTPUTS:
            raise CaptureInputError(f"at most {lib.CAP_MAX_OUTPUTS} output layouts")
        mode = CaptureMode(mode)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, flags=_MAP_FLAGS)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        base = ffi.from_buffer(mm, require_writable=True)
        types = ffi.new("uint16_t[]", [lay.type_id for lay in outputs] or [0])
        sizes = ffi.new("uint32_t[]", [lay.itemsize for lay in outputs] or [0])
        mode_c = lib.CAP_MODE_DIGEST if mode is CaptureMode.DIGEST else lib.CAP_MODE_FULL
        rc = lib.cap_init(base, size, capacity, mode_c, component, len(outputs), types, sizes)
        ffi.release(base)
        if rc < 0:
            mm.close()
            path.unlink(missing_ok=True)
            _raise(rc, f"create {path}")
        return cls(path, mm, owner=True)

    @classmethod
    def attach(cls, path: Path | str) -> CaptureRing:
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError as exc:
            raise CaptureRingError(f"no capture ring at {path}") from exc
        try:
            size = os.fstat(fd).st_size
            if size < lib.CAP_HEADER_SIZE:
                raise CaptureRingError(f"{path} is too short for a capture ring")
            mm = mmap.mmap(fd, size, flags=_MAP_FLAGS)
        finally:
            os.close(fd)
        return cls(path, mm, owner=False)

    # ------------------------------------------------------------------ producer

    def put(
        self, inputs: StepInputs, outputs: Sequence[npt.NDArray[Any] | OpaqueBatch], now_ns: int
    ) -> bool:
        """Record one step of any component: its input batch and its schema-record outputs.
        True when recorded, False when dropped (counted by the ring)."""
        fb = ffi.from_buffer
        in_type = input_type_of(inputs)
        if isinstance(inputs, OpaqueBatch):
            base = int(inputs.offsets[0])
            offs = np.ascontiguousarray(inputs.offsets - base, dtype="<i8")
            data = np.ascontiguousarray(inputs.data[base : base + int(offs[-1])])
            a, na, b, nb = fb(offs), offs.nbytes, fb(data) if data.nbytes else _NULL, data.nbytes
        else:
            raw = np.ascontiguousarray(raw_view(inputs))
            a, na, b, nb = (fb(raw) if raw.nbytes else _NULL), raw.nbytes, _NULL, 0
        outs = [o for o in outputs if len(o)]
        if any(isinstance(o, OpaqueBatch) for o in outs):
            raise CaptureInputError("capture ring outputs must be schema record arrays")
        if len(outs) > lib.CAP_MAX_OUTPUTS:
            raise CaptureInputError(f"at most {lib.CAP_MAX_OUTPUTS} non-empty outputs per step")
        arrays = [np.ascontiguousarray(raw_view(o)) for o in outs]  # type: ignore[arg-type]
        keep = [fb(x) for x in arrays]
        n = len(arrays)
        rc = lib.cap_put(
            self._h,
            now_ns,
            in_type,
            len(inputs),
            a,
            na,
            b,
            nb,
            n,
            ffi.new("uint16_t[]", [int(o["type_id"][0]) for o in outs] or [0]),  # type: ignore[index]
            ffi.new("uint64_t[]", [len(o) for o in outs] or [0]),
            ffi.new("void *[]", keep or [_NULL]),
            ffi.new("uint64_t[]", [x.nbytes for x in arrays] or [0]),
        )
        if rc < 0:
            _raise(rc, "capture put")
        return bool(rc)

    def close_producer(self) -> None:
        with self._lock:
            if not self.closed:
                lib.cap_producer_close(self._h)

    # ------------------------------------------------------------------ consumer

    def take_block(
        self, out: npt.NDArray[np.uint8], max_steps: int
    ) -> tuple[memoryview, Any] | None:
        """The next STEP_BLOCK payload (a view of `out`) and its `cap_block_t`, or None."""
        rc = lib.cap_take_block(self._h, ffi.from_buffer(out), out.nbytes, max_steps, self._info)
        if rc < 0:
            _raise(rc, "capture take")
        if rc == 0:
            return None
        return memoryview(out.data)[:rc], self._info

    def mark_written(self, steps: int, blocks: int) -> None:
        lib.cap_mark_written(self._h, steps, blocks)

    def attach_consumer(self) -> None:
        lib.cap_consumer_attach(self._h)

    def set_error(self, err: int) -> None:
        lib.cap_set_error(self._h, max(1, err))

    # ------------------------------------------------------------------ any side

    def stats(self) -> CaptureStats:
        with self._lock:
            if self.closed:
                raise CaptureRingError(f"{self.path}: capture ring is closed")
            rc = lib.cap_stats(self._h, self._stats)
            if rc < 0:
                _raise(rc, "capture stats")
            s = self._stats
            return CaptureStats(
                capacity=int(s.capacity),
                mode=CaptureMode.DIGEST if s.mode == lib.CAP_MODE_DIGEST else CaptureMode.FULL,
                component=int(s.component),
                steps=int(s.steps),
                recorded=int(s.recorded),
                dropped=int(s.dropped),
                gaps=int(s.gaps),
                lost_pending=int(s.lost_pending),
                last_now_ns=int(s.last_now_ns),
                closed=bool(s.closed),
                written=int(s.written),
                blocks=int(s.blocks),
                error=int(s.error),
                attached=bool(s.attached),
                queued_bytes=int(s.queued_bytes),
            )

    @property
    def handle(self) -> Any:
        """The C handle (for the hot path's direct `lib.cap_put_packets` call)."""
        return self._h

    def close(self, *, unlink: bool | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            lib.cap_close(self._h)
            ffi.release(self._base)
            self._mm.close()
        if unlink if unlink is not None else self.owner:
            self.path.unlink(missing_ok=True)


class CaptureDrain:
    """The consumer: ring records → STEP_BLOCK frames (and GAP frames) → `writer`.

    `run` loops until the producer closed the ring (or `parent_gone()` says it died) and the
    ring is empty, then journals a trailing GAP for steps dropped after the last recorded one
    and closes the writer. A writer failure is kept in `error`, flagged in the ring (the
    producer then drops and counts every later step) and the rest is taken and discarded.
    """

    def __init__(
        self,
        ring: CaptureRing,
        writer: JournalWriter,
        *,
        block_steps: int = 4096,
        idle_s: float = 0.002,
    ) -> None:
        if block_steps < 1:
            raise ValueError("block_steps must be >= 1")
        self.ring = ring
        self.writer = writer
        self.block_steps = block_steps
        self.idle_s = idle_s
        # A block frame stays within a quarter of a segment (as RECORD_BATCH frames do), and
        # always holds at least one record (at most a quarter of the ring).
        quarter = writer.options.segment_max_bytes // 4 - FRAME_OVERHEAD - 4096
        size = max(quarter, ring.capacity // 4 + 4096)
        self._out = np.zeros(size, dtype=np.uint8)
        self.error: BaseException | None = None
        self.written_steps = 0
        self.blocks = 0
        ring.attach_consumer()

    def drain_once(self) -> int:
        """Journal one block (and the GAP before it); the steps it held (0: ring empty)."""
        taken = self.ring.take_block(self._out, self.block_steps)
        if taken is None:
            return 0
        payload, info = taken
        n_steps, first_step, now_ns, lost = (
            int(info.n_steps),
            int(info.first_step),
            int(info.first_now_ns),
            int(info.lost_before),
        )
        if self.error is None:
            try:
                with self.writer.group():
                    if lost:
                        self._gap(lost, first_step, now_ns)
                    self.writer.append(
                        payload,
                        type_code=RecordType.STEP_BLOCK,
                        kind=RecordKind.EVENT,
                        component=self.ring.component,
                        mono_ns=now_ns,
                        step=first_step,
                    )
                self.blocks += 1
            except (OSError, ValueError) as exc:
                self._fail(exc)
        self.written_steps += n_steps
        self.ring.mark_written(n_steps, 1 if self.error is None else 0)
        return n_steps

    def _gap(self, lost: int, step: int, now_ns: int) -> None:
        self.writer.append(
            _GAP.pack(lost),
            type_code=RecordType.GAP,
            kind=RecordKind.EVENT,
            component=self.ring.component,
            mono_ns=now_ns,
            step=step,
        )

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.ring.set_error(exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO)
        _log.error("capture writer failed; steps are dropped", error=repr(exc))

    def tick(self) -> None:
        if self.error is None:
            try:
                self.writer.tick()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Drain until the producer closed the ring (or `stop()`), then finish."""
        while True:
            if self.drain_once():
                continue
            st = self.ring.stats()
            if st.closed or stop():
                while self.drain_once():
                    pass
                break
            self.tick()
            time.sleep(self.idle_s)
        self.finish()

    def finish(self) -> None:
        """Trailing GAP (steps dropped after the last recorded one), then close the writer."""
        st = self.ring.stats()
        if st.lost_pending and self.error is None:
            try:
                self._gap(st.lost_pending, st.steps + 1, st.last_now_ns)
            except (OSError, ValueError) as exc:
                self._fail(exc)
        self.writer.close()


def _options_to_json(options: WriterOptions) -> str:
    return json.dumps(
        {
            k: (str(v) if isinstance(v, enum.Enum) else v)
            for k, v in dataclasses.asdict(options).items()
        }
    )


class ShmCaptureTap:
    """The producer face a service holds: records steps into a `CaptureRing` whose drain runs
    in a child process (default) or a thread. Same contract as `tectra.journal.tap.CaptureTap`
    (`record` returns False for a counted drop; `counters`; `flush`; `close`), plus the feed's
    one-call `record_packets`.

    `record`/`record_packets` belong to one thread; `counters`, `flush`, `close` to any.
    """

    def __init__(
        self,
        ring: CaptureRing,
        *,
        process: subprocess.Popen[bytes] | None = None,
        drain: CaptureDrain | None = None,
    ) -> None:
        """Private: use `in_process` or `with_writer_process`."""
        self.ring = ring
        self.mode = ring.mode
        self._process = process
        self._drain = drain
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.input_errors = 0
        self._h = ring.handle
        self._put = lib.cap_put_packets
        self._fb = ffi.from_buffer
        self._final: CaptureStats | None = None
        if drain is not None:
            self._thread = threading.Thread(
                target=drain.run, args=(self._stop.is_set,), name="journal-shmtap", daemon=True
            )
            self._thread.start()

    @classmethod
    def in_process(
        cls,
        writer: JournalWriter,
        component_id: int,
        *,
        ring_path: Path | str,
        outputs: Sequence[RecordLayout] = (),
        mode: CaptureMode | str = CaptureMode.FULL,
        capacity: int = DEFAULT_RING_BYTES,
        block_steps: int = 4096,
        idle_s: float = 0.002,
    ) -> ShmCaptureTap:
        """Drain on a thread of this process, into `writer` (tests and tools)."""
        ring = CaptureRing.create(
            ring_path, capacity=capacity, mode=mode, component=component_id, outputs=outputs
        )
        drain = CaptureDrain(
            CaptureRing.attach(ring.path), writer, block_steps=block_steps, idle_s=idle_s
        )
        return cls(ring, drain=drain)

    @classmethod
    def with_writer_process(
        cls,
        directory: Path | str,
        options: WriterOptions,
        component_id: int,
        *,
        ring_path: Path | str,
        outputs: Sequence[RecordLayout] = (),
        mode: CaptureMode | str = CaptureMode.FULL,
        capacity: int = DEFAULT_RING_BYTES,
        block_steps: int = 4096,
        idle_s: float = 0.002,
        avoid_cpus: Sequence[int] = (),
        start_timeout_s: float = 30.0,
    ) -> ShmCaptureTap:
        """Drain in a child process (`python -m tectra.journal.shmtap`) that owns the journal
        directory; it runs on the allowed CPUs other than `avoid_cpus` (the hot thread's)."""
        ring = CaptureRing.create(
            ring_path, capacity=capacity, mode=mode, component=component_id, outputs=outputs
        )
        args = [
            sys.executable,
            "-m",
            "tectra.journal.shmtap",
            str(ring.path),
            str(directory),
            _options_to_json(options),
            str(block_steps),
            str(idle_s),
        ]
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        except OSError:
            ring.close()
            raise
        others = set(os.sched_getaffinity(0)) - set(avoid_cpus)
        if avoid_cpus and others:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(proc.pid, others)
        # Wait until the writer holds its journal, so the first steps are not dropped while
        # it starts (and a writer that cannot start is an error here, not silent drops).
        deadline = time.monotonic() + start_timeout_s
        while not ring.stats().attached:
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    proc.kill()
                    proc.wait()
                ring.close()
                raise CaptureRingError(
                    f"capture writer process for {directory} did not start (exit {proc.returncode})"
                )
            time.sleep(0.005)
        return cls(ring, process=proc)

    # ------------------------------------------------------------------ hot thread

    def record_packets(
        self,
        payload: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.uint32],
        lengths: npt.NDArray[np.uint32],
        now_ns: int,
        outputs: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
    ) -> bool:
        """One step of a packets-in component (the feed): uint32 offsets/lengths into
        `payload`, and its three output arrays (the ring's configured layouts, in order).
        One C call. False when dropped (counted); CaptureInputError for wrong arrays."""
        fb = self._fb
        o0, o1, o2 = outputs
        b0, b1, b2 = o0.nbytes, o1.nbytes, o2.nbytes
        rc: int = self._put(
            self._h,
            now_ns,
            fb(payload),
            payload.nbytes,
            fb(offsets),
            offsets.nbytes,
            fb(lengths),
            lengths.nbytes,
            lengths.shape[0],
            fb(o0) if b0 else _NULL,
            b0,
            fb(o1) if b1 else _NULL,
            b1,
            fb(o2) if b2 else _NULL,
            b2,
        )
        if rc < 0:
            self.input_errors += 1
            _raise(rc, "capture record_packets")
        return rc == 1

    def record(
        self,
        inputs: StepInputs,
        outputs: Sequence[npt.NDArray[Any] | OpaqueBatch],
        now_ns: int,
        *,
        owned_inputs: bool = False,
    ) -> bool:
        """One step of any component (copied into the ring; `owned_inputs` is accepted for
        `CaptureTap` compatibility and changes nothing). False when dropped (counted)."""
        del owned_inputs
        try:
            recorded: bool = self.ring.put(inputs, outputs, now_ns)
        except CaptureInputError:
            self.input_errors += 1
            raise
        return recorded

    # ------------------------------------------------------------------ any thread

    def stats(self) -> CaptureStats:
        return self._final if self._final is not None else self.ring.stats()

    @property
    def counters(self) -> TapCounters:
        s = self.stats()
        return TapCounters(
            steps=s.steps,
            recorded_steps=s.recorded,
            dropped_steps=s.dropped,
            gaps=s.gaps,
            written_steps=s.written,
            blocks=s.blocks,
            queued_steps=s.recorded - s.written,
            queued_bytes=s.queued_bytes,
            error=self.error,
        )

    @property
    def error(self) -> str:
        """Why capture stopped journaling ('' while it works): writer failure or a dead
        writer process."""
        s = self.stats()
        if s.error:
            return f"writer failed: {os.strerror(-s.error)} (errno {-s.error})"
        if self._drain is not None and self._drain.error is not None:
            return repr(self._drain.error)
        if self._process is not None and self._process.poll() not in (None, 0):
            return f"writer process exited with {self._process.returncode}"
        return ""

    @property
    def recorded_steps(self) -> int:
        return self.stats().recorded

    @property
    def written_steps(self) -> int:
        return self.stats().written

    @property
    def dropped_steps(self) -> int:
        return self.stats().dropped

    @property
    def gaps(self) -> int:
        return self.stats().gaps

    @property
    def blocks(self) -> int:
        return self.stats().blocks

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every recorded step is journaled (or the writer failed); True if so."""
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.stats()
            if s.error or self.error:
                return False
            if s.written >= s.recorded:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)

    def close(self, timeout_s: float = 30.0) -> None:
        """Close the producer side, wait for the writer to journal what is queued and seal
        the segment, then remove the ring."""
        if self._final is not None:
            return
        self.ring.close_producer()
        if self._thread is not None:
            self._thread.join()
            assert self._drain is not None
            self._drain.ring.close(unlink=False)
        if self._process is not None:
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _log.error("capture writer process did not finish; killing it")
                self._process.kill()
                self._process.wait()
        self._final = self.ring.stats()
        self.ring.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The writer process: `python -m tectra.journal.shmtap RING DIR OPTIONS_JSON [BLOCK IDLE]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    # The producer ends us by closing the ring (we then journal what is queued and seal); a
    # Ctrl-C or a SIGTERM sent to the whole group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ring = CaptureRing.attach(args[0])
    parent = os.getppid()
    try:
        raw = json.loads(args[2])
        writer = JournalWriter(args[1], WriterOptions(**raw))
    except (OSError, ValueError, TypeError) as exc:
        ring.set_error(exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO)
        _log.error("capture writer could not open its journal", error=repr(exc))
        ring.close()
        return 1
    block_steps = int(args[3]) if len(args) > 3 else 4096
    idle_s = float(args[4]) if len(args) > 4 else 0.002
    drain = CaptureDrain(ring, writer, block_steps=block_steps, idle_s=idle_s)
    # The producer closes the ring when it stops; if it dies instead, journal what it left.
    drain.run(stop=lambda: os.getppid() != parent)
    ring.close()
    return 0 if drain.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
