"""What replay needs from a component, and how a live step is captured for it.

This module owns the contract between components (feed, gateway, kill, strategies) and the
journal:

* `Component` — the protocol a replayable state machine implements: ``step(inputs, now_ns)``
  returning its outputs, ``snapshot()`` / ``restore(state)`` for its whole state as bytes, and a
  ``component_id`` (a `tectra.schema.Component` value). ``step`` must be a pure function of
  (state, inputs, now_ns): no clock reads, no I/O, no unseeded randomness. That is what makes
  "same inputs, same seed, same code ⇒ bit-identical outputs" true.
* `OpaqueBatch` — a batch of variable-length byte payloads (raw packets, FIX messages) of one
  opaque type code, as two numpy arrays (concatenated bytes + offsets), so opaque inputs are
  batches too.
* `Recorder` — wraps a component in the live service: each ``step`` call journals its inputs
  (kind INPUT), the outputs (kind OUTPUT) and nothing else, all frames of one call sharing one
  step number and ``mono_ns = now_ns``, in one write; ``snapshot`` journals the state (kind
  SNAPSHOT) to replay from. A step whose input batch is empty is journaled as one TIMER frame
  whose 2-byte payload names the input type, so replay calls step with the same empty batch.

Journal layout of step k of component c (all frames: component c, step k, mono_ns = now_ns)::

    INPUT  frames: the input records, in order     (or one TIMER frame when there were none)
    OUTPUT frames: the output records, in order of the returned arrays
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tectra.journal.format import RecordKind, RecordType
from tectra.journal.writer import JournalWriter

__all__ = [
    "Component",
    "OpaqueBatch",
    "Recorder",
    "StepInputs",
    "StepOutputs",
    "input_type_of",
    "normalize_outputs",
    "timer_input_type",
]


@dataclass(frozen=True, slots=True)
class OpaqueBatch:
    """`len(offsets) - 1` payloads of one opaque type; payload i = data[offsets[i]:offsets[i+1]]."""

    type_code: int
    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]

    @classmethod
    def from_payloads(
        cls, type_code: int, payloads: Sequence[bytes | bytearray | memoryview]
    ) -> OpaqueBatch:
        lens = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        data = np.frombuffer(b"".join(bytes(p) for p in payloads), dtype=np.uint8)
        return cls(int(type_code), data, offsets)

    @classmethod
    def empty(cls, type_code: int) -> OpaqueBatch:
        return cls(int(type_code), np.zeros(0, np.uint8), np.zeros(1, np.int64))

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])].tobytes()

    def payloads(self) -> list[bytes]:
        return [self[i] for i in range(len(self))]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpaqueBatch):
            return NotImplemented
        return (
            self.type_code == other.type_code
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.data, other.data)
        )

    __hash__ = None  # type: ignore[assignment]


StepInputs = npt.NDArray[Any] | OpaqueBatch
StepOutputs = None | npt.NDArray[Any] | OpaqueBatch | Sequence[npt.NDArray[Any] | OpaqueBatch]


@runtime_checkable
class Component(Protocol):
    """A replayable state machine. See the module docstring for the determinism contract."""

    component_id: int

    def step(self, inputs: StepInputs, now_ns: int) -> StepOutputs:
        """Consume one batch of inputs at time `now_ns`; return the outputs it produces."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, such that restore(snapshot()) on a fresh instance is identical."""
        ...

    def restore(self, state: bytes) -> None:
        """Replace the state with one produced by snapshot()."""
        ...


def normalize_outputs(outputs: StepOutputs) -> list[npt.NDArray[Any] | OpaqueBatch]:
    """A step's return value as a list of batches (None → [])."""
    if outputs is None:
        return []
    if isinstance(outputs, np.ndarray | OpaqueBatch):
        return [outputs]
    return list(outputs)


def input_type_of(inputs: StepInputs) -> int:
    """The record type code of an input batch (schema type id or opaque code)."""
    if isinstance(inputs, OpaqueBatch):
        return inputs.type_code
    from tectra.schema import LAYOUTS  # local: only for empty schema batches

    if inputs.shape[0]:
        return int(inputs["type_id"][0])
    for layout in LAYOUTS.values():
        if layout.dtype == inputs.dtype:
            return layout.type_id
    raise TypeError(f"inputs of dtype {inputs.dtype} are not schema records")


_TIMER = struct.Struct("<H")


def _append_batch(
    writer: JournalWriter,
    batch: StepInputs,
    kind: RecordKind,
    *,
    cid: int,
    step: int,
    now_ns: int,
    one_frame: bool = False,
) -> None:
    if isinstance(batch, OpaqueBatch):
        if len(batch):
            writer.append_payloads(
                [
                    batch.data.data[int(a) : int(b)]
                    for a, b in zip(
                        batch.offsets[:-1].tolist(), batch.offsets[1:].tolist(), strict=True
                    )
                ],
                type_code=batch.type_code,
                kind=kind,
                component=cid,
                mono_ns=now_ns,
                step=step,
            )
    elif batch.shape[0] and one_frame:
        writer.append_batch(batch, kind=kind, component=cid, mono_ns=now_ns, step=step)
    elif batch.shape[0]:
        writer.append_records(batch, kind=kind, component=cid, mono_ns=now_ns, step=step)


class Recorder:
    """Journals each live step of one component (see the module docstring for the layout)."""

    def __init__(
        self,
        component: Component,
        writer: JournalWriter,
        *,
        component_id: int | None = None,
        batch_frames: bool = False,
    ) -> None:
        """`batch_frames`: journal each schema input/output array as one RECORD_BATCH frame
        (high-rate components) instead of one frame per record."""
        self.component = component
        self.writer = writer
        self.batch_frames = batch_frames
        self.component_id = int(component.component_id if component_id is None else component_id)
        self.steps = 0

    def step(self, inputs: StepInputs, now_ns: int) -> StepOutputs:
        """Run the component's step and journal inputs and outputs as step `self.steps + 1`."""
        self.steps += 1
        k = self.steps
        outputs = self.component.step(inputs, now_ns)
        cid = self.component_id
        with self.writer.group():
            if len(inputs) == 0:
                self.writer.append(
                    _TIMER.pack(input_type_of(inputs)),
                    type_code=RecordType.TIMER,
                    kind=RecordKind.INPUT,
                    component=cid,
                    mono_ns=now_ns,
                    step=k,
                )
            else:
                _append_batch(
                    self.writer,
                    inputs,
                    RecordKind.INPUT,
                    cid=cid,
                    step=k,
                    now_ns=now_ns,
                    one_frame=self.batch_frames,
                )
            for out in normalize_outputs(outputs):
                _append_batch(
                    self.writer,
                    out,
                    RecordKind.OUTPUT,
                    cid=cid,
                    step=k,
                    now_ns=now_ns,
                    one_frame=self.batch_frames,
                )
        return outputs

    def snapshot(self, now_ns: int) -> int:
        """Journal the component's state as of before step `self.steps + 1`; returns its seq."""
        return self.writer.append(
            self.component.snapshot(),
            type_code=RecordType.SNAPSHOT_STATE,
            kind=RecordKind.SNAPSHOT,
            component=self.component_id,
            mono_ns=now_ns,
            step=self.steps + 1,
        )


def timer_input_type(payload: bytes | memoryview) -> int:
    """The input type code a TIMER frame names."""
    return int(_TIMER.unpack(bytes(payload)[: _TIMER.size])[0])
