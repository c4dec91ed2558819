"""The light capture path: one push per step on the hot thread, journaling on a writer thread.

This module owns `CaptureTap`. The `Recorder` (tectra.journal.capture) encodes and writes every
step on the thread that runs it — frame headers, CRC32C, Merkle leaves and a `writev` per step,
about 150 µs on the feed's one-packet steps. The tap splits that:

* **hot thread** — `record(inputs, outputs, now_ns)` copies the step's input batch (unless the
  caller hands over a copy it owns) and its non-empty outputs (they are views of reusable
  buffers), and appends one tuple to an in-process queue. Nothing else: no encoding, no I/O,
  no lock (a `deque` append is atomic).
* **writer thread** — wakes every `idle_s` (or at once when there is work), takes up to
  `block_steps` queued steps and journals them as STEP_BLOCK frames (`tectra.journal.stepblock`:
  many steps per frame, so per-frame costs — and the GIL the writer holds — are paid per block),
  one `writev` per wake-up, and calls the writer's `tick()` (batch fsync, age rotation).

What is journaled is exactly what replay needs to re-run and verify every step: the inputs and
the outputs (so a divergence is named record by record, not only detected).

**Never blocking the hot path.** The queue is bounded by steps and bytes. When it is full — the
disk or the writer fell behind — `record` drops the step and counts it (`dropped_steps`); the
step number still advances. The next recorded step carries the number lost, and the writer puts
a GAP frame (payload: u64 steps lost; frame `step` = the first step after the gap) before it.
`tectra journal verify` lists GAP frames, and replay reports the gap and stops comparing that
component there (its state after the lost steps is unknown) instead of diverging silently.
A writer error (disk full, ...) is kept in `error`, logged once, and turns every later step into
a counted drop: capture fails, the feed does not.
"""

from __future__ import annotations

import collections
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy.typing as npt

from tectra.core.log import get_logger
from tectra.journal.capture import OpaqueBatch, StepInputs, input_type_of
from tectra.journal.format import FRAME_OVERHEAD, RecordKind, RecordType, raw_copy
from tectra.journal.stepblock import CapturedStep, encode_step_block
from tectra.journal.writer import JournalWriter

__all__ = ["CaptureTap", "TapCounters"]

_log = get_logger("journal.tap")
_GAP: Final = struct.Struct("<Q")

Batch = npt.NDArray[Any] | OpaqueBatch
_Queued = tuple[int, int, int, StepInputs, list[Batch], int]
"""(step, now_ns, steps lost just before it, inputs, non-empty outputs, bytes held)."""


@dataclass(slots=True)
class TapCounters:
    """A snapshot of the tap's counters (see `CaptureTap.counters`)."""

    steps: int
    recorded_steps: int
    dropped_steps: int
    gaps: int
    written_steps: int
    blocks: int
    queued_steps: int
    queued_bytes: int
    error: str


def _copy(batch: StepInputs) -> StepInputs:
    if isinstance(batch, OpaqueBatch):
        return OpaqueBatch(batch.type_code, batch.data.copy(), batch.offsets.copy())
    # Every byte, padding included: numpy's own copy leaves a padded dtype's gaps undefined,
    # and replay compares outputs byte for byte.
    return raw_copy(batch)


def _nbytes(batch: Batch) -> int:
    if isinstance(batch, OpaqueBatch):
        return int(batch.data.nbytes + batch.offsets.nbytes)
    return int(batch.nbytes)


class CaptureTap:
    """Journals a component's steps off the hot thread (see the module docstring).

    `record` belongs to one thread (the hot one); `counters`, `flush` and `close` may be called
    from any. The tap owns `writer` from construction until `close`, which drains the queue,
    stops the thread and closes the writer.
    """

    def __init__(
        self,
        writer: JournalWriter,
        component_id: int,
        *,
        max_queued_steps: int = 65_536,
        max_queued_bytes: int = 256 << 20,
        block_steps: int = 4096,
        idle_s: float = 0.002,
    ) -> None:
        if max_queued_steps < 1 or max_queued_bytes < 1 or block_steps < 1:
            raise ValueError("tap limits must be >= 1")
        self.writer = writer
        self.component_id = int(component_id)
        self.max_queued_steps = max_queued_steps
        self.max_queued_bytes = max_queued_bytes
        self.block_steps = block_steps
        self.idle_s = idle_s
        # A block frame stays within a quarter of a segment, as RECORD_BATCH frames do.
        self._block_bytes = max(1, writer.options.segment_max_bytes // 4 - FRAME_OVERHEAD - 4096)
        self._queue: collections.deque[_Queued] = collections.deque()
        # Each counter has one writing thread, so plain ints are safe without a lock.
        self.steps = 0  # hot thread
        self.recorded_steps = 0  # hot thread
        self.dropped_steps = 0  # hot thread
        self.gaps = 0  # hot thread
        self._pushed_bytes = 0  # hot thread
        self._lost_pending = 0  # hot thread
        self._last_now_ns = 0  # hot thread
        self.written_steps = 0  # writer thread
        self.blocks = 0  # writer thread
        self._written_bytes = 0  # writer thread
        self.error: BaseException | None = None  # writer thread
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-tap", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ hot thread

    def record(
        self,
        inputs: StepInputs,
        outputs: Sequence[Batch],
        now_ns: int,
        *,
        owned_inputs: bool = False,
    ) -> bool:
        """Queue step `steps + 1` (its input batch and outputs at `now_ns`); False when it was
        dropped (queue full or writer failed: counted, and journaled as a gap)."""
        self.steps += 1
        self._last_now_ns = now_ns
        queued = self.recorded_steps - self.written_steps
        if (
            queued >= self.max_queued_steps
            or self._pushed_bytes - self._written_bytes >= self.max_queued_bytes
            or self.error is not None
        ):
            if not self._lost_pending:
                self.gaps += 1
            self._lost_pending += 1
            self.dropped_steps += 1
            return False
        ins = inputs if owned_inputs else _copy(inputs)
        outs = [_copy(o) for o in outputs if len(o)]
        nbytes = _nbytes(ins) + sum(_nbytes(o) for o in outs)
        self._queue.append((self.steps, now_ns, self._lost_pending, ins, outs, nbytes))
        self._lost_pending = 0
        self.recorded_steps += 1
        self._pushed_bytes += nbytes
        if queued >= self.block_steps:
            self._wake.set()  # a whole block is waiting: do not wait for the idle timer
        return True

    # ------------------------------------------------------------------ any thread

    @property
    def counters(self) -> TapCounters:
        return TapCounters(
            steps=self.steps,
            recorded_steps=self.recorded_steps,
            dropped_steps=self.dropped_steps,
            gaps=self.gaps,
            written_steps=self.written_steps,
            blocks=self.blocks,
            queued_steps=self.recorded_steps - self.written_steps,
            queued_bytes=self._pushed_bytes - self._written_bytes,
            error=repr(self.error) if self.error is not None else "",
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every recorded step is written (or the writer failed); True if so."""
        deadline = time.monotonic() + timeout_s
        target = self.recorded_steps
        self._wake.set()
        while self.written_steps < target and self.error is None:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.001)
        return self.error is None

    def close(self) -> None:
        """Journal what is queued, stop the writer thread, close the writer."""
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if self._lost_pending and self.error is None:
            # Steps dropped at the very end have no later step to carry the count: mark them
            # here (frame step = the step after the last), so the loss is never silent.
            self.writer.append(
                _GAP.pack(self._lost_pending),
                type_code=RecordType.GAP,
                kind=RecordKind.EVENT,
                component=self.component_id,
                mono_ns=self._last_now_ns,
                step=self.steps + 1,
            )
            self._lost_pending = 0
        self.writer.close()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            taken = self._take()
            if taken:
                if self.error is None:
                    try:
                        self._write(taken)
                    except (OSError, ValueError) as exc:
                        self.error = exc
                        _log.error("capture writer failed; steps are dropped", error=repr(exc))
                self.written_steps += len(taken)
                self._written_bytes += sum(item[5] for item in taken)
                continue
            if stopping:
                return
            if self.error is None:
                try:
                    self.writer.tick()
                except (OSError, ValueError) as exc:
                    self.error = exc
                    _log.error("capture writer failed; steps are dropped", error=repr(exc))
            self._wake.wait(self.idle_s)
            self._wake.clear()

    def _take(self) -> list[_Queued]:
        queue = self._queue
        taken: list[_Queued] = []
        budget = self._block_bytes
        while queue and len(taken) < self.block_steps:
            item = queue[0]
            if taken and item[5] > budget:
                break
            taken.append(queue.popleft())
            budget -= item[5]
        return taken

    def _write(self, taken: list[_Queued]) -> None:
        writer, cid = self.writer, self.component_id
        with writer.group():
            run: list[CapturedStep] = []
            for step, now_ns, lost, ins, outs, _n in taken:
                if lost:
                    self._append_block(run)
                    run = []
                    writer.append(
                        _GAP.pack(lost),
                        type_code=RecordType.GAP,
                        kind=RecordKind.EVENT,
                        component=cid,
                        mono_ns=now_ns,
                        step=step,
                    )
                run.append(CapturedStep(step, now_ns, ins, input_type_of(ins), outs))
            self._append_block(run)

    def _append_block(self, run: list[CapturedStep]) -> None:
        if not run:
            return
        self.writer.append(
            encode_step_block(run),
            type_code=RecordType.STEP_BLOCK,
            kind=RecordKind.EVENT,
            component=self.component_id,
            mono_ns=run[0].now_ns,
            step=run[0].step,
        )
        self.blocks += 1
